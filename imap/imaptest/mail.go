package imaptest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sort"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func tlsConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

// Message is one message as a test puts it on, or reads it from, a server.
type Message struct {
	UID   goimap.UID
	Flags []string // sorted, \Recent dropped
	Date  time.Time
	Body  []byte
}

// Append creates the mailbox if needed and appends msgs (Flags and Date
// are set on the server; Body must not be empty).
func Append(t testing.TB, c *imapclient.Client, mailbox string, msgs []Message) {
	t.Helper()
	if err := c.Create(mailbox, nil).Wait(); err != nil {
		if ie, ok := err.(*goimap.Error); !ok || ie.Code != goimap.ResponseCodeAlreadyExists {
			// Dovecot says NO [ALREADYEXISTS]; others may not: go on and
			// let APPEND tell.
			_ = ie
		}
	}
	for i, m := range msgs {
		if err := TryAppend(c, mailbox, m); err != nil {
			t.Fatalf("append %s #%d: %v", mailbox, i, err)
		}
	}
}

// Fetch reads every message of a mailbox, in UID order.
func Fetch(t testing.TB, c *imapclient.Client, mailbox string) []Message {
	t.Helper()
	sel, err := c.Select(mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("examine %s: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	section := &goimap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, BodySection: []*goimap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch %s: %v", mailbox, err)
	}
	var out []Message
	for _, b := range bufs {
		out = append(out, Message{UID: b.UID, Flags: SortFlags(b.Flags), Date: b.InternalDate, Body: b.FindBodySection(section)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// SortFlags returns flags as sorted strings without \Recent.
func SortFlags(flags []goimap.Flag) []string {
	out := []string{}
	for _, f := range flags {
		if f == `\Recent` {
			continue
		}
		out = append(out, string(f))
	}
	sort.Strings(out)
	return out
}

// Generate returns n small distinct messages for tests.
func Generate(prefix string, n int) []Message {
	out := make([]Message, n)
	base := time.Date(2021, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	for i := range out {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: a%d@example.org\r\nTo: b@example.org\r\nSubject: %s %d\r\nMessage-ID: <%s.%d@example.org>\r\n\r\nBody of %s %d.\r\n", i, prefix, i, prefix, i, prefix, i)
		out[i] = Message{Body: b.Bytes(), Date: base.Add(time.Duration(i) * time.Minute)}
		if i%3 == 0 {
			out[i].Flags = []string{`\Seen`}
		}
		if i%7 == 0 {
			out[i].Flags = append(out[i].Flags, "$Label1")
		}
	}
	return out
}

// TryAppend appends one message and returns the server's error, if any.
func TryAppend(c *imapclient.Client, mailbox string, m Message) error {
	var flags []goimap.Flag
	for _, f := range m.Flags {
		flags = append(flags, goimap.Flag(f))
	}
	cmd := c.Append(mailbox, int64(len(m.Body)), &goimap.AppendOptions{Flags: flags, Time: m.Date})
	if _, err := cmd.Write(m.Body); err != nil {
		cmd.Close()
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// Store changes flags of the messages with the given UIDs in mailbox
// (selected read-write).
func Store(t testing.TB, c *imapclient.Client, mailbox string, uids []goimap.UID, op goimap.StoreFlagsOp, flags ...goimap.Flag) {
	t.Helper()
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	if err := c.Store(goimap.UIDSetNum(uids...), &goimap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close(); err != nil {
		t.Fatalf("store %s: %v", mailbox, err)
	}
}

// Expunge removes the messages with the given UIDs from mailbox.
func Expunge(t testing.TB, c *imapclient.Client, mailbox string, uids []goimap.UID) {
	t.Helper()
	Store(t, c, mailbox, uids, goimap.StoreFlagsAdd, goimap.FlagDeleted)
	if err := c.Expunge().Close(); err != nil {
		t.Fatalf("expunge %s: %v", mailbox, err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatalf("unselect %s: %v", mailbox, err)
	}
}
