package retry

import (
	"codeberg.org/planb/planb/archive/backoff"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"codeberg.org/planb/planb/archive/backend"
)

// Defaults of Options.
const (
	DefaultMaxAttempts  = 8
	DefaultInitialDelay = 250 * time.Millisecond
	DefaultMaxDelay     = 15 * time.Second
)

// Options configure the retries. Zero values take the defaults, with
// which an operation gives up after about half a minute.
type Options struct {
	// MaxAttempts is the number of attempts of one operation (and of
	// reopening a Load reader without progress in between).
	MaxAttempts int
	// InitialDelay is the wait after the first failure; each further
	// failure doubles it, up to MaxDelay. Each wait is drawn at random
	// between half the delay and the delay.
	InitialDelay time.Duration
	MaxDelay     time.Duration
	// Logger receives a warning for every retry; nil discards them.
	Logger *slog.Logger
}

// Retry wraps a backend. Create one with New.
type Retry struct {
	b    backend.Backend
	opts Options
	log  *slog.Logger
}

var _ backend.Backend = (*Retry)(nil)

// New returns b wrapped so that transient failures are retried.
func New(b backend.Backend, opts Options) *Retry {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.InitialDelay <= 0 {
		opts.InitialDelay = DefaultInitialDelay
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retry{b: b, opts: opts, log: log}
}

// Permanent reports whether err is one that retrying cannot cure.
func Permanent(err error) bool {
	if errors.Is(err, backend.ErrNotExist) || errors.Is(err, backend.ErrInvalidHandle) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// permanentError marks the errors of the caller's reader or function.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

// delay returns the wait after the failure numbered failure (from 0).
func (r *Retry) delay(failure int) time.Duration {
	return backoff.Policy{Initial: r.opts.InitialDelay, Max: r.opts.MaxDelay}.Delay(failure)
}

// do calls fn until it succeeds, fails permanently, the attempts are
// used up or ctx is done. op and what name the operation in messages.
func (r *Retry) do(ctx context.Context, op string, what any, fn func() error) error {
	var err error
	for attempt := 0; ; attempt++ {
		if cerr := ctx.Err(); cerr != nil {
			if err != nil {
				return fmt.Errorf("%s %v: %w (last error: %v)", op, what, cerr, err)
			}
			return fmt.Errorf("%s %v: %w", op, what, cerr)
		}
		err = fn()
		if err == nil || Permanent(err) {
			return err
		}
		if attempt+1 >= r.opts.MaxAttempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt+1)
		}
		d := r.delay(attempt)
		r.log.Warn("retrying", "op", op, "file", fmt.Sprint(what), "attempt", attempt+1, "delay", d, "err", err)
		if cerr := backoff.Sleep(ctx, d); cerr != nil {
			return fmt.Errorf("%s %v: %w (last error: %v)", op, what, cerr, err)
		}
	}
}

// Location returns the wrapped backend's location.
func (r *Retry) Location() string { return r.b.Location() }

// Close closes the wrapped backend.
func (r *Retry) Close() error { return r.b.Close() }

// Save saves rd, rewound for each attempt. An error of rd is not retried.
func (r *Retry) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	return r.do(ctx, "save", h, func() error {
		if _, err := rd.Seek(0, io.SeekStart); err != nil {
			return &permanentError{fmt.Errorf("save %v: rewind: %w", h, err)}
		}
		body := &recordingReader{r: rd}
		err := r.b.Save(ctx, h, body)
		if err != nil && body.err != nil && errors.Is(err, body.err) {
			return &permanentError{err}
		}
		return err
	})
}

// recordingReader remembers the first error of the caller's reader.
type recordingReader struct {
	r   io.ReadSeeker
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *recordingReader) Seek(offset int64, whence int) (int64, error) {
	return r.r.Seek(offset, whence)
}

