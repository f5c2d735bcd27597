package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/backendtest"
	"codeberg.org/planb/planb/archive/backend/faulty"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backend/retry"
)

// fast are options for tests: short delays, and enough attempts that a
// 20% fault rate practically never exhausts them.
var fast = retry.Options{MaxAttempts: 12, InitialDelay: time.Microsecond, MaxDelay: time.Millisecond}

// TestFaultyBackend runs the conformance suite with 20% of the calls
// failing under the retries.
func TestFaultyBackend(t *testing.T) {
	var seed atomic.Uint64
	var injected atomic.Int64
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		f := faulty.New(mem.New(), faulty.Options{Seed: seed.Add(1), Rate: 0.2})
		t.Cleanup(func() { injected.Add(f.Injected()) })
		return retry.New(f, fast)
	})
	t.Logf("%d faults injected", injected.Load())
	if injected.Load() < 100 {
		t.Errorf("only %d faults injected, want at least 100", injected.Load())
	}
}

// counting is a backend whose calls fail with the errors in errs, in turn,
// and then succeed on the wrapped backend.
type counting struct {
	backend.Backend
	errs  []error
	calls int
}

func (c *counting) next() error {
	c.calls++
	if len(c.errs) == 0 {
		return nil
	}
	err := c.errs[0]
	c.errs = c.errs[1:]
	return err
}

func (c *counting) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := c.next(); err != nil {
		return backend.FileInfo{}, err
	}
	return c.Backend.Stat(ctx, h)
}

func (c *counting) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	if err := c.next(); err != nil {
		return err
	}
	return c.Backend.Save(ctx, h, rd)
}

// permanentErr is an error marked permanent the way the s3 backend
// marks a server's refusal.
type permanentErr struct{}

func (permanentErr) Error() string   { return "access denied" }
func (permanentErr) Permanent() bool { return true }

func TestWhichErrorsAreRetried(t *testing.T) {
	transient := errors.New("connection reset")
	tests := []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   error // nil: success
		wantMsg   string
	}{
		{"transient then success", []error{transient, transient}, 3, nil, ""},
		{"always transient", []error{transient, transient, transient, transient}, 3, transient, "gave up after 3 attempts"},
		{"not exist", []error{fmt.Errorf("stat: %w", backend.ErrNotExist)}, 1, backend.ErrNotExist, ""},
		{"invalid handle", []error{fmt.Errorf("stat: %w", backend.ErrInvalidHandle)}, 1, backend.ErrInvalidHandle, ""},
		{"cancelled", []error{context.Canceled}, 1, context.Canceled, ""},
		{"deadline", []error{fmt.Errorf("x: %w", context.DeadlineExceeded)}, 1, context.DeadlineExceeded, ""},
		{"marked permanent", []error{transient, fmt.Errorf("stat: %w", permanentErr{})}, 2, permanentErr{}, "access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mem.New()
			h := backend.Handle{Type: backend.KeyFile, Name: "k"}
			if err := m.Save(t.Context(), h, bytes.NewReader([]byte("key"))); err != nil {
				t.Fatal(err)
			}
			c := &counting{Backend: m, errs: tt.errs}
			r := retry.New(c, retry.Options{MaxAttempts: 3, InitialDelay: time.Microsecond, MaxDelay: time.Microsecond})
			fi, err := r.Stat(t.Context(), h)
			if tt.wantErr == nil {
				if err != nil || fi.Size != 3 {
					t.Errorf("Stat(%v) = %+v, %v; want size 3", h, fi, err)
				}
			} else if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Stat(%v) = %v, want %v containing %q", h, err, tt.wantErr, tt.wantMsg)
			}
			if c.calls != tt.wantCalls {
				t.Errorf("Stat(%v) made %d calls, want %d", h, c.calls, tt.wantCalls)
			}
		})
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	c := &counting{Backend: mem.New(), errs: []error{errors.New("timeout"), errors.New("timeout")}}
	r := retry.New(c, retry.Options{InitialDelay: time.Hour, MaxDelay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Stat(ctx, backend.Handle{Type: backend.KeyFile, Name: "k"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last error: timeout") {
		t.Errorf("Stat with a deadline during backoff = %v, want DeadlineExceeded mentioning the last error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stat returned after %v, want soon after the deadline", d)
	}
}

// errReader fails after n bytes, however often it is rewound.
type errReader struct {
	*bytes.Reader
	n   int64
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	pos := r.Size() - int64(r.Len())
	if pos >= r.n {
		return 0, r.err
	}
	return r.Reader.Read(p[:min(int64(len(p)), r.n-pos)])
}

func TestSaveReaderErrorNotRetried(t *testing.T) {
	errDisk := errors.New("disk on fire")
	c := &counting{Backend: mem.New()}
	r := retry.New(c, fast)
	h := backend.Handle{Type: backend.PackFile, Name: "abcd"}
	err := r.Save(t.Context(), h, &errReader{Reader: bytes.NewReader(make([]byte, 1000)), n: 10, err: errDisk})
	if !errors.Is(err, errDisk) || c.calls != 1 {
		t.Errorf("Save with a failing reader = %v after %d calls, want %v after 1", err, c.calls, errDisk)
	}
}

// lossy removes files but loses the answer of the first Remove.
type lossy struct {
	backend.Backend
	lost bool
}

func (l *lossy) Remove(ctx context.Context, h backend.Handle) error {
	if err := l.Backend.Remove(ctx, h); err != nil {
		return err
	}
	if !l.lost {
		l.lost = true
		return errors.New("connection reset")
	}
	return nil
}

func TestRemoveLostAnswer(t *testing.T) {
	m := mem.New()
	h := backend.Handle{Type: backend.LockFile, Name: "l"}
	if err := m.Save(t.Context(), h, bytes.NewReader([]byte("lock"))); err != nil {
		t.Fatal(err)
	}
	r := retry.New(&lossy{Backend: m}, fast)
	if err := r.Remove(t.Context(), h); err != nil {
		t.Errorf("Remove(%v) whose first answer was lost = %v, want nil", h, err)
	}
	if err := r.Remove(t.Context(), h); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("second Remove(%v) = %v, want ErrNotExist", h, err)
	}
}

// breaking serves Loads whose readers fail after chunk bytes, and records
// the offsets and lengths asked for.
type breaking struct {
	backend.Backend
	chunk int64
	asked []string
}

type breakingReader struct {
	io.ReadCloser
	left int64
}

func (r *breakingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, errors.New("connection reset")
	}
	n, err := r.ReadCloser.Read(p[:min(int64(len(p)), r.left)])
	r.left -= int64(n)
	return n, err
}

