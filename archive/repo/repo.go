package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

// Version is the repository format version this code writes.
const Version = 1

// Sentinel errors.
var (
	ErrWrongPassword = crypto.ErrWrongPassword
	ErrNoSnapshot    = errors.New("no such snapshot")
	ErrNoKey         = errors.New("no key file in repository")
	// ErrDamaged says that a file or blob failed its integrity checks: its
	// content does not match its name or ID, does not authenticate, or
	// does not decode. It is never a failure to reach the backend.
	ErrDamaged = errors.New("damaged")
)

// Config is the repository's configuration, sealed in the config file.
type Config struct {
	Version  int          `json:"version"`
	ID       string       `json:"id"`
	Created  time.Time    `json:"created"`
	Chunker  dedup.Params `json:"chunker"`
	PackSize int64        `json:"pack_size"`
	// AppendOnly marks a repository whose normal credentials may only add
	// files: planb refuses to forget, prune or remove keys in it without
	// the administrator's. Absent (false) in older configs.
	AppendOnly bool `json:"append_only,omitempty"`
	// Compression names how new frames are compressed: "fast"
	// (pack.CompressionFast), or absent for "max", the default. Frames of
	// either read with either. Absent in older configs.
	Compression string `json:"compression,omitempty"`
	// Base64Lines says that new frames of base64 lines are written with
	// them decoded (pack.FlagBase64), as in repositories made with
	// compression max since December 2026. Absent (false) in older configs
	// and with fast: their writers keep writing frames every earlier planb
	// reads.
	Base64Lines bool `json:"base64_lines,omitempty"`
}

// Options tune a Repository. A nil *Options means defaults.
type Options struct {
	Logger *slog.Logger
	// TempDir holds packs being written (os.TempDir if empty).
	TempDir string
	// PackSize is the target pack size Init records in a new repository's
	// config (0: 16 MiB). Opening a repository uses the config's value.
	PackSize int64
	// Chunker, when set, makes Init use these chunking parameters instead of
	// a fresh random polynomial: two repositories with the same parameters
	// cut the same messages into the same chunks.
	Chunker *dedup.Params
	// AppendOnly makes Init record Config.AppendOnly in the new
	// repository's config.
	AppendOnly bool
	// IndexCache, if set, is a folder where the index is kept on disk, in
	// runs (see runs.go), under the repository's ID: memory then no longer
	// grows with the repository. Empty keeps the whole index in memory.
	// A cache that cannot be written is a warning, not an error: the index
	// then stays in memory.
	IndexCache string
	// OnDamagedIndex, if set, is called with the name of every index file
	// that loading the index skips as damaged (see LoadIndex), from the
	// goroutine that needed the index.
	OnDamagedIndex func(name string)
	// KDF, if set, gives the key derivation parameters of the key files
	// Init and AddKey write (crypto.DefaultKDF if nil; a fresh salt
	// each time).
	KDF *crypto.KDFParams
	// Cipher is the cipher of a new repository's master key
	// (crypto.CipherAuto, the zero value: crypto.DefaultCipher). Opening
	// a repository uses its key's.
	Cipher crypto.Cipher
	// Compression makes Init record how the new repository's frames are
	// compressed (Config.Compression). Opening a repository uses its
	// config's.
	Compression pack.Compression
}

// Repository is an open repository.
type Repository struct {
	be     backend.Backend
	key    *crypto.Key
	keyID  string
	codec  *pack.Codec
	cfg    Config
	log    *slog.Logger
	tmpDir string

	index        *dedup.Index
	indexMu      sync.Mutex
	indexFile    map[string][]dedup.ID // index file name → packs it lists
	packSize     map[dedup.ID]int64
	damagedIndex []string // index files LoadIndex skipped, sorted
	// indexLoaded is set once the index files are in index; loadMu
	// serialises the load that EnsureIndex does on first need.
	indexLoaded    atomic.Bool
	loadMu         sync.Mutex
	onDamagedIndex func(string)
	refreshMu      sync.Mutex        // one RefreshIndex at a time
	kdf            *crypto.KDFParams // of the key files AddKey writes (nil: the default)
	// runDir holds the index's runs ("": the index is in memory only);
	// runs are the open ones, guarded by indexMu.
	runDir     string
	indexCache string
	runs       []*runFile
	runSeq     uint64     // runs installed so far
	pages      *pageCache // of the runs' pages

	cache *frameCache
	// trustIndex: LoadBlob does not hash blobs (TrustIndex).
	trustIndex bool
}

