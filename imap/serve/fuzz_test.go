package serve

import (
	"bytes"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// maxFuzzed is the largest message FuzzServeMessage serves.
const maxFuzzed = 1 << 20

// recordingConn keeps a copy of every byte read from the connection.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	got bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) received() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.got.Bytes())
}

// FuzzServeMessage serves an arbitrary stored message and fetches what
// clients fetch of it: BODY[] is its wire form byte for byte (each NUL as
// 0x80), RFC822.SIZE its length, HEADER and TEXT split it where its
// structure's header ends, a partial fetch is its window, BINARY[] is the
// wire form with NUL kept and BINARY[1] as long as BINARY.SIZE[1] says,
// every part of its structure lies inside it, SEARCH agrees with what was
// fetched (searchSubject), and nothing else the server sends (ENVELOPE and
// BODYSTRUCTURE made of whatever the header holds included) has a NUL
// byte, which no IMAP string or literal of RFC 3501 may carry.
func FuzzServeMessage(f *testing.F) {
	f.Add([]byte(plainMsg), uint16(3), uint16(40))
	f.Add([]byte(multipartMsg), uint16(100), uint16(7))
	f.Add([]byte("Subject: a\x00b\nFrom: \"x\x00\" <a@b\x00c>\nTo: undisclosed-recipients:;\n\nbody\x00\r\rline\n"), uint16(0), uint16(9))
	f.Add([]byte("Subject: no body, no empty line"), uint16(1), uint16(1))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nempty boundary\n----\n"), uint16(5), uint16(500))
	f.Add([]byte("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: in digest\n\nx\n--d\nContent-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=d2\n\n--d2\nContent-Type: text/plain; charset*0*=utf-8''a; charset*1=b\n\n\xc3\xa9\n--d2--\n--d--\n"), uint16(50), uint16(50))
	f.Add([]byte("Subject: =?utf-8?b?w6k=?= =?x?q?bad?=\nFrom: (comment) <@route,@r2:a@b> , group: c@d, \"q\\\"uote\" <e@f>;\nDate: 31 Feb 2024 99:99:99 +9999\nContent-Type: text/plain; name*=utf-8'en'%E2%82%AC\nContent-Disposition: ; filename=\"x\\\"y\"\nContent-Transfer-Encoding: 8 bit\n\n\xff\xfe\n"), uint16(2), uint16(60000))
	f.Add([]byte("From: a@b\r\nContent-Type: message/global\r\n\r\nSubject: \xe2\x82\xac\r\n\r\ninner"), uint16(30), uint16(30))
	// Our generated mail, and the MIME torture tests of other projects'
	// parsers in the shared corpus where it is there.
	for _, dir := range []string{"../../testdata/mail/maildir", "../../../shared/corpus/mime-edge"} {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, ".md") {
				return nil
			}
			if b, err := os.ReadFile(path); err == nil && len(b) <= maxFuzzed {
				f.Add(b, uint16(len(b)/3), uint16(len(b)/2))
			}
			return nil
		})
	}
	f.Fuzz(func(t *testing.T, msg []byte, off, n uint16) {
		if len(msg) > maxFuzzed {
			return
		}
		s := newMemStore()
		s.addUser("alice", "secret").add(MailboxInfo{Name: "INBOX"}, 1, string(msg))
		ln := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
		serveOn(t, s, ln)
		wire := []byte(crlf(string(msg)))
		root := structureIn(wire, len(wire))

		whole := &goimap.FetchItemBodySection{Peek: true}
		header := &goimap.FetchItemBodySection{Peek: true, Specifier: goimap.PartSpecifierHeader}
		text := &goimap.FetchItemBodySection{Peek: true, Specifier: goimap.PartSpecifierText}
		window := &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: int64(off), Size: int64(n)}}
		structure := &goimap.FetchItemBodyStructure{Extended: true}
		opts := &goimap.FetchOptions{
			RFC822Size: true, Envelope: true,
			BodySection: []*goimap.FetchItemBodySection{whole, header, text},
		}
		if !hasGlobal(root) {
			// imapclient reads message/global as RFC 9051 has it in
			// IMAP4rev1 too, where it is a basic part (RFC 3501):
			// fetched in the IMAP4rev2 session below.
			opts.BodyStructure = structure
		}
		m := fetchFuzzed(t, ln, false, opts, searchSubject)
		sent := bytes.ReplaceAll(wire, []byte{0}, []byte{0x80})
		if got := m.FindBodySection(whole); !bytes.Equal(got, sent) {
			t.Fatalf("BODY[] = %q, want %q", got, sent)
		}
		if m.RFC822Size != int64(len(wire)) {
			t.Errorf("RFC822.SIZE = %d, want %d", m.RFC822Size, len(wire))
		}
		h, b := m.FindBodySection(header), m.FindBodySection(text)
		if !bytes.HasPrefix(sent, h) || !bytes.HasSuffix(sent, b) || len(h)+len(b) > len(sent) {
			t.Errorf("HEADER %q and TEXT %q do not split BODY[] %q", h, b, sent)
		}
		if bytes.Contains(sent, []byte("\r\n\r\n")) && len(h)+len(b) != len(sent) {
			t.Errorf("HEADER (%d bytes) and TEXT (%d bytes) are not BODY[] (%d bytes)", len(h), len(b), len(sent))
		}
		if int64(len(h)) != root.bodyStart {
			t.Errorf("HEADER is %d bytes, the structure's header %d", len(h), root.bodyStart)
		}
		if m.Envelope == nil || opts.BodyStructure != nil && m.BodyStructure == nil {
			t.Errorf("no ENVELOPE (%v) or BODYSTRUCTURE (%v)", m.Envelope, m.BodyStructure)
		}

		// An IMAP4rev2 session: the window (the imapclient keeps one body
		// of each section), and the structure in RFC 9051's form.
		m2 := fetchFuzzed(t, ln, true, &goimap.FetchOptions{
			Envelope: true, BodyStructure: structure, BodySection: []*goimap.FetchItemBodySection{window},
		}, nil)
		w := sent[min(len(sent), int(off)):]
		w = w[:min(len(w), int(n))]
		if got := m2.FindBodySection(window); !bytes.Equal(got, w) {
			t.Errorf("BODY[]<%d.%d> = %q, want %q", off, n, got, w)
		}
		if m2.Envelope == nil || m2.BodyStructure == nil {
			t.Errorf("IMAP4rev2: no ENVELOPE (%v) or BODYSTRUCTURE (%v)", m2.Envelope, m2.BodyStructure)
		}

		// BINARY (literal8, NUL and all): the whole message is its wire
		// form, and part 1 is as long as BINARY.SIZE says.
		binWhole := &goimap.FetchItemBinarySection{Peek: true}
		binOpts := &goimap.FetchOptions{BinarySection: []*goimap.FetchItemBinarySection{binWhole}}
		one := &goimap.FetchItemBinarySection{Part: []int{1}, Peek: true}
		if e := resolve(root, []int{1}); e != nil {
			if _, known := decoder(nil, e.encoding); known {
				binOpts.BinarySection = append(binOpts.BinarySection, one)
				binOpts.BinarySectionSize = []*goimap.FetchItemBinarySectionSize{{Part: []int{1}}}
			}
		}
		m3 := fetchFuzzed(t, ln, false, binOpts, nil)
		if got := m3.FindBinarySection(binWhole); !bytes.Equal(got, wire) {
			t.Errorf("BINARY[] = %q, want %q", got, wire)
		}
		if len(binOpts.BinarySectionSize) > 0 {
			size, _ := m3.FindBinarySectionSize([]int{1})
			if got := m3.FindBinarySection(one); int64(len(got)) != int64(size) {
				t.Errorf("BINARY[1] is %d bytes, BINARY.SIZE[1] says %d", len(got), size)
			}
		}

		checkParts(t, root, int64(len(wire)), 0)
		for _, piece := range []int{1, 2, 7, blockSize} {
			if got := structureIn(wire, piece); !reflect.DeepEqual(got, root) {
				t.Fatalf("written in pieces of %d bytes, the structure is\n%#v\nnot\n%#v", piece, got, root)
			}
		}
	})
}

