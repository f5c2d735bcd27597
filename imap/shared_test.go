package imap

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestSharedConnTurns: the speaker that gives up a shared connection
// while its reader is blocked in a read reads nothing more until its turn
// comes back, and loses nothing: each line reaches the speaker that owns
// the connection when the line arrives. Writes and deadlines of the other
// speaker are ignored.
func TestSharedConnTurns(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	s := newSharedConn(client)
	lines := [2]chan string{make(chan string, 10), make(chan string, 10)}
	for who := range 2 {
		br := bufio.NewReader(s.view(who))
		go func() {
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					close(lines[who])
					return
				}
				lines[who] <- l
			}
		}()
	}
	expect := func(who int, want string) {
		t.Helper()
		select {
		case got := <-lines[who]:
			if got != want {
				t.Fatalf("speaker %d read %q, want %q", who, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("speaker %d read nothing, want %q", who, want)
		}
	}
	send := func(l string) {
		t.Helper()
		if _, err := server.Write([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	send("t1\r\n")
	expect(targetSpeaker, "t1\r\n")
	time.Sleep(20 * time.Millisecond) // the target's reader blocks again
	s.give(appenderSpeaker)
	// The target's deadline is not the appender's.
	s.view(targetSpeaker).SetReadDeadline(time.Unix(1, 0))
	send("a1\r\n")
	expect(appenderSpeaker, "a1\r\n")
	send("a2\r\n")
	expect(appenderSpeaker, "a2\r\n")
	s.give(targetSpeaker)
	send("t2\r\n")
	expect(targetSpeaker, "t2\r\n")
	s.give(appenderSpeaker)
	s.give(targetSpeaker)
	send("t3\r\n")
	expect(targetSpeaker, "t3\r\n")
	select {
	case l := <-lines[appenderSpeaker]:
		t.Fatalf("the appender read %q out of turn", l)
	default:
	}
	s.view(appenderSpeaker).Close()
	for who := range 2 {
		if _, ok := <-lines[who]; ok {
			t.Errorf("speaker %d read after Close", who)
		}
	}
}
