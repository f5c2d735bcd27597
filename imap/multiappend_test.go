package imap

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// protoBuffer collects a DebugWriter's copy of the protocol from several
// connections at once.
type protoBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *protoBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *protoBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// appenderAppends counts the APPEND commands planb's appender sent (tag
// "P<n>") and the messages they carried, in a DebugWriter's copy of the
// protocol.
func appenderAppends(protocol string) (commands int) {
	return len(regexp.MustCompile(`(?m)^P\d+ APPEND `).FindAllString(protocol, -1))
}

// TestDovecotMultiappend: restores into Dovecot over implicit TLS,
// STARTTLS and plaintext go through MULTIAPPEND batches (far fewer APPEND
// commands than messages); every message lands once with its flags and
// date. An empty message (Dovecot refuses it) makes its batch fail: the
// batch is sent again one message at a time and only the empty message
// is reported refused. A flag IMAP cannot carry is dropped. A second
// restore appends nothing.
func TestDovecotMultiappend(t *testing.T) {
	d := imaptest.Shared(t)
	modes := []struct {
		name string
		tls  TLSMode
	}{{"implicit TLS", TLSImplicit}, {"STARTTLS", TLSStartTLS}, {"plaintext", TLSNone}}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			mb := archivetest.NewMailbox()
			want := archivetest.NewMailbox()
			base := time.Date(2023, 5, 1, 9, 0, 0, 0, time.UTC)
			var emptyID string
			n := 0
			for _, f := range []string{"A", "B/Sub"} {
				mb.AddFolder(archive.Folder{Path: f})
				want.AddFolder(archive.Folder{Path: f})
				count := 250
				if f != "A" {
					count = 40
				}
				for i := range count {
					body := fmt.Appendf(nil, "Message-ID: <%s-%d@planb.test>\r\nSubject: %s %d\r\n\r\n%s\r\n", f, i, f, i, bytes.Repeat([]byte("line\r\n"), i%50))
					flags := []string{`\Seen`, "$Label1"}
					wantFlags := flags
					switch {
					case f == "A" && i == 100:
						body = nil
					case f == "A" && i == 7:
						flags = []string{`\Flagged`, "bad flag"}
						wantFlags = []string{`\Flagged`}
					}
					m := archivetest.Msg{Flags: flags, InternalDate: base.Add(time.Duration(i) * time.Minute), Body: body}
					id := mb.Add(f, m)
					if body == nil {
						emptyID = id
						continue
					}
					n++
					want.Add(f, archivetest.Msg{Flags: wantFlags, InternalDate: m.InternalDate, Body: body})
				}
			}
			r := newRepo(t)
			snap := runBackup(t, r, mb)

			user, pw := d.NewUser(t)
			o := targetOptions(d, user, pw)
			o.TLS = mode.tls
			if mode.tls != TLSImplicit {
				o.Port = d.Port
			}
			var proto protoBuffer
			o.DebugWriter = &proto
			rep := restoreTo(t, r, snap, o, nil)
			if rep.Appended != int64(n) || rep.Present != 0 || len(rep.Refused) != 1 || rep.Refused[0].SourceID != emptyID || rep.Refused[0].Folder != "A" {
				t.Errorf("restore report %+v, want %d appended and %s in A refused", rep, n, emptyID)
			}
			cmds := appenderAppends(proto.String())
			// 291 messages one per command would take 291 commands; in
			// batches of up to 100, with the refused batch sent again one
			// by one (up to 100 more), far fewer.
			if cmds == 0 || cmds > 200 {
				t.Errorf("%d APPEND commands from the appender for %d messages, want batches", cmds, n+1)
			}
			t.Logf("%d messages in %d APPEND commands", n+1, cmds)

			c := d.Dial(t, user, pw)
			got := serverState(t, c)
			archivetest.EqualOpts(t, want, got, &archivetest.CompareOptions{IgnoreEmptyFolders: true, WireLineEnds: true})

			rep = restoreTo(t, r, snap, o, nil)
			if rep.Appended != 0 || rep.Present != int64(n) || len(rep.Refused) != 1 {
				t.Errorf("second restore report %+v, want 0 appended, %d present, 1 refused", rep, n)
			}
			if got := serverState(t, c).Count(); got != n {
				t.Errorf("after a second restore the target holds %d messages, want %d", got, n)
			}
		})
	}
}

