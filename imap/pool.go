package imap

import (
	"context"
	"sync"
	"sync/atomic"
)

// pool holds up to cap(sem) logged-in connections.
type pool struct {
	opts      *Options
	sem       chan struct{}
	connected atomic.Bool

	mu   sync.Mutex
	idle []*conn
}

// get returns an idle connection or dials a new one; it waits while all
// connections are in use.
func (p *pool) get(ctx context.Context) (*conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !c.broken() {
			p.mu.Unlock()
			return c, nil
		}
		c.close()
	}
	p.mu.Unlock()
	c, err := dial(ctx, p.opts)
	if err != nil {
		<-p.sem
		return nil, err
	}
	p.connected.Store(true)
	return c, nil
}

// put returns a connection; a broken one is closed.
func (p *pool) put(c *conn) {
	if c == nil {
		return
	}
	if c.broken() {
		c.close()
	} else {
		p.mu.Lock()
		p.idle = append(p.idle, c)
		p.mu.Unlock()
	}
	<-p.sem
}

// everConnected reports whether a connection was ever made.
func (p *pool) everConnected() bool { return p.connected.Load() }

func (p *pool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.logout()
	}
}
