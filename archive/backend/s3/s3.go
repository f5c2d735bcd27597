package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"codeberg.org/planb/planb/archive/backend"
)

// Addressing chooses how the bucket is named in requests.
type Addressing int

const (
	// AddressingAuto lets the client decide: virtual-host style for
	// AWS and the providers known to support it, path style otherwise.
	AddressingAuto Addressing = iota
	// AddressingPath puts the bucket in the path: https://HOST/BUCKET/KEY.
	// Most self-hosted servers (MinIO, Garage, versitygw) need it.
	AddressingPath
	// AddressingVirtualHost puts the bucket in the host name:
	// https://BUCKET.HOST/KEY.
	AddressingVirtualHost
)

// Options configure a connection to a bucket.
type Options struct {
	// Location is "s3:https://HOST[:PORT]/BUCKET[/PREFIX]".
	Location string
	// AccessKeyID and SecretAccessKey are the credentials; both empty
	// means anonymous requests. SessionToken is for temporary
	// credentials.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Region is the bucket's region; empty lets the client ask the
	// server (or use us-east-1).
	Region string
	// Addressing is path or virtual-host style; the zero value is
	// AddressingAuto.
	Addressing Addressing
	// InsecurePlaintext allows an s3:http:// location: requests,
	// including the (signed, never sent) credentials' signatures and
	// the encrypted data, travel unprotected by TLS.
	InsecurePlaintext bool
	// Transport carries the HTTP requests; nil means a default
	// transport.
	Transport http.RoundTripper
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// Location is a parsed S3 location.
type Location struct {
	Scheme string // "https" or "http"
	Host   string // host[:port]
	Bucket string
	Prefix string // without leading or trailing slash; may be empty
}

// String returns the location in the form ParseLocation reads.
func (l Location) String() string {
	s := "s3:" + l.Scheme + "://" + l.Host + "/" + l.Bucket
	if l.Prefix != "" {
		s += "/" + l.Prefix
	}
	return s
}

// ParseLocation parses "s3:https://HOST[:PORT]/BUCKET[/PREFIX]" (or
// s3:http://). Empty path segments are not allowed in PREFIX, nor "." or
// "..", and a trailing slash is ignored.
func ParseLocation(s string) (Location, error) {
	rest, ok := strings.CutPrefix(s, "s3:")
	if !ok {
		return Location{}, fmt.Errorf("parse s3 location %q: does not start with \"s3:\"", s)
	}
	u, err := url.Parse(rest)
	if err != nil {
		return Location{}, fmt.Errorf("parse s3 location %q: %w", s, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return Location{}, fmt.Errorf("parse s3 location %q: scheme %q, want https or http", s, u.Scheme)
	case u.Host == "":
		return Location{}, fmt.Errorf("parse s3 location %q: no host", s)
	case u.User != nil:
		return Location{}, fmt.Errorf("parse s3 location %q: credentials do not belong in the location", s)
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return Location{}, fmt.Errorf("parse s3 location %q: unexpected query or fragment", s)
	}
	path := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/"), "/")
	bucket, prefix, _ := strings.Cut(path, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("parse s3 location %q: no bucket", s)
	}
	if prefix != "" {
		for seg := range strings.SplitSeq(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return Location{}, fmt.Errorf("parse s3 location %q: bad prefix %q", s, prefix)
			}
		}
	}
	return Location{Scheme: u.Scheme, Host: u.Host, Bucket: bucket, Prefix: prefix}, nil
}

// S3 is a repository in an S3 bucket. Create or Open one.
type S3 struct {
	client    *minio.Client
	transport *http.Transport // the default transport made for s3, or nil
	loc       Location
	prefix    string // loc.Prefix + "/", or ""
	log       *slog.Logger
}

var _ backend.Backend = (*S3)(nil)

// partSize is the size above which Save uses a multipart upload; packs
// stay well below it and go up in a single request.
const partSize = 64 << 20

// connect validates opts and makes the client.
func connect(op string, opts Options) (*S3, error) {
	loc, err := ParseLocation(opts.Location)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if loc.Scheme == "http" && !opts.InsecurePlaintext {
		return nil, fmt.Errorf("%s %s: plain http needs the insecure-plaintext option", op, loc)
	}
	var lookup minio.BucketLookupType
	switch opts.Addressing {
	case AddressingAuto:
		lookup = minio.BucketLookupAuto
	case AddressingPath:
		lookup = minio.BucketLookupPath
	case AddressingVirtualHost:
		lookup = minio.BucketLookupDNS
	default:
		return nil, fmt.Errorf("%s %s: unknown addressing %d", op, loc, int(opts.Addressing))
	}
	if (opts.AccessKeyID == "") != (opts.SecretAccessKey == "") {
		return nil, fmt.Errorf("%s %s: access key id and secret access key must be given together", op, loc)
	}
	var creds *credentials.Credentials
	if opts.AccessKeyID == "" {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	} else {
		creds = credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)
	}
	transport := opts.Transport
	var own *http.Transport
	if transport == nil {
		if own, err = minio.DefaultTransport(loc.Scheme == "https"); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, loc, err)
		}
		transport = own
	}
	client, err := minio.New(loc.Host, &minio.Options{
		Creds:        creds,
		Secure:       loc.Scheme == "https",
		Transport:    transport,
		Region:       opts.Region,
		BucketLookup: lookup,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, loc, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &S3{client: client, transport: own, loc: loc, log: log}
	if loc.Prefix != "" {
		s.prefix = loc.Prefix + "/"
	}
	return s, nil
}

// Create returns the backend for a new repository at opts.Location. It
// makes the bucket if it does not exist (in opts.Region) and fails with an
// error wrapping os.ErrExist if the location already holds a config file.
// It does not write the config file, which the caller saves next.
func Create(ctx context.Context, opts Options) (*S3, error) {
	s, err := connect("create repository", opts)
	if err != nil {
		return nil, err
	}
	exists, err := s.client.BucketExists(ctx, s.loc.Bucket)
	if err != nil {
		return nil, fmt.Errorf("create repository %s: %w", s.loc, s.apiError(ctx, err))
	}
	if !exists {
		s.log.Debug("making bucket", "bucket", s.loc.Bucket, "region", opts.Region)
		err := s.client.MakeBucket(ctx, s.loc.Bucket, minio.MakeBucketOptions{Region: opts.Region})
		if err != nil {
			return nil, fmt.Errorf("create repository %s: make bucket: %w", s.loc, s.apiError(ctx, err))
		}
	}
	_, err = s.Stat(ctx, backend.Handle{Type: backend.ConfigFile})
	switch {
	case err == nil:
		return nil, fmt.Errorf("create repository %s: config file: %w", s.loc, os.ErrExist)
	case !errors.Is(err, backend.ErrNotExist):
		return nil, fmt.Errorf("create repository %s: %w", s.loc, err)
	}
	return s, nil
}

// Open returns the backend for the repository at opts.Location. It fails
// with an error wrapping backend.ErrNotExist if there is no config file.
func Open(ctx context.Context, opts Options) (*S3, error) {
	s, err := connect("open repository", opts)
	if err != nil {
		return nil, err
	}
	_, err = s.Stat(ctx, backend.Handle{Type: backend.ConfigFile})
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("open repository %s: no config file, not a repository: %w", s.loc, backend.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", s.loc, err)
	}
	return s, nil
}

// Location returns the canonical form of the location, e.g.
// "s3:https://s3.example.eu/bucket/prefix".
func (s *S3) Location() string { return s.loc.String() }

// key returns the object key of a valid handle.
func (s *S3) key(h backend.Handle) string {
	switch h.Type {
	case backend.ConfigFile:
		return s.prefix + "config"
	case backend.PackFile:
		return s.prefix + h.Type.String() + "/" + h.Name[:2] + "/" + h.Name
	}
	return s.prefix + h.Type.String() + "/" + h.Name
}

// permanentError marks an error that retrying cannot cure; the retry
// package recognises it by its Permanent method.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// isNotFound reports whether err is the server saying the object does
// not exist.
func isNotFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound":
		return true
	}
	return false
}

