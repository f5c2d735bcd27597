package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"codeberg.org/planb/planb/archive/backend"
)

// ErrInjected is the error of every injected fault (wrapped).
var ErrInjected = errors.New("injected fault")

// Options configure the faults.
type Options struct {
	// Seed makes the faults reproducible.
	Seed uint64
	// Rate is the fraction of calls that fail, from 0 (none) to 1 (all).
	Rate float64
	// Types, when not empty, limits the faults to calls on files of these
	// types: the others always go through (and draw no random number).
	Types []backend.FileType
}

// Faulty wraps a backend and injects faults. Create one with New.
type Faulty struct {
	b     backend.Backend
	types []backend.FileType

	mu   sync.Mutex
	rate float64
	rnd  *rand.Rand

	injected atomic.Int64
}

var _ backend.Backend = (*Faulty)(nil)

// New returns b wrapped so that calls fail at opts.Rate.
func New(b backend.Backend, opts Options) *Faulty {
	return &Faulty{b: b, rate: opts.Rate, types: opts.Types, rnd: rand.New(rand.NewPCG(opts.Seed, 0x6661756c7479))}
}

// SetRate changes the fraction of calls that fail from now on. It is safe
// to call while other goroutines use the backend.
func (f *Faulty) SetRate(rate float64) {
	f.mu.Lock()
	f.rate = rate
	f.mu.Unlock()
}

// Injected returns the number of faults injected so far.
func (f *Faulty) Injected() int64 { return f.injected.Load() }

// fault decides whether the next call, on a file of type t, fails and, if
// so, how: it returns -1 for no fault, or one of kinds ways, and a
// position (a byte or entry count below 64 Ki) for faults that strike
// midway.
func (f *Faulty) fault(t backend.FileType, kinds int) (kind, pos int) {
	if len(f.types) > 0 && !slices.Contains(f.types, t) {
		return -1, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rnd.Float64() >= f.rate {
		return -1, 0
	}
	f.injected.Add(1)
	return f.rnd.IntN(kinds), f.rnd.IntN(1 << 16)
}

func injected(op string, what any, how string) error {
	return fmt.Errorf("%s %v: %w %s", op, what, ErrInjected, how)
}

// Location returns the wrapped backend's location.
func (f *Faulty) Location() string { return f.b.Location() }

// Close closes the wrapped backend.
func (f *Faulty) Close() error { return f.b.Close() }

// Save fails before calling the wrapped Save, midway through reading rd,
// or after the wrapped Save stored the file.
func (f *Faulty) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	switch kind, pos := f.fault(h.Type, 3); kind {
	case 0:
		return injected("save", h, "before sending")
	case 1:
		err := f.b.Save(ctx, h, &failingReader{r: rd, after: int64(pos)})
		if err == nil {
			// rd was shorter than pos: the fault strikes after storing.
			return injected("save", h, "after storing")
		}
		return err
	case 2:
		if err := f.b.Save(ctx, h, rd); err != nil {
			return err
		}
		return injected("save", h, "after storing")
	}
	return f.b.Save(ctx, h, rd)
}

// failingReader fails with ErrInjected once after bytes were read since
// the last rewind.
type failingReader struct {
	r     io.ReadSeeker
	after int64
	pos   int64
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.pos >= r.after {
		return 0, fmt.Errorf("read after %d bytes: %w", r.pos, ErrInjected)
	}
	p = p[:min(int64(len(p)), r.after-r.pos)]
	n, err := r.r.Read(p)
	r.pos += int64(n)
	return n, err
}

func (r *failingReader) Seek(offset int64, whence int) (int64, error) {
	n, err := r.r.Seek(offset, whence)
	if err == nil {
		r.pos = n
	}
	return n, err
}

// Load fails at once, or returns a reader that fails midway.
func (f *Faulty) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	kind, pos := f.fault(h.Type, 2)
	if kind == 0 {
		return nil, injected("load", h, "before reading")
	}
	rc, err := f.b.Load(ctx, h, offset, length)
	if err != nil || kind < 0 {
		return rc, err
	}
	return &failingLoad{rc: rc, h: h, left: int64(pos)}, nil
}

// failingLoad fails with ErrInjected after left bytes.
type failingLoad struct {
	rc   io.ReadCloser
	h    backend.Handle
	left int64
}

func (r *failingLoad) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, injected("load", r.h, "while reading")
	}
	p = p[:min(int64(len(p)), r.left)]
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	return n, err
}

func (r *failingLoad) Close() error { return r.rc.Close() }

// Stat fails at once.
func (f *Faulty) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if kind, _ := f.fault(h.Type, 1); kind == 0 {
		return backend.FileInfo{}, injected("stat", h, "before asking")
	}
	return f.b.Stat(ctx, h)
}

// Remove fails before calling the wrapped Remove or after it removed the
// file.
func (f *Faulty) Remove(ctx context.Context, h backend.Handle) error {
	switch kind, _ := f.fault(h.Type, 2); kind {
	case 0:
		return injected("remove", h, "before removing")
	case 1:
		if err := f.b.Remove(ctx, h); err != nil {
			return err
		}
		return injected("remove", h, "after removing")
	}
	return f.b.Remove(ctx, h)
}

// errStop stops the wrapped listing where a fault strikes.
var errStop = errors.New("stop listing")

// List fails before listing or after reporting a few files.
func (f *Faulty) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	kind, pos := f.fault(t, 2)
	switch kind {
	case 0:
		return injected("list", t, "before listing")
	case 1:
		after := pos % 8
		seen := 0
		err := f.b.List(ctx, t, func(fi backend.FileInfo) error {
			if seen == after {
				return errStop
			}
			seen++
			return fn(fi)
		})
		if err == nil || errors.Is(err, errStop) {
			return injected("list", t, fmt.Sprintf("after %d files", seen))
		}
		return err
	}
	return f.b.List(ctx, t, fn)
}
