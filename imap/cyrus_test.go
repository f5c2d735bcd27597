package imap

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/imap/imaptest"
)

// cyrusMessage is a well-formed CRLF message, as a restore sends them.
const cyrusMessage = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: strict\r\n" +
	"Date: Tue, 02 Mar 2021 12:34:56 +0100\r\n" +
	"Message-ID: <strict.1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Body with 8-bit text: caf\xc3\xa9.\r\n" +
	"\r\n" +
	"-- \r\n" +
	"Alice\r\n"

// TestCyrusServer: what the tests rely on from the Cyrus of
// scripts/cyrus.sh, a strict server: real passwords, "." as separator,
// the special-use folders, the capabilities planb uses; APPEND refuses
// bare LF, NUL bytes and messages without a header (with the texts
// below), takes the rest, and gives a correct message back byte-identical
// with its internal date; mail survives a restart and a crash.
func TestCyrusServer(t *testing.T) {
	s := imaptest.StartOf(t, imaptest.KindCyrus)

	t.Run("capabilities", func(t *testing.T) {
		plain, err := imapclient.DialInsecure(fmt.Sprintf("%s:%d", s.Host, s.Port), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		greeting := plain.Caps()
		for _, c := range []goimap.Cap{goimap.CapIMAP4rev1, goimap.CapStartTLS, goimap.CapLiteralPlus, "AUTH=PLAIN"} {
			if !hasCap(greeting, c) {
				t.Errorf("greeting capabilities %v: no %s", capList(greeting), c)
			}
		}
		before, err := plain.Capability().Wait()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("before login (plaintext port): %s", capList(before))

		c := s.Dial(t, "planb", "planb")
		after := c.Caps()
		t.Logf("after login: %s", capList(after))
		for _, set := range []goimap.CapSet{before, after} {
			for _, c := range []goimap.Cap{
				goimap.CapIMAP4rev1, goimap.CapMultiAppend, goimap.CapLiteralPlus, goimap.CapBinary,
				goimap.CapUIDPlus, goimap.CapSpecialUse, goimap.CapCreateSpecialUse, goimap.CapNamespace,
				goimap.CapCondStore, goimap.CapQResync, goimap.CapID, goimap.CapMove, goimap.CapIdle,
				"APPENDLIMIT=4294967295",
			} {
				if !hasCap(set, c) {
					t.Errorf("no %s in %s", c, capList(set))
				}
			}
			for _, c := range []goimap.Cap{goimap.CapLiteralMinus, goimap.CapUTF8Accept, goimap.CapIMAP4rev2} {
				if hasCap(set, c) {
					t.Errorf("unexpected %s in %s", c, capList(set))
				}
			}
		}
		if !hasCap(before, goimap.CapStartTLS) || hasCap(after, goimap.CapStartTLS) {
			t.Errorf("STARTTLS offered before login on the plaintext port only: before %v, after %v",
				hasCap(before, goimap.CapStartTLS), hasCap(after, goimap.CapStartTLS))
		}
	})

	t.Run("login", func(t *testing.T) {
		s.Dial(t, "planb", "planb")
		c, err := imapclient.DialTLS(fmt.Sprintf("%s:%d", s.Host, s.TLSPort), &imapclient.Options{TLSConfig: tlsConfigFor(s)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		err = c.Login("planb", "wrong").Wait()
		wantIMAPError(t, "LOGIN with a wrong password", err, goimap.StatusResponseTypeNo, "Login failed: authentication failure")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a wrong password took %v (failedloginpause: 0 wanted)", d)
		}
		err = c.Login("nobody", "planb").Wait()
		wantIMAPError(t, "LOGIN of an unknown user", err, goimap.StatusResponseTypeNo, "Login failed: authentication failure")
	})

	t.Run("namespace and folders", func(t *testing.T) {
		c := s.Dial(t, "planb", "planb")
		ns, err := c.Namespace().Wait()
		if err != nil {
			t.Fatal(err)
		}
		want := goimap.NamespaceData{
			Personal: []goimap.NamespaceDescriptor{{Prefix: "", Delim: '.'}},
			Other:    []goimap.NamespaceDescriptor{{Prefix: "Other Users.", Delim: '.'}},
			Shared:   []goimap.NamespaceDescriptor{{Prefix: "Shared Folders.", Delim: '.'}},
		}
		if fmt.Sprint(*ns) != fmt.Sprint(want) {
			t.Errorf("NAMESPACE = %+v, want %+v", *ns, want)
		}
		list, err := c.List("", "*", &goimap.ListOptions{ReturnSpecialUse: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, l := range list {
			if l.Delim != '.' {
				t.Errorf("%s: separator %q, want '.'", l.Mailbox, l.Delim)
			}
			use := ""
			for _, a := range l.Attrs {
				switch a {
				case goimap.MailboxAttrSent, goimap.MailboxAttrDrafts, goimap.MailboxAttrTrash,
					goimap.MailboxAttrJunk, goimap.MailboxAttrArchive, goimap.MailboxAttrAll,
					goimap.MailboxAttrFlagged:
					use = string(a)
				}
			}
			got[l.Mailbox] = use
		}
		wantFolders := map[string]string{
			"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`,
			"Junk": `\Junk`, "Archive": `\Archive`,
		}
		if fmt.Sprint(got) != fmt.Sprint(wantFolders) {
			t.Errorf("LIST = %v, want %v", got, wantFolders)
		}
		// A nested folder takes the separator.
		if err := c.Create("Projects.2024", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		list, err = c.List("", "Projects*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range list {
			names = append(names, l.Mailbox)
		}
		sort.Strings(names)
		if !slices.Equal(names, []string{"Projects", "Projects.2024"}) {
			t.Errorf("LIST Projects* = %v", names)
		}
	})

	// Cyrus makes a user's folders during its first login, and sessions
	// that log in meanwhile see them half made: NewUser logs in first, so
	// that a pool of connections sees them all at once.
	user, pw := s.NewUser(t)
	var wg sync.WaitGroup
	lists := make([]string, 8)
	for i := range lists {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lists[i] = listNames(s, user, pw)
		}()
	}
	wg.Wait()
	for i, l := range lists {
		if l != "Archive Drafts INBOX Junk Sent Trash" {
			t.Errorf("connection %d of a new user: LIST = %s", i, l)
		}
	}

	c := s.Dial(t, user, pw)
	date := time.Date(2021, 3, 2, 12, 34, 56, 0, time.FixedZone("", 3600))
	good := []byte(cyrusMessage)
	header, body, _ := strings.Cut(cyrusMessage, "\r\n\r\n")
	refused := []struct {
		name, body, text string
	}{
		{"bare LF", strings.ReplaceAll(cyrusMessage, "\r\n", "\n"), "Message contains bare newlines"},
		{"bare LF in the body only", header + "\r\n\r\nline one\nline two\r\n", "Message contains bare newlines"},
		{"NUL in the body", header + "\r\n\r\nnul \x00 byte\r\n", "Message contains NUL characters"},
		{"NUL in a header", strings.Replace(cyrusMessage, "Subject: strict", "Subject: st\x00rict", 1), "Message contains NUL characters"},
		{"no header", "Just a body line.\r\nAnother one.\r\n", "Message contains invalid header"},
		{"space in a header name", strings.Replace(cyrusMessage, "Subject:", "Bad Header: x\r\nSubject:", 1), "Message contains invalid header"},
		{"header line without colon", strings.Replace(cyrusMessage, "Subject:", "no colon here\r\nSubject:", 1), "Message contains invalid header"},
	}
	for _, r := range refused {
		err := imaptest.TryAppend(c, "INBOX", imaptest.Message{Body: []byte(r.body), Date: date})
		wantIMAPError(t, "APPEND "+r.name, err, goimap.StatusResponseTypeNo, r.text)
	}

	long := strings.Repeat("x", 1200)
	accepted := []struct {
		name   string
		body   string
		stored string // "" when stored as sent
	}{
		{"correct", cyrusMessage, ""},
		{"bare CR", header + "\r\n\r\nbare \r CR\r\n", ""},
		{"8-bit header", strings.Replace(cyrusMessage, "Subject: strict", "Subject: caf\xe9", 1),
			strings.Replace(cyrusMessage, "Subject: strict", "Subject: cafX", 1)},
		{"UTF-8 header", strings.Replace(cyrusMessage, "Subject: strict", "Subject: caf\xc3\xa9", 1),
			strings.Replace(cyrusMessage, "Subject: strict", "Subject: cafXX", 1)},
		{"header line over 998 bytes", strings.Replace(cyrusMessage, "Subject: strict", "Subject: "+long, 1), ""},
		{"body line over 998 bytes", header + "\r\n\r\n" + long + "\r\n", ""},
		{"no Date", strings.Replace(cyrusMessage, "Date: Tue, 02 Mar 2021 12:34:56 +0100\r\n", "", 1), ""},
		{"unparseable From", strings.Replace(cyrusMessage, "From: Alice <alice@example.org>", "From: not an address", 1), ""},
		{"empty header", "\r\n" + body, ""},
		{"mbox From_ line", "From alice@example.org Tue Mar  2 12:34:56 2021\r\n" + cyrusMessage, ""},
	}
	var want [][]byte
	for _, a := range accepted {
		if err := imaptest.TryAppend(c, "INBOX", imaptest.Message{Body: []byte(a.body), Date: date, Flags: []string{`\Seen`}}); err != nil {
			t.Errorf("APPEND %s: %v", a.name, err)
			want = append(want, nil)
			continue
		}
		stored := a.body
		if a.stored != "" {
			stored = a.stored
		}
		want = append(want, []byte(stored))
	}
	err := imaptest.TryAppend(c, "INBOX", imaptest.Message{Body: nil})
	wantIMAPError(t, "APPEND of an empty message", err, goimap.StatusResponseTypeNo, "Zero-length message literal")

	got := imaptest.Fetch(t, c, "INBOX")
	if len(got) != len(want) {
		t.Fatalf("INBOX has %d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if want[i] == nil {
			continue
		}
		if !bytes.Equal(m.Body, want[i]) {
			t.Errorf("%s: FETCH BODY[] = %q, want %q", accepted[i].name, m.Body, want[i])
		}
		if !m.Date.Equal(date) {
			t.Errorf("%s: internal date %v, want %v", accepted[i].name, m.Date, date)
		}
		if !slices.Equal(m.Flags, []string{`\Seen`}) {
			t.Errorf("%s: flags %v", accepted[i].name, m.Flags)
		}
	}
	if !bytes.Equal(got[0].Body, good) {
		t.Errorf("the correct message changed")
	}
	// The instant is kept, not the zone: Cyrus answers in its own.
	t.Logf("APPEND date %s; FETCH INTERNALDATE %s", date.Format(time.RFC3339), got[0].Date.Format(time.RFC3339))

	s.Stop(t)
	s.Restart(t)
	c = s.Dial(t, user, pw)
	if after := imaptest.Fetch(t, c, "INBOX"); fmt.Sprint(after) != fmt.Sprint(got) {
		t.Errorf("after a restart INBOX = %d messages, differs from before", len(after))
	}
	imaptest.Append(t, c, "Sent", imaptest.Generate("sent", 2))

	s.Kill(t)
	s.Restart(t)
	c = s.Dial(t, user, pw)
	if after := imaptest.Fetch(t, c, "INBOX"); fmt.Sprint(after) != fmt.Sprint(got) {
		t.Errorf("after a crash INBOX = %d messages, differs from before", len(after))
	}
	if sent := imaptest.Fetch(t, c, "Sent"); len(sent) != 2 {
		t.Errorf("after a crash Sent has %d messages, want 2", len(sent))
	}
	s.Dial(t, "planb", "planb")
}

// listNames logs in and returns the sorted names LIST gives, or the error.
func listNames(s *imaptest.Server, user, password string) string {
	c, err := imapclient.DialTLS(fmt.Sprintf("%s:%d", s.Host, s.TLSPort), &imapclient.Options{TLSConfig: tlsConfigFor(s)})
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		return err.Error()
	}
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func tlsConfigFor(s *imaptest.Server) *tls.Config {
	return &tls.Config{RootCAs: s.RootCAs, ServerName: "127.0.0.1"}
}

// hasCap tells whether set names c itself (CapSet.Has also counts what
// IMAP4rev2 implies).
func hasCap(set goimap.CapSet, c goimap.Cap) bool {
	for k := range set {
		if strings.EqualFold(string(k), string(c)) {
			return true
		}
	}
	return false
}
