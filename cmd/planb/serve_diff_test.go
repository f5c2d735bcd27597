package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"

	"codeberg.org/planb/planb/archive/mutf7"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestServeDovecotDiff serves the same Maildir (testdata's sample mail
// and, when ../shared/corpus is there, the corpus: interopMaildir) from a
// Dovecot that reads the files itself and from `planb serve` of a backup
// of it, pairs the messages of both by their BODY[] bytes, and compares
// what the two answer for each: RFC822.SIZE, BODY[], BODY[HEADER],
// BODY[TEXT], ENVELOPE, the extended BODYSTRUCTURE and, for every part
// the structure lists, BODY[part], BODY[part.MIME], BODY[part.HEADER] and
// BODY[part.TEXT] of a message/rfc822 part, BINARY.SIZE[part] and
// BINARY[part] of a leaf, and partial fetches (BINARY's over a bare
// connection: go-imap's client reads none); then what SEARCH finds
// (compareSearches).
//
// Dovecot is the reference. Where it departs from the RFCs, a narrow
// exception says so where it applies, with the RFC, and logs each case:
//   - a bare CR, which Dovecot sends as it is (crlfCR);
//   - the subject and names Dovecot sends "for humans", and the addresses
//     it marks SYNTAX_ERROR (normEnvelopes);
//   - the line end before a delimiter that Dovecot counts in a part
//     holding a multipart, and the type "" it gives a Content-Type it
//     cannot parse (compareMessage);
//   - HEADER.FIELDS of a header without its empty line, to which Dovecot
//     adds one, or which it reads past its part's end (compareMessage);
//   - BINARY[] that Dovecot refuses (PARSE, another part's UNKNOWN-CTE)
//     or answers by closing the connection, and its BINARY.SIZE that is
//     not the size of its own BINARY[] (compareMessage).
func TestServeDovecotDiff(t *testing.T) {
	dovecot := imaptest.Shared(t)
	maildir, n := interopMaildir(t)
	n += writeEdgeCases(t, maildir)
	user, password := dovecot.NewUser(t)
	dovecot.LoadMaildir(t, user, maildir)

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "repo-pw")
	if err := os.WriteFile(pwFile, []byte("diff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repoFlags := []string{"--repo", filepath.Join(dir, "repo"), "--password-file", pwFile}
	if code, _, stderr := runPlanb(t, append(repoFlags, "init")...); code != 0 {
		t.Fatalf("init = %d: %s", code, stderr)
	}
	if code, _, stderr := runPlanb(t, append(repoFlags, "--quiet", "backup", "maildir", "--path", maildir)...); code != 0 {
		t.Fatalf("backup maildir = %d: %s", code, stderr)
	}
	s := startServe(t, repoFlags, "--users", writeUsers(t, login{"alice", "alice-secret", []string{"*"}}))

	start := time.Now()
	d := newDiffSide(t, "dovecot", fmt.Sprintf("%s:%d", dovecot.Host, dovecot.Port), user, password)
	p := newDiffSide(t, "planb", s.addr, "alice", "alice-secret")
	dmsgs := d.messages(t)
	pmsgs := p.messages(t)
	if len(dmsgs) != n {
		t.Errorf("Dovecot serves %d messages, want the %d of the Maildir", len(dmsgs), n)
	}
	if len(pmsgs) != n {
		t.Errorf("planb serves %d messages, want the %d of the Maildir", len(pmsgs), n)
	}

	// Pair the messages by their bytes.
	byHash := map[[32]byte][]diffMsg{}
	for _, m := range pmsgs {
		byHash[m.hash] = append(byHash[m.hash], m)
	}
	var pairs [][2]diffMsg
	var unpaired []diffMsg
	for _, m := range dmsgs {
		if c := byHash[m.hash]; len(c) > 0 {
			pairs = append(pairs, [2]diffMsg{m, c[0]})
			byHash[m.hash] = c[1:]
			continue
		}
		unpaired = append(unpaired, m)
	}
	var left []diffMsg
	for _, c := range byHash {
		left = append(left, c...)
	}
	// A message that Dovecot sends unlike planb (bareCR) pairs by the
	// bytes planb would send.
	for _, m := range unpaired {
		k := slices.IndexFunc(left, func(l diffMsg) bool { return m.bareCR && l.hash == m.crlfHash })
		if k < 0 {
			t.Errorf("dovecot %s uid %d (%d bytes): no message of planb serve has its bytes", m.mailbox, m.uid, m.size)
			continue
		}
		t.Logf("dovecot %s uid %d: paired with planb %s uid %d: a bare CR, which planb sends as CRLF", m.mailbox, m.uid, left[k].mailbox, left[k].uid)
		pairs = append(pairs, [2]diffMsg{m, left[k]})
		left = slices.Delete(left, k, k+1)
	}
	for _, m := range left {
		t.Errorf("planb %s uid %d (%d bytes): no message of Dovecot has its bytes", m.mailbox, m.uid, m.size)
	}
	slices.SortFunc(pairs, func(a, b [2]diffMsg) int {
		return strings.Compare(a[0].mailbox+"\x00"+a[1].mailbox, b[0].mailbox+"\x00"+b[1].mailbox)
	})

	differ := 0
	for _, pr := range pairs {
		diffs := compareMessage(t, d, p, pr[0], pr[1])
		if len(diffs) > 0 {
			differ++
			t.Errorf("dovecot %s uid %d, planb %s uid %d:\n\t%s", pr[0].mailbox, pr[0].uid, pr[1].mailbox, pr[1].uid, strings.Join(diffs, "\n\t"))
		}
	}
	t.Logf("%d messages compared (%d of the Maildir), %d differ, in %s", len(pairs), n, differ, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	compareSearches(t, d, p, dmsgs, pmsgs)
	t.Logf("searches compared in %s", time.Since(start).Round(time.Millisecond))
}

// diffSide is one of the two servers.
type diffSide struct {
	name, addr, user, password string

	c        *imapclient.Client
	selected string
	raw      *rawIMAP // for what go-imap's client cannot read
}

func newDiffSide(t *testing.T, name, addr, user, password string) *diffSide {
	s := &diffSide{name: name, addr: addr, user: user, password: password}
	s.dial(t)
	return s
}

// dial connects (again) and logs in.
func (s *diffSide) dial(t *testing.T) {
	t.Helper()
	opts := &imapclient.Options{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}
	c, err := imapclient.DialInsecure(s.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(s.user, s.password).Wait(); err != nil {
		t.Fatalf("login %s: %v", s.name, err)
	}
	s.c, s.selected = c, ""
	s.raw = dialRaw(t, s.addr, s.user, s.password)
}

// errDropped is a fetch that the server answered by closing the
// connection.
var errDropped = errors.New("connection closed by the server")

// rawIMAP is a bare connection for the fetches whose answers go-imap's
// client does not parse (BINARY[part]<offset>).
type rawIMAP struct {
	conn     net.Conn
	r        *bufio.Reader
	tag      int
	selected string
}

func dialRaw(t *testing.T, addr, user, password string) *rawIMAP {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawIMAP{conn: conn, r: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.r.ReadString('\n'); err != nil {
		t.Fatalf("greeting of %s: %v", addr, err)
	}
	if _, status := c.cmd(t, "LOGIN "+quote(user)+" "+quote(password)); !strings.HasPrefix(status, "OK") {
		t.Fatalf("login %s: %s", addr, status)
	}
	return c
}

// cmd sends a command and returns the literals of its answer and its
// status ("OK ...", "NO ...").
func (c *rawIMAP) cmd(t *testing.T, line string) (lits [][]byte, status string) {
	t.Helper()
	c.tag++
	tag := fmt.Sprintf("r%d ", c.tag)
	c.conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c.conn, tag+line+"\r\n"); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if strings.HasPrefix(l, tag) {
			return lits, strings.TrimSpace(strings.TrimPrefix(l, tag))
		}
		for strings.HasSuffix(l, "}\r\n") {
			i := strings.LastIndexByte(l, '{')
			if i < 0 {
				t.Fatalf("%s: bad literal in %q", line, l)
			}
			n, err := strconv.Atoi(strings.TrimSuffix(l[i+1:len(l)-3], "+"))
			if err != nil || n < 0 || n > 64<<20 {
				t.Fatalf("%s: bad literal in %q", line, l)
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(c.r, b); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			lits = append(lits, b)
			if l, err = c.r.ReadString('\n'); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		}
	}
}

// fetchLiteral fetches one item of a message whose answer is a literal.
func (c *rawIMAP) fetchLiteral(t *testing.T, m diffMsg, item string) ([]byte, string) {
	t.Helper()
	if c.selected != m.mailbox {
		if _, status := c.cmd(t, "EXAMINE "+quote(mutf7.Encode(m.mailbox))); !strings.HasPrefix(status, "OK") {
			t.Fatalf("examine %s: %s", m.mailbox, status)
		}
		c.selected = m.mailbox
	}
	lits, status := c.cmd(t, fmt.Sprintf("UID FETCH %d (%s)", m.uid, item))
	if !strings.HasPrefix(status, "OK") || len(lits) != 1 {
		return nil, status
	}
	return lits[0], ""
}

// diffMsg is a message as one server serves it.
type diffMsg struct {
	mailbox string
	uid     goimap.UID
	size    int
	hash    [32]byte
	// bareCR: the message, as Dovecot sends it, has a CR without its LF;
	// crlfHash is the hash of its bytes with them made CRLF (crlfCR).
	bareCR   bool
	crlfHash [32]byte
}

// selectMailbox selects a mailbox read-only, unless it is selected, and
// returns its number of messages (0 when it was selected).
func (s *diffSide) selectMailbox(t *testing.T, name string) uint32 {
	t.Helper()
	if s.selected == name {
		return 0
	}
	data, err := s.c.Select(name, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("%s: examine %q: %v", s.name, name, err)
	}
	s.selected = name
	return data.NumMessages
}

// messages lists every message of every mailbox with the hash of its
// BODY[].
func (s *diffSide) messages(t *testing.T) []diffMsg {
	t.Helper()
	mboxes, err := s.c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("%s: list: %v", s.name, err)
	}
	var out []diffMsg
	for _, mb := range mboxes {
		if slices.Contains(mb.Attrs, goimap.MailboxAttrNoSelect) || slices.Contains(mb.Attrs, goimap.MailboxAttrNonExistent) {
			continue
		}
		s.selected = ""
		if s.selectMailbox(t, mb.Mailbox) == 0 {
			continue
		}
		sec := &goimap.FetchItemBodySection{Peek: true}
		all := goimap.SeqSet{{Start: 1, Stop: 0}}
		msgs, err := s.c.Fetch(all, &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{sec}}).Collect()
		if err != nil {
			t.Fatalf("%s: fetch %s: %v", s.name, mb.Mailbox, err)
		}
		for _, m := range msgs {
			b := m.FindBodySection(sec)
			dm := diffMsg{mailbox: mb.Mailbox, uid: m.UID, size: len(b), hash: sha256.Sum256(b)}
			if c := crlfCR(b); len(c) != len(b) {
				dm.bareCR, dm.crlfHash = true, sha256.Sum256(c)
			}
			out = append(out, dm)
		}
	}
	return out
}

// crlfCR returns b with every CR that no LF follows made CRLF.
//
// The one exception to byte-for-byte equality: Dovecot sends a bare CR of
// a stored message as it is, planb serve as CRLF (imap/serve's wire
// form). RFC 5322 section 2.3 lets CR occur only in CRLF, and RFC 3501
// section 2.2 has IMAP's lines end with CRLF. Such a message pairs by
// its bytes with bare CRs made CRLF, and its sections compare that way;
// what counts bytes (sizes, lines, partial windows) is left out for it.
func crlfCR(b []byte) []byte {
	if !bytes.Contains(b, []byte("\r")) {
		return b
	}
	var out []byte
	for i, c := range b {
		out = append(out, c)
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			out = append(out, '\n')
		}
	}
	return out
}

// fetch fetches one message's items.
func (s *diffSide) fetch(t *testing.T, m diffMsg, opts *goimap.FetchOptions) (*imapclient.FetchMessageBuffer, error) {
	t.Helper()
	s.selectMailbox(t, m.mailbox)
	msgs, err := s.c.Fetch(goimap.UIDSetNum(m.uid), opts).Collect()
	if err != nil {
		var ie *goimap.Error
		if errors.As(err, &ie) {
			return nil, err
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("%s: fetch %s uid %d: %v", s.name, m.mailbox, m.uid, err)
		}
		s.c.Close()
		s.dial(t)
		return nil, errDropped
	}
	if len(msgs) != 1 {
		t.Fatalf("%s: fetch %s uid %d: %d messages in the answer", s.name, m.mailbox, m.uid, len(msgs))
	}
	return msgs[0], nil
}

// diffPart is a part of a message's structure: its section part numbers,
// whether it is a message/rfc822 one, and whether it is a leaf.
type diffPart struct {
	path     []int
	message  bool
	leaf     bool
	size     uint32
	encoding string
}

// partsOf lists the parts of a BODYSTRUCTURE as RFC 3501 section 6.4.5
// numbers them: the parts of a multipart, and the body of an
// encapsulated message (its parts, or part 1 when it has one body).
func partsOf(bs goimap.BodyStructure) []diffPart {
	var out []diffPart
	var walk func(bs goimap.BodyStructure, path []int)
	walk = func(bs goimap.BodyStructure, path []int) {
		switch bs := bs.(type) {
		case *goimap.BodyStructureMultiPart:
			if len(path) > 0 {
				out = append(out, diffPart{path: path})
			}
			for i, c := range bs.Children {
				walk(c, append(slices.Clip(path), i+1))
			}
		case *goimap.BodyStructureSinglePart:
			if len(path) == 0 {
				path = []int{1}
			}
			if m := bs.MessageRFC822; m != nil && m.BodyStructure != nil {
				out = append(out, diffPart{path: path, message: true, size: bs.Size})
				if _, multi := m.BodyStructure.(*goimap.BodyStructureMultiPart); multi {
					walk(m.BodyStructure, path)
				} else {
					walk(m.BodyStructure, append(slices.Clip(path), 1))
				}
				return
			}
			out = append(out, diffPart{path: path, leaf: true, size: bs.Size, encoding: strings.ToLower(bs.Encoding)})
		}
	}
	walk(bs, nil)
	return out
}

func partName(path []int) string {
	s := make([]string, len(path))
	for i, k := range path {
		s[i] = fmt.Sprint(k)
	}
	return strings.Join(s, ".")
}

// partial returns a window of a section of n bytes: from its middle,
// across the end when it is short.
func partial(n int) *goimap.SectionPartial {
	return &goimap.SectionPartial{Offset: int64(n / 2), Size: 37}
}

// compareMessage compares what both servers answer about one message and
// returns the differences.
func compareMessage(t *testing.T, d, p *diffSide, dm, pm diffMsg) []string {
	t.Helper()
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	whole := []*goimap.FetchItemBodySection{
		{Peek: true, Specifier: goimap.PartSpecifierHeader},
		{Peek: true, Specifier: goimap.PartSpecifierText},
		{Peek: true, Partial: partial(dm.size)},
		{Peek: true, Partial: &goimap.SectionPartial{Offset: int64(dm.size) + 5, Size: 10}},
		{Peek: true, Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"From", "Subject", "Content-Type", "X-Nonexistent"}},
		{Peek: true, Specifier: goimap.PartSpecifierHeader, HeaderFieldsNot: []string{"Received", "Subject", "To"}},
	}
	opts := &goimap.FetchOptions{
		RFC822Size: true, Envelope: true,
		BodyStructure: &goimap.FetchItemBodyStructure{Extended: true},
		BodySection:   whole,
	}
	dr, derr := d.fetch(t, dm, opts)
	pr, perr := p.fetch(t, pm, opts)
	if derr != nil || perr != nil {
		add("FETCH %s: dovecot %v, planb %v", fetchNames(opts), derr, perr)
		return diffs
	}
	logf := func(format string, args ...any) {
		t.Logf("dovecot %s uid %d: "+format, append([]any{dm.mailbox, dm.uid}, args...)...)
	}
	// Dovecot's bytes as planb sends them (crlfCR), and whether what
	// counts bytes compares.
	bare := dm.bareCR
	dbytes := func(b []byte) []byte {
		if bare {
			return crlfCR(b)
		}
		return b
	}
	if wantSize := dr.RFC822Size; bare && pr.RFC822Size != int64(pm.size) || !bare && pr.RFC822Size != wantSize {
		add("RFC822.SIZE: dovecot %d, planb %d (BODY[] %d bytes)", dr.RFC822Size, pr.RFC822Size, pm.size)
	}
	dhdr := dr.FindBodySection(whole[0])
	for _, sec := range whole {
		db, pb := dbytes(dr.FindBodySection(sec)), pr.FindBodySection(sec)
		if noBlankLine(dhdr) && isFields(sec) && bytes.Equal(db, append(slices.Clip(pb), "\r\n"...)) {
			// A header without its empty line (a message without a
			// body): Dovecot ends HEADER.FIELDS with an empty line all
			// the same, RFC 3501 section 6.4.5 has none then ("except
			// in the case of a message which has no body and no blank
			// line"), nor does Dovecot's own BODY[HEADER].
			logf("BODY[%s] with an empty line the header does not have", sectionName(sec))
			continue
		}
		if !bare || sec.Partial == nil {
			diffBytes(add, "BODY["+sectionName(sec)+"]", db, pb)
		}
	}
	if de, pe := normEnvelopes(logf, dr.Envelope, pr.Envelope); !reflect.DeepEqual(de, pe) {
		add("ENVELOPE:\n\t\tdovecot %s\n\t\tplanb   %s", asJSON(de), asJSON(pe))
	}
	dbs, pbs := dr.BodyStructure, pr.BodyStructure

	// Every part of Dovecot's structure, BODY items in one command.
	parts := partsOf(dbs)
	var secs []*goimap.FetchItemBodySection
	for _, pt := range parts {
		secs = append(secs,
			&goimap.FetchItemBodySection{Peek: true, Part: pt.path},
			&goimap.FetchItemBodySection{Peek: true, Part: pt.path, Specifier: goimap.PartSpecifierMIME},
			&goimap.FetchItemBodySection{Peek: true, Part: pt.path, Partial: partial(int(pt.size))})
		if pt.message {
			secs = append(secs,
				&goimap.FetchItemBodySection{Peek: true, Part: pt.path, Specifier: goimap.PartSpecifierHeader},
				&goimap.FetchItemBodySection{Peek: true, Part: pt.path, Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject", "Content-Type"}},
				&goimap.FetchItemBodySection{Peek: true, Part: pt.path, Specifier: goimap.PartSpecifierText})
		}
	}
	opts = &goimap.FetchOptions{BodySection: secs}
	partBody := map[string][]byte{} // Dovecot's BODY[part], by partName
	dr, derr = d.fetch(t, dm, opts)
	pr, perr = p.fetch(t, pm, opts)
	if derr != nil || perr != nil {
		add("FETCH %s: dovecot %v, planb %v", fetchNames(opts), derr, perr)
	} else {
		// Dovecot ends a part that holds a multipart (a multipart, a
		// message/rfc822 part) after the line end that comes before
		// the next delimiter of the enclosing multipart; RFC 2046
		// section 5.1.1 makes that line end the delimiter's. Such a
		// part is compared without it, and its size and lines in
		// BODYSTRUCTURE too.
		for _, pt := range parts {
			partBody[partName(pt.path)] = dbytes(dr.FindBodySection(&goimap.FetchItemBodySection{Peek: true, Part: pt.path}))
		}
		extraCRLF := map[string]bool{}
		for _, pt := range parts {
			sec := &goimap.FetchItemBodySection{Peek: true, Part: pt.path}
			db, pb := dbytes(dr.FindBodySection(sec)), pr.FindBodySection(sec)
			if !pt.leaf && len(db) == len(pb)+2 && bytes.HasPrefix(db, pb) && bytes.HasSuffix(db, []byte("\r\n")) {
				extraCRLF[partName(pt.path)] = true
			}
		}
		for _, sec := range secs {
			if bare && sec.Partial != nil {
				continue
			}
			db, pb := dbytes(dr.FindBodySection(sec)), pr.FindBodySection(sec)
			if extraCRLF[partName(sec.Part)] && (sec.Specifier == goimap.PartSpecifierNone || sec.Specifier == goimap.PartSpecifierText) {
				whole := &goimap.FetchItemBodySection{Peek: true, Part: sec.Part, Specifier: sec.Specifier}
				full := dbytes(dr.FindBodySection(whole))
				full = full[:max(0, len(full)-2)]
				if sec.Partial != nil {
					full = full[min(int64(len(full)), sec.Partial.Offset):]
					full = full[:min(int64(len(full)), sec.Partial.Size)]
				}
				db = full
			}
			if isFields(sec) && noBlankLine(dr.FindBodySection(&goimap.FetchItemBodySection{Peek: true, Part: sec.Part, Specifier: goimap.PartSpecifierHeader})) && bytes.HasPrefix(db, pb) {
				// The header of an encapsulated message without its
				// empty line ends where the part ends (RFC 2046 section
				// 5.1.1); Dovecot's HEADER.FIELDS reads on past it,
				// into the fields of the next part.
				logf("BODY[%s] read past the part's end", sectionName(sec))
				continue
			}
			diffBytes(add, "BODY["+sectionName(sec)+"]"+partialName(sec.Partial), db, pb)
		}
		for path := range extraCRLF {
			t.Logf("dovecot %s uid %d: part %s ends after the line end of the next delimiter", dm.mailbox, dm.uid, path)
		}
		dbs = mapSingleParts(dbs, nil, func(path []int, sp *goimap.BodyStructureSinglePart) {
			if extraCRLF[partName(path)] && sp.MessageRFC822 != nil {
				sp.Size -= 2
				m := *sp.MessageRFC822
				m.NumLines--
				sp.MessageRFC822 = &m
			}
			// Dovecot sends a Content-Type it cannot parse ("BINARY",
			// "text") as type "" and subtype "", which no client can
			// use; RFC 2045 section 5.2 recommends text/plain in
			// US-ASCII then, as planb sends it.
			if sp.Type == "" || sp.Subtype == "" {
				body := dr.FindBodySection(&goimap.FetchItemBodySection{Peek: true, Part: path})
				t.Logf("dovecot %s uid %d: part %s has type %q/%q", dm.mailbox, dm.uid, partName(path), sp.Type, sp.Subtype)
				sp.Type, sp.Subtype, sp.Params = "text", "plain", map[string]string{"charset": "us-ascii"}
				sp.Text = &goimap.BodyStructureText{NumLines: int64(bytes.Count(body, []byte("\n")))}
			}
		})
	}
	if bare {
		noSizes := func(_ []int, sp *goimap.BodyStructureSinglePart) {
			sp.Size = 0
			if sp.Text != nil {
				sp.Text = &goimap.BodyStructureText{}
			}
			if m := sp.MessageRFC822; m != nil {
				mc := *m
				mc.NumLines = 0
				sp.MessageRFC822 = &mc
			}
		}
		dbs, pbs = mapSingleParts(dbs, nil, noSizes), mapSingleParts(pbs, nil, noSizes)
	}
	if dn, pn := normBodyStructure(dbs), normBodyStructure(pbs); !reflect.DeepEqual(dn, pn) {
		add("BODYSTRUCTURE:\n\t\tdovecot %s\n\t\tplanb   %s", asJSON(dn), asJSON(pn))
	}

	// BINARY of every leaf, one command each: one that is refused
	// (UNKNOWN-CTE) refuses the command.
	for _, pt := range parts {
		if !pt.leaf {
			continue
		}
		bins := []*goimap.FetchItemBinarySection{{Peek: true, Part: pt.path}}
		opts := &goimap.FetchOptions{BinarySection: bins, BinarySectionSize: []*goimap.FetchItemBinarySectionSize{{Part: pt.path}}}
		dr, derr := d.fetch(t, dm, opts)
		pr, perr := p.fetch(t, pm, opts)
		if errors.Is(derr, errDropped) && perr == nil {
			// Dovecot drops the connection when a part does not
			// decode (a quoted-printable "=" without two hex digits).
			// RFC 3516 has NO [UNKNOWN-CTE] only for an unknown
			// encoding; planb decodes leniently, as RFC 2045 section
			// 6.7 advises, and must say what it decoded.
			if ps, _ := pr.FindBinarySectionSize(pt.path); int(ps) != len(pr.FindBinarySection(bins[0])) {
				add("BINARY.SIZE[%s]: planb %d, its BINARY[%s] %d bytes", partName(pt.path), ps, partName(pt.path), len(pr.FindBinarySection(bins[0])))
			}
			t.Logf("dovecot %s uid %d: Dovecot drops the connection on BINARY[%s]", dm.mailbox, dm.uid, partName(pt.path))
			continue
		}
		if perr == nil && (code(derr) == "PARSE" || code(derr) == goimap.ResponseCodeUnknownCTE && knownCTE(pt.encoding)) {
			// Dovecot refuses BINARY of a part with [PARSE] when some
			// part of the message does not decode, and with
			// [UNKNOWN-CTE] when another part's encoding is unknown.
			// RFC 3516 section 4.2 has UNKNOWN-CTE for the section's
			// own encoding only, and none for content that does not
			// decode (planb decodes it leniently, RFC 2045 section
			// 6.7). planb's answer must hold together.
			if ps, _ := pr.FindBinarySectionSize(pt.path); int(ps) != len(pr.FindBinarySection(bins[0])) {
				add("BINARY.SIZE[%s]: planb %d, its BINARY[%s] %d bytes", partName(pt.path), ps, partName(pt.path), len(pr.FindBinarySection(bins[0])))
			}
			// A part that needs no decoding is its body all the same.
			if pt.encoding == "7bit" || pt.encoding == "8bit" || pt.encoding == "binary" {
				diffBytes(add, "BINARY["+partName(pt.path)+"]", partBody[partName(pt.path)], pr.FindBinarySection(bins[0]))
			}
			logf("Dovecot refuses BINARY[%s] (%s): %v", partName(pt.path), pt.encoding, derr)
			continue
		}
		if derr != nil || perr != nil {
			if code(derr) != code(perr) || derr == nil || perr == nil {
				add("BINARY[%s]: dovecot %v, planb %v", partName(pt.path), derr, perr)
			}
			continue
		}
		for _, sec := range bins {
			diffBytes(add, "BINARY["+partName(sec.Part)+"]"+partialName(sec.Partial), dbytes(dr.FindBinarySection(sec)), pr.FindBinarySection(sec))
		}
		ds, _ := dr.FindBinarySectionSize(pt.path)
		ps, _ := pr.FindBinarySectionSize(pt.path)
		db, pb := dbytes(dr.FindBinarySection(bins[0])), pr.FindBinarySection(bins[0])
		if int(ps) != len(pb) {
			add("BINARY.SIZE[%s]: planb %d, its BINARY[%s] %d bytes", partName(pt.path), ps, partName(pt.path), len(pb))
		}
		// Dovecot's BINARY.SIZE of a part of a Maildir file with LF line
		// ends counts the decoded bytes before it turns LF into CRLF: it
		// is not the size of its own BINARY[part], which RFC 3516
		// section 4.2 says it is. Then planb's must be that size.
		if int(ds) != len(db) && bytes.Equal(db, pb) || bare {
			if !bare {
				logf("BINARY.SIZE[%s] %d, its BINARY[%s] %d bytes", partName(pt.path), ds, partName(pt.path), len(db))
			}
			ds = uint32(len(db))
		}
		if ds != ps {
			add("BINARY.SIZE[%s]: dovecot %d, planb %d (BINARY[%s]: dovecot %d bytes, planb %d)", partName(pt.path), ds, ps, partName(pt.path), len(dr.FindBinarySection(bins[0])), len(pr.FindBinarySection(bins[0])))
		}
		if bare {
			continue
		}
		// go-imap's client reads no BINARY[part]<offset>.
		w := partial(int(ds))
		item := fmt.Sprintf("BINARY.PEEK[%s]<%d.%d>", partName(pt.path), w.Offset, w.Size)
		db, dst := d.raw.fetchLiteral(t, dm, item)
		pb, pst := p.raw.fetchLiteral(t, pm, item)
		if dst != "" || pst != "" {
			add("%s: dovecot %q, planb %q", item, dst, pst)
			continue
		}
		diffBytes(add, item, db, pb)
	}
	return diffs
}

// isFields reports whether a section is HEADER.FIELDS or
// HEADER.FIELDS.NOT.
func isFields(sec *goimap.FetchItemBodySection) bool {
	return len(sec.HeaderFields)+len(sec.HeaderFieldsNot) > 0
}

// noBlankLine reports whether a header, as BODY[HEADER] gives it, lacks
// the empty line that ends a header.
func noBlankLine(h []byte) bool {
	return !bytes.HasSuffix(h, []byte("\r\n\r\n")) && string(h) != "\r\n"
}

// knownCTE reports whether a transfer encoding is one of RFC 2045.
func knownCTE(cte string) bool {
	return slices.Contains([]string{"7bit", "8bit", "binary", "base64", "quoted-printable"}, cte)
}

// mapSingleParts returns a copy of a body structure in which f has
// changed each single part (a copy), given its path (RFC 3501 section
// 6.4.5, as partsOf numbers them).
func mapSingleParts(bs goimap.BodyStructure, path []int, f func([]int, *goimap.BodyStructureSinglePart)) goimap.BodyStructure {
	switch bs := bs.(type) {
	case *goimap.BodyStructureMultiPart:
		c := *bs
		c.Children = nil
		for i, ch := range bs.Children {
			c.Children = append(c.Children, mapSingleParts(ch, append(slices.Clip(path), i+1), f))
		}
		return &c
	case *goimap.BodyStructureSinglePart:
		if len(path) == 0 {
			path = []int{1}
		}
		c := *bs
		if m := bs.MessageRFC822; m != nil {
			mc := *m
			if _, multi := m.BodyStructure.(*goimap.BodyStructureMultiPart); multi {
				mc.BodyStructure = mapSingleParts(m.BodyStructure, path, f)
			} else {
				mc.BodyStructure = mapSingleParts(m.BodyStructure, append(slices.Clip(path), 1), f)
			}
			c.MessageRFC822 = &mc
		}
		f(path, &c)
		return &c
	}
	return bs
}

// code returns the response code of an IMAP error.
func code(err error) goimap.ResponseCode {
	var ie *goimap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

// diffBytes adds a difference of two sections' bytes.
func diffBytes(add func(string, ...any), name string, d, p []byte) {
	if bytes.Equal(d, p) {
		return
	}
	i := 0
	for i < len(d) && i < len(p) && d[i] == p[i] {
		i++
	}
	add("%s: dovecot %d bytes, planb %d, first difference at %d: dovecot %q, planb %q", name, len(d), len(p), i, excerpt(d, i), excerpt(p, i))
}

func excerpt(b []byte, i int) []byte {
	return b[max(0, i-20):min(len(b), i+20)]
}

func sectionName(sec *goimap.FetchItemBodySection) string {
	s := partName(sec.Part)
	spec := string(sec.Specifier)
	if len(sec.HeaderFields) > 0 {
		spec += ".FIELDS (" + strings.Join(sec.HeaderFields, " ") + ")"
	}
	if len(sec.HeaderFieldsNot) > 0 {
		spec += ".FIELDS.NOT (" + strings.Join(sec.HeaderFieldsNot, " ") + ")"
	}
	if s != "" && spec != "" {
		return s + "." + spec
	}
	return s + spec
}

func partialName(p *goimap.SectionPartial) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf("<%d.%d>", p.Offset, p.Size)
}

func fetchNames(opts *goimap.FetchOptions) string {
	var s []string
	for _, sec := range opts.BodySection {
		s = append(s, "BODY["+sectionName(sec)+"]"+partialName(sec.Partial))
	}
	return "(" + strings.Join(s, " ") + ")"
}

// normEnvelopes returns Dovecot's and planb's envelopes with what RFC 3501
// leaves to the server made alike: the date as an instant (a client
// parses it). And two exceptions:
//   - Dovecot sends the subject and the names "for humans": a run of
//     spaces and tabs as one space, none at either end. RFC 3501 section
//     7.4.2 has the field's value unfolded, which RFC 5322 section 2.2.3
//     does by removing CRLFs alone. So they compare that way.
//   - An address list in which Dovecot marks an address SYNTAX_ERROR (its
//     host for what it cannot parse, as "f.'x"@..."; RFC 3501 has no such
//     marker) is not compared: planb reads such an address its own way.
func normEnvelopes(logf func(string, ...any), d, p *goimap.Envelope) (*goimap.Envelope, *goimap.Envelope) {
	if d == nil || p == nil {
		return d, p
	}
	dc, pc := normEnvelope(d), normEnvelope(p)
	dl := []*[]goimap.Address{&dc.From, &dc.Sender, &dc.ReplyTo, &dc.To, &dc.Cc, &dc.Bcc}
	pl := []*[]goimap.Address{&pc.From, &pc.Sender, &pc.ReplyTo, &pc.To, &pc.Cc, &pc.Bcc}
	for i := range dl {
		if slices.ContainsFunc(*dl[i], func(a goimap.Address) bool { return a.Host == "SYNTAX_ERROR" }) {
			logf("an address list with SYNTAX_ERROR, not compared")
			*dl[i], *pl[i] = nil, nil
			continue
		}
		for j := range min(len(*dl[i]), len(*pl[i])) {
			d, p := &(*dl[i])[j], (*pl[i])[j]
			if undecodedName(d.Name, p.Name) {
				logf("name %q: Dovecot sends an encoded word the client cannot decode (8-bit bytes, UTF-7), planb %q", d.Name, p.Name)
				d.Name = p.Name
			}
		}
	}
	return dc, pc
}

// undecodedName reports whether d, a name Dovecot sent, holds encoded
// words that go-imap's client left as written (raw 8-bit bytes, which
// Dovecot sends as U+FFFD, or UTF-7) and p, planb's, is d with those
// words decoded. planb decodes them as mail readers do, then go-imap's
// server writes the name as UTF-8 encoded words that any client reads.
func undecodedName(d, p string) bool {
	pieces := refWord.Split(d, -1)
	if len(pieces) < 2 || refWord.MatchString(p) {
		return false
	}
	for k, piece := range pieces {
		pieces[k] = regexp.QuoteMeta(strings.TrimSpace(piece))
	}
	return regexp.MustCompile(`^\s*` + strings.Join(pieces, `.+?`) + `\s*$`).MatchString(p)
}

func normEnvelope(e *goimap.Envelope) *goimap.Envelope {
	if e == nil {
		return nil
	}
	c := *e
	c.Date = c.Date.UTC()
	c.Subject = forHumans(c.Subject)
	for _, l := range []*[]goimap.Address{&c.From, &c.Sender, &c.ReplyTo, &c.To, &c.Cc, &c.Bcc} {
		*l = slices.Clone(*l)
		for i := range *l {
			(*l)[i].Name = forHumans((*l)[i].Name)
		}
	}
	return &c
}

var whitespaceRun = regexp.MustCompile(`[ \t]+`)

func forHumans(s string) string { return strings.TrimSpace(whitespaceRun.ReplaceAllString(s, " ")) }

// normBodyStructure returns a copy of a body structure with the strings
// RFC 2045 makes case-insensitive (type, subtype, transfer encoding,
// disposition type) in lower case.
func normBodyStructure(bs goimap.BodyStructure) goimap.BodyStructure {
	switch bs := bs.(type) {
	case *goimap.BodyStructureSinglePart:
		c := *bs
		c.Type, c.Subtype, c.Encoding = strings.ToLower(c.Type), strings.ToLower(c.Subtype), strings.ToLower(c.Encoding)
		if c.Extended != nil {
			ext := *c.Extended
			ext.Disposition = normDisposition(ext.Disposition)
			c.Extended = &ext
		}
		if m := c.MessageRFC822; m != nil {
			mc := *m
			mc.Envelope = normEnvelope(mc.Envelope)
			mc.BodyStructure = normBodyStructure(mc.BodyStructure)
			c.MessageRFC822 = &mc
		}
		return &c
	case *goimap.BodyStructureMultiPart:
		c := *bs
		c.Subtype = strings.ToLower(c.Subtype)
		c.Children = nil
		for _, ch := range bs.Children {
			c.Children = append(c.Children, normBodyStructure(ch))
		}
		if c.Extended != nil {
			ext := *c.Extended
			ext.Disposition = normDisposition(ext.Disposition)
			c.Extended = &ext
		}
		return &c
	}
	return bs
}

func normDisposition(d *goimap.BodyStructureDisposition) *goimap.BodyStructureDisposition {
	if d == nil {
		return nil
	}
	c := *d
	c.Value = strings.ToLower(c.Value)
	return &c
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// edgeCases are MIME edge cases of our own, served beside testdata's mail
// (folder Edge), that the corpus may lack: each one a way parsers differ.
var edgeCases = []string{
	// message/rfc822 in base64: opaque, RFC 2046 section 5.2.1 allows
	// it no encoding but 7bit, 8bit and binary.
	"Subject: b64 message\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogaW5uZXIKCmJvZHkK\n--b--\n",
	// multipart/digest: parts without Content-Type are message/rfc822.
	"Subject: digest\nContent-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nfirst\n--d\nContent-Type: text/plain\n\nsecond\n--d--\n",
	// (No message/global: go-imap's client reads it as IMAP4rev2 has it,
	// and neither Dovecot nor planb sends that to IMAP4rev1. See
	// TestFetchMessageGlobal in imap/serve.)
	// RFC 2231 continuations and an encoded word in a quoted filename.
	"Subject: 2231\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: application/pdf;\n name*0*=utf-8''long%20na;\n name*1*=me.pdf\nContent-Disposition: attachment; filename=\"=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=\"\nContent-Transfer-Encoding: BASE64\n\nJVBERi0xLjQK\n--x--\n",
	// A truncated multipart: no closing delimiter, a last part that is
	// a header alone.
	"Subject: truncated\nContent-Type: multipart/mixed; boundary=t\n\npreamble\n--t\nContent-Type: text/plain\n\none\n--t\nContent-Type: text/html\n",
	// Delimiters with trailing white space, preamble and epilogue.
	"Subject: padding\nContent-Type: multipart/alternative; boundary=\"p q\"\n\npreamble line\n--p q  \nContent-Type: text/plain; charset=\"\"\n\nplain\n--p q\t\n\nno header\n--p q--  \nepilogue\nmore epilogue\n",
	// Quoted-printable with soft breaks, trailing white space and a bad
	// escape; base64 without padding and with junk.
	"Subject: qp\nContent-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak  \ntrailing=20\nbad=ZZescape=\n--q\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64 (comment)\n\nAAEC Aw\n!!BAUG\n--q--\n",
	// Content-Disposition without a type; Content-Language and
	// Content-Location; a folded Content-Type with a tab.
	"Subject: disposition\nContent-Type: multipart/mixed;\n\tboundary=\"c\"\n\n--c\nContent-Type: text/plain\nContent-Disposition: ; filename=x.txt\nContent-Language: en, de\nContent-Location: http://example.org/x\nContent-ID: <x@example.org>\nContent-Description: a =?utf-8?q?d=C3=A9scription?=\n\nx\n--c--\n",
	// A header without a body or an empty line; an empty header.
	"Subject: header only\nFrom: a@example.org",
	"\nbody without header\n",
	// Nested message/rfc822 whose inner message has no empty line.
	"Subject: nested\nContent-Type: multipart/mixed; boundary=n\n\n--n\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/plain\n--n\nContent-Type: text/plain\n\nafter\n--n--\n",
	// Groups, comments and odd addresses in the envelope.
	"From: \"Doe, Jane\" <jane@example.org> (work)\nTo: team: a@example.org, \"B\" <b@example.org>;, c@example.org\nCc: undisclosed-recipients:;\nReply-To: <@relay.example.org:d@example.org>\nSender: e@example.org (Eve)\nIn-Reply-To: <1@example.org> <2@example.org>\nMessage-ID: <3@example.org>\nSubject: =?iso-8859-1?q?caf=E9?= and =?utf-8?b?Y2Fmw6k=?=\nDate: Thu, 1 Jan 2026 10:00:00 +0100 (CET)\n\naddresses\n",
	// Uppercase types, a parameter without a value, a duplicate.
	"Subject: case\nMIME-Version: 1.0\nContent-Type: TEXT/HTML; CHARSET=UTF-8; format; charset=latin1\nContent-Transfer-Encoding: 8BIT\n\n<p>caf\xc3\xa9</p>\n",
}

// edgeCasesBuilt are edge cases too large to write out.
func edgeCasesBuilt() []string {
	var deep, many strings.Builder
	deep.WriteString("Subject: deep\n")
	for i := range 60 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=d%d\n\n--d%[1]d\n", i)
	}
	deep.WriteString("Content-Type: text/plain\n\nbottom\n")
	for i := 59; i >= 0; i-- {
		fmt.Fprintf(&deep, "--d%d--\n", i)
	}
	many.WriteString("Subject: many\nContent-Type: multipart/mixed; boundary=m\n\n")
	for i := range 300 {
		fmt.Fprintf(&many, "--m\nContent-Type: text/plain; name=p%d.txt\n\npart %[1]d\n", i)
	}
	many.WriteString("--m--\n")
	long := "Subject: long header\nTo: " + strings.Repeat("someone@example.org, ", 1200) + "last@example.org\n" +
		"Content-Type: multipart/mixed; boundary=l\n\n--l\nContent-Type: text/plain\n\nafter a long header\n--l--\n"
	return []string{
		deep.String(), many.String(), long,
		// An empty boundary; white space before a field's colon; a
		// field name in capitals; a comment in Content-Type.
		"Subject: empty boundary\nContent-Type: multipart/mixed; boundary=\"\"\n\n--\n\nbody\n----\n",
		"Subject: odd fields\nCONTENT-TYPE : multipart/mixed (comment); boundary=o\n\n--o\ncontent-type: text/plain (plain) ; charset = utf-8\n\nx\n--o--\n",
		// A header separated from the body by a line of white space; a
		// field without a space after its colon; an mbox From_ line.
		"Subject:nospace\nContent-Type:text/plain;charset=utf-8;;\n \nbody after a blank-looking line\n",
		"From someone@example.org Mon Jan  1 00:00:00 2026\nSubject: from line\n\nbody\n",
		// Content-Type without a subtype, or with a trailing ";".
		"Subject: no subtype\nContent-Type: multipart/; boundary=s\n\n--s\n\nx\n--s--\n",
		"Subject: text slash\nContent-Type: text/\n\nx\n",
		// One physical Content-Type line of 20 KB, the boundary last.
		"Subject: long line\nContent-Type: multipart/mixed; x=" + strings.Repeat("a", 20000) + "; boundary=z\n\n--z\n\nin z\n--z--\n",
		// message/partial and message/external-body (no encapsulated
		// message of RFC 3501's kind), uuencode.
		"Subject: partial\nContent-Type: message/partial; id=\"x@example.org\"; number=1; total=2\n\nSubject: inner\n\nhalf\n",
		"Subject: uu\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 a\n#86)C\n`\nend\n",
		// CRLF and LF mixed around delimiters.
		"Subject: mixed ends\r\nContent-Type: multipart/mixed; boundary=e\r\n\r\n--e\nContent-Type: text/plain\r\n\nlf\r\n--e\r\n\ncrlf\n--e--\r\n",
	}
}

// writeEdgeCases writes edgeCases into a folder Edge of a Maildir++
// tree and returns how many.
func writeEdgeCases(t *testing.T, maildir string) int {
	t.Helper()
	cur := filepath.Join(maildir, ".Edge", "cur")
	if err := os.MkdirAll(cur, 0o755); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clip(edgeCases), edgeCasesBuilt()...)
	for i, m := range all {
		name := filepath.Join(cur, fmt.Sprintf("%d.M%dP2Q2.edge:2,S", 1760000000+i, i))
		if err := os.WriteFile(name, []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return len(all)
}
