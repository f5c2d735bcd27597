package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive/backend"
)

// Local is a repository in a local directory. Create or Open one.
type Local struct {
	dir string

	// wrapFile, when set by a test, wraps the temporary file Save writes
	// to, so that write errors (a full disk) can be injected.
	wrapFile func(io.Writer) io.Writer

	packs packFiles // pack files kept open for Load
}

var _ backend.Backend = (*Local)(nil)

const (
	tempPrefix = ".tmp-"
	dirMode    = 0o700
	listBatch  = 1024
)

// Create makes the repository layout in dir (creating dir if needed) and
// returns the backend. It does not write the config file, which the caller
// saves next. Create fails with an error wrapping os.ErrExist if dir
// already holds a config file.
func Create(ctx context.Context, dir string) (*Local, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create repository %q: %w", dir, err)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("create repository %q: %w", dir, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "config")); err == nil {
		return nil, fmt.Errorf("create repository %q: config file: %w", dir, os.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("create repository %q: %w", dir, err)
	}
	dirs := []string{}
	for _, t := range backend.Types() {
		if t != backend.ConfigFile {
			dirs = append(dirs, filepath.Join(dir, t.String()))
		}
	}
	for i := range 256 {
		dirs = append(dirs, filepath.Join(dir, backend.PackFile.String(), fmt.Sprintf("%02x", i)))
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create repository %q: %w", dir, err)
		}
	}
	syncDir(dir)
	return &Local{dir: dir}, nil
}

// Open returns the backend for the repository in dir. It fails with an
// error wrapping backend.ErrNotExist if dir has no config file.
func Open(ctx context.Context, dir string) (*Local, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open repository %q: %w", dir, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "config"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open repository %q: no config file, not a repository: %w", dir, backend.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository %q: %w", dir, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open repository %q: config is not a regular file", dir)
	}
	return &Local{dir: dir}, nil
}

// Location returns the repository's directory as given to Create or Open.
func (l *Local) Location() string { return l.dir }

// path returns the file name of a valid handle.
func (l *Local) path(h backend.Handle) string {
	switch h.Type {
	case backend.ConfigFile:
		return filepath.Join(l.dir, "config")
	case backend.PackFile:
		return filepath.Join(l.dir, h.Type.String(), h.Name[:2], h.Name)
	}
	return filepath.Join(l.dir, h.Type.String(), h.Name)
}

// notExist turns a missing file into an error wrapping backend.ErrNotExist.
func notExist(op string, h backend.Handle, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %v: %w", op, h, backend.ErrNotExist)
	}
	return fmt.Errorf("%s %v: %w", op, h, err)
}

// Save writes the content of rd, read from its start, to h atomically: it
// writes a temporary file in the same folder, syncs it, renames it over
// the target and syncs the folder. On any error, including a cancelled
// context or a full disk, the temporary file is removed and a file already
// stored under h is left as it was.
func (l *Local) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) (err error) {
	if err := backend.CheckCall(ctx, "save", h); err != nil {
		return err
	}
	if _, err := rd.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("save %v: rewind: %w", h, err)
	}
	target := l.path(h)
	dir := filepath.Dir(target)
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if errors.Is(err, fs.ErrNotExist) {
		// A pack folder outside 00..ff, or a folder removed by hand or
		// left out by a copy that skips empty folders (git, some sync
		// tools): made again, inside the repository's folder, which
		// must still be there (a repository removed is not begun anew).
		if _, err = os.Stat(l.dir); err == nil {
			if err = os.MkdirAll(dir, dirMode); err == nil {
				f, err = os.CreateTemp(dir, tempPrefix+"*")
			}
		}
	}
	if err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	var w io.Writer = f
	if l.wrapFile != nil {
		w = l.wrapFile(f)
	}
	if _, err := io.Copy(w, &ctxReader{ctx: ctx, r: rd}); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := os.Rename(tmp, target); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if h.Type == backend.PackFile {
		l.packs.forget(target) // a file open for Load is the replaced one
	}
	syncDir(dir)
	return nil
}

// ctxReader fails with the context's error once it is cancelled. It hides
// any WriterTo of the reader so that every chunk passes the check.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// syncDir flushes a folder's entries to disk. Errors are ignored: some file
// systems (and Windows) cannot sync a folder, and the file itself is
// already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	d.Close()
}

// Load returns a reader of length bytes of h from offset (length 0 means to
// the end). It fails if offset is beyond the end of the file; the reader
// returns io.ErrUnexpectedEOF if the file ends before length bytes. The
// caller must close the reader.
func (l *Local) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	if err := backend.CheckCall(ctx, "load", h); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("load %v: negative offset %d or length %d", h, offset, length)
	}
	if h.Type == backend.PackFile {
		pf, err := l.packs.open(l.path(h))
		if err != nil {
			return nil, notExist("load", h, err)
		}
		rd, err := section(h, pf.f, pf.size, offset, length)
		if err != nil {
			l.packs.release(pf)
			return nil, err
		}
		rd.close = func() error { return l.packs.release(pf) }
		return rd, nil
	}
	f, err := os.Open(l.path(h))
	if err != nil {
		return nil, notExist("load", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("load %v: %w", h, err)
	}
	rd, err := section(h, f, fi.Size(), offset, length)
	if err != nil {
		f.Close()
		return nil, err
	}
	rd.close = f.Close
	return rd, nil
}

