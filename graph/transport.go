package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"codeberg.org/planb/planb/archive/backoff"
)

// limiter bounds the requests in flight for one mailbox.
type limiter chan struct{}

func newLimiter(n int) limiter { return make(limiter, n) }

func (l limiter) acquire(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l limiter) tryAcquire() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l limiter) release() { <-l }

type ctxKey int

const (
	limiterKey ctxKey = iota
	heldKey
	streamKey
)

// withLimiter makes the requests made with ctx count against l.
func withLimiter(ctx context.Context, l limiter) context.Context {
	return context.WithValue(ctx, limiterKey, l)
}

// withSlotHeld says that the caller already holds a slot of the limiter
// for the request made with ctx, and releases it when the body is closed.
func withSlotHeld(ctx context.Context) context.Context {
	return context.WithValue(ctx, heldKey, true)
}

// withStream says that the body of the request made with ctx is read as
// a stream (a message's $value): the transport hands it on as it comes.
// Other bodies are read whole before RoundTrip returns, so that one that
// stalls or breaks off is asked for again.
func withStream(ctx context.Context) context.Context {
	return context.WithValue(ctx, streamKey, true)
}

// maxBuffered bounds a response body read whole (a page of a list).
const maxBuffered = 64 << 20

// transport is the SDK's HTTP transport: it adds planb's headers, keeps
// the mailbox's limit of requests in flight and retries throttled
// requests, and those that fail or stall (its base is a deadlineTransport)
// before their body is read.
type transport struct {
	base http.RoundTripper
	c    *Client
}

// retryable reports whether a status is worth another try.
func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusBadGateway:
		return true
	}
	return false
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	lim, _ := ctx.Value(limiterKey).(limiter)
	held, _ := ctx.Value(heldKey).(bool)
	stream, _ := ctx.Value(streamKey).(bool)
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		// planb only reads; a request body cannot be replayed anyway.
		return t.base.RoundTrip(req)
	}
	for attempt := 0; ; attempt++ {
		own := lim != nil && !held
		if own {
			if err := lim.acquire(ctx); err != nil {
				return nil, err
			}
		}
		r := req.Clone(ctx)
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				if own {
					lim.release()
				}
				return nil, err
			}
			r.Body = body
		}
		r.Header.Add("Prefer", `IdType="ImmutableId"`)
		r.Header.Set("User-Agent", "planb")
		resp, err := t.base.RoundTrip(r)
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			if own {
				lim.release()
			}
			return nil, err
		case err != nil:
			if attempt >= t.c.opts.MaxRetries || !transient(err) {
				if own {
					lim.release()
				}
				return nil, err
			}
			wait = retryBackoff.Delay(attempt)
			t.c.log.Debug("graph request failed, retrying", "url", req.URL.Path, "err", err, "wait", wait)
		case retryable(resp.StatusCode) && attempt < t.c.opts.MaxRetries:
			wait = retryAfter(resp.Header.Get("Retry-After"), attempt)
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			t.c.log.Debug("graph throttled, retrying", "url", req.URL.Path, "status", resp.StatusCode, "wait", wait)
		case !stream:
			body, rerr := readBody(resp.Body)
			resp.Body.Close()
			if rerr != nil {
				if ctx.Err() != nil || attempt >= t.c.opts.MaxRetries || !transient(rerr) {
					if own {
						lim.release()
					}
					return nil, fmt.Errorf("read %s: %w", req.URL.Path, rerr)
				}
				wait = retryBackoff.Delay(attempt)
				t.c.log.Debug("graph response broke off, retrying", "url", req.URL.Path, "err", rerr, "wait", wait)
				break
			}
			resp.Body = io.NopCloser(bytes.NewReader(body))
			if own {
				lim.release()
			}
			return resp, nil
		default:
			if own {
				resp.Body = &releaseBody{ReadCloser: resp.Body, release: lim.release}
			}
			return resp, nil
		}
		if own {
			lim.release()
		}
		if err := backoff.Sleep(ctx, min(wait, t.c.opts.MaxRetryWait)); err != nil {
			return nil, err
		}
	}
}

// readBody reads a response body whole, at most maxBuffered bytes.
func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBuffered+1))
	if err == nil && len(b) > maxBuffered {
		err = fmt.Errorf("response larger than %d MiB", maxBuffered>>20)
	}
	return b, err
}

// deadlineTransport ends a request that waits too long for the server:
// no response headers within timeout, or no byte of the body within
// timeout while a Read waits for one (a consumer slow to read costs
// nothing). Either gives a *StallError.
type deadlineTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

// StallError is a request that got no response headers, or whose body
// brought no byte, within the client's Options.IOTimeout: the connection
// stalled. It is a timeout (a net.Error).
type StallError struct {
	What  string // "response headers" or "response body"
	After time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("graph: %s stalled for %v", e.What, e.After)
}

// Timeout reports true: the error is a timeout.
func (e *StallError) Timeout() bool { return true }

// Temporary reports true, for net.Error.
func (e *StallError) Temporary() bool { return true }

var _ net.Error = (*StallError)(nil)

func (t *deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	w := newWatchdog(t.timeout, cancel)
	w.arm()
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	w.disarm()
	if err != nil {
		cancel()
		if w.fired.Load() {
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, &StallError{What: "response headers", After: t.timeout})
		}
		return nil, err
	}
	resp.Body = &idleBody{rc: resp.Body, w: w, cancel: cancel}
	return resp, nil
}

// watchdog cancels a request once armed for its timeout.
type watchdog struct {
	timeout time.Duration
	timer   *time.Timer
	fired   atomic.Bool
}

func newWatchdog(timeout time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{timeout: timeout}
	w.timer = time.AfterFunc(time.Hour, func() {
		w.fired.Store(true)
		cancel()
	})
	w.timer.Stop()
	return w
}

func (w *watchdog) arm()    { w.timer.Reset(w.timeout) }
func (w *watchdog) disarm() { w.timer.Stop() }

// idleBody is a response body whose every Read must bring bytes within
// the watchdog's timeout; closing it ends the request's context.
type idleBody struct {
	rc     io.ReadCloser
	w      *watchdog
	cancel context.CancelFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.w.arm()
	n, err := b.rc.Read(p)
	b.w.disarm()
	if err != nil && err != io.EOF && b.w.fired.Load() {
		err = &StallError{What: "response body", After: b.w.timeout}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.w.disarm()
	err := b.rc.Close()
	b.cancel()
	return err
}

// transient reports whether a network error may go away on retry.
func transient(err error) bool {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || isConnReset(err)
}

func isConnReset(err error) bool {
	s := err.Error()
	for _, sub := range []string{"connection reset", "broken pipe", "server closed idle connection", "connection refused"} {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// retryAfter reads a Retry-After header: seconds (fractions accepted) or
// an HTTP date; without one it backs off exponentially.
func retryAfter(h string, attempt int) time.Duration {
	if h != "" {
		if s, err := strconv.ParseFloat(h, 64); err == nil && s >= 0 {
			return time.Duration(s * float64(time.Second))
		}
		if t, err := http.ParseTime(h); err == nil {
			return max(time.Until(t), 0)
		}
	}
	return retryBackoff.Delay(attempt)
}

// retryBackoff is the wait before a request is made again when the server
// named none: 1 s, 2 s, 4 s... up to 32 s.
var retryBackoff = backoff.Policy{Initial: time.Second, Max: 32 * time.Second}

// releaseBody releases a limiter slot when the body is closed.
type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
