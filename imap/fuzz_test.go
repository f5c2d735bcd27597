package imap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/mailform"
)

// FuzzParseTagged parses arbitrary lines as a tagged answer and as the end
// of a line that may announce a literal: what parses is well formed, and
// APPENDUID sets and literal announcements made from numbers read back as
// those numbers.
func FuzzParseTagged(f *testing.F) {
	f.Add("P1 OK done\r\n", uint32(38505), []byte{1, 2, 3})
	f.Add("P2 ok [APPENDUID 38505 3955:3957,4000] APPEND completed\r\n", uint32(1), []byte{})
	f.Add("P3 NO [OVERQUOTA] Quota exceeded\r\n", uint32(0), []byte{255, 255, 255, 255})
	f.Add("* 1 FETCH (BODY[] {12}\r\n", uint32(7), []byte{0, 0, 0, 1})
	f.Add("* LIST () \"/\" ~{5+}\r\n", uint32(9), []byte{9, 9})
	f.Add("A1 OK [APPENDUID 1 1:999999] y", uint32(2), []byte{1})
	f.Fuzz(func(t *testing.T, line string, validity uint32, raw []byte) {
		if n, ok := literalAtEnd(line); ok {
			l := strings.TrimRight(line, "\r\n")
			if n < 0 || !strings.HasSuffix(l, "}") || !strings.Contains(l, "{") {
				t.Fatalf("literalAtEnd(%q) = %d, true", line, n)
			}
		}
		if tag, ans, err := parseTagged(line); err == nil {
			if tag == "" || strings.ContainsAny(tag, " ") {
				t.Fatalf("parseTagged(%q): tag %q", line, tag)
			}
			if ans.status != "OK" && ans.status != "NO" && ans.status != "BAD" {
				t.Fatalf("parseTagged(%q): status %q", line, ans.status)
			}
			if len(ans.uids) > 200000 {
				t.Fatalf("parseTagged(%q): %d UIDs", line, len(ans.uids))
			}
			for _, u := range ans.uids {
				if u == 0 {
					t.Fatalf("parseTagged(%q): UID 0", line)
				}
			}
		}

		// A set made of UIDs, with ranges for runs, reads back as them.
		var uids []uint32
		for i := 0; i+4 <= len(raw) && len(uids) < 1000; i += 4 {
			u := uint32(raw[i])<<24 | uint32(raw[i+1])<<16 | uint32(raw[i+2])<<8 | uint32(raw[i+3])
			if u == 0 {
				u = 1
			}
			uids = append(uids, u)
		}
		if len(uids) > 0 {
			var set []string
			for i := 0; i < len(uids); {
				j := i
				for j+1 < len(uids) && uids[j] < 1<<32-1 && uids[j+1] == uids[j]+1 {
					j++
				}
				if j > i {
					set = append(set, fmt.Sprintf("%d:%d", uids[i], uids[j]))
				} else {
					set = append(set, strconv.FormatUint(uint64(uids[i]), 10))
				}
				i = j + 1
			}
			l := "P9 OK [APPENDUID " + strconv.FormatUint(uint64(validity), 10) + " " + strings.Join(set, ",") + "] done\r\n"
			_, ans, err := parseTagged(l)
			if err != nil || ans.uidValidity != validity || !reflect.DeepEqual(ans.uids, uids) {
				t.Fatalf("parseTagged(%q) = %d %v, %v; want %d %v", l, ans.uidValidity, ans.uids, err, validity, uids)
			}
		}
		n := int64(len(raw)) * int64(validity)
		for _, ann := range []string{"{%d}\r\n", "~{%d}\n", "{%d+}\r\n"} {
			l := line + fmt.Sprintf(ann, n)
			if got, ok := literalAtEnd(l); !ok || got != n {
				t.Fatalf("literalAtEnd(%q) = %d, %v; want %d", l, got, ok, n)
			}
		}
	})
}

// scriptConn is a connection whose peer says script and ignores what is
// written to it.
type scriptConn struct{ r io.Reader }

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// scriptedFetcher is a fetcher on a connection whose server says script.
func scriptedFetcher(script []byte) *fetcher {
	c := &scriptConn{r: bytes.NewReader(script)}
	return &fetcher{a: &appender{raw: c, nc: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriter(c)}}
}