// apiError turns an error of the client into one for the backend's
// callers: the context's error once it is done, backend.ErrNotExist for a
// missing object, a permanent error for any other refusal (4xx except
// timeouts and throttling), and the error itself otherwise.
func (s *S3) apiError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if isNotFound(err) {
		return backend.ErrNotExist
	}
	resp := minio.ToErrorResponse(err)
	if resp.Code == "" {
		return err
	}
	err = fmt.Errorf("%s (%s, HTTP %d): %w", resp.Code, strings.TrimSuffix(resp.Message, "."), resp.StatusCode, err)
	switch {
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return err
	case resp.Code == "RequestTimeout", resp.Code == "SlowDown", resp.Code == "InternalError":
		return err
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return &permanentError{err}
	}
	return err
}

// Save streams the content of rd, read from its start, to h in one PUT
// request of the length found by seeking rd to its end. S3 makes the
// object visible only once it is complete; a failed or cancelled upload
// leaves an object already stored under h as it was.
func (s *S3) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if err := backend.CheckCall(ctx, "save", h); err != nil {
		return err
	}
	size, err := rd.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("save %v: find size: %w", h, err)
	}
	if _, err := rd.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("save %v: rewind: %w", h, err)
	}
	body := &bodyReader{ctx: ctx, r: rd}
	_, err = s.client.PutObject(ctx, s.loc.Bucket, s.key(h), body, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    partSize,
	})
	if err != nil {
		if body.err != nil {
			// The caller's reader failed: report its error, not the
			// client's rendering of it.
			return fmt.Errorf("save %v: %w", h, body.err)
		}
		return fmt.Errorf("save %v: %w", h, s.apiError(ctx, err))
	}
	if err := ctx.Err(); err != nil {
		// Stored, but the caller gave up: it must not count on the file.
		return fmt.Errorf("save %v: %w", h, err)
	}
	s.log.Debug("saved", "handle", h.String(), "size", size)
	return nil
}

