package imap

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestSinkPlan: what the sink decides before a message is sent, per
// target: a message over APPENDLIMIT, an empty one, one with NUL bytes for
// a target without BINARY and one with 8-bit header bytes for Cyrus are
// named (with their form problems, so the hint can count them) and not
// sent; with Repair the last three go as repaired copies; otherwise the
// message goes with the literal the target takes (CRLF on the way, binary
// literal for NUL bytes, UTF8 for UTF-8 headers, as it is with a binary
// part).
func TestSinkPlan(t *testing.T) {
	const good = "Date: Mon, 02 Jan 2006 15:04:05 -0700\nFrom: a@example.org\nSubject: hi\n\nbody\n"
	nul := good + "a\x00b\n"
	latin := strings.Replace(good, "hi", "caf\xe9", 1)
	utf := strings.Replace(good, "hi", "caf\xc3\xa9", 1)
	binary := strings.Replace(good, "Subject:", "Content-Transfer-Encoding: binary\nSubject:", 1)
	tests := []struct {
		name    string
		caps    appendCaps
		cyrus   bool
		repair  bool
		msg     string
		refused string // a text in the refusal, "" if it is sent
		msgWant appendMsg
	}{
		{name: "plain", msg: good, msgWant: appendMsg{crlf: true}},
		{name: "crlf already", msg: string(mailform.CRLF([]byte(good))), msgWant: appendMsg{}},
		{name: "over APPENDLIMIT", caps: appendCaps{limit: 50}, msg: good, refused: "over the target's APPENDLIMIT of 50 bytes"},
		{name: "empty", msg: "", refused: "the message is empty"},
		{name: "NUL without BINARY", msg: nul, refused: "NUL bytes and the target offers no BINARY"},
		{name: "NUL with BINARY", caps: appendCaps{binary: true}, msg: nul, msgWant: appendMsg{crlf: true, binary: true}},
		{name: "NUL repaired", repair: true, msg: nul, msgWant: appendMsg{}},
		{name: "8-bit header for Cyrus", cyrus: true, msg: latin, refused: "Cyrus"},
		{name: "8-bit header elsewhere", msg: latin, msgWant: appendMsg{crlf: true}},
		{name: "UTF-8 header with UTF8=ACCEPT", caps: appendCaps{utf8: true}, cyrus: true, msg: utf, msgWant: appendMsg{crlf: true, utf8: true}},
		{name: "binary part", msg: binary, msgWant: appendMsg{}},
	}
	for _, tt := range tests {
		s := &Sink{so: SinkOptions{Repair: tt.repair, StreamAbove: 8 << 20}, log: slog.New(slog.DiscardHandler), caps: tt.caps, t: &target{munges8bit: tt.cyrus}}
		body := []byte(tt.msg)
		j := &appendJob{folder: "F", sourceID: tt.name, body: body, rawSize: int64(len(body)), info: mailform.Scan(body)}
		got, err := s.plan(j)
		if err != nil {
			t.Fatalf("%s: plan: %v", tt.name, err)
		}
		rep := s.Report()
		if tt.refused != "" {
			if got != nil || len(rep.Refused) != 1 || !strings.Contains(rep.Refused[0].Error, tt.refused) {
				t.Errorf("%s: plan = %v, refused %+v; want refused with %q", tt.name, got, rep.Refused, tt.refused)
			}
			if !strings.Contains(tt.name, "APPENDLIMIT") && len(rep.Refused) == 1 && len(rep.Refused[0].Problems) == 0 {
				t.Errorf("%s: refused without its form problems", tt.name)
			}
			continue
		}
		if got == nil || len(rep.Refused) != 0 {
			t.Errorf("%s: plan = %v, refused %+v; want it sent", tt.name, got, rep.Refused)
			continue
		}
		m := s.msgOf(got, nil)
		if m.crlf != tt.msgWant.crlf || m.binary != tt.msgWant.binary || m.utf8 != tt.msgWant.utf8 {
			t.Errorf("%s: crlf %v binary %v utf8 %v, want %v %v %v", tt.name, m.crlf, m.binary, m.utf8, tt.msgWant.crlf, tt.msgWant.binary, tt.msgWant.utf8)
		}
		// The literal's announced size is what goes on the wire.
		var wire bytes.Buffer
		if m.crlf {
			w := mailform.NewCRLFWriter(&wire)
			io.Copy(w, m.body)
			w.Close()
		} else {
			io.Copy(&wire, m.body)
		}
		if int64(wire.Len()) != m.size {
			t.Errorf("%s: literal of %d bytes announced as %d", tt.name, wire.Len(), m.size)
		}
		if tt.repair {
			if got.note == "" || bytes.IndexByte(wire.Bytes(), 0) >= 0 || !bytes.HasPrefix(wire.Bytes(), []byte("X-Planb-Repaired: ")) {
				t.Errorf("%s: not a repaired copy without NUL: note %q", tt.name, got.note)
			}
			if orig, err := mailform.Recover(wire.Bytes()); err != nil || !slices.Equal(mailform.CRLF(orig), mailform.CRLF(body)) {
				t.Errorf("%s: Recover = %q, %v", tt.name, orig, err)
			}
		}
	}
}

