// Package backoff is how planb waits between the attempts of an operation
// that failed for a reason that may pass (a dropped connection, a
// throttled server, a storage hiccup): a wait that doubles from Initial up
// to Max, drawn at random between half of it and all of it, so that
// clients that failed together do not come back together. Every retry
// loop of planb (the storage backends' retries, the Graph transport, the
// IMAP source, restore) waits by it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff. Its zero value waits nothing.
type Policy struct {
	Initial time.Duration // the wait after the first failure
	Max     time.Duration // no wait is longer (0: no cap)
}

// Delay returns the wait after the failure numbered n (from 0): Initial
// doubled n times, at most Max, drawn at random between half of it and it.
func (p Policy) Delay(n int) time.Duration {
	d := p.Initial
	for range n {
		d *= 2
		if p.Max > 0 && d >= p.Max {
			d = p.Max
			break
		}
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d, or until ctx ends; then it returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