// bodyReader is the body of a PUT request. It fails once the context is
// done, remembers the first error of the caller's reader, and hides the
// reader's Seek and WriterTo so that the client neither retries nor
// bypasses these checks.
type bodyReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		if b.err == nil {
			b.err = err
		}
		return 0, err
	}
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// Load returns a reader of length bytes of h from offset (length 0 means
// to the end), fetched with one ranged GET request. It fails if offset is
// beyond the end of the object; the reader returns io.ErrUnexpectedEOF if
// the object ends before length bytes. A response cut short by the
// network is an error other than io.ErrUnexpectedEOF, so that a retrying
// caller can tell it from a short object. The caller must close the
// reader.
func (s *S3) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	if err := backend.CheckCall(ctx, "load", h); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, &permanentError{fmt.Errorf("load %v: negative offset %d or length %d", h, offset, length)}
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		opts.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		opts.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	core := minio.Core{Client: s.client}
	body, info, header, err := core.GetObject(ctx, s.loc.Bucket, s.key(h), opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" && ctx.Err() == nil {
			return s.loadOutside(ctx, h, offset, length)
		}
		return nil, fmt.Errorf("load %v: %w", h, s.apiError(ctx, err))
	}
	// want is the number of bytes the object holds in the range.
	want := info.Size
	if cr := header.Get("Content-Range"); cr != "" {
		total, ok := parseTotal(cr)
		if !ok {
			body.Close()
			return nil, fmt.Errorf("load %v: bad Content-Range %q", h, cr)
		}
		want = total - offset
		if length > 0 {
			want = min(want, length)
		}
	} else if offset > 0 {
		// The server ignored the range and sent the whole object.
		body.Close()
		return nil, fmt.Errorf("load %v: server ignored the requested range", h)
	} else if length > 0 {
		want = min(want, length)
	}
	return &objectReader{body: body, h: h, left: want, short: length > 0 && want < length}, nil
}

// loadOutside handles a range the server refused: a range starting at
// the end of the object is an empty read (short if length > 0), one
// starting beyond it an error.
func (s *S3) loadOutside(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	fi, err := s.Stat(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("load %v: %w", h, errors.Unwrap(err))
	}
	if offset > fi.Size {
		return nil, &permanentError{fmt.Errorf("load %v: offset %d beyond end of %d-byte file", h, offset, fi.Size)}
	}
	return &objectReader{body: io.NopCloser(strings.NewReader("")), h: h, short: length > 0}, nil
}

