package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive"
)

// SinkOptions tune a Sink.
type SinkOptions struct {
	MapOptions
	// DryRun creates nothing and appends nothing; the report says what
	// would have been appended.
	DryRun bool
	// Pipeline is how many APPEND commands are in flight per connection
	// (default 8); 1 sends one message at a time and waits for each, as
	// imapsync does. Connections in Options says how many connections
	// append at once.
	Pipeline int
	// NoMultiappend sends one message per APPEND command even when the
	// server offers MULTIAPPEND (RFC 3502) and LITERAL+ (RFC 7888). By
	// default, with such a server and a Pipeline above 1, each connection
	// sends batches of messages in one APPEND (up to 100 messages or 2 MiB;
	// the server stores each batch at once) with non-synchronizing
	// literals, and keeps two batches in flight. A batch the server refuses
	// is sent again one message at a time, so that only the refused
	// messages are reported.
	NoMultiappend bool
	// MaxBuffered bounds the message bytes held in memory while they wait
	// for a connection (default 24 MiB: under the CLI's 96 MiB soft memory
	// limit, more only makes the runtime collect and scavenge harder).
	MaxBuffered int64
	// StreamAbove is the size above which a message is not held in memory
	// (default 8 MiB, at most MaxBuffered): Put streams it from its Body
	// into the APPEND literal and returns when it has been sent. When the
	// size is unknown, or the resume check needs the message's hash, the
	// body is read twice: rewound when it is an io.Seeker (as the
	// repository's restore.Reader is), else spilled to a temporary file
	// (mode 0600) that is removed as soon as the message is sent.
	StreamAbove int64
}

// Refused is a message the target server would not take (too large, over
// quota...).
type Refused struct {
	Folder   string `json:"folder"`
	SourceID string `json:"source_id"`
	Error    string `json:"error"`
}

// SinkReport says what a Sink did.
type SinkReport struct {
	Appended int64     `json:"appended"` // messages appended
	Bytes    int64     `json:"bytes"`    // their bytes
	Present  int64     `json:"present"`  // messages already on the target, not appended again
	Refused  []Refused `json:"refused,omitempty"`
}

// Sink restores messages into an IMAP account. It implements
// archive.Sink: Folder creates the target folder (translating the
// separator and namespace prefix, mapping special-use folders onto the
// target's own), Put appends a message with its flags and internal date.
//
// A Sink resumes: before appending into a folder it hashes what the folder
// holds, and a message whose content is already there (counted with
// multiplicity) is not appended again. Put hands the message to one of
// Options.Connections connections; Close waits for them. When the server
// offers MULTIAPPEND and LITERAL+, each connection is planb's own
// appender and sends batches of messages per APPEND (see
// SinkOptions.NoMultiappend); otherwise go-imap's APPEND, with
// SinkOptions.Pipeline commands in flight. A message larger than
// SinkOptions.StreamAbove is never held whole in memory: it streams from
// its Body into the APPEND literal.
type Sink struct {
	opts Options
	so   SinkOptions
	log  *slog.Logger
	t    *target

	cur *sinkFolder

	jobs    chan *appendJob
	wg      sync.WaitGroup
	budget  *byteBudget
	failed  atomic.Bool
	mu      sync.Mutex
	err     error
	report  SinkReport
	kwOnce  sync.Once
	started bool
	multi   bool            // append with MULTIAPPEND batches (appender)
	badKw   map[string]bool // keywords the target refused, guarded by mu
}

var _ archive.Sink = (*Sink)(nil)

type sinkFolder struct {
	path     string
	mailbox  string
	have     map[Hash]int // target messages not yet matched, by content
	dates    map[int64]bool
	anyDate  bool // the target holds messages: hash messages with no date
	keywords bool // PERMANENTFLAGS has \*
	perm     map[string]bool
}

