package imap

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// A sharedConn is one IMAP connection used in turn by two speakers: the
// go-imap client of a target (CREATE, SELECT...) and an appender (APPEND),
// so that a restore of one connection logs in once. Each has a view of
// its own; one of them owns the connection at a time, and only the owner
// writes, reads and sets deadlines. The other's reads wait, and its
// deadlines are ignored.
//
// The owner changes (give) only while the speaker giving it up has no
// command outstanding: nothing it waits for can then be read by the
// other. A read that the old owner was blocked in is ended by a deadline
// in the past and, as its speaker no longer owns the connection, waits
// for its turn instead of failing; the new owner reads once that read
// has ended and the deadline is cleared. Crypto/tls keeps a record it had
// begun to read, a timeout not being fatal to it.
type sharedConn struct {
	c net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	owner   int  // 0 (the target) or 1 (the appender)
	reading int  // the speaker inside c.Read, or -1
	ending  bool // give is ending the old owner's read: the new waits
	closed  bool
}

// Speakers of a sharedConn.
const (
	targetSpeaker   = 0
	appenderSpeaker = 1
)

func newSharedConn(c net.Conn) *sharedConn {
	s := &sharedConn{c: c, reading: -1}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// view is the connection as speaker who sees it.
func (s *sharedConn) view(who int) net.Conn { return &sharedView{Conn: s.c, s: s, who: who} }

// give makes who the owner, ending the other's blocked read.
func (s *sharedConn) give(who int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owner == who {
		return
	}
	s.owner, s.ending = who, true
	for s.reading != -1 && !s.closed {
		s.c.SetReadDeadline(time.Unix(1, 0))
		s.cond.Wait()
	}
	// Neither speaker waits for an answer: no deadline.
	s.c.SetDeadline(time.Time{})
	s.ending = false
	s.cond.Broadcast()
}

type sharedView struct {
	net.Conn
	s   *sharedConn
	who int
}

func (v *sharedView) Read(p []byte) (int, error) {
	s := v.s
	s.mu.Lock()
	for {
		for (s.owner != v.who || s.ending) && !s.closed {
			s.cond.Wait()
		}
		if s.closed {
			s.mu.Unlock()
			return 0, net.ErrClosed
		}
		s.reading = v.who
		s.mu.Unlock()
		n, err := v.Conn.Read(p)
		s.mu.Lock()
		s.reading = -1
		s.cond.Broadcast()
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && s.owner != v.who {
			continue // ended by give: wait for this speaker's turn
		}
		s.mu.Unlock()
		return n, err
	}
}

// The deadlines of the speaker that does not own the connection are its
// idle ones (none): give clears them when the owner changes.
func (v *sharedView) SetDeadline(t time.Time) error {
	return v.ifOwner(func() error { return v.Conn.SetDeadline(t) })
}

func (v *sharedView) SetReadDeadline(t time.Time) error {
	return v.ifOwner(func() error { return v.Conn.SetReadDeadline(t) })
}

func (v *sharedView) SetWriteDeadline(t time.Time) error {
	return v.ifOwner(func() error { return v.Conn.SetWriteDeadline(t) })
}

func (v *sharedView) ifOwner(f func() error) error {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if v.s.owner != v.who {
		return nil
	}
	return f()
}

func (v *sharedView) Close() error {
	s := v.s
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	return v.Conn.Close()
}
