package serve

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/imap/imaptest"
)

const plainMsg = "From: Alice <alice@example.org>\n" +
	"To: bob@example.org\n" +
	"Subject: Hello\n" +
	"Date: Fri, 01 Mar 2024 08:00:00 +0100\n" +
	"Message-ID: <1@example.org>\n" +
	"\n" +
	"Hello Bob,\nthe body.\n"

var attachment = strings.Repeat("binary\x00data\r\n\xff", 40)

var multipartMsg = "From: Carol <carol@example.org>\n" +
	"To: Dave <dave@example.org>, erin@example.org\n" +
	"Subject: =?utf-8?q?R=C3=A9sum=C3=A9?= attached\n" +
	"Date: Sat, 02 Mar 2024 09:30:00 +0000\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\n" +
	"\n" +
	"preamble\n" +
	"--outer\n" +
	"Content-Type: text/plain; charset=iso-8859-1\n" +
	"Content-Transfer-Encoding: quoted-printable\n" +
	"\n" +
	"Voil=E0 mon r=E9sum=E9.\n" +
	"Second line.\n" +
	"--outer\n" +
	"Content-Type: application/octet-stream; name=\"cv.bin\"\n" +
	"Content-Disposition: attachment; filename=\"cv.bin\"\n" +
	"Content-Transfer-Encoding: base64\n" +
	"\n" +
	wrap(base64.StdEncoding.EncodeToString([]byte(attachment)), 76) +
	"--outer\n" +
	"Content-Type: message/rfc822\n" +
	"\n" +
	"From: Frank <frank@example.org>\n" +
	"Subject: Inner\n" +
	"Content-Type: multipart/alternative; boundary=inner\n" +
	"\n" +
	"--inner\n" +
	"Content-Type: text/plain\n" +
	"\n" +
	"inner plain\n" +
	"--inner\n" +
	"Content-Type: text/html\n" +
	"\n" +
	"<p>inner html</p>\n" +
	"--inner--\n" +
	"\n" +
	"--outer--\n" +
	"epilogue\n"

func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	return b.String() + s + "\n"
}

