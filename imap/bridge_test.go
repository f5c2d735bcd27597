package imap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/imap/imaptest"
)

// bridgeMessage is a plain message with LF line ends, no Received header
// (Proton takes it for a sent one unless it lands in INBOX).
const bridgeMessage = "From: Alice <alice@example.org>\n" +
	"To: Bob <bob@example.org>\n" +
	"Date: Mon, 02 Jan 2023 10:00:00 +0000\n" +
	"Subject: %s\n" +
	"Message-ID: <%s@example.org>\n" +
	"\n" +
	"Hello %s.\n"

func bridgeMsg(subject string) []byte {
	return fmt.Appendf(nil, bridgeMessage, subject, subject, subject)
}

// TestBridgeServer shows the rules of the Proton Mail Bridge-shaped server
// of scripts/bridge.sh (gluon with Bridge's connector rules): the
// mailbox layout, what CREATE and APPEND refuse and with which words,
// All Mail, Starred and labels, the ID reply, and mail that outlives a
// stop and a crash.
func TestBridgeServer(t *testing.T) {
	s := imaptest.StartOf(t, imaptest.KindBridge)
	user, pw := s.NewUser(t)
	opts := &imapclient.Options{TLSConfig: tlsTo(s)}

	// STARTTLS on the plaintext port, as Bridge's 1143; gluon's own
	// capabilities, STARTTLS included even after TLS.
	plain, err := imapclient.DialStartTLS(fmt.Sprintf("%s:%d", s.Host, s.Port), opts)
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer plain.Close()
	caps, err := plain.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := capList(caps), "ID IDLE IMAP4rev1 STARTTLS"; got != want {
		t.Errorf("capabilities before login: %s, want %s", got, want)
	}
	err = plain.Login(user, "wrong").Wait()
	wantIMAPError(t, "LOGIN with a wrong password", err, goimap.StatusResponseTypeNo, "no such user")
	if err := plain.Login(user, pw).Wait(); err != nil {
		t.Fatalf("login after a wrong password: %v", err)
	}
	caps, err = plain.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := capList(caps), "ID IDLE IMAP4rev1 MOVE STARTTLS UIDPLUS UNSELECT"; got != want {
		t.Errorf("capabilities: %s, want %s", got, want)
	}
	plain.Logout().Wait()

	c := s.Dial(t, user, pw) // implicit TLS

	t.Run("ID", func(t *testing.T) {
		id, err := c.ID(&goimap.IDData{Name: "planb", Version: "test"}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		want := goimap.IDData{Name: "Proton Mail Bridge", Version: "03.21.01", OS: runtime.GOOS, Vendor: "TODO", SupportURL: "TODO"}
		if *id != want {
			t.Errorf("ID: %+v, want %+v", *id, want)
		}
	})

	t.Run("LIST", func(t *testing.T) {
		want := map[string]string{
			"INBOX":    `\Noinferiors`,
			"Drafts":   `\Drafts \Noinferiors`,
			"Sent":     `\Noinferiors \Sent`,
			"Starred":  `\Flagged \Noinferiors`,
			"Archive":  `\Archive \Noinferiors`,
			"Spam":     `\Junk \Noinferiors`,
			"Trash":    `\Noinferiors \Trash`,
			"All Mail": `\All \Noinferiors`,
			"Folders":  `\Noselect`,
			"Labels":   `\Noselect`,
		}
		if got := listBridge(t, c); !mapsEqual(got, want) {
			t.Errorf("LIST:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("CREATE", func(t *testing.T) {
		err := c.Create("Projects", nil).Wait()
		wantIMAPError(t, "CREATE Projects", err, goimap.StatusResponseTypeNo, `invalid mailbox name ["Projects"]: operation not allowed`)
		for _, name := range []string{"Folders/a/b", "Labels/x"} {
			if err := c.Create(name, nil).Wait(); err != nil {
				t.Fatalf("CREATE %s: %v", name, err)
			}
		}
		err = c.Create("Folders/a/b", nil).Wait()
		wantIMAPError(t, "CREATE Folders/a/b again", err, goimap.StatusResponseTypeNo, "a mailbox with that name already exists")
		err = c.Create("Labels/x/y", nil).Wait()
		wantIMAPError(t, "CREATE Labels/x/y", err, goimap.StatusResponseTypeNo, "a label cannot have children: operation not allowed")
		got := listBridge(t, c)
		for _, name := range []string{"Folders/a", "Folders/a/b", "Labels/x"} {
			if attrs, ok := got[name]; !ok || attrs != "" {
				t.Errorf("LIST %s: %q, %v; want no attributes", name, attrs, ok)
			}
		}
		if _, ok := got["Labels/x/y"]; ok {
			t.Errorf("LIST shows Labels/x/y")
		}
		// CREATE Labels/p/q makes label p first (gluon creates missing
		// parents), then fails: p stays, as the label Bridge made through
		// the API, and shows up as the API's event would bring it.
		err = c.Create("Labels/p/q", nil).Wait()
		wantIMAPError(t, "CREATE Labels/p/q", err, goimap.StatusResponseTypeNo, "a label cannot have children: operation not allowed")
		eventually(t, "Labels/p", func() bool { _, ok := listBridge(t, c)["Labels/p"]; return ok })
	})

	good := bridgeMsg("good")
	t.Run("APPEND accepted", func(t *testing.T) {
		err := imaptest.TryAppend(c, "INBOX", imaptest.Message{
			Body:  good,
			Flags: []string{`\Seen`, "$Keyword"},
			Date:  time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC),
		})
		if err != nil {
			t.Fatalf("APPEND: %v", err)
		}
		msgs := imaptest.Fetch(t, c, "INBOX")
		if len(msgs) != 1 {
			t.Fatalf("INBOX has %d messages, want 1", len(msgs))
		}
		m := msgs[0]
		// gluon adds its X-Pm-Gluon-Id header; the message comes back
		// with CRLF line ends, as Bridge's rebuilt message does.
		header, rest, ok := bytes.Cut(m.Body, []byte("\r\n"))
		if !ok || !bytes.HasPrefix(header, []byte("X-Pm-Gluon-Id: ")) || len(header) <= len("X-Pm-Gluon-Id: ") {
			t.Errorf("first line %q, want an X-Pm-Gluon-Id header", header)
		}
		if want := bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")); !bytes.Equal(rest, want) {
			t.Errorf("body after X-Pm-Gluon-Id:\n%q\nwant\n%q", rest, want)
		}
		// Keywords are dropped; the internal date is the Date header's.
		if !slices.Equal(m.Flags, []string{`\Seen`}) {
			t.Errorf("flags %v, want [\\Seen]", m.Flags)
		}
		if want := time.Date(2023, 1, 2, 10, 0, 0, 0, time.UTC); !m.Date.Equal(want) {
			t.Errorf("internal date %v, want %v", m.Date, want)
		}
	})

	t.Run("APPEND refused", func(t *testing.T) {
		replace := func(old, new string) []byte {
			return bytes.Replace(bridgeMsg("refused"), []byte(old), []byte(new), 1)
		}
		for _, tc := range []struct {
			what, mailbox string
			body          []byte
			typ           goimap.StatusResponseType
			text          string
		}{
			{"unparseable From", "INBOX", replace("From: Alice <alice@example.org>", "From: <<<"), goimap.StatusResponseTypeBad,
				"invalid rfc5322 message: failed to parse From header: [Error offset=1]: expected atext char for atom"},
			{"no Date", "INBOX", replace("Date: Mon, 02 Jan 2023 10:00:00 +0000\n", ""), goimap.StatusResponseTypeBad,
				"invalid rfc5322 message: Required header field 'Date' not found or empty"},
			{"no From", "Archive", replace("From: Alice <alice@example.org>\n", ""), goimap.StatusResponseTypeBad,
				"invalid rfc5322 message: Required header field 'From' not found or empty"},
			{"invalid header name", "INBOX", replace("Subject:", "Bad Subject:"), goimap.StatusResponseTypeBad,
				"header key contains invalid characters"},
			{"unparseable To", "INBOX", replace("To: Bob <bob@example.org>", "To: <<<"), goimap.StatusResponseTypeNo,
				"failed to retrieve addresses from literal:failed to parse addresses for 'To': [Error offset=1]: expected atext char for atom"},
			{"undecodable base64 text", "INBOX", replace("\n\n", "\nContent-Transfer-Encoding: base64\n\n#"), goimap.StatusResponseTypeNo,
				"illegal base64 data at input byte 0"},
			{"multipart without its closing boundary", "INBOX",
				replace("\n\nHello refused.\n", "\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nHello.\n"),
				goimap.StatusResponseTypeNo, "failed to parse literal: unexpected EOF"},
			{"base64 attachment with a space inside", "INBOX",
				replace("\n\nHello refused.\n", "\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nHello.\n"+
					"--XX\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\naGVsbG8g d29ybGQ=\n--XX--\n"),
				goimap.StatusResponseTypeNo, "failed to parse literal: illegal base64 data at input byte 8"},
			{"into All Mail", "All Mail", bridgeMsg("all"), goimap.StatusResponseTypeNo, "operation not allowed"},
			{"into Starred", "Starred", bridgeMsg("starred"), goimap.StatusResponseTypeNo, "operation not allowed"},
		} {
			err := imaptest.TryAppend(c, tc.mailbox, imaptest.Message{Body: tc.body})
			wantIMAPError(t, "APPEND "+tc.what, err, tc.typ, tc.text)
		}
		// What the connector refused (NO, not gluon's BAD) gluon keeps in
		// its recovery mailbox, as in Bridge.
		if n := status(t, c, "Recovered Messages"); n != 6 {
			t.Errorf("Recovered Messages has %d messages, want 6", n)
		}
		if n := status(t, c, "INBOX"); n != 1 {
			t.Errorf("INBOX has %d messages after the refusals, want 1", n)
		}
	})

	t.Run("All Mail and Starred", func(t *testing.T) {
		eventually(t, "the message in All Mail", func() bool { return status(t, c, "All Mail") == 1 })
		if n := status(t, c, "Starred"); n != 0 {
			t.Errorf("Starred has %d messages before \\Flagged, want 0", n)
		}
		uid := imaptest.Fetch(t, c, "INBOX")[0].UID
		imaptest.Store(t, c, "INBOX", []goimap.UID{uid}, goimap.StoreFlagsAdd, goimap.FlagFlagged)
		eventually(t, "the flagged message in Starred", func() bool { return status(t, c, "Starred") == 1 })
		if n := status(t, c, "All Mail"); n != 1 {
			t.Errorf("All Mail has %d messages, want 1", n)
		}
	})

	t.Run("labels", func(t *testing.T) {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Copy(goimap.SeqSetNum(1), "Labels/x").Wait(); err != nil {
			t.Fatalf("COPY to Labels/x: %v", err)
		}
		labelled := imaptest.Fetch(t, c, "Labels/x")
		inbox := imaptest.Fetch(t, c, "INBOX")
		if len(labelled) != 1 || len(inbox) != 1 || !bytes.Equal(labelled[0].Body, inbox[0].Body) {
			t.Fatalf("Labels/x has %d messages, INBOX %d; want the same one in both", len(labelled), len(inbox))
		}
		if n := status(t, c, "All Mail"); n != 1 {
			t.Errorf("All Mail has %d messages after labelling, want the one", n)
		}

		// APPEND into a label adds the label and puts the message where
		// Proton puts an imported one: Sent without a Received header.
		if err := imaptest.TryAppend(c, "Labels/x", imaptest.Message{Body: bridgeMsg("labelled")}); err != nil {
			t.Fatalf("APPEND to Labels/x: %v", err)
		}
		eventually(t, "the labelled APPEND in Sent and All Mail", func() bool {
			return status(t, c, "Sent") == 1 && status(t, c, "All Mail") == 2 && status(t, c, "Labels/x") == 2
		})

		// A message has one folder: COPY into a folder moves it there.
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Copy(goimap.SeqSetNum(1), "Folders/a/b").Wait(); err != nil {
			t.Fatalf("COPY to Folders/a/b: %v", err)
		}
		eventually(t, "the message out of INBOX", func() bool {
			return status(t, c, "INBOX") == 0 && status(t, c, "Folders/a/b") == 1 && status(t, c, "All Mail") == 2
		})
		// MOVE between Sent and INBOX is refused.
		if _, err := c.Select("Sent", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		_, err := c.Move(goimap.SeqSetNum(1), "INBOX").Wait()
		wantIMAPError(t, "MOVE Sent to INBOX", err, goimap.StatusResponseTypeNo, "operation not allowed")
		// Expunged from Trash, a message that is in no other mailbox is
		// gone for good, from All Mail too.
		if _, err := c.Move(goimap.SeqSetNum(1), "Trash").Wait(); err != nil {
			t.Fatalf("MOVE Sent to Trash: %v", err)
		}
		eventually(t, "the message in Trash, still in Labels/x", func() bool {
			return status(t, c, "Trash") == 1 && status(t, c, "Sent") == 0 && status(t, c, "Labels/x") == 2
		})
		if err := c.Unselect().Wait(); err != nil {
			t.Fatal(err)
		}
	})

	// Mail, mailboxes and labels outlive a stop and a crash.
	check := func(t *testing.T) {
		t.Helper()
		c := s.Dial(t, user, pw)
		msgs := imaptest.Fetch(t, c, "Folders/a/b")
		if len(msgs) != 1 || !bytes.HasSuffix(msgs[0].Body, bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n"))) {
			t.Fatalf("Folders/a/b after restart: %d messages, want the good one", len(msgs))
		}
		for mailbox, n := range map[string]uint32{"All Mail": 2, "Labels/x": 2, "Starred": 1, "Trash": 1, "INBOX": 0} {
			if got := status(t, c, mailbox); got != n {
				t.Errorf("%s after restart: %d messages, want %d", mailbox, got, n)
			}
		}
	}
	t.Run("stop and start", func(t *testing.T) {
		s.Stop(t)
		s.Restart(t)
		check(t)
	})
	t.Run("kill and start", func(t *testing.T) {
		s.Kill(t)
		s.Restart(t)
		check(t)
	})

	// Bridge's text for a header line without a colon ends in the line's
	// own CRLF: the NO is followed by an empty line, on which go-imap's
	// client gives up the connection. Last, on its own connection.
	t.Run("APPEND header line without colon", func(t *testing.T) {
		c := s.Dial(t, user, pw)
		body := bytes.Replace(bridgeMsg("garbage"), []byte("Subject:"), []byte("garbage line\nSubject:"), 1)
		err := imaptest.TryAppend(c, "INBOX", imaptest.Message{Body: body})
		wantIMAPError(t, "APPEND header line without colon", err, goimap.StatusResponseTypeNo,
			"failed to parse literal: message: malformed MIME header line: garbage line")
		if err := c.Noop().Wait(); err == nil {
			t.Errorf("NOOP after the reply with an empty line: no error, want the connection closed by go-imap")
		}
	})
}

func tlsTo(s *imaptest.Server) *tls.Config {
	return &tls.Config{RootCAs: s.RootCAs, ServerName: s.Host}
}

// capList returns capabilities as a sorted, space-separated list.
func capList(caps goimap.CapSet) string {
	var l []string
	for c := range caps {
		l = append(l, string(c))
	}
	sort.Strings(l)
	return strings.Join(l, " ")
}

// listBridge returns every mailbox with its attributes (sorted; \Marked
// and \Unmarked left out) and checks the "/" separator.
func listBridge(t *testing.T, c *imapclient.Client) map[string]string {
	t.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	out := map[string]string{}
	for _, l := range list {
		if l.Delim != '/' {
			t.Errorf("LIST %s: separator %q, want '/'", l.Mailbox, l.Delim)
		}
		var attrs []string
		for _, a := range l.Attrs {
			if a != goimap.MailboxAttrMarked && a != goimap.MailboxAttrUnmarked {
				attrs = append(attrs, string(a))
			}
		}
		sort.Strings(attrs)
		out[l.Mailbox] = strings.Join(attrs, " ")
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func status(t *testing.T, c *imapclient.Client, mailbox string) uint32 {
	t.Helper()
	st, err := c.Status(mailbox, &goimap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatalf("STATUS %s: %v", mailbox, err)
	}
	return *st.NumMessages
}

// eventually waits up to 10 s for cond: the server, as Bridge, brings
// All Mail, Starred and moves between folders up to date after the
// command that caused them.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantIMAPError(t *testing.T, what string, err error, typ goimap.StatusResponseType, text string) {
	t.Helper()
	var ie *goimap.Error
	if !errors.As(err, &ie) {
		t.Errorf("%s: error %v, want %s %q", what, err, typ, text)
		return
	}
	if ie.Type != typ || ie.Text != text {
		t.Errorf("%s: %s %q, want %s %q", what, ie.Type, ie.Text, typ, text)
	}
}
