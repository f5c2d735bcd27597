package serve

import (
	"net"
	"sync"
	"time"
)

// Corked returns a listener whose connections gather what the server
// writes and send it in large pieces: go-imap's server flushes its 4 KiB
// buffer after every response, which made about six write system calls
// for each message a client downloads (121,000 for mbsync's 20,000). A
// connection sends what it holds before it reads (the server is done
// answering what it has read), once it holds corkSize bytes, and at most
// corkDelay after the first byte it holds (updates written while the
// server waits for the client, such as IDLE's). Wrap the listener below
// TLS, so that whole records go out together.
func Corked(ln net.Listener) net.Listener { return corkListener{ln} }

const (
	corkSize  = 64 << 10
	corkDelay = time.Millisecond
)

type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newCorkConn(c, corkDelay), nil
}

type corkConn struct {
	net.Conn
	mu    sync.Mutex
	buf   []byte
	timer *time.Timer
	delay time.Duration // corkDelay
	armed bool
	err   error // of a write that went out late: returned by the next call

	// The write deadline the server set last, and the one the network
	// connection has: go-imap's server sets one before each response
	// and clears it after (five times for each message a client
	// downloads), and most of those responses are only gathered here.
	// The deadline is passed on when bytes go out.
	deadline, netDeadline time.Time
}

func newCorkConn(c net.Conn, delay time.Duration) *corkConn {
	cc := &corkConn{Conn: c, delay: delay}
	cc.timer = time.AfterFunc(time.Hour, func() {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		cc.armed = false
		cc.flushLocked()
	})
	cc.timer.Stop()
	return cc
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.buf)+len(p) > corkSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) >= corkSize {
		if err := c.passDeadlineLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = make([]byte, 0, corkSize)
	}
	c.buf = append(c.buf, p...)
	if !c.armed {
		c.armed = true
		c.timer.Reset(c.delay)
	}
	return len(p), nil
}

// flushLocked sends what the connection holds.
func (c *corkConn) flushLocked() error {
	if c.err != nil || len(c.buf) == 0 {
		return c.err
	}
	err := c.passDeadlineLocked()
	if err == nil {
		_, err = c.Conn.Write(c.buf)
	}
	c.buf = c.buf[:0]
	if err != nil {
		c.err = err
	}
	return err
}

// passDeadlineLocked gives the network connection the write deadline
// the server set last.
func (c *corkConn) passDeadlineLocked() error {
	if c.deadline.Equal(c.netDeadline) {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(c.deadline); err != nil {
		return err
	}
	c.netDeadline = c.deadline
	return nil
}

// SetWriteDeadline sets the deadline of the writes that send what the
// connection holds from now on.
func (c *corkConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

// SetDeadline sets the read deadline, and the write deadline as
// SetWriteDeadline does.
func (c *corkConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *corkConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	// Nothing is held now: a timer left running would wake a goroutine
	// about every corkDelay of a busy connection to send a piece of a
	// response only half written.
	if c.armed {
		c.timer.Stop()
		c.armed = false
	}
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Close sends what the connection holds (the answer to LOGOUT), waiting
// at most closeFlush for a client that reads nothing, and closes it.
func (c *corkConn) Close() error {
	c.mu.Lock()
	c.timer.Stop()
	if len(c.buf) > 0 {
		c.deadline = time.Now().Add(closeFlush)
		c.flushLocked()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

const closeFlush = 5 * time.Second