// pipeListener gives a server the far ends of in-memory connections:
// thousands of TCP connections a second, each left in TIME_WAIT, would
// use up the ephemeral ports.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "pipe"} }

// dial returns the near end of a connection to the listener.
func (l *pipeListener) dial() (net.Conn, error) {
	near, far := net.Pipe()
	select {
	case l.conns <- far:
		return near, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// fetchFuzzed logs in to the server of ln (enabling IMAP4rev2 if rev2), fetches
// message 1 of INBOX with opts, calls then (if not nil) with the
// session and what it fetched, logs out and checks that no byte the
// server sent was NUL (unless opts asks for BINARY, whose literal8 may
// carry NUL).
func fetchFuzzed(t *testing.T, ln *pipeListener, rev2 bool, opts *goimap.FetchOptions, then func(*testing.T, *imapclient.Client, *imapclient.FetchMessageBuffer)) *imapclient.FetchMessageBuffer {
	t.Helper()
	conn, err := ln.dial()
	if err != nil {
		t.Fatal(err)
	}
	rc := &recordingConn{Conn: conn}
	c := imapclient.New(rc, nil)
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if rev2 {
		if _, err := c.Enable(goimap.CapIMAP4rev2).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(goimap.UIDSetNum(1), opts).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH (IMAP4rev2 %v) = %d messages, %v", rev2, len(msgs), err)
	}
	if then != nil {
		then(t, c, msgs[0])
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	if r := rc.received(); len(opts.BinarySection) == 0 && bytes.IndexByte(r, 0) >= 0 {
		i := bytes.IndexByte(r, 0)
		t.Errorf("the server sent a NUL: %q", r[max(0, i-60):min(len(r), i+20)])
	}
	return msgs[0]
}

// subjectWord finds a word of ASCII letters and digits in a subject.
var subjectWord = regexp.MustCompile(`[A-Za-z0-9]{3,}`)

// searchSubject checks that SEARCH agrees with FETCH: a word of the
// subject ENVELOPE gave (one without encoded words, which clients and
// servers may decode differently) is found by SUBJECT and TEXT, and NOT
// SUBJECT finds nothing; the last word of a plain text body is found by
// BODY.
func searchSubject(t *testing.T, c *imapclient.Client, m *imapclient.FetchMessageBuffer) {
	if m.Envelope == nil || strings.Contains(m.Envelope.Subject, "=?") {
		return
	}
	if word := subjectWord.FindString(m.Envelope.Subject); word != "" {
		searchWord(t, c, word, m.Envelope.Subject)
	}
	// A word of a text/plain message's body, not encoded, in a charset
	// every server reads.
	bs, ok := m.BodyStructure.(*goimap.BodyStructureSinglePart)
	if !ok || bs.Type != "text" || bs.Subtype != "plain" || bs.Encoding != "" && bs.Encoding != "7bit" && bs.Encoding != "8bit" {
		return
	}
	if cs := strings.ToLower(bs.Params["charset"]); cs != "us-ascii" && cs != "utf-8" {
		return
	}
	text := m.FindBodySection(&goimap.FetchItemBodySection{Specifier: goimap.PartSpecifierText})
	if words := subjectWord.FindAll(text, -1); len(words) > 0 {
		word := string(words[len(words)-1])
		data, err := c.UIDSearch(&goimap.SearchCriteria{Body: []string{strings.ToUpper(word)}}, nil).Wait()
		if err != nil {
			t.Fatalf("UID SEARCH BODY %q: %v", word, err)
		}
		if got := len(data.AllUIDs()); got != 1 {
			t.Errorf("UID SEARCH BODY %q (of the text %q) found %d messages, want 1", word, text, got)
		}
	}
}

// searchWord checks that SUBJECT and TEXT find a word of the subject, and
// NOT SUBJECT does not.
func searchWord(t *testing.T, c *imapclient.Client, word, subj string) {
	subject := goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: strings.ToUpper(word)}}}
	for name, tc := range map[string]struct {
		criteria *goimap.SearchCriteria
		want     int
	}{
		"SUBJECT":     {&subject, 1},
		"TEXT":        {&goimap.SearchCriteria{Text: []string{word}}, 1},
		"NOT SUBJECT": {&goimap.SearchCriteria{Not: []goimap.SearchCriteria{subject}}, 0},
	} {
		data, err := c.UIDSearch(tc.criteria, nil).Wait()
		if err != nil {
			t.Fatalf("UID SEARCH %s %q: %v", name, word, err)
		}
		if got := len(data.AllUIDs()); got != tc.want {
			t.Errorf("UID SEARCH %s %q (the subject %q) found %d messages, want %d", name, word, subj, got, tc.want)
		}
	}
}