// section returns a reader of length bytes of f (size bytes) from offset;
// length 0 means up to the end.
func section(h backend.Handle, f *os.File, size, offset, length int64) (*fileReader, error) {
	if offset > size {
		return nil, fmt.Errorf("load %v: offset %d beyond end of %d-byte file", h, offset, size)
	}
	if length == 0 {
		length = size - offset
	}
	return &fileReader{sr: io.NewSectionReader(f, offset, length), left: length}, nil
}

// fileReader reads a section of a file and reports a file shorter than
// the section as io.ErrUnexpectedEOF.
type fileReader struct {
	sr    *io.SectionReader
	left  int64
	close func() error
	once  sync.Once
	err   error
}

func (r *fileReader) Read(p []byte) (int, error) {
	n, err := r.sr.Read(p)
	r.left -= int64(n)
	if err == io.EOF && r.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close releases the file; closing twice is harmless.
func (r *fileReader) Close() error {
	r.once.Do(func() { r.err = r.close() })
	return r.err
}

// Stat returns the size of h.
func (l *Local) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := backend.CheckCall(ctx, "stat", h); err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := os.Stat(l.path(h))
	if err != nil {
		return backend.FileInfo{}, notExist("stat", h, err)
	}
	return backend.FileInfo{Name: h.InfoName(), Size: fi.Size()}, nil
}

// Remove deletes h.
func (l *Local) Remove(ctx context.Context, h backend.Handle) error {
	if err := backend.CheckCall(ctx, "remove", h); err != nil {
		return err
	}
	if h.Type == backend.PackFile {
		l.packs.forget(l.path(h))
	}
	if err := os.Remove(l.path(h)); err != nil {
		return notExist("remove", h, err)
	}
	return nil
}

// List calls fn for every file of type t, folder by folder in no
// particular order. Temporary files are skipped. The config file is
// reported as "config". fn may call l.
func (l *Local) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	if err := t.Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	switch t {
	case backend.ConfigFile:
		fi, err := os.Stat(filepath.Join(l.dir, "config"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		return fn(backend.FileInfo{Name: "config", Size: fi.Size()})
	case backend.PackFile:
		top := filepath.Join(l.dir, t.String())
		subs, err := os.ReadDir(top)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		for _, sub := range subs {
			if !sub.IsDir() || strings.HasPrefix(sub.Name(), ".") {
				continue
			}
			if err := listDir(ctx, t, filepath.Join(top, sub.Name()), fn); err != nil {
				return err
			}
		}
		return nil
	}
	return listDir(ctx, t, filepath.Join(l.dir, t.String()), fn)
}

// listDir calls fn for every regular file in dir whose name does not start
// with a dot, reading the folder in batches. A missing folder is empty.
func listDir(ctx context.Context, t backend.FileType, dir string, fn func(backend.FileInfo) error) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		entries, err := d.ReadDir(listBatch)
		for _, e := range entries {
			if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed since the folder was read
			}
			if err != nil {
				return fmt.Errorf("list %v: %w", t, err)
			}
			if err := fn(backend.FileInfo{Name: e.Name(), Size: fi.Size()}); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
	}
}

// Close closes the pack files Load keeps open (a reader still open keeps
// its file until it is closed).
func (l *Local) Close() error {
	l.packs.closeAll()
	return nil
}

// CleanTemp removes the temporary files that interrupted Saves left behind
// and that were last modified more than olderThan ago (an hour is a safe
// choice: no Save takes that long between writes). It returns the number
// of files removed.
func (l *Local) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	dirs := []string{l.dir}
	for _, t := range backend.Types() {
		if t != backend.ConfigFile {
			dirs = append(dirs, filepath.Join(l.dir, t.String()))
		}
	}
	data := filepath.Join(l.dir, backend.PackFile.String())
	subs, err := os.ReadDir(data)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("clean temporary files: %w", err)
	}
	for _, sub := range subs {
		if sub.IsDir() {
			dirs = append(dirs, filepath.Join(data, sub.Name()))
		}
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	for _, dir := range dirs {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("clean temporary files: %w", err)
		}
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("clean temporary files: %w", err)
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix) {
				continue
			}
			fi, err := e.Info()
			if err != nil || !fi.ModTime().Before(cutoff) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, fmt.Errorf("clean temporary files: %w", err)
			}
			removed++
		}
	}
	return removed, nil
}