type appendJob struct {
	folder, sourceID string
	mailbox          string
	flags            []goimap.Flag
	date             time.Time
	body             []byte // a buffered message, counted in the budget
	size             int64  // the literal's size

	// A streamed message: the worker copies stream into the literal and
	// sends the outcome on sent (buffered, capacity 1) once it no longer
	// reads stream.
	stream io.Reader
	sent   chan error
}

// NewSink connects to the account in opts (its Folders, Exclude and Retries
// are not used). Connections defaults to 4.
func NewSink(ctx context.Context, opts *Options, so *SinkOptions) (*Sink, error) {
	if opts == nil || opts.Host == "" || opts.User == "" {
		return nil, errors.New("imap sink: host and user are required")
	}
	o := *opts
	if o.Connections <= 0 {
		o.Connections = 4
	}
	s := &Sink{opts: o, log: o.Logger}
	if so != nil {
		s.so = *so
	}
	if s.so.Pipeline <= 0 {
		s.so.Pipeline = 8
	}
	if s.so.MaxBuffered <= 0 {
		s.so.MaxBuffered = 24 << 20
	}
	if s.so.StreamAbove <= 0 {
		s.so.StreamAbove = 8 << 20
	}
	s.so.StreamAbove = min(s.so.StreamAbove, s.so.MaxBuffered)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	t, err := openTarget(ctx, &s.opts, s.so.MapOptions, s.log)
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", o.describe(), err)
	}
	s.t = t
	caps := t.c.c.Caps()
	if !s.so.DryRun && !s.so.NoMultiappend && s.so.Pipeline > 1 && caps.Has(goimap.CapMultiAppend) && caps.Has(goimap.CapLiteralPlus) {
		// Make sure an appender can log in (LOGIN with a password that
		// needs a literal cannot).
		a, err := dialAppender(ctx, &s.opts)
		switch {
		case err == nil:
			a.logout()
			s.multi = true
		case errors.Is(err, errNoMultiappend):
			s.log.Debug("not using MULTIAPPEND", "err", err)
		default:
			t.close()
			return nil, fmt.Errorf("restore to %s: %w", o.describe(), err)
		}
	}
	s.budget = newByteBudget(s.so.MaxBuffered)
	n := o.Connections * s.so.Pipeline
	if s.multi {
		n = o.Connections * 2 * maxBatch
	}
	s.jobs = make(chan *appendJob, n)
	return s, nil
}

// Describe returns "imaps://user@host".
func (s *Sink) Describe() string { return s.opts.describe() }

// Report returns what the sink did; call it after Close.
func (s *Sink) Report() SinkReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.report
	r.Refused = slices.Clone(r.Refused)
	return r
}

// Mailbox returns the target mailbox name (UTF-8) for f.
func (s *Sink) Mailbox(f archive.Folder) string { return s.t.mailbox(f) }

// Folder creates the target folder of f when missing and lists what it
// already holds.
func (s *Sink) Folder(ctx context.Context, f archive.Folder) error {
	if err := s.failure(); err != nil {
		return err
	}
	mb := s.t.mailbox(f)
	sf := &sinkFolder{path: f.Path, mailbox: mb, have: map[Hash]int{}, dates: map[int64]bool{}, keywords: true}
	s.cur = sf
	if s.so.DryRun && !s.t.mailboxes[mb] {
		return nil
	}
	if !s.so.DryRun {
		if err := s.t.ensure(mb, f.SpecialUse); err != nil {
			return err
		}
	}
	msgs, sel, err := s.t.contents(mb, true)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		sf.have[m.Hash]++
		sf.dates[m.Date.Unix()] = true
	}
	sf.anyDate = len(msgs) > 0
	if sel.PermanentFlags != nil {
		sf.perm = map[string]bool{}
		sf.keywords = false
		for _, pf := range sel.PermanentFlags {
			sf.perm[strings.ToLower(string(pf))] = true
			if pf == goimap.FlagWildcard {
				sf.keywords = true
			}
		}
	}
	if len(msgs) > 0 {
		s.log.Info("target folder not empty: appending only what is missing", "folder", f.Path, "mailbox", mb, "messages", len(msgs))
	}
	return nil
}