// hasGlobal reports whether a structure holds a message/global part.
func hasGlobal(p *part) bool {
	if p.typ == "message" && p.subtype == "global" {
		return true
	}
	for _, c := range p.children {
		if hasGlobal(c) {
			return true
		}
	}
	return p.message != nil && hasGlobal(p.message)
}

// structureIn parses a wire form written in pieces of the given size.
func structureIn(wire []byte, piece int) *part {
	p := newMIMEParser()
	for len(wire) > 0 {
		k := min(len(wire), max(piece, 1))
		p.Write(wire[:k])
		wire = wire[k:]
	}
	return p.finish()
}

// checkParts checks that p and the parts inside it lie in order within
// [p.start, limit) of a message of size bytes.
func checkParts(t *testing.T, p *part, limit int64, depth int) {
	t.Helper()
	if depth > 2*maxDepth+2 {
		t.Fatalf("structure nested %d deep", depth)
	}
	if p.start < 0 || p.start > p.bodyStart || p.bodyStart > p.end || p.end > limit {
		t.Fatalf("part at %d, body %d-%d, outside the %d bytes it may use", p.start, p.bodyStart, p.end, limit)
	}
	if p.lines < 0 || p.lines > p.end-p.bodyStart+1 {
		t.Fatalf("part of %d bytes has %d lines", p.end-p.bodyStart, p.lines)
	}
	if strings.ContainsAny(p.typ+p.subtype, " \x00\r\n") {
		t.Fatalf("type %q/%q", p.typ, p.subtype)
	}
	last := p.bodyStart
	for _, c := range p.children {
		if c.start < last {
			t.Fatalf("part at %d overlaps the one before, which ends at %d", c.start, last)
		}
		checkParts(t, c, p.end, depth+1)
		last = c.end
	}
	if p.message != nil {
		if p.message.start < p.bodyStart {
			t.Fatalf("encapsulated message at %d, before its part's body at %d", p.message.start, p.bodyStart)
		}
		checkParts(t, p.message, p.end, depth+1)
	}
}
