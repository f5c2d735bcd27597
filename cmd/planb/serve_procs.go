package main

import (
	"net"
	"os"
	"runtime"
	"sync"
)

// A session of planb serve does one command at a time: it reads a
// message (decrypt, decompress), then writes it, and reads the next one
// ahead while the client takes the last. More processors than sessions
// add nothing to that but the runtime waking threads to run a read-ahead
// the session is about to wait for: with mbsync pulling 20,000 messages,
// planb serve spent 0.4-0.9 CPU-s more with two processors than with one
// on a 2-core machine, and its pull took longer. So planb serve uses as
// many processors as it has connections (at least one, at most what the
// runtime was given), unless GOMAXPROCS says otherwise.

// procsListener sets the number of processors as connections come and go.
type procsListener struct {
	net.Listener
	set func(int) // runtime.GOMAXPROCS
	max int

	mu    sync.Mutex
	conns int
}

// procsPerConn returns ln, wrapped when GOMAXPROCS is not set by the user.
func procsPerConn(ln net.Listener) net.Listener {
	if os.Getenv("GOMAXPROCS") != "" {
		return ln
	}
	return newProcsListener(ln, runtime.GOMAXPROCS(0), func(n int) { runtime.GOMAXPROCS(n) })
}

func newProcsListener(ln net.Listener, max int, set func(int)) *procsListener {
	l := &procsListener{Listener: ln, set: set, max: max}
	l.add(0)
	return l
}

// add changes the number of connections by d and sets the processors.
func (l *procsListener) add(d int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns += d
	l.set(min(max(l.conns, 1), l.max))
}

func (l *procsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.add(1)
	return &procsConn{Conn: c, l: l}, nil
}

type procsConn struct {
	net.Conn
	l    *procsListener
	once sync.Once
}

func (c *procsConn) Close() error {
	c.once.Do(func() { c.l.add(-1) })
	return c.Conn.Close()
}
