package imap

import (
	"bytes"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/mailform"
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