// FuzzFetchResponse feeds arbitrary server output to the FETCH command
// of planb's own connection, and to the appender's reader: both end (the
// input does), every message the fetcher reports has flags without
// spaces, and a message body sent as a literal, a literal8 or a quoted
// string gets the fingerprint of its bytes.
func FuzzFetchResponse(f *testing.F) {
	f.Add([]byte("* 1 FETCH (UID 5 FLAGS (\\Seen $Kw \\Recent) RFC822.SIZE 12 BODY[] {12}\r\nSubject: x\r\n)\r\nP1 OK done\r\n"), []byte("Subject: a\r\n\r\nbody\r\n"))
	f.Add([]byte("* 2 FETCH (BODY[] ~{3}\r\na\x00b UID 7 INTERNALDATE \"01-Jan-2026 00:00:00 +0000\" X (a (b {2}\r\nxy) \"q\\\"\"))\r\n* 3 EXISTS\r\nP1 OK done\r\n"), []byte("x"))
	f.Add([]byte("* 3 FETCH (UID 8 BODY[] NIL)\r\n* OK [ALERT] {4}\r\nabcd\r\nP1 NO [SERVERBUG] no\r\n"), []byte{})
	f.Add([]byte("* 4 FETCH (UID 9 BODY[HEADER.FIELDS (DATE)] \"x\" BODY[] \"quoted\\\\body\")\r\n* BYE gone\r\n"), []byte("From: \"q\" <q@x>\n\nbare LF\n"))
	f.Add([]byte("+ go on\r\nP1 BAD what\r\n"), []byte("\x00"))
	f.Fuzz(func(t *testing.T, script, body []byte) {
		fe := scriptedFetcher(script)
		err := fe.command("UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])", func(p *itemParser) error {
			m, err := p.message()
			if err != nil {
				return err
			}
			for _, fl := range m.Flags {
				if fl == "" || strings.ContainsAny(fl, " \r\n") {
					t.Fatalf("flag %q", fl)
				}
			}
			return nil
		})
		if err == nil && !bytes.Contains(bytes.ToUpper(script), []byte("P1 OK")) {
			t.Fatalf("command ended without its tagged answer in %q", script)
		}
		// The appender's reader, as during setup: lines with their
		// literals skipped, continuation requests, untagged answers.
		ans, err := scriptedFetcher(script).a.await("P1", func(string) error { return nil })
		if err == nil && (ans == nil || !bytes.Contains(script, []byte("P1 "))) {
			t.Fatalf("await(P1) = %+v without its tagged answer in %q", ans, script)
		}

		want, err := mailform.Fingerprint(bytes.NewReader(body))
		if err != nil {
			return
		}
		forms := []string{
			fmt.Sprintf("{%d}\r\n%s", len(body), body),
			fmt.Sprintf("~{%d}\r\n%s", len(body), body),
		}
		if imapQuotable(body) {
			forms = append(forms, imapQuote(body))
		}
		for _, form := range forms {
			script := "* 1 FETCH (FLAGS (\\Seen) BODY[] " + form + " UID 4)\r\nP1 OK done\r\n"
			var got []TargetMessage
			err := scriptedFetcher([]byte(script)).command("UID FETCH 4 (BODY.PEEK[])", func(p *itemParser) error {
				m, err := p.message()
				got = append(got, m)
				return err
			})
			if err != nil || len(got) != 1 || got[0].UID != 4 || got[0].Print == nil {
				t.Fatalf("fetch of %q = %+v, %v", script, got, err)
			}
			if !reflect.DeepEqual(got[0].Print, want) {
				t.Fatalf("fetch of %q: fingerprint %+v, want %+v", script, got[0].Print, want)
			}
		}
	})
}

// imapQuotable reports whether b can travel as an IMAP quoted string.
func imapQuotable(b []byte) bool {
	return !bytes.ContainsAny(b, "\r\n\x00")
}

// imapQuote returns b as an IMAP quoted string.
func imapQuote(b []byte) string {
	var s strings.Builder
	s.WriteByte('"')
	for _, c := range b {
		if c == '"' || c == '\\' {
			s.WriteByte('\\')
		}
		s.WriteByte(c)
	}
	s.WriteByte('"')
	return s.String()
}