func (b *breaking) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	b.asked = append(b.asked, fmt.Sprintf("%d+%d", offset, length))
	rc, err := b.Backend.Load(ctx, h, offset, length)
	if err != nil {
		return nil, err
	}
	return &breakingReader{ReadCloser: rc, left: b.chunk}, nil
}

func TestLoadResumes(t *testing.T) {
	m := mem.New()
	h := backend.Handle{Type: backend.PackFile, Name: "abcd"}
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := m.Save(t.Context(), h, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		offset, length int64
		want           []byte
		wantErr        error
		wantAsked      string
	}{
		{0, 0, data, nil, "[0+0 300+0 600+0 900+0]"},
		{100, 500, data[100:600], nil, "[100+500 400+200]"},
		{950, 100, data[950:], io.ErrUnexpectedEOF, "[950+100]"},
		{500, 0, data[500:], nil, "[500+0 800+0]"},
		{700, 300, data[700:], nil, "[700+300]"},
	}
	for _, tt := range tests {
		b := &breaking{Backend: m, chunk: 300}
		r := retry.New(b, fast)
		rd, err := r.Load(t.Context(), h, tt.offset, tt.length)
		if err != nil {
			t.Fatalf("Load(%v, %d, %d) = %v", h, tt.offset, tt.length, err)
		}
		got, err := io.ReadAll(rd)
		rd.Close()
		if err != tt.wantErr && !errors.Is(err, tt.wantErr) || !bytes.Equal(got, tt.want) {
			t.Errorf("Load(%v, %d, %d) read %d bytes, %v; want %d bytes, %v", h, tt.offset, tt.length, len(got), err, len(tt.want), tt.wantErr)
		}
		if fmt.Sprint(b.asked) != tt.wantAsked {
			t.Errorf("Load(%v, %d, %d) asked the backend for %v, want %s", h, tt.offset, tt.length, b.asked, tt.wantAsked)
		}
	}

	// A reader that never makes progress gives up.
	b := &breaking{Backend: m, chunk: 0}
	r := retry.New(b, retry.Options{MaxAttempts: 4, InitialDelay: time.Microsecond, MaxDelay: time.Microsecond})
	rd, err := r.Load(t.Context(), h, 0, 0)
	if err != nil {
		t.Fatalf("Load(%v) = %v", h, err)
	}
	_, err = io.ReadAll(rd)
	rd.Close()
	if err == nil || !strings.Contains(err.Error(), "gave up after 4 attempts") || len(b.asked) != 4 {
		t.Errorf("reading a never-progressing reader = %v after %d loads, want giving up after 4", err, len(b.asked))
	}
}