// bigMsg is a message of about 600 KiB with LF line ends and a few bare
// CRs, so that partial fetches cross many marks.
func bigMsg() string {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("From: big@example.org\nSubject: big\n\n")
	for b.Len() < 600<<10 {
		n := r.IntN(120)
		for range n {
			b.WriteByte(byte('a' + r.IntN(26)))
		}
		if r.IntN(50) == 0 {
			b.WriteString("\r")
		} else {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func testStore() (*memStore, string) {
	s := newMemStore()
	alice := s.addUser("alice", "secret")
	big := bigMsg()
	alice.add(MailboxInfo{Name: "INBOX"}, 7, plainMsg, multipartMsg, big)
	alice.add(MailboxInfo{Name: "Sent", SpecialUse: `\Sent`}, 8, plainMsg)
	alice.add(MailboxInfo{Name: "Archive/2023/Q1"}, 9)
	bob := s.addUser("bob", "other")
	bob.add(MailboxInfo{Name: "INBOX"}, 3, multipartMsg)
	return s, big
}

func TestLogin(t *testing.T) {
	s, _ := testStore()
	addr := startServer(t, s)
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login("alice", "wrong").Wait()
	var ie *goimap.Error
	if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeAuthenticationFailed {
		t.Fatalf("Login(wrong password) = %v, want NO [AUTHENTICATIONFAILED]", err)
	}
	if err := c.Authenticate(plainAuth("alice", "secret")); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN = %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("Select = %v", err)
	}
}

func TestList(t *testing.T) {
	s, _ := testStore()
	c := login(t, startServer(t, s), "alice", "secret")
	got, err := c.List("", "*", &goimap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range got {
		lines = append(lines, fmt.Sprintf("%s %v", d.Mailbox, d.Attrs))
	}
	want := []string{
		`INBOX [\HasNoChildren]`,
		`Archive [\Noselect \HasChildren]`,
		`Archive/2023 [\Noselect \HasChildren]`,
		`Archive/2023/Q1 [\HasNoChildren]`,
		`Sent [\HasNoChildren \Sent]`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("LIST * =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	got, err = c.List("", "%", nil).Collect()
	if err != nil || len(got) != 3 {
		t.Errorf("LIST %% = %d mailboxes, %v; want 3", len(got), err)
	}
	st, err := c.Status("INBOX", &goimap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 3 || st.UIDNext != 4 || st.UIDValidity != 7 || *st.NumUnseen != 3 {
		t.Errorf("STATUS inbox = %d messages, uidnext %d, uidvalidity %d, %d unseen; want 3, 4, 7, 3", *st.NumMessages, st.UIDNext, st.UIDValidity, *st.NumUnseen)
	}
	if _, err := c.Select("Archive", nil).Wait(); err == nil {
		t.Errorf("SELECT of a container succeeded")
	}
	if _, err := c.Select("Nowhere", nil).Wait(); err == nil {
		t.Errorf("SELECT of a missing mailbox succeeded")
	}
}

func TestConfinement(t *testing.T) {
	s, _ := testStore()
	c := login(t, startServer(t, s), "bob", "other")
	got, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Mailbox != "INBOX" {
		t.Errorf("bob's LIST * = %v, want INBOX only", got)
	}
	for _, name := range []string{"Sent", "Archive/2023/Q1"} {
		if _, err := c.Select(name, nil).Wait(); err == nil {
			t.Errorf("bob's SELECT %s succeeded", name)
		}
	}
}

func fetchOne(t *testing.T, c *imapclient.Client, uid goimap.UID, opts *goimap.FetchOptions) *imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(goimap.UIDSetNum(uid), opts).Collect()
	if err != nil {
		t.Fatalf("UID FETCH %d = %v", uid, err)
	}
	if len(msgs) != 1 {
		t.Fatalf("UID FETCH %d gave %d messages", uid, len(msgs))
	}
	return msgs[0]
}

// TestFetchBody: whole messages and pieces of them, byte-exact, whether
// the store knows their wire sizes or the server measures them.
func TestFetchBody(t *testing.T) {
	for _, stored := range []bool{false, true} {
		t.Run(fmt.Sprint("stored=", stored), func(t *testing.T) {
			s, big := testStore()
			if stored {
				s.storeWire(0)
			}
			testFetchBody(t, s, big)
		})
	}
}

func testFetchBody(t *testing.T, s *memStore, big string) {
	c := login(t, startServer(t, s), "alice", "secret")
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	for uid, raw := range map[goimap.UID]string{1: plainMsg, 2: multipartMsg, 3: big} {
		whole := &goimap.FetchItemBodySection{Peek: true}
		m := fetchOne(t, c, uid, &goimap.FetchOptions{RFC822Size: true, BodySection: []*goimap.FetchItemBodySection{whole}})
		want := crlf(raw)
		if got := string(m.FindBodySection(whole)); got != want {
			t.Errorf("BODY[] of %d: %d bytes, want %d", uid, len(got), len(want))
		}
		if m.RFC822Size != int64(len(want)) {
			t.Errorf("RFC822.SIZE of %d = %d, want %d", uid, m.RFC822Size, len(want))
		}
	}
	// Partial fetches across the marks of the big message, as Thunderbird
	// fetches large messages in pieces.
	want := crlf(big)
	for _, off := range []int64{0, 1, markEvery - 3, markEvery, 3*markEvery + 17, int64(len(want)) - 5, int64(len(want)) + 10} {
		sec := &goimap.FetchItemBodySection{Peek: true, Partial: &goimap.SectionPartial{Offset: off, Size: 70000}}
		m := fetchOne(t, c, 3, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{sec}})
		w := want[min(int64(len(want)), off):]
		w = w[:min(len(w), 70000)]
		if got := string(m.FindBodySection(sec)); got != w {
			t.Errorf("BODY[]<%d.70000> = %d bytes, want %d", off, len(got), len(w))
		}
	}
}

func TestFetchSections(t *testing.T) {
	s, _ := testStore()
	c := login(t, startServer(t, s), "alice", "secret")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	wire := crlf(multipartMsg)
	hdrEnd := strings.Index(wire, "\r\n\r\n") + 4
	sections := map[string]*goimap.FetchItemBodySection{
		"HEADER":            {Peek: true, Specifier: goimap.PartSpecifierHeader},
		"TEXT":              {Peek: true, Specifier: goimap.PartSpecifierText},
		"HEADER.FIELDS":     {Peek: true, Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"subject", "FROM"}},
		"HEADER.FIELDS.NOT": {Peek: true, Specifier: goimap.PartSpecifierHeader, HeaderFieldsNot: []string{"Content-Type", "MIME-Version", "Date", "To"}},
		"1":                 {Peek: true, Part: []int{1}},
		"1.MIME":            {Peek: true, Part: []int{1}, Specifier: goimap.PartSpecifierMIME},
		"3":                 {Peek: true, Part: []int{3}},
		"3.HEADER":          {Peek: true, Part: []int{3}, Specifier: goimap.PartSpecifierHeader},
		"3.1":               {Peek: true, Part: []int{3, 1}},
		"3.2":               {Peek: true, Part: []int{3, 2}},
		"3.2.MIME":          {Peek: true, Part: []int{3, 2}, Specifier: goimap.PartSpecifierMIME},
		"3.HEADER.FIELDS":   {Peek: true, Part: []int{3}, Specifier: goimap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
		"4 (no such part)":  {Peek: true, Part: []int{4}},
		"TEXT<10.20>":       {Peek: true, Specifier: goimap.PartSpecifierText, Partial: &goimap.SectionPartial{Offset: 10, Size: 20}},
	}
	want := map[string]string{
		"HEADER":            wire[:hdrEnd],
		"TEXT":              wire[hdrEnd:],
		"HEADER.FIELDS":     "From: Carol <carol@example.org>\r\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9?= attached\r\n\r\n",
		"HEADER.FIELDS.NOT": "From: Carol <carol@example.org>\r\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9?= attached\r\n\r\n",
		"1":                 "Voil=E0 mon r=E9sum=E9.\r\nSecond line.",
		"1.MIME":            "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
		"3":                 crlf("From: Frank <frank@example.org>\nSubject: Inner\nContent-Type: multipart/alternative; boundary=inner\n\n--inner\nContent-Type: text/plain\n\ninner plain\n--inner\nContent-Type: text/html\n\n<p>inner html</p>\n--inner--\n"),
		"3.HEADER":          crlf("From: Frank <frank@example.org>\nSubject: Inner\nContent-Type: multipart/alternative; boundary=inner\n\n"),
		"3.1":               "inner plain",
		"3.2":               "<p>inner html</p>",
		"3.2.MIME":          "Content-Type: text/html\r\n\r\n",
		"3.HEADER.FIELDS":   "Subject: Inner\r\n\r\n",
		"4 (no such part)":  "",
		"TEXT<10.20>":       wire[hdrEnd+10 : hdrEnd+30],
	}
	for name, sec := range sections {
		m := fetchOne(t, c, 2, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{sec}})
		if got := string(m.FindBodySection(sec)); got != want[name] {
			t.Errorf("BODY[%s] = %q, want %q", name, got, want[name])
		}
	}
	// BINARY decodes, BINARY.SIZE counts the decoded bytes.
	bin := &goimap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	binPart := &goimap.FetchItemBinarySection{Part: []int{2}, Peek: true, Partial: &goimap.SectionPartial{Offset: 7, Size: 9}}
	m := fetchOne(t, c, 2, &goimap.FetchOptions{
		BinarySection:     []*goimap.FetchItemBinarySection{bin},
		BinarySectionSize: []*goimap.FetchItemBinarySectionSize{{Part: []int{2}}, {Part: []int{1}}},
	})
	if got := string(m.FindBinarySection(bin)); got != attachment {
		t.Errorf("BINARY[2] = %q, want %q", got, attachment)
	}
	// (imapserver writes no <offset> after BINARY[2] of a partial fetch:
	// one at a time.)
	mp := fetchOne(t, c, 2, &goimap.FetchOptions{BinarySection: []*goimap.FetchItemBinarySection{binPart}})
	if got := string(mp.FindBinarySection(binPart)); got != attachment[7:16] {
		t.Errorf("BINARY[2]<7.9> = %q, want %q", got, attachment[7:16])
	}
	if got, _ := m.FindBinarySectionSize([]int{2}); got != uint32(len(attachment)) {
		t.Errorf("BINARY.SIZE[2] = %d, want %d", got, len(attachment))
	}
	if got, _ := m.FindBinarySectionSize([]int{1}); got != uint32(len("Voil\xe0 mon r\xe9sum\xe9.\r\nSecond line.")) {
		want := len("Voil\xe0 mon r\xe9sum\xe9.\r\nSecond line.")
		t.Errorf("BINARY.SIZE[1] = %d, want %d", got, want)
	}
}

func TestFetchStructure(t *testing.T) {
	s, _ := testStore()
	c := login(t, startServer(t, s), "alice", "secret")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, c, 2, &goimap.FetchOptions{Envelope: true, BodyStructure: &goimap.FetchItemBodyStructure{Extended: true}, InternalDate: true, Flags: true})
	env := m.Envelope
	if env == nil || env.Subject != "Résumé attached" || len(env.To) != 2 || env.From[0].Host != "example.org" {
		t.Errorf("ENVELOPE = %+v", env)
	}
	mp, ok := m.BodyStructure.(*goimap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 3 {
		t.Fatalf("BODYSTRUCTURE = %#v, want multipart/mixed of 3", m.BodyStructure)
	}
	text := mp.Children[0].(*goimap.BodyStructureSinglePart)
	if text.Type != "text" || text.Params["charset"] != "iso-8859-1" || text.Encoding != "quoted-printable" ||
		text.Size != uint32(len("Voil=E0 mon r=E9sum=E9.\r\nSecond line.")) || text.Text.NumLines != 1 {
		t.Errorf("part 1 = %+v (%+v)", text, text.Text)
	}
	att := mp.Children[1].(*goimap.BodyStructureSinglePart)
	if att.Extended.Disposition == nil || att.Extended.Disposition.Params["filename"] != "cv.bin" {
		t.Errorf("part 2's disposition = %+v", att.Extended.Disposition)
	}
	inner := mp.Children[2].(*goimap.BodyStructureSinglePart)
	if inner.MessageRFC822 == nil || inner.MessageRFC822.Envelope.Subject != "Inner" {
		t.Fatalf("part 3 = %+v", inner)
	}
	if alt, ok := inner.MessageRFC822.BodyStructure.(*goimap.BodyStructureMultiPart); !ok || alt.Subtype != "alternative" || len(alt.Children) != 2 {
		t.Errorf("part 3's structure = %#v", inner.MessageRFC822.BodyStructure)
	}
	if got := m.InternalDate.Format("2006-01-02 15:04 -0700"); got != "2024-03-02 08:00 +0100" {
		t.Errorf("INTERNALDATE = %s", got)
	}
}

func TestFlagsForTheSession(t *testing.T) {
	s, _ := testStore()
	addr := startServer(t, s)
	c := login(t, addr, "alice", "secret")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(goimap.UIDSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// A body fetch without PEEK marks the message read.
	whole := &goimap.FetchItemBodySection{}
	m := fetchOne(t, c, 2, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{whole}})
	if !slices.Contains(m.Flags, goimap.FlagSeen) {
		t.Errorf("FLAGS after BODY[] = %v, want \\Seen", m.Flags)
	}
	data, err := c.UIDSearch(&goimap.SearchCriteria{Flag: []goimap.Flag{goimap.FlagFlagged}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := data.AllUIDs(); !slices.Equal(got, []goimap.UID{1}) {
		t.Errorf("SEARCH FLAGGED = %v, want [1]", got)
	}
	// Another session sees the archive's flags.
	c2 := login(t, addr, "alice", "secret")
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c2.Fetch(goimap.SeqSetNum(1, 2), &goimap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if len(m.Flags) != 0 {
			t.Errorf("other session: message %d has flags %v", m.SeqNum, m.Flags)
		}
	}
}

func TestWritesRefused(t *testing.T) {
	s, _ := testStore()
	c := login(t, startServer(t, s), "alice", "secret")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cannot := func(what string, err error) {
		t.Helper()
		var ie *goimap.Error
		if !errors.As(err, &ie) || ie.Type != goimap.StatusResponseTypeNo || ie.Code != goimap.ResponseCodeCannot {
			t.Errorf("%s = %v, want NO [CANNOT]", what, err)
		}
	}
	app := c.Append("INBOX", int64(len(plainMsg)), nil)
	app.Write([]byte(plainMsg))
	app.Close()
	_, err := app.Wait()
	cannot("APPEND", err)
	_, err = c.Copy(goimap.SeqSetNum(1), "Sent").Wait()
	cannot("COPY", err)
	_, err = c.Move(goimap.SeqSetNum(1), "Sent").Wait()
	cannot("MOVE", err)
	cannot("EXPUNGE", c.Expunge().Close())
	cannot("UID EXPUNGE", c.UIDExpunge(goimap.UIDSetNum(1)).Close())
	cannot("CREATE", c.Create("New", nil).Wait())
	cannot("DELETE", c.Delete("Sent").Wait())
	cannot("RENAME", c.Rename("Sent", "Sent2", nil).Wait())
	// CLOSE expunges nothing and succeeds; the mailbox is as it was.
	if err := c.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Errorf("CLOSE = %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 3 {
		t.Errorf("SELECT after CLOSE = %v, %v; want 3 messages", sel, err)
	}
}

// TestStoredWireSize: with the wire sizes the store knows, a folder's
// RFC822.SIZE and STATUS SIZE read no message, a large message is read
// once to be sent (not once more to be measured), and a size that does
// not match the message cuts the connection rather than send a message
// longer or shorter than it is.
func TestStoredWireSize(t *testing.T) {
	s, big := testStore()
	s.storeWire(0)
	c := login(t, startServer(t, s), "alice", "secret")
	raws := []string{plainMsg, multipartMsg, big}
	var total int64
	for _, raw := range raws {
		total += int64(len(crlf(raw)))
	}
	st, err := c.Status("INBOX", &goimap.StatusOptions{Size: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size == nil || *st.Size != total {
		t.Errorf("STATUS SIZE = %v, want %d", st.Size, total)
	}
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(goimap.SeqSetNum(1, 2, 3), &goimap.FetchOptions{UID: true, Flags: true, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if want := int64(len(crlf(raws[m.UID-1]))); m.RFC822Size != want {
			t.Errorf("RFC822.SIZE of %d = %d, want %d", m.UID, m.RFC822Size, want)
		}
	}
	if s.opens != 0 {
		t.Errorf("STATUS SIZE and RFC822.SIZE of the folder opened %d messages, want 0", s.opens)
	}
	whole := &goimap.FetchItemBodySection{Peek: true}
	m := fetchOne(t, c, 3, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{whole}})
	if got := string(m.FindBodySection(whole)); got != crlf(big) {
		t.Errorf("BODY[] of the large message: %d bytes, want %d", len(got), len(crlf(big)))
	}
	if s.opens != 1 {
		t.Errorf("BODY[] of the large message opened it %d times, want 1", s.opens)
	}

	// Wrong sizes: a small message is loaded and measured, and refused
	// before its response starts; the large one streams, and its
	// response is cut.
	for _, lie := range []int64{-1, 1, 1000} {
		s, _ := testStore()
		s.storeWire(lie)
		addr := startServer(t, s)
		c := login(t, addr, "alice", "secret")
		if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("not %d as stored", len(crlf(plainMsg))+int(lie))
		msgs, err := c.Fetch(goimap.UIDSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{whole}}).Collect()
		if err == nil || !strings.Contains(err.Error(), want) || len(msgs) != 0 {
			t.Errorf("lie %d: BODY[] of the small message = %d messages, %v; want none and an error with %q", lie, len(msgs), err, want)
		}
		if cut, got := imaptest.FetchCut(t, addr, "alice", "secret", 3); !cut {
			t.Errorf("lie %d: BODY[] of the large message was not cut: %.200q...", lie, got)
		}
	}
}

// TestDamagedMessage: a message that cannot be read is left out of a
// FETCH with NO, or, if its response had begun (a large message whose
// size the store knew), the connection is cut; either way the server
// remembers a damaged message and refuses it from then on without
// reading it, while the other messages are sent. An error that may pass
// (not ErrDamaged) is tried again.
func TestDamagedMessage(t *testing.T) {
	whole := &goimap.FetchItemBodySection{Peek: true}
	body := &goimap.FetchOptions{UID: true, BodySection: []*goimap.FetchItemBodySection{whole}}
	damaged := fmt.Errorf("blob 1234 in pack 5678: %w: frame failed its authentication", ErrDamaged)
	transient := errors.New("connection reset by the S3 endpoint")
	for _, tc := range []struct {
		name    string
		msg     int   // index of the failing message
		stored  bool  // the store knows wire sizes
		err     error // the reader's failure
		cut     bool  // the first FETCH is cut
		refused bool  // later FETCHes refuse it without reading
	}{
		{"large, sized, damaged", 2, true, damaged, true, true},
		{"large, measured, damaged", 2, false, damaged, false, true},
		{"small, damaged", 0, true, damaged, false, true},
		{"large, sized, transient", 2, true, transient, true, false},
		{"small, transient", 0, true, transient, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, big := testStore()
			raws := []string{plainMsg, multipartMsg, big}
			if tc.stored {
				s.storeWire(0)
			}
			inbox := s.users["alice"].boxes[0]
			inbox.fail = map[int]failure{tc.msg: {after: int64(len(raws[tc.msg])) / 2, err: tc.err}}
			addr := startServer(t, s)
			open := func() *imapclient.Client {
				c := login(t, addr, "alice", "secret")
				if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
					t.Fatal(err)
				}
				return c
			}
			uid := goimap.UID(tc.msg + 1)
			var ie *goimap.Error
			if tc.cut {
				if cut, got := imaptest.FetchCut(t, addr, "alice", "secret", uint32(uid)); !cut {
					t.Fatalf("first FETCH was not cut: %.300q", got)
				}
			}
			c := open()
			if !tc.cut {
				msgs, err := c.Fetch(goimap.UIDSetNum(uid), body).Collect()
				if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeServerBug || !strings.Contains(err.Error(), tc.err.Error()) {
					t.Fatalf("first FETCH = %d messages, %v; want NO [SERVERBUG] naming %q", len(msgs), err, tc.err)
				}
			}
			// What needs no reading is sent for every message, as
			// clients ask before they download (UID FLAGS).
			if msgs, err := c.Fetch(goimap.UIDSetNum(1, 2, 3), &goimap.FetchOptions{UID: true, Flags: true, InternalDate: true}).Collect(); err != nil || len(msgs) != 3 {
				t.Errorf("FETCH 1:3 (UID FLAGS INTERNALDATE) = %d messages, %v; want 3", len(msgs), err)
			}
			s.mu.Lock()
			s.opens = 0
			s.mu.Unlock()
			// The whole folder: the others come, the failing one is
			// refused with NO; a large one whose error may pass is read,
			// and cut, again.
			if !tc.refused && tc.msg == 2 {
				// The large message is read again, and cut again.
				if cut, got := imaptest.FetchCut(t, addr, "alice", "secret", 3); !cut {
					t.Errorf("FETCH again was not cut: %.300q", got)
				}
				return
			}
			msgs, err := c.Fetch(goimap.UIDSetNum(1, 2, 3), body).Collect()
			got := map[goimap.UID]string{}
			for _, m := range msgs {
				got[m.UID] = string(m.FindBodySection(whole))
			}
			if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeServerBug || !strings.Contains(err.Error(), "1 messages could not be read") || !strings.Contains(err.Error(), tc.err.Error()) {
				t.Errorf("FETCH 1:3 = %v; want NO [SERVERBUG] for one message, naming %q", err, tc.err)
			}
			for k, raw := range raws {
				if k != tc.msg && got[goimap.UID(k+1)] != crlf(raw) {
					t.Errorf("FETCH 1:3: message %d = %d bytes, want %d", k+1, len(got[goimap.UID(k+1)]), len(crlf(raw)))
				}
			}
			if _, ok := got[uid]; ok {
				t.Errorf("FETCH 1:3 sent the failing message %d", uid)
			}
			s.mu.Lock()
			opens := s.opens
			s.mu.Unlock()
			wantOpens := 2 // the two good messages
			if !tc.refused {
				wantOpens = 3
			}
			if opens != wantOpens {
				t.Errorf("FETCH 1:3 opened %d messages, want %d", opens, wantOpens)
			}
		})
	}
}

// piecesWriterTo writes its bytes out in pieces of random sizes, as a
// restore.Reader writes a message chunk by chunk.
type piecesWriterTo struct {
	b   []byte
	rng *rand.Rand
}

func (p *piecesWriterTo) Read([]byte) (int, error) { panic("read: WriteTo expected") }

func (p *piecesWriterTo) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for len(p.b) > 0 {
		k := min(len(p.b), 1+p.rng.IntN(3000))
		m, err := w.Write(p.b[:k])
		n += int64(m)
		p.b = p.b[k:]
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestWriteWhole: a whole message written from its stored pieces is its
// wire form, however the pieces cut its line ends; a size too large or
// too small is an error, and no byte past the size is written.
func TestWriteWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, raw := range []string{plainMsg, multipartMsg, bigMsg(), "ends in CR\r", "\r\n\r\r\n\n", ""} {
		want := crlf(raw)
		for range 5 {
			var out bytes.Buffer
			if err := writeWhole(&out, &piecesWriterTo{[]byte(raw), rng}, int64(len(want))); err != nil || out.String() != want {
				t.Fatalf("writeWhole(%.20q) = %d bytes, %v; want %d bytes", raw, out.Len(), err, len(want))
			}
		}
		out := &bytes.Buffer{}
		if err := writeWhole(out, &piecesWriterTo{[]byte(raw), rng}, int64(len(want))+1); err != errShort {
			t.Errorf("writeWhole(%.20q) one byte short = %v, want errShort", raw, err)
		}
		if len(want) == 0 {
			continue
		}
		out.Reset()
		if err := writeWhole(out, &piecesWriterTo{[]byte(raw), rng}, int64(len(want))-1); err != errLonger || out.String() != want[:len(want)-1] {
			t.Errorf("writeWhole(%.20q) one byte long = %d bytes, %v; want %d bytes and errLonger", raw, out.Len(), err, len(want)-1)
		}
	}
}
