package imaptest

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FetchCut logs in to the plaintext server at addr over a bare
// connection, fetches message uid of INBOX whole and reads until the
// server closes the connection. It reports whether the FETCH was cut (no
// tagged answer) and returns all the server sent. go-imap's client is not
// used: it races with itself when a connection is cut inside a literal.
func FetchCut(t testing.TB, addr, user, password string, uid uint32) (bool, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(conn, "a LOGIN %s %s\r\nb EXAMINE INBOX\r\nc UID FETCH %d (BODY.PEEK[])\r\n", user, password, uid)
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading the answer to FETCH: %v", err)
	}
	for _, tag := range []string{"a OK", "b OK"} {
		if !strings.Contains(string(all), "\r\n"+tag) {
			t.Fatalf("no %q before the FETCH: %.300q", tag, all)
		}
	}
	return !strings.Contains(string(all), "\r\nc "), string(all)
}
