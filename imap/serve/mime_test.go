package serve

import (
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// parseWire returns the structure of a message given with LF line ends,
// put on the wire (CRLF).
func parseWire(msg string) *part {
	p := newMIMEParser()
	p.Write([]byte(strings.ReplaceAll(msg, "\n", "\r\n")))
	return p.finish()
}

// TestStructureLines: a body's lines are its line ends; a last line
// without one (the end of the message, or a part's whose line end belongs
// to the next boundary) does not count, as Dovecot counts them.
func TestStructureLines(t *testing.T) {
	tests := []struct {
		name, msg string
		path      []int
		want      int64
	}{
		{"ends with a line end", "Subject: a\n\none\ntwo\n", nil, 2},
		{"no final line end", "Subject: a\n\none\ntwo", nil, 1},
		{"empty body", "Subject: a\n\n", nil, 0},
		{"part before a boundary", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\ntwo\n--b--\n", []int{1}, 1},
		{"part with an empty last line", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n\n--b--\n", []int{1}, 1},
	}
	for _, tt := range tests {
		e := resolve(parseWire(tt.msg), tt.path)
		if e == nil {
			t.Fatalf("%s: part %v not found", tt.name, tt.path)
		}
		if e.lines != tt.want {
			t.Errorf("%s: lines = %d, want %d", tt.name, e.lines, tt.want)
		}
	}
}

// TestStructureCharset: a text part without a charset says us-ascii
// (RFC 2046 section 4.1.2); other types get none.
func TestStructureCharset(t *testing.T) {
	tests := []struct {
		ct   string
		want map[string]string
	}{
		{"", map[string]string{"charset": "us-ascii"}},
		{"Content-Type: text/plain\n", map[string]string{"charset": "us-ascii"}},
		{"Content-Type: text/x-patch; name=a.patch\n", map[string]string{"charset": "us-ascii", "name": "a.patch"}},
		{"Content-Type: text/html; charset=UTF-8\n", map[string]string{"charset": "UTF-8"}},
		{"Content-Type: application/pdf\n", nil},
	}
	for _, tt := range tests {
		bs := parseWire(tt.ct + "\nbody\n").bodyStructure(false).(*goimap.BodyStructureSinglePart)
		if len(bs.Params) != len(tt.want) {
			t.Errorf("%q: params = %v, want %v", tt.ct, bs.Params, tt.want)
			continue
		}
		for k, v := range tt.want {
			if bs.Params[k] != v {
				t.Errorf("%q: params = %v, want %v", tt.ct, bs.Params, tt.want)
			}
		}
	}
}

// TestStructureMalformed: multiparts that break RFC 2046 get the
// structure Dovecot gives them, each part at the right bytes.
func TestStructureMalformed(t *testing.T) {
	tests := []struct {
		name, msg string
		// want lists the parts: section, then its header and body.
		want [][3]string
	}{
		{
			// RFC 2046 5.1.1: a line that starts with the boundary
			// after "--" is a delimiter, whatever follows.
			"delimiter with more after the boundary",
			"Content-Type: multipart/mixed; boundary=a\n\n--ab\nContent-Type: text/plain\n\none\n--a--\n",
			[][3]string{{"1", "Content-Type: text/plain\r\n\r\n", "one"}},
		},
		{
			// "--ab" starts with both boundaries: the longest wins.
			"boundary that is a prefix of another",
			"Content-Type: multipart/mixed; boundary=ab\n\n--ab\nContent-Type: multipart/mixed; boundary=a\n\n--ab\n\ntwo\n--ab--\n",
			[][3]string{{"1", "Content-Type: multipart/mixed; boundary=a\r\n", ""}, {"1.1", "", ""}, {"2", "\r\n", "two"}},
		},
		{
			// Boundaries of 81 and 80 characters: cut to 80, they are
			// one, and the inner multipart takes the line.
			"boundaries longer than 80 characters",
			"Content-Type: multipart/mixed; boundary=" + strings.Repeat("b", 81) + "\n\n--" + strings.Repeat("b", 81) + "\n" +
				"Content-Type: multipart/mixed; boundary=" + strings.Repeat("b", 80) + "\n\n--" + strings.Repeat("b", 80) + "\n\none\n--" +
				strings.Repeat("b", 81) + "\n\ntwo\n",
			[][3]string{{"1.1", "\r\n", "one"}, {"1.2", "\r\n", "two\r\n"}, {"1", "Content-Type: multipart/mixed; boundary=" + strings.Repeat("b", 80) + "\r\n\r\n",
				"--" + strings.Repeat("b", 80) + "\r\n\r\none\r\n--" + strings.Repeat("b", 81) + "\r\n\r\ntwo\r\n"}},
		},
		{
			"empty boundary",
			"Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nbody\n----\n",
			[][3]string{{"1", "\r\n", "body"}},
		},
		{
			"closing delimiter with more after it",
			"Content-Type: multipart/mixed; boundary=a\n\n--a\n\none\n--a--x\nepilogue\n",
			[][3]string{{"1", "\r\n", "one"}},
		},
		{
			// No delimiter at all: one empty part, as RFC 3501's
			// grammar has a multipart hold at least one.
			"multipart without parts",
			"Content-Type: multipart/mixed; boundary=ab\n\nbody\n",
			[][3]string{{"1", "", ""}},
		},
		{
			// The empty line before the delimiter is the delimiter's
			// line end: the part's header has no empty line.
			"header ended by the delimiter's line end",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n--b\n\n--b--\n",
			[][3]string{{"1", "Content-Type: text/plain\r\n", ""}, {"2", "", ""}},
		},
		{
			// So is a message/rfc822 part's, and the message it holds
			// (found by a fuzzer) is empty, at the end of the part, not
			// past it.
			"message part ended by the delimiter's line end",
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n--b\n\ntwo\n--b--\n",
			[][3]string{{"1", "Content-Type: message/rfc822\r\n", ""}, {"1.1", "", ""}, {"2", "\r\n", "two"}},
		},
		{
			// A part opened by a delimiter whose line end the next
			// delimiter takes (found by a fuzzer): empty, and inside
			// the part that holds it.
			"part between a delimiter and the next without a line",
			"Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: multipart/mixed; boundary=b\n\n--b\n--a--\n",
			[][3]string{{"1", "Content-Type: multipart/mixed; boundary=b\r\n\r\n", "--b"}, {"1.1", "", ""}},
		},
		{
			// A Content-Type line longer than the parser keeps of a
			// body line, its boundary last: still read.
			"boundary after 100 KB on one header line",
			"Content-Type: multipart/mixed; x=" + strings.Repeat("a", 100<<10) + "; boundary=l\n\n--l\n\nin l\n--l--\n",
			[][3]string{{"1", "\r\n", "in l"}},
		},
	}
	for _, tt := range tests {
		wire := strings.ReplaceAll(tt.msg, "\n", "\r\n")
		root := parseWire(tt.msg)
		checkParts(t, root, int64(len(wire)), 0)
		top := 0
		for _, w := range tt.want {
			if !strings.Contains(w[0], ".") {
				top++
			}
		}
		mp, ok := root.bodyStructure(false).(*goimap.BodyStructureMultiPart)
		if !ok || len(mp.Children) != top {
			t.Errorf("%s: BODYSTRUCTURE = %#v, want a multipart of %d", tt.name, root.bodyStructure(false), top)
			continue
		}
		for _, w := range tt.want {
			var path []int
			for _, c := range strings.Split(w[0], ".") {
				path = append(path, int(c[0]-'0'))
			}
			e := resolve(root, path)
			if e == nil {
				t.Errorf("%s: part %s not found", tt.name, w[0])
				continue
			}
			if h, b := wire[e.start:e.bodyStart], wire[e.bodyStart:e.end]; h != w[1] || b != w[2] {
				t.Errorf("%s: part %s = header %q, body %q; want %q, %q", tt.name, w[0], h, b, w[1], w[2])
			}
		}
	}
}

// TestHeaderFieldsNUL: a NUL in a header field is 0x80 in what ENVELOPE
// and BODYSTRUCTURE are made of, as in BODY[]: no IMAP string carries NUL.
func TestHeaderFieldsNUL(t *testing.T) {
	fs := headerFields([]byte("Subject: a\x00b\r\nContent-Type: text/plain; charset=\"x\x00\"\r\n"))
	if got := get(fs, "Subject"); got != "a\x80b" {
		t.Errorf("Subject = %q, want %q", got, "a\x80b")
	}
	p := parseWire("Content-Type: text/plain; charset=\"x\x00\"\nContent-ID: <\x00@x>\n\nbody\n")
	if p.params["charset"] != "x\x80" || p.id != "<\x80@x>" {
		t.Errorf("charset %q, id %q; want NUL as 0x80", p.params["charset"], p.id)
	}
}

// TestParseParams: one parameter that breaks RFC 2045 costs itself
// alone; quoted pairs are unescaped; RFC 2231 parameters stay as written.
func TestParseParams(t *testing.T) {
	tests := []struct {
		in    string
		value string
		want  map[string]string
	}{
		{"text/plain", "text/plain", nil},
		{`Text/Plain; Charset="UTF-8"`, "text/plain", map[string]string{"charset": "UTF-8"}},
		{"multipart/mixed; boundary=----=_Part_1_2.3", "multipart/mixed", map[string]string{"boundary": "----=_Part_1_2.3"}},
		{`multipart/mixed; boundary="1"; comment; x=y`, "multipart/mixed", map[string]string{"boundary": "1", "x": "y"}},
		{`multipart/mixed; boundary="a;b"; boundary=c`, "multipart/mixed", map[string]string{"boundary": "a;b"}},
		{`attachment; filename="C:\TEMP\a.png"`, "attachment", map[string]string{"filename": "C:TEMPa.png"}},
		{`attachment; filename*=iso-8859-1''Fr%F6sche.txt`, "attachment", map[string]string{"filename*": "iso-8859-1''Fr%F6sche.txt"}},
		{"multipart/alternative; boundary=1N0DHcvl ", "multipart/alternative", map[string]string{"boundary": "1N0DHcvl"}},
		{"application/pdf; name*0*=utf-8''long%20na; name*1*=me.pdf", "application/pdf", map[string]string{"name*": "utf-8''long%20name.pdf"}},
		{"application/pdf; name*1=b.pdf; name*0=a", "application/pdf", map[string]string{"name": "ab.pdf"}},
		{"application/pdf; name*0=a; name*2=c", "application/pdf", map[string]string{"name*0": "a", "name*2": "c"}},
		{`text/plain; charset=""`, "text/plain", map[string]string{"charset": ""}},
		{`message/external-body; access-type=mail-server   server="a@example.org"`, "message/external-body", map[string]string{"access-type": "mail-server"}},
	}
	for _, tt := range tests {
		v, p := parseParams(tt.in)
		if v != tt.value || !maps.Equal(p, tt.want) {
			t.Errorf("parseParams(%q) = %q, %v; want %q, %v", tt.in, v, p, tt.value, tt.want)
		}
	}
}

// TestFetchNUL: a BODY[] literal cannot carry NUL (RFC 3501 section 9,
// CHAR8): it is sent as 0x80, as Dovecot sends it, small or large
// message, whole or in parts; BINARY[] (a literal8) sends the NUL itself.
func TestFetchNUL(t *testing.T) {
	small := "Subject: nul\n\nbefore\x00after\n"
	large := "Subject: nul\n\n" + strings.Repeat("0123456789abcdef\x00\n", smallMessage/16)
	s := newMemStore()
	s.addUser("alice", "secret").add(MailboxInfo{Name: "INBOX"}, 1, small, large)
	c := login(t, startServer(t, s), "alice", "secret")
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	for uid, raw := range map[goimap.UID]string{1: small, 2: large} {
		want := strings.ReplaceAll(crlf(raw), "\x00", "\x80")
		secs := []*goimap.FetchItemBodySection{
			{Peek: true},
			{Peek: true, Specifier: goimap.PartSpecifierText},
			{Peek: true, Part: []int{1}, Partial: &goimap.SectionPartial{Offset: 3, Size: 40}},
		}
		bin := &goimap.FetchItemBinarySection{Peek: true, Part: []int{1}}
		m := fetchOne(t, c, uid, &goimap.FetchOptions{BodySection: secs, BinarySection: []*goimap.FetchItemBinarySection{bin}})
		body := want[strings.Index(want, "\r\n\r\n")+4:]
		for sec, w := range map[*goimap.FetchItemBodySection]string{secs[0]: want, secs[1]: body, secs[2]: body[3:min(len(body), 43)]} {
			if got := string(m.FindBodySection(sec)); got != w {
				t.Errorf("uid %d: BODY[%v %s] = %q..., want %q...", uid, sec.Part, sec.Specifier, got[:min(len(got), 30)], w[:min(len(w), 30)])
			}
		}
		if got, w := string(m.FindBinarySection(bin)), strings.ReplaceAll(body, "\x80", "\x00"); got != w {
			t.Errorf("uid %d: BINARY[1] = %q..., want %q...", uid, got[:min(len(got), 30)], w[:min(len(w), 30)])
		}
	}
}

// TestFilterHeader: HEADER.FIELDS ends with the header's empty line, and
// has none when the header has none (RFC 3501 section 6.4.5).
func TestFilterHeader(t *testing.T) {
	tests := []struct {
		h     string
		names []string
		not   bool
		want  string
	}{
		{"Subject: a\r\nTo: b\r\n  c\r\n\r\n", []string{"to"}, false, "To: b\r\n  c\r\n\r\n"},
		{"Subject: a\r\nTo: b\r\n\r\n", []string{"to"}, true, "Subject: a\r\n\r\n"},
		{"Subject: a\r\nTo: b\r\n", []string{"subject"}, false, "Subject: a\r\n"},
		{"Subject: a\r\nTo: b", []string{"to"}, false, "To: b"},
		{"", []string{"subject"}, false, ""},
	}
	for _, tt := range tests {
		if got := string(filterHeader([]byte(tt.h), tt.names, tt.not)); got != tt.want {
			t.Errorf("filterHeader(%q, %v, %v) = %q, want %q", tt.h, tt.names, tt.not, got, tt.want)
		}
	}
}

// TestFetchMessageGlobal: message/global shows the message it holds to an
// IMAP4rev2 session (RFC 9051), and is a single part to IMAP4rev1, whose
// grammar (RFC 3501) has that form for message/rfc822 alone.
func TestFetchMessageGlobal(t *testing.T) {
	msg := "Subject: g\nContent-Type: multipart/mixed; boundary=g\n\n--g\nContent-Type: message/global\n\nSubject: inner\n\nhi\n--g--\n"
	s := newMemStore()
	s.addUser("alice", "secret").add(MailboxInfo{Name: "INBOX"}, 1, msg)
	addr := startServer(t, s)

	// IMAP4rev1, over a bare connection: go-imap's client reads
	// message/global as IMAP4rev2 has it.
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(conn, "a LOGIN alice secret\r\nb EXAMINE INBOX\r\nc UID FETCH 1 (BODYSTRUCTURE)\r\nd LOGOUT\r\n")
	all, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if want := `("message" "global" NIL NIL NIL "7bit" 20 NIL NIL NIL NIL)`; !strings.Contains(string(all), want) {
		t.Errorf("IMAP4rev1 BODYSTRUCTURE: %q, want %s in it", all, want)
	}

	c := login(t, addr, "alice", "secret")
	if _, err := c.Enable(goimap.CapIMAP4rev2).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, c, 1, &goimap.FetchOptions{BodyStructure: &goimap.FetchItemBodyStructure{Extended: true}})
	mp, ok := m.BodyStructure.(*goimap.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 1 {
		t.Fatalf("IMAP4rev2 BODYSTRUCTURE = %#v", m.BodyStructure)
	}
	if g := mp.Children[0].(*goimap.BodyStructureSinglePart); g.MessageRFC822 == nil || g.MessageRFC822.Envelope.Subject != "inner" {
		t.Errorf("IMAP4rev2: message/global part = %+v, want its message", g)
	}
}

// TestFetchDeep: a message nested deeper than the parser follows is
// served whole: every part at sane offsets, no response cut (a part past
// the limit was never closed and its section cut the connection).
func TestFetchDeep(t *testing.T) {
	var deep strings.Builder
	deep.WriteString("Subject: deep\n")
	for i := range maxDepth + 20 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=d%d\n\n--d%[1]d\n", i)
	}
	deep.WriteString("Content-Type: text/plain\n\nbottom\n")
	for i := maxDepth + 19; i >= 0; i-- {
		fmt.Fprintf(&deep, "--d%d--\n", i)
	}
	s := newMemStore()
	s.addUser("alice", "secret").add(MailboxInfo{Name: "INBOX"}, 1, deep.String())
	c := login(t, startServer(t, s), "alice", "secret")
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	var secs []*goimap.FetchItemBodySection
	for depth := 1; depth <= maxDepth+20; depth += 7 {
		path := make([]int, depth)
		for i := range path {
			path[i] = 1
		}
		secs = append(secs, &goimap.FetchItemBodySection{Peek: true, Part: path}, &goimap.FetchItemBodySection{Peek: true, Part: path, Specifier: goimap.PartSpecifierMIME})
	}
	m := fetchOne(t, c, 1, &goimap.FetchOptions{BodyStructure: &goimap.FetchItemBodyStructure{Extended: true}, BodySection: secs})
	if len(m.BodySection) != len(secs) {
		t.Errorf("%d sections in the answer, want %d", len(m.BodySection), len(secs))
	}
}