// parseTotal returns the total size from a Content-Range header,
// "bytes START-END/TOTAL".
func parseTotal(cr string) (int64, bool) {
	_, total, ok := strings.Cut(cr, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}

// errCutShort is the error of a response body that ends before the
// bytes the object holds in the range.
var errCutShort = errors.New("response cut short")

// objectReader reads the left bytes of a response body; when they are
// done it returns io.ErrUnexpectedEOF if short (the object ended before
// the requested length), io.EOF otherwise.
type objectReader struct {
	body  io.ReadCloser
	h     backend.Handle
	left  int64
	short bool
}

func (r *objectReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		if r.short {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.left)]
	n, err := r.body.Read(p)
	r.left -= int64(n)
	switch {
	case r.left <= 0 && (err == nil || err == io.EOF):
		if r.short {
			return n, io.ErrUnexpectedEOF
		}
		return n, io.EOF
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return n, fmt.Errorf("load %v: %w with %d bytes missing", r.h, errCutShort, r.left)
	case err != nil:
		return n, fmt.Errorf("load %v: %w", r.h, err)
	}
	return n, nil
}

func (r *objectReader) Close() error { return r.body.Close() }

// Stat returns the size of h.
func (s *S3) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := backend.CheckCall(ctx, "stat", h); err != nil {
		return backend.FileInfo{}, err
	}
	info, err := s.client.StatObject(ctx, s.loc.Bucket, s.key(h), minio.StatObjectOptions{})
	if err != nil {
		return backend.FileInfo{}, fmt.Errorf("stat %v: %w", h, s.apiError(ctx, err))
	}
	return backend.FileInfo{Name: h.InfoName(), Size: info.Size}, nil
}

// Remove deletes h. S3 deletes missing objects without complaint, so
// Remove first checks that h exists; a concurrent Remove of the same file
// may therefore succeed twice.
func (s *S3) Remove(ctx context.Context, h backend.Handle) error {
	if err := backend.CheckCall(ctx, "remove", h); err != nil {
		return err
	}
	if _, err := s.client.StatObject(ctx, s.loc.Bucket, s.key(h), minio.StatObjectOptions{}); err != nil {
		return fmt.Errorf("remove %v: %w", h, s.apiError(ctx, err))
	}
	if err := s.client.RemoveObject(ctx, s.loc.Bucket, s.key(h), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("remove %v: %w", h, s.apiError(ctx, err))
	}
	return nil
}

// List calls fn for every file of type t, in key order page by page.
// Objects whose keys do not fit the layout (other prefixes' files, folder
// markers, names starting with a dot) are skipped. fn may call s.
func (s *S3) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	if err := t.Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if t == backend.ConfigFile {
		fi, err := s.Stat(ctx, backend.Handle{Type: t})
		if errors.Is(err, backend.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %v: %w", t, errors.Unwrap(err))
		}
		return fn(fi)
	}
	// Stop the client's listing when fn fails.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dir := s.prefix + t.String() + "/"
	for obj := range s.client.ListObjects(lctx, s.loc.Bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("list %v: %w", t, s.apiError(ctx, obj.Err))
		}
		name, ok := listedName(t, strings.TrimPrefix(obj.Key, dir))
		if !ok {
			continue
		}
		if err := fn(backend.FileInfo{Name: name, Size: obj.Size}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	return nil
}

// listedName returns the file name of an object of type t whose key,
// after the type's folder, is rel, or false if the object is not one of
// the repository's files.
func listedName(t backend.FileType, rel string) (string, bool) {
	name := rel
	if t == backend.PackFile {
		sub, n, ok := strings.Cut(rel, "/")
		if !ok || len(n) < 2 || sub != n[:2] {
			return "", false
		}
		name = n
	}
	if (backend.Handle{Type: t, Name: name}).Valid() != nil {
		return "", false
	}
	return name, true
}

// Close releases the idle connections of the transport Open or Create
// made (not those of a transport given in Options).
func (s *S3) Close() error {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}
