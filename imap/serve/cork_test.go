package serve

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
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
	deadline time.Time   // the write deadline set last
	sets     int         // calls of SetWriteDeadline
	at       []time.Time // the deadline of each write
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.at = append(c.at, c.deadline)
	return len(p), nil
}

func (c *recConn) Read(p []byte) (int, error) { return c.in.Read(p) }

func (c *recConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *recConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.sets++
	return nil
}

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

// TestCorkedDeadlines: the write deadlines the server sets around each
// response reach the network only with the bytes that go out, as the last
// one set before they go; a client that reads nothing makes a write fail
// at its deadline.
func TestCorkedDeadlines(t *testing.T) {
	rc := &recConn{in: strings.NewReader("a1 NOOP\r\na2 NOOP\r\n")}
	c := newCorkConn(rc, time.Hour)
	d1 := time.Now().Add(time.Minute)
	d2 := d1.Add(time.Minute)
	for i := range 1000 { // responses, each between deadlines
		c.SetWriteDeadline(d1)
		c.Write([]byte("* " + strings.Repeat("x", i%50) + "\r\n"))
		c.SetWriteDeadline(time.Time{})
	}
	c.SetWriteDeadline(d2)
	c.Read(make([]byte, 9))
	c.SetWriteDeadline(d2)
	c.Write([]byte(strings.Repeat("y", corkSize))) // out at once
	c.SetWriteDeadline(time.Time{})
	c.Read(make([]byte, 9)) // nothing held: nothing sent
	if rc.sets != 1 || len(rc.at) != 2 || !rc.at[0].Equal(d2) || !rc.at[1].Equal(d2) {
		t.Errorf("network: %d deadlines set, writes at %v; want 1, both at %v", rc.sets, rc.at, d2)
	}
	c.Write([]byte("* BYE\r\n"))
	c.Close()
	if len(rc.at) != 3 || rc.at[2].Before(time.Now()) || rc.at[2].After(time.Now().Add(closeFlush)) {
		t.Errorf("Close sent with deadline %v, want within %v", rc.at[len(rc.at)-1], closeFlush)
	}

	server, client := net.Pipe() // nothing reads client
	defer client.Close()
	cc := newCorkConn(server, time.Hour)
	cc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	cc.Write([]byte("* held\r\n"))
	_, err := cc.Write([]byte(strings.Repeat("z", corkSize)))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write to a client that reads nothing: %v, want %v", err, os.ErrDeadlineExceeded)
	}
	cc.Close()
}