func (o *Options) logger() *slog.Logger {
	if o == nil || o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func newRepository(be backend.Backend, key *crypto.Key, opts *Options) *Repository {
	r := &Repository{
		be:        be,
		key:       key,
		codec:     pack.NewCodec(key),
		log:       opts.logger(),
		index:     dedup.NewIndex(),
		indexFile: make(map[string][]dedup.ID),
		packSize:  make(map[dedup.ID]int64),
		cache:     newFrameCache(16), // at most 16 × 512 KiB
		pages:     newPageCache(defaultIndexPages),
	}
	if opts != nil {
		r.tmpDir = opts.TempDir
		r.onDamagedIndex = opts.OnDamagedIndex
		r.indexCache = opts.IndexCache
		r.kdf = opts.KDF
	}
	return r
}

// useCache sets the folder of the index's runs, once the repository's ID
// is known. A folder that cannot be made leaves the index in memory.
func (r *Repository) useCache() {
	if r.indexCache == "" {
		return
	}
	dir := filepath.Join(r.indexCache, r.cfg.ID, "index")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.log.Warn("index cache unavailable; the index is kept in memory", "err", err)
		return
	}
	tagCacheDir(r.indexCache)
	r.runDir = dir
}

// tagCacheDir marks the cache folder as one (https://bford.info/cachedir/),
// so that backup tools skip it.
func tagCacheDir(dir string) {
	tag := filepath.Join(dir, "CACHEDIR.TAG")
	if _, err := os.Stat(tag); err == nil {
		return
	}
	os.WriteFile(tag, []byte("Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by planb.\n"), 0o600)
}

// Init creates a repository on be, protected by password.
func Init(ctx context.Context, be backend.Backend, password string, opts *Options) (*Repository, error) {
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		return nil, fmt.Errorf("init %s: a repository already exists there", be.Location())
	}
	if password == "" {
		return nil, errors.New("init: empty password")
	}
	params, err := dedup.NewParams()
	if err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if opts != nil && opts.Chunker != nil {
		if err := opts.Chunker.Validate(); err != nil {
			return nil, fmt.Errorf("init: %w", err)
		}
		params = *opts.Chunker
	}
	cipher := crypto.CipherAuto
	if opts != nil {
		cipher = opts.Cipher
	}
	r := newRepository(be, crypto.NewRandomKeyWith(cipher), opts)
	r.indexLoaded.Store(true) // a new repository has no index files
	r.cfg = Config{Version: Version, ID: dedup.RandomID().String(), Created: time.Now().UTC(), Chunker: params, PackSize: 16 << 20}
	if opts != nil && opts.PackSize != 0 {
		r.cfg.PackSize = opts.PackSize
	}
	if opts != nil {
		r.cfg.AppendOnly = opts.AppendOnly
		if opts.Compression != pack.CompressionMax {
			r.cfg.Compression = opts.Compression.String()
			r.codec = r.codec.WithCompression(opts.Compression)
		}
	}
	// Base64 lines are stored decoded with max, the smallest repository
	// and the cheaper to read of the two; fast stores them as they are,
	// with no work at all to read them back.
	r.cfg.Base64Lines = r.codec.Compression() == pack.CompressionMax
	r.codec = r.codec.WithBase64Lines(r.cfg.Base64Lines)
	r.useCache()
	// Key first: a config without a key would be a locked-out repository.
	if r.keyID, err = r.AddKey(ctx, password); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	b, err := json.Marshal(r.cfg)
	if err != nil {
		return nil, err
	}
	if err := r.saveSealed(ctx, backend.Handle{Type: backend.ConfigFile}, b); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	return r, nil
}