// TestDovecotPipelineOne: with Pipeline 1 (the benchmark's sequential
// baseline) the appender sends one message per APPEND and waits for each
// answer before the next command.
func TestDovecotPipelineOne(t *testing.T) {
	d := imaptest.Shared(t)
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	for _, m := range imaptest.Generate("one", 20) {
		mb.Add("INBOX", archivetest.Msg{Flags: []string{`\Seen`}, InternalDate: m.Date, Body: m.Body})
	}
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	user, pw := d.NewUser(t)
	o := targetOptions(d, user, pw)
	o.Connections = 1
	var proto protoBuffer
	o.DebugWriter = &proto
	rep := restoreTo(t, r, snap, o, &SinkOptions{Pipeline: 1})
	if rep.Appended != 20 {
		t.Errorf("restore report %+v, want 20 appended", rep)
	}
	p := proto.String()
	if n := appenderAppends(p); n != 20 {
		t.Errorf("%d APPEND commands, want 20", n)
	}
	// Each APPEND is answered before the next is sent: the answer to P<n>
	// is in the protocol before P<n+1> (a command is copied to the
	// protocol once written, so its answer may come before it there).
	p2 := regexp.MustCompile(`(?m)^(P\d+) (APPEND |OK )`).FindAllStringSubmatchIndex(p, -1)
	sent, answered := map[int]int{}, map[int]int{}
	for _, m := range p2 {
		n, _ := strconv.Atoi(p[m[2]+1 : m[3]])
		if p[m[4]:m[5]] == "APPEND " {
			sent[n] = m[0]
		} else {
			answered[n] = m[0]
		}
	}
	for n, at := range sent {
		if _, ok := sent[n-1]; !ok {
			continue
		}
		if a, ok := answered[n-1]; !ok || a > at {
			t.Fatalf("P%d APPEND sent before P%d was answered", n, n-1)
		}
	}
}

// TestDovecotRefusedKeyword: Dovecot refuses a keyword longer than 50
// bytes (though it announces \*). Through go-imap's APPEND and through
// MULTIAPPEND batches, every message still lands once, keeping its other
// flags; only the long keyword is dropped.
func TestDovecotRefusedKeyword(t *testing.T) {
	d := imaptest.Shared(t)
	long := "Category-" + string(bytes.Repeat([]byte("x"), 60))
	mb := archivetest.NewMailbox()
	want := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	want.AddFolder(archive.Folder{Path: "INBOX"})
	for i, m := range imaptest.Generate("kw", 30) {
		flags := []string{`\Seen`, "$Label1"}
		if i%3 == 1 {
			flags = append(flags, long)
		}
		mb.Add("INBOX", archivetest.Msg{Flags: flags, InternalDate: m.Date, Body: m.Body})
		want.Add("INBOX", archivetest.Msg{Flags: []string{`\Seen`, "$Label1"}, InternalDate: m.Date, Body: m.Body})
	}
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	for _, so := range []SinkOptions{{NoMultiappend: true}, {}} {
		t.Run(fmt.Sprintf("NoMultiappend=%v", so.NoMultiappend), func(t *testing.T) {
			user, pw := d.NewUser(t)
			o := targetOptions(d, user, pw)
			rep := restoreTo(t, r, snap, o, &so)
			if rep.Appended != 30 || len(rep.Refused) != 0 {
				t.Errorf("restore report %+v, want 30 appended, none refused", rep)
			}
			got := serverState(t, d.Dial(t, user, pw))
			archivetest.EqualOpts(t, want, got, &archivetest.CompareOptions{IgnoreEmptyFolders: true, WireLineEnds: true})
		})
	}
}