// TestSinkReconcile: a copy of a message appears in the folder after the
// sink listed it and before it appends the message (as when a killed
// run's last APPEND is stored late): Close finds the two and expunges its
// own copy, so that the folder holds the message once; a message that
// came in and is no copy of ours stays.
func TestSinkReconcile(t *testing.T) {
	for _, kind := range []imaptest.Kind{imaptest.KindDovecot, imaptest.KindCyrus} {
		t.Run(kind.Name, func(t *testing.T) {
			srv := imaptest.SharedOf(t, kind)
			user, pw := srv.NewUser(t)
			o := &Options{Host: srv.Host, Port: srv.Port, User: user, Password: pw, TLS: TLSStartTLS, RootCAs: srv.RootCAs, Connections: 2}
			sink, err := NewSink(t.Context(), o, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Folder(t.Context(), archive.Folder{Path: "INBOX"}); err != nil {
				t.Fatal(err)
			}
			msgs := imaptest.Generate("late", 3)
			c := srv.Dial(t, user, pw)
			// The late copy of message 0, and a message of somebody else's.
			imaptest.Append(t, c, "INBOX", []imaptest.Message{msgs[0], {Body: []byte("Subject: not ours\r\n\r\nhello\r\n"), Date: msgs[0].Date}})
			for i, m := range msgs {
				err := sink.Put(t.Context(), &archive.Message{Folder: "INBOX", SourceID: fmt.Sprint(i), InternalDate: m.Date, Size: int64(len(m.Body)),
					Body: bytes.NewReader(m.Body), Digest: fmt.Sprintf("%064d", i)})
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := sink.Close(); err != nil {
				t.Fatal(err)
			}
			if rep := sink.Report(); rep.Appended != 2 || rep.Present != 1 {
				t.Errorf("report %+v, want 2 appended, 1 present", rep)
			}
			got := imaptest.Fetch(t, c, "INBOX")
			count := map[string]int{}
			for _, m := range got {
				count[string(mailform.CRLF(m.Body))]++
			}
			for i, m := range msgs {
				if n := count[string(mailform.CRLF(m.Body))]; n != 1 {
					t.Errorf("message %d is there %d times, want once", i, n)
				}
			}
			if len(got) != 4 {
				t.Errorf("the folder holds %d messages, want 4", len(got))
			}
		})
	}
}

// mapJournal is a Journal in memory.
type mapJournal struct {
	mu sync.Mutex
	m  map[string]map[uint32]string
}

func (j *mapJournal) Load(mailbox string, uidValidity uint32) (map[uint32]string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return maps.Clone(j.m[fmt.Sprint(mailbox, uidValidity)]), nil
}

func (j *mapJournal) Record(mailbox string, uidValidity, uid uint32, digest string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	k := fmt.Sprint(mailbox, uidValidity)
	if j.m[k] == nil {
		j.m[k] = map[uint32]string{}
	}
	j.m[k][uid] = digest
	return nil
}

// Flush has nothing to write: the map holds every record.
func (j *mapJournal) Flush() error { return nil }

// Begin: runs into a map journal are never interrupted.
func (j *mapJournal) Begin() (bool, error) { return false, nil }

// TestSinkLeftovers: two interrupted runs left a message twice in the
// folder, once where the journal knows it and once where it does not.
// The next run keeps one copy and tells the journal which; a message the
// snapshot holds twice keeps its two copies.
func TestSinkLeftovers(t *testing.T) {
	for _, kind := range []imaptest.Kind{imaptest.KindDovecot, imaptest.KindCyrus} {
		for _, twice := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/twice=%v", kind.Name, twice), func(t *testing.T) {
				srv := imaptest.SharedOf(t, kind)
				user, pw := srv.NewUser(t)
				msgs := imaptest.Generate("left", 3)
				c := srv.Dial(t, user, pw)
				imaptest.Append(t, c, "INBOX", []imaptest.Message{msgs[0], msgs[0], msgs[1]})
				sel, err := c.Select("INBOX", nil).Wait()
				if err != nil {
					t.Fatal(err)
				}
				digest := func(i int) string { return fmt.Sprintf("%064d", i) }
				// The journal knows the second copy of message 0 and message 1.
				j := &mapJournal{m: map[string]map[uint32]string{}}
				all := imaptest.Fetch(t, c, "INBOX")
				j.Record("INBOX", sel.UIDValidity, uint32(all[1].UID), digest(0))
				j.Record("INBOX", sel.UIDValidity, uint32(all[2].UID), digest(1))
				o := &Options{Host: srv.Host, Port: srv.Port, User: user, Password: pw, TLS: TLSStartTLS, RootCAs: srv.RootCAs, Connections: 2}
				sink, err := NewSink(t.Context(), o, &SinkOptions{Journal: j})
				if err != nil {
					t.Fatal(err)
				}
				if err := sink.Folder(t.Context(), archive.Folder{Path: "INBOX"}); err != nil {
					t.Fatal(err)
				}
				put := []int{0, 1, 2}
				if twice {
					put = []int{0, 0, 1, 2}
				}
				for _, i := range put {
					m := msgs[i]
					err := sink.Put(t.Context(), &archive.Message{Folder: "INBOX", SourceID: fmt.Sprint(i), InternalDate: m.Date, Size: int64(len(m.Body)),
						Body: bytes.NewReader(m.Body), Digest: digest(i)})
					if err != nil {
						t.Fatal(err)
					}
				}
				if err := sink.Close(); err != nil {
					t.Fatal(err)
				}
				if rep := sink.Report(); rep.Appended != 1 || rep.Present != int64(len(put)-1) {
					t.Errorf("report %+v, want 1 appended, %d present", rep, len(put)-1)
				}
				got := imaptest.Fetch(t, c, "INBOX")
				count := map[string]int{}
				for _, m := range got {
					count[string(mailform.CRLF(m.Body))]++
				}
				for i, m := range msgs {
					want := 1
					if i == 0 && twice {
						want = 2
					}
					if n := count[string(mailform.CRLF(m.Body))]; n != want {
						t.Errorf("message %d is there %d times, want %d", i, n, want)
					}
				}
				// The journal names a copy that is there.
				recorded, _ := j.Load("INBOX", sel.UIDValidity)
				have := map[uint32]bool{}
				for _, m := range got {
					have[uint32(m.UID)] = true
				}
				n := 0
				for uid, d := range recorded {
					if d == digest(0) && have[uid] {
						n++
					}
				}
				if want := map[bool]int{false: 1, true: 2}[twice]; n != want {
					t.Errorf("the journal names %d copies of message 0 that are there, want %d (%v)", n, want, recorded)
				}
			})
		}
	}
}