// Open opens the repository on be with password. It returns an error
// wrapping ErrWrongPassword when no key file opens with it. Open reads the
// key and config files only: the index is loaded on first need (see
// EnsureIndex), so that listing snapshots, sources or locks and
// forgetting snapshots never read an index file.
func Open(ctx context.Context, be backend.Backend, password string, opts *Options) (*Repository, error) {
	key, keyID, err := unlock(ctx, be, password)
	if err != nil {
		return nil, err
	}
	r := newRepository(be, key, opts)
	r.keyID = keyID
	b, err := r.loadSealed(ctx, backend.Handle{Type: backend.ConfigFile})
	if err != nil {
		return nil, fmt.Errorf("open repository: config: %w", err)
	}
	if err := json.Unmarshal(b, &r.cfg); err != nil {
		return nil, fmt.Errorf("open repository: config: %w", err)
	}
	if r.cfg.Version != Version {
		return nil, fmt.Errorf("open repository: format version %d not supported (this planb reads %d)", r.cfg.Version, Version)
	}
	if err := r.cfg.Chunker.Validate(); err != nil {
		return nil, fmt.Errorf("open repository: config: %w", err)
	}
	if r.cfg.PackSize < 1<<20 || r.cfg.PackSize > 1<<30 {
		return nil, fmt.Errorf("open repository: pack size %d out of range", r.cfg.PackSize)
	}
	if r.cfg.Compression != "" {
		// Reading does not depend on it: a name this planb does not know
		// (a later one's) writes as the default does.
		comp, err := pack.ParseCompression(r.cfg.Compression)
		if err != nil {
			r.log.Warn("repository config: unknown compression; new frames are compressed with max", "compression", r.cfg.Compression)
		}
		r.codec = r.codec.WithCompression(comp)
	}
	r.codec = r.codec.WithBase64Lines(r.cfg.Base64Lines)
	r.useCache()
	return r, nil
}

// Close releases the repository (not the backend).
func (r *Repository) Close() error {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	for _, rf := range r.runs {
		rf.Close()
	}
	r.runs = nil
	return nil
}

// Config returns the repository's configuration.
func (r *Repository) Config() Config { return r.cfg }

// Cipher returns the cipher the repository's files are sealed with.
func (r *Repository) Cipher() crypto.Cipher { return r.key.Cipher() }

// Compression returns how the repository compresses new frames
// (Config.Compression).
func (r *Repository) Compression() pack.Compression { return r.codec.Compression() }

// AppendOnly reports whether the repository is marked append-only
// (Config.AppendOnly).
func (r *Repository) AppendOnly() bool { return r.cfg.AppendOnly }

// Backend returns the repository's backend.
func (r *Repository) Backend() backend.Backend { return r.be }

// Index returns the blob index. It is empty until the index is
// loaded: by EnsureIndex, or by any method that needs it (LoadBlob,
// Entries, NewSaver, AdoptPacks, Stats, Check, Prune, the repairs).
func (r *Repository) Index() *dedup.Index { return r.index }

// Codec returns the repository's frame codec.
func (r *Repository) Codec() *pack.Codec { return r.codec }

// saveSealed compresses, seals and saves a small file under h.
func (r *Repository) saveSealed(ctx context.Context, h backend.Handle, plain []byte) error {
	sealed := r.codec.SealPlain(plain)
	return r.be.Save(ctx, h, bytes.NewReader(sealed))
}

// saveSealedNamed seals plain and saves it under the SHA-256 of the sealed
// bytes; it returns that name.
func (r *Repository) saveSealedNamed(ctx context.Context, t backend.FileType, plain []byte) (dedup.ID, error) {
	sealed := r.codec.SealPlain(plain)
	id := dedup.Hash(sealed)
	return id, r.be.Save(ctx, backend.Handle{Type: t, Name: id.String()}, bytes.NewReader(sealed))
}

// loadSealed loads and opens a small sealed file. For content-named files
// it also checks the name.
func (r *Repository) loadSealed(ctx context.Context, h backend.Handle) ([]byte, error) {
	sealed, err := backend.ReadAll(ctx, r.be, h)
	if err != nil {
		return nil, err
	}
	if h.Type == backend.IndexFile || h.Type == backend.SnapshotFile {
		if dedup.Hash(sealed).String() != h.Name {
			return nil, asDamaged(fmt.Errorf("%s: content does not match its name (damaged)", h))
		}
	}
	plain, err := r.codec.OpenPlain(sealed)
	if err != nil {
		return nil, asDamaged(fmt.Errorf("%s: %w", h, err))
	}
	return plain, nil
}

// asDamaged marks err as damage (errors.Is(err, ErrDamaged)) without
// changing its message.
func asDamaged(err error) error { return &damagedError{err} }

type damagedError struct{ err error }

func (e *damagedError) Error() string   { return e.err.Error() }
func (e *damagedError) Unwrap() []error { return []error{e.err, ErrDamaged} }

func hostUser() (string, string) {
	host, _ := os.Hostname()
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return host, name
}