func (s *Sink) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Sink) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.failed.Store(true)
}

// Put appends m to the current folder unless the folder already holds it.
// A message larger than SinkOptions.StreamAbove is streamed: Put returns
// once it has been sent.
func (s *Sink) Put(ctx context.Context, m *archive.Message) error {
	if err := s.failure(); err != nil {
		return err
	}
	sf := s.cur
	if sf == nil {
		return errors.New("imap sink: Put before Folder")
	}
	if m.Size > s.so.StreamAbove {
		return s.putStream(ctx, sf, m)
	}
	body, err := readBody(m.Body, m.Size, s.so.StreamAbove+1)
	if err != nil {
		return err
	}
	if int64(len(body)) > s.so.StreamAbove {
		// Larger than announced: stream the rest.
		m2 := *m
		m2.Size = -1
		m2.Body = io.MultiReader(bytes.NewReader(body), m.Body)
		return s.putStream(ctx, sf, &m2)
	}
	size := int64(len(body))
	if err := s.budget.acquire(ctx, size); err != nil {
		return err
	}
	if s.needHash(sf, m) {
		h, _, _ := HashOf(bytes.NewReader(body))
		if s.present(sf, h) {
			s.budget.release(size)
			return nil
		}
	}
	if s.so.DryRun {
		s.budget.release(size)
		s.count(size)
		return nil
	}
	j := s.newJob(sf, m)
	j.body, j.size = body, size
	s.start(ctx)
	select {
	case s.jobs <- j:
		return nil
	case <-ctx.Done():
		s.budget.release(size)
		return ctx.Err()
	}
}

// readBody reads r, whose size is announced as size (negative if
// unknown), up to limit bytes. With a size it reads into a slice of
// exactly that size, not one that io.ReadAll grows and copies: on a
// restore that is most of the sink's own allocation and clearing.
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size < 0 || size >= limit {
		return io.ReadAll(io.LimitReader(r, limit))
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return buf[:n], nil // shorter than announced
	case err != nil:
		return nil, err
	}
	rest, err := io.ReadAll(io.LimitReader(r, limit-size)) // longer than announced?
	if err != nil {
		return nil, err
	}
	return append(buf, rest...), nil
}

// needHash reports whether m may already be in sf: the resume check
// needs its hash.
func (s *Sink) needHash(sf *sinkFolder, m *archive.Message) bool {
	return sf.anyDate && (m.InternalDate.IsZero() || sf.dates[m.InternalDate.Unix()])
}

// present reports whether the target folder holds a message with hash h
// that no earlier message matched, and counts it.
func (s *Sink) present(sf *sinkFolder, h Hash) bool {
	if sf.have[h] == 0 {
		return false
	}
	sf.have[h]--
	s.mu.Lock()
	s.report.Present++
	s.mu.Unlock()
	return true
}

func (s *Sink) count(size int64) {
	s.mu.Lock()
	s.report.Appended++
	s.report.Bytes += size
	s.mu.Unlock()
}

