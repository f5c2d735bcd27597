package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"codeberg.org/planb/planb/archive/backend"
)

// Mem is an in-memory backend. The zero value is not usable; call New.
type Mem struct {
	mu    sync.RWMutex
	files map[backend.Handle][]byte // never modified in place
}

var _ backend.Backend = (*Mem)(nil)

// New returns an empty in-memory backend.
func New() *Mem {
	return &Mem{files: map[backend.Handle][]byte{}}
}

// key returns the map key of h: the config file's name is ignored.
func key(h backend.Handle) backend.Handle {
	if h.Type == backend.ConfigFile {
		return backend.Handle{Type: backend.ConfigFile}
	}
	return h
}

// Location returns "mem:".
func (m *Mem) Location() string { return "mem:" }

// Save reads rd from its start and stores its content under h.
func (m *Mem) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if err := backend.CheckCall(ctx, "save", h); err != nil {
		return err
	}
	if _, err := rd.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("save %v: rewind: %w", h, err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(&ctxReader{ctx: ctx, r: rd}); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %v: %w", h, err)
	}
	data := bytes.Clone(buf.Bytes())
	if data == nil {
		data = []byte{}
	}
	m.mu.Lock()
	m.files[key(h)] = data
	m.mu.Unlock()
	return nil
}

// get returns the stored content of h.
func (m *Mem) get(op string, h backend.Handle) ([]byte, error) {
	m.mu.RLock()
	data, ok := m.files[key(h)]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s %v: %w", op, h, backend.ErrNotExist)
	}
	return data, nil
}

// Load returns a reader of length bytes of h from offset (length 0 means to
// the end). The reader returns io.ErrUnexpectedEOF if the file ends first.
func (m *Mem) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	if err := backend.CheckCall(ctx, "load", h); err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("load %v: negative offset %d or length %d", h, offset, length)
	}
	data, err := m.get("load", h)
	if err != nil {
		return nil, err
	}
	size := int64(len(data))
	if offset > size {
		return nil, fmt.Errorf("load %v: offset %d beyond end of %d-byte file", h, offset, size)
	}
	data = data[offset:]
	if length == 0 {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	if length <= int64(len(data)) {
		return io.NopCloser(bytes.NewReader(data[:length])), nil
	}
	return io.NopCloser(io.MultiReader(bytes.NewReader(data), errReader{io.ErrUnexpectedEOF})), nil
}

// errReader is a reader that always fails with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// List calls fn for every file of type t, in name order. fn may call m.
func (m *Mem) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %v: %w", t, err)
	}
	if err := t.Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	var infos []backend.FileInfo
	m.mu.RLock()
	for h, data := range m.files {
		if h.Type == t {
			infos = append(infos, backend.FileInfo{Name: h.InfoName(), Size: int64(len(data))})
		}
	}
	m.mu.RUnlock()
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	for _, fi := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %v: %w", t, err)
		}
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes h.
func (m *Mem) Remove(ctx context.Context, h backend.Handle) error {
	if err := backend.CheckCall(ctx, "remove", h); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[key(h)]; !ok {
		return fmt.Errorf("remove %v: %w", h, backend.ErrNotExist)
	}
	delete(m.files, key(h))
	return nil
}

// Stat returns the size of h.
func (m *Mem) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := backend.CheckCall(ctx, "stat", h); err != nil {
		return backend.FileInfo{}, err
	}
	data, err := m.get("stat", h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	return backend.FileInfo{Name: h.InfoName(), Size: int64(len(data))}, nil
}

// Close does nothing; the files stay readable.
func (m *Mem) Close() error { return nil }

// Corrupt flips every bit of the byte at offset in h, as a test's way of
// damaging a stored file. Readers opened before keep the old content.
func (m *Mem) Corrupt(h backend.Handle, offset int64) error {
	if err := h.Valid(); err != nil {
		return fmt.Errorf("corrupt %v: %w", h, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.files[key(h)]
	if !ok {
		return fmt.Errorf("corrupt %v: %w", h, backend.ErrNotExist)
	}
	if offset < 0 || offset >= int64(len(data)) {
		return fmt.Errorf("corrupt %v: offset %d outside %d-byte file", h, offset, len(data))
	}
	data = bytes.Clone(data)
	data[offset] ^= 0xff
	m.files[key(h)] = data
	return nil
}

// Contents returns a copy of every stored file, keyed by handle (the config
// file's handle has an empty name).
func (m *Mem) Contents() map[backend.Handle][]byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[backend.Handle][]byte, len(m.files))
	for h, data := range m.files {
		out[h] = bytes.Clone(data)
	}
	return out
}

// ctxReader fails with the context's error once it is cancelled.
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
