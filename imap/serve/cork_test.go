package serve

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// recConn records the writes that reach the network.
type recConn struct {
	net.Conn // nil: only Write, Read and Close are used
	mu       sync.Mutex
	writes   [][]byte
	in       io.Reader
	closed   bool
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *recConn) Read(p []byte) (int, error) { return c.in.Read(p) }

func (c *recConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *recConn) SetWriteDeadline(time.Time) error { return nil }

func (c *recConn) sent() (n int, all string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, w := range c.writes {
		b.Write(w)
	}
	return len(c.writes), b.String()
}

// TestCorkedConn: small writes go out together before the connection
// reads, when they fill corkSize, within corkDelay when nothing else
// happens, and at Close; large writes go out whole; nothing is lost or
// reordered.
func TestCorkedConn(t *testing.T) {
	rc := &recConn{in: strings.NewReader("a1 NOOP\r\n")}
	c := newCorkConn(rc, time.Hour) // no timer until the end
	var want strings.Builder
	write := func(s string) {
		t.Helper()
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		want.WriteString(s)
	}
	for i := range 100 {
		write(strings.Repeat("x", i) + "\r\n")
	}
	if n, _ := rc.sent(); n != 0 {
		t.Fatalf("%d writes before a read, want them held", n)
	}
	if _, err := c.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if n, got := rc.sent(); n != 1 || got != want.String() {
		t.Fatalf("before the read: %d writes, equal %v; want 1 with everything", n, got == want.String())
	}

	// 100 writes of 4 KiB: one network write for every 64 KiB.
	for range 100 {
		write(strings.Repeat("y", 4096))
	}
	if n, _ := rc.sent(); n != 1+100*4096/corkSize {
		t.Errorf("%d writes after 400 KiB, want %d", n, 1+100*4096/corkSize)
	}
	// A large write goes out whole, after what was held.
	write(strings.Repeat("z", corkSize+1))
	write("* BYE\r\n")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, got := rc.sent(); got != want.String() || !rc.closed {
		t.Errorf("after Close: all sent %v, closed %v", got == want.String(), rc.closed)
	}

	// Held bytes go out by themselves soon (an IDLE update), also when
	// written after a read sent what was held and stopped the timer.
	rc2 := &recConn{in: strings.NewReader("a2 IDLE\r\n")}
	c2 := newCorkConn(rc2, corkDelay)
	waitSent := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, got := rc2.sent(); got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("held bytes not sent within 5 s: want %q", want)
			}
			time.Sleep(corkDelay)
		}
	}
	c2.Write([]byte("* 3 EXISTS\r\n"))
	waitSent("* 3 EXISTS\r\n")
	c2.Write([]byte("a1 OK NOOP\r\n"))
	if _, err := c2.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	c2.Write([]byte("+ idling\r\n* 4 EXISTS\r\n"))
	waitSent("* 3 EXISTS\r\na1 OK NOOP\r\n+ idling\r\n* 4 EXISTS\r\n")
}