// newJob returns the APPEND of m into sf, without its body.
func (s *Sink) newJob(sf *sinkFolder, m *archive.Message) *appendJob {
	j := &appendJob{folder: m.Folder, sourceID: m.SourceID, mailbox: sf.mailbox, date: m.InternalDate}
	if j.folder == "" {
		j.folder = sf.path
	}
	dropped := false
	for _, f := range m.Flags {
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		if !strings.HasPrefix(f, `\`) && !sf.keywords && !sf.perm[strings.ToLower(f)] {
			dropped = true
			continue
		}
		if !validFlag(f) {
			s.log.Warn("dropping a flag that IMAP cannot carry", "folder", sf.path, "source_id", m.SourceID, "flag", f)
			continue
		}
		j.flags = append(j.flags, goimap.Flag(f))
	}
	if dropped {
		s.kwOnce.Do(func() {
			s.log.Warn("the target does not keep keywords: dropping them", "folder", sf.path)
		})
	}
	return j
}

// putStream appends a message too large to hold in memory: a first pass
// (when the size is unknown or the resume check needs the hash) reads the
// body through the hasher, then the body, rewound or spilled to a
// temporary file, streams into the APPEND literal.
func (s *Sink) putStream(ctx context.Context, sf *sinkFolder, m *archive.Message) error {
	body, size := m.Body, m.Size
	if size < 0 || s.needHash(sf, m) {
		var (
			h   Hash
			err error
		)
		body, size, h, err = s.firstPass(m.Body)
		if err != nil {
			return err
		}
		if c, ok := body.(io.Closer); ok {
			defer c.Close()
		}
		if s.needHash(sf, m) && s.present(sf, h) {
			return nil
		}
	}
	if s.so.DryRun {
		s.count(size)
		return nil
	}
	j := s.newJob(sf, m)
	j.size = size
	j.stream = body
	j.sent = make(chan error, 1)
	s.start(ctx)
	select {
	case s.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The worker reads body until it sends on j.sent: wait for it even when
	// ctx ends (the connection's own deadlines bound the wait).
	return <-j.sent
}

// firstPass reads body through a Hasher and returns a reader of the same
// bytes from the start: body itself, rewound, when it can seek, else a
// temporary file (the caller closes it, which removes it).
func (s *Sink) firstPass(body io.Reader) (io.Reader, int64, Hash, error) {
	h := NewHasher()
	if sk, ok := body.(io.Seeker); ok {
		n, err := io.Copy(h, body)
		if err != nil {
			return nil, 0, Hash{}, err
		}
		if _, err := sk.Seek(0, io.SeekStart); err != nil {
			return nil, 0, Hash{}, fmt.Errorf("rewind message: %w", err)
		}
		return body, n, h.Sum(), nil
	}
	f, err := os.CreateTemp("", "planb-append-*")
	if err != nil {
		return nil, 0, Hash{}, fmt.Errorf("spill message: %w", err)
	}
	// Unlinked at once on Unix; removed by Close elsewhere.
	spill := &spillFile{File: f}
	if os.Remove(f.Name()) == nil {
		spill.removed = true
	}
	fw := &errWriter{w: f}
	n, err := io.Copy(io.MultiWriter(fw, h), body)
	if fw.err != nil {
		err = fmt.Errorf("spill message: %w", fw.err)
	}
	if err == nil {
		if _, err = f.Seek(0, io.SeekStart); err != nil {
			err = fmt.Errorf("spill message: %w", err)
		}
	}
	if err != nil {
		spill.Close()
		return nil, 0, Hash{}, err
	}
	return spill, n, h.Sum(), nil
}

// errWriter remembers the error of its writer.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// copyBody copies exactly size bytes of body to w. bodyErr says that the
// error is the body's: it failed, or yields fewer or more bytes than size.
func copyBody(w io.Writer, body io.Reader, size int64, buf []byte) (bodyErr bool, err error) {
	src := &errReader{r: body}
	n, err := io.CopyBuffer(w, io.LimitReader(src, size), buf)
	switch {
	case src.err != nil:
		return true, src.err
	case err != nil:
		return false, err
	case n != size:
		return true, fmt.Errorf("body has %d bytes, want %d", n, size)
	}
	var one [1]byte
	if k, _ := body.Read(one[:]); k > 0 {
		return true, fmt.Errorf("body longer than its size %d", size)
	}
	return false, nil
}

// errReader remembers the error of its reader (io.EOF excepted).
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// spillFile is a temporary file removed when closed.
type spillFile struct {
	*os.File
	removed bool
}

func (f *spillFile) Close() error {
	err := f.File.Close()
	if !f.removed {
		os.Remove(f.File.Name())
	}
	return err
}

func (s *Sink) start(ctx context.Context) {
	if s.started {
		return
	}
	s.started = true
	for range s.opts.Connections {
		s.wg.Add(1)
		go s.worker(ctx)
	}
}

// Limits of one MULTIAPPEND batch.
const (
	maxBatch      = 100
	maxBatchBytes = 2 << 20
)

// worker appends jobs on a connection of its own, Pipeline at a time.
func (s *Sink) worker(ctx context.Context) {
	defer s.wg.Done()
	if s.multi {
		s.multiWorker(ctx)
		return
	}
	type inflight struct {
		j   *appendJob
		cmd interface {
			Wait() (*goimap.AppendData, error)
		}
	}
	var (
		c     *conn
		queue []inflight
	)
	defer func() {
		if c != nil {
			c.logout()
		}
	}()
	finish := func(f inflight) {
		_, err := f.cmd.Wait()
		n := f.j.size
		defer s.budget.release(int64(len(f.j.body)))
		if err == nil {
			s.count(n)
			return
		}
		var ie *goimap.Error
		if errors.As(err, &ie) && !c.broken() {
			ok, rerr := s.keywordRetry(f.j, func(flags []goimap.Flag) (string, error) {
				cmd := c.c.Append(f.j.mailbox, f.j.size, &goimap.AppendOptions{Flags: flags, Time: f.j.date})
				cmd.Write(f.j.body)
				cmd.Close()
				_, err := cmd.Wait()
				var ie *goimap.Error
				if errors.As(err, &ie) && !c.broken() {
					return ie.Text, nil
				}
				return "", err
			})
			switch {
			case rerr != nil:
				s.fail(fmt.Errorf("append to %q: %w", f.j.mailbox, rerr))
			case ok:
				s.count(n)
			default:
				s.refuse(f.j, ie.Text)
			}
			return
		}
		s.fail(fmt.Errorf("append to %q: %w", f.j.mailbox, err))
	}
	drain := func() {
		for _, f := range queue {
			finish(f)
		}
		queue = queue[:0]
	}
	// drop gives a job back unsent.
	drop := func(j *appendJob, err error) {
		s.budget.release(int64(len(j.body)))
		if j.sent != nil {
			j.sent <- err
		}
	}
	buf := make([]byte, 64<<10)
	for j := range s.jobs {
		if s.failed.Load() {
			drop(j, s.failure())
			continue
		}
		if c == nil {
			var err error
			c, err = dial(ctx, &s.opts)
			if err != nil {
				s.fail(err)
				drop(j, err)
				continue
			}
		}
		if j.stream != nil {
			// A streamed message goes alone, so that a broken stream
			// costs no other message.
			drain()
			if s.failed.Load() {
				drop(j, s.failure())
				continue
			}
		}
		cmd := c.c.Append(j.mailbox, j.size, &goimap.AppendOptions{Flags: s.sendFlags(j.flags), Time: j.date})
		var werr error
		if j.stream != nil {
			var bodyErr bool
			bodyErr, werr = copyBody(cmd, j.stream, j.size, buf)
			var ie *goimap.Error
			if bodyErr || werr != nil && !errors.As(werr, &ie) && !c.broken() {
				// The literal is cut short: the connection cannot go on.
				c.abort()
				c = nil
				if bodyErr {
					j.sent <- fmt.Errorf("message %s: %w", j.sourceID, werr)
				} else {
					j.sent <- fmt.Errorf("append to %q: %w", j.mailbox, werr)
				}
				continue
			}
		} else {
			_, werr = cmd.Write(j.body)
		}
		cerr := cmd.Close()
		if j.sent != nil {
			j.sent <- nil
		}
		queue = append(queue, inflight{j: j, cmd: cmd})
		if werr != nil || cerr != nil {
			drain()
			continue
		}
		for len(queue) >= s.so.Pipeline {
			finish(queue[0])
			queue = queue[1:]
		}
	}
	drain()
}

// multiWorker appends jobs on an appender of its own, in batches of
// messages for one mailbox, two batches in flight.
func (s *Sink) multiWorker(ctx context.Context) {
	type batch struct {
		tag  string
		jobs []*appendJob
	}
	var (
		a        *appender
		inflight []batch
		next     *appendJob // taken from s.jobs, not yet sent
	)
	defer func() {
		if a != nil {
			a.logout()
		}
	}()
	drop := func(j *appendJob, err error) {
		s.budget.release(int64(len(j.body)))
		if j.sent != nil {
			j.sent <- err
		}
	}
	msgOf := func(j *appendJob) appendMsg {
		m := appendMsg{flags: s.sendFlags(j.flags), date: j.date, size: j.size, body: j.stream}
		if j.stream == nil {
			m.body = bytes.NewReader(j.body)
		}
		return m
	}
	// finish waits for the oldest batch. A refused batch of several
	// messages is sent again one message at a time.
	var finish func(b batch)
	finish = func(b batch) {
		ans, err := a.wait(b.tag)
		if err != nil {
			for _, j := range b.jobs {
				s.budget.release(int64(len(j.body)))
			}
			s.fail(fmt.Errorf("append to %q: %w", b.jobs[0].mailbox, err))
			return
		}
		if ans.status == "OK" {
			for _, j := range b.jobs {
				s.budget.release(int64(len(j.body)))
				s.count(j.size)
			}
			return
		}
		if len(b.jobs) == 1 {
			j := b.jobs[0]
			defer s.budget.release(int64(len(j.body)))
			ok, rerr := s.keywordRetry(j, func(flags []goimap.Flag) (string, error) {
				m := msgOf(j)
				m.flags = flags
				tag, _, err := a.send(j.mailbox, []appendMsg{m})
				if err != nil {
					return "", err
				}
				ans, err := a.wait(tag)
				if err != nil {
					return "", err
				}
				if ans.status != "OK" {
					return ans.text, nil
				}
				return "", nil
			})
			switch {
			case rerr != nil:
				s.fail(fmt.Errorf("append to %q: %w", j.mailbox, rerr))
			case ok:
				s.count(j.size)
			default:
				s.refuse(j, ans.text)
			}
			return
		}
		for _, j := range b.jobs {
			tag, _, err := a.send(j.mailbox, []appendMsg{msgOf(j)})
			if err != nil {
				// Bodies in memory cannot fail: the connection did.
				s.budget.release(int64(len(j.body)))
				s.fail(fmt.Errorf("append to %q: %w", j.mailbox, err))
				continue
			}
			finish(batch{tag: tag, jobs: []*appendJob{j}})
		}
	}
	drain := func() {
		for _, b := range inflight {
			finish(b)
		}
		inflight = inflight[:0]
	}
	for {
		j := next
		next = nil
		if j == nil {
			var ok bool
			if j, ok = <-s.jobs; !ok {
				break
			}
		}
		if s.failed.Load() {
			drop(j, s.failure())
			continue
		}
		if a == nil {
			var err error
			if a, err = dialAppender(ctx, &s.opts); err != nil {
				s.fail(err)
				drop(j, err)
				continue
			}
		}
		b := batch{jobs: []*appendJob{j}}
		if j.stream != nil {
			// A streamed message goes alone, so that a broken stream
			// costs no other message.
			drain()
			if s.failed.Load() {
				drop(j, s.failure())
				continue
			}
		} else {
			size := j.size
		collect:
			for len(b.jobs) < maxBatch && size < maxBatchBytes {
				select {
				case k, ok := <-s.jobs:
					if !ok {
						break collect
					}
					if k.stream != nil || k.mailbox != j.mailbox || size+k.size > maxBatchBytes {
						next = k
						break collect
					}
					b.jobs = append(b.jobs, k)
					size += k.size
				default:
					break collect
				}
			}
		}
		msgs := make([]appendMsg, len(b.jobs))
		for i, k := range b.jobs {
			msgs[i] = msgOf(k)
		}
		tag, bodyErr, err := a.send(j.mailbox, msgs)
		if j.stream != nil {
			if bodyErr {
				a.abort()
				a = nil
				j.sent <- fmt.Errorf("message %s: %w", j.sourceID, err)
				continue
			}
			j.sent <- nil
		}
		b.tag = tag
		inflight = append(inflight, b)
		if err != nil {
			// The connection failed: the answers tell what the server got.
			drain()
			continue
		}
		for len(inflight) >= 2 {
			finish(inflight[0])
			inflight = inflight[1:]
		}
	}
	drain()
}

// refuse reports a message the target refused.
func (s *Sink) refuse(j *appendJob, text string) {
	s.log.Warn("target refused a message", "folder", j.folder, "source_id", j.sourceID, "err", text)
	s.mu.Lock()
	s.report.Refused = append(s.report.Refused, Refused{Folder: j.folder, SourceID: j.sourceID, Error: text})
	s.mu.Unlock()
}

// sendFlags returns flags without the keywords the target refused.
func (s *Sink) sendFlags(flags []goimap.Flag) []goimap.Flag {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.badKw) == 0 {
		return flags
	}
	var out []goimap.Flag
	for _, f := range flags {
		if !s.badKw[strings.ToLower(string(f))] {
			out = append(out, f)
		}
	}
	return out
}

// keywordRetry handles a message in memory that the target refused while
// it carries keywords (Dovecot, for one, refuses a keyword longer than 50
// bytes although it announces \*): it appends the message again leaving
// out one keyword at a time, then all of them. A keyword whose removal
// lets the message in is dropped, with a warning, from every later
// message. appendOne appends j's body with flags and returns the
// server's refusal ("" when it took the message) or a connection error.
// keywordRetry reports whether the message was appended.
func (s *Sink) keywordRetry(j *appendJob, appendOne func([]goimap.Flag) (string, error)) (bool, error) {
	if j.stream != nil {
		return false, nil // read once, gone
	}
	flags := s.sendFlags(j.flags)
	if len(flags) < len(j.flags) {
		// Keywords found bad since this message was sent: try without
		// them first.
		if text, err := appendOne(flags); err != nil || text == "" {
			return err == nil, err
		}
	}
	var kws []goimap.Flag
	for _, f := range flags {
		if !strings.HasPrefix(string(f), `\`) {
			kws = append(kws, f)
		}
	}
	if len(kws) == 0 {
		return false, nil
	}
	try := func(drop []goimap.Flag) (bool, error) {
		var keep []goimap.Flag
		for _, f := range flags {
			if !slices.Contains(drop, f) {
				keep = append(keep, f)
			}
		}
		text, err := appendOne(keep)
		if err != nil || text != "" {
			return false, err
		}
		s.mu.Lock()
		if s.badKw == nil {
			s.badKw = map[string]bool{}
		}
		for _, k := range drop {
			s.badKw[strings.ToLower(string(k))] = true
		}
		s.mu.Unlock()
		for _, k := range drop {
			s.log.Warn("the target refused a keyword: dropping it from every message", "folder", j.folder, "source_id", j.sourceID, "keyword", string(k))
		}
		return true, nil
	}
	if len(kws) > 1 {
		for _, k := range kws {
			if ok, err := try([]goimap.Flag{k}); ok || err != nil {
				return ok, err
			}
		}
	}
	return try(kws)
}

// Close waits for every APPEND, logs out and returns the first error.
func (s *Sink) Close() error {
	close(s.jobs)
	s.wg.Wait()
	s.t.close()
	return s.failure()
}

// byteBudget is a weighted semaphore of buffered message bytes.
type byteBudget struct {
	mu   sync.Mutex
	cond *sync.Cond
	max  int64
	used int64
}

func newByteBudget(max int64) *byteBudget {
	b := &byteBudget{max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.max {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.cond.Wait()
	}
	b.used += n
	return nil
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}