// Load opens h, and returns a reader that reopens it where it stopped
// after a transient failure.
func (r *Retry) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := r.do(ctx, "load", h, func() (err error) {
		rc, err = r.b.Load(ctx, h, offset, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &reader{r: r, ctx: ctx, h: h, offset: offset, length: length, rc: rc}, nil
}

// reader reads length bytes of h from offset (to the end if length is
// 0), reopening h after transient failures.
type reader struct {
	r              *Retry
	ctx            context.Context
	h              backend.Handle
	offset, length int64

	rc       io.ReadCloser // nil after a failure, until reopened
	read     int64         // bytes returned so far
	failures int           // failures since the last progress
	lastErr  error         // the last transient failure
	err      error         // the permanent failure, returned by every Read
	closed   bool
}

func (rd *reader) Read(p []byte) (int, error) {
	if rd.closed {
		return 0, fmt.Errorf("load %v: read after close", rd.h)
	}
	if rd.err != nil {
		return 0, rd.err
	}
	for {
		if rd.rc == nil {
			if err := rd.reopen(); err != nil {
				rd.err = err
				return 0, err
			}
			if rd.rc == nil {
				return 0, io.EOF
			}
		}
		n, err := rd.rc.Read(p)
		rd.read += int64(n)
		if n > 0 {
			rd.failures = 0
		}
		if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF || Permanent(err) || rd.ctx.Err() != nil {
			return n, err
		}
		// A transient failure: reopen, now or on the next call.
		rd.rc.Close()
		rd.rc = nil
		rd.lastErr = err
		rd.failures++
		if rd.failures >= rd.r.opts.MaxAttempts {
			rd.err = fmt.Errorf("%w (gave up after %d attempts)", err, rd.failures)
			return n, rd.err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// reopen loads the rest of the range after a delay. It leaves rd.rc nil
// if nothing is left to read.
func (rd *reader) reopen() error {
	length := int64(0)
	if rd.length > 0 {
		length = rd.length - rd.read
		if length == 0 {
			return nil
		}
	}
	d := rd.r.delay(rd.failures - 1)
	rd.r.log.Warn("retrying", "op", "load", "file", rd.h.String(), "at", rd.offset+rd.read, "delay", d, "err", rd.lastErr)
	if err := backoff.Sleep(rd.ctx, d); err != nil {
		return fmt.Errorf("load %v: %w (last error: %v)", rd.h, err, rd.lastErr)
	}
	return rd.r.do(rd.ctx, "load", rd.h, func() (err error) {
		rd.rc, err = rd.r.b.Load(rd.ctx, rd.h, rd.offset+rd.read, length)
		return err
	})
}

func (rd *reader) Close() error {
	rd.closed = true
	if rd.rc == nil {
		return nil
	}
	err := rd.rc.Close()
	rd.rc = nil
	return err
}

// Stat returns the size of h.
func (r *Retry) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	var fi backend.FileInfo
	err := r.do(ctx, "stat", h, func() (err error) {
		fi, err = r.b.Stat(ctx, h)
		return err
	})
	return fi, err
}

// Remove deletes h. After a failed attempt, ErrNotExist means that the
// failed attempt removed the file, and counts as success.
func (r *Retry) Remove(ctx context.Context, h backend.Handle) error {
	failed := false
	return r.do(ctx, "remove", h, func() error {
		err := r.b.Remove(ctx, h)
		if failed && errors.Is(err, backend.ErrNotExist) {
			return nil
		}
		if err != nil {
			failed = true
		}
		return err
	})
}

// List calls fn once for every file of type t, restarting the listing
// after a transient failure and skipping the files already reported. An
// error of fn stops the listing and is returned as it is.
func (r *Retry) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	seen := map[string]bool{}
	var fnErr error
	err := r.do(ctx, "list", t, func() error {
		err := r.b.List(ctx, t, func(fi backend.FileInfo) error {
			if seen[fi.Name] {
				return nil
			}
			seen[fi.Name] = true
			if err := fn(fi); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if fnErr != nil {
			return &permanentError{fnErr}
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}
