package imap

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIOConnDeadlines: once started, a read waits at most the timeout
// while a command is outstanding, and without limit while none is; a
// line that answers a continuation request is no command.
func TestIOConnDeadlines(t *testing.T) {
	const timeout = 200 * time.Millisecond
	client, server := net.Pipe()
	defer server.Close()
	c := newIOConn(client)
	defer c.Close()
	c.start(timeout)
	sr := bufio.NewReader(server)
	type result struct {
		n   int
		err error
		at  time.Duration
	}
	read := func() <-chan result {
		ch := make(chan result, 1)
		start := time.Now()
		go func() {
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			ch <- result{n, err, time.Since(start)}
		}()
		return ch
	}
	// Idle: nothing outstanding, the read waits past the timeout.
	ch := read()
	select {
	case r := <-ch:
		t.Fatalf("idle read returned %d, %v after %v", r.n, r.err, r.at)
	case <-time.After(3 * timeout):
	}
	io.WriteString(server, "* OK still there\r\n")
	if r := <-ch; r.err != nil {
		t.Fatalf("idle read = %v", r.err)
	}
	// A command, answered: no deadline hits.
	answer := func(line string) {
		t.Helper()
		ch := read()
		io.WriteString(server, line)
		if r := <-ch; r.err != nil {
			t.Fatalf("read of %q = %v", line, r.err)
		}
	}
	go c.Write([]byte("A1 NOOP\r\n"))
	sr.ReadString('\n')
	answer("A1 OK done\r\n")
	// A continuation request answered by a line: no command.
	go c.Write([]byte("A2 AUTHENTICATE PLAIN\r\n"))
	sr.ReadString('\n')
	answer("+ \r\n")
	go c.Write([]byte("AGFsaWNlAHB3\r\n"))
	sr.ReadString('\n')
	answer("A2 OK in\r\n")
	ch = read()
	select {
	case r := <-ch:
		t.Fatalf("read with nothing outstanding returned %d, %v after %v", r.n, r.err, r.at)
	case <-time.After(3 * timeout):
	}
	// A command the server does not answer: the waiting read fails.
	go c.Write([]byte("A3 FETCH 1 (UID)\r\n"))
	sr.ReadString('\n')
	r := <-ch
	if !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("read of an unanswered command = %d, %v; want a timeout", r.n, r.err)
	}
	if r.at > 3*timeout+time.Second {
		t.Errorf("timeout after %v, want about %v past the command", r.at, timeout)
	}
}

// TestIOConnBounds: responses are bounded, but for the literals of
// message bodies in a FETCH; quoted strings running over lines count
// whole.
func TestIOConnBounds(t *testing.T) {
	big := strings.Repeat("x", maxResponse+1)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"body literal", "* 1 FETCH (UID 5 BODY[] {" + itoa(len(big)) + "}\r\n" + big + ")\r\n", true},
		{"body literal first", "* 1 FETCH (BODY[] {" + itoa(len(big)) + "}\r\n" + big + " UID 5)\r\n", true},
		{"binary literal8", "* 1 FETCH (UID 5 BINARY[] ~{" + itoa(len(big)) + "}\r\n" + big + ")\r\n", true},
		{"partial body", "* 1 FETCH (BODY[1]<0> {" + itoa(len(big)) + "}\r\n" + big + ")\r\n", true},
		{"many short lines", strings.Repeat("* 1 FETCH (UID 5 FLAGS (\\Seen))\r\n", 2*maxResponse/32), true},
		{"header literal", "* 1 FETCH (UID 5 ENVELOPE ({" + itoa(len(big)) + "}\r\n" + big + "))\r\n", false},
		{"body outside FETCH", "* LIST () \"/\" BODY[] {" + itoa(len(big)) + "}\r\n" + big + "\r\n", false},
		{"text", "* OK " + big + "\r\n", false},
		{"quoted over lines", "* 1 FETCH (X \"" + strings.Repeat("y\r\n", maxResponse/3+1) + "\")\r\n", false},
		{"body in a quoted string", "* 1 FETCH (X \"BODY[] {" + itoa(len(big)) + "}\r\n" + big + "\")\r\n", false},
	}
	for _, tt := range tests {
		c := &ioConn{outstanding: map[string]bool{}}
		err := c.r.scan([]byte(tt.in), c)
		if (err == nil) != tt.ok {
			t.Errorf("%s: scan = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	s := &ioConn{outstanding: map[string]bool{}}
	if err := s.r.scan([]byte("* SEARCH"+strings.Repeat(" 1234567", 2*maxResponse/8)+"\r\n"), s); err != nil {
		t.Errorf("a SEARCH answer of %d MiB: %v", 2*maxResponse>>20, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
