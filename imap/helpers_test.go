package imap

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/imap/imaptest"
)

const repoPassword = repotest.Password

func newRepo(t *testing.T) *repo.Repository { return repotest.New(t, nil) }

// dovecotSource returns a Source for a user of d over implicit TLS.
func dovecotSource(t *testing.T, d *imaptest.Dovecot, user, password string, edit func(*Options)) *Source {
	t.Helper()
	o := &Options{
		Host: d.Host, Port: d.TLSPort, User: user, Password: password, TLS: TLSImplicit,
		RootCAs: d.RootCAs, RetryDelay: 50 * time.Millisecond,
	}
	if edit != nil {
		edit(o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func runBackup(t *testing.T, r *repo.Repository, src archive.Source) *repo.Snapshot {
	t.Helper()
	snap, err := backup.Run(t.Context(), r, src, &backup.Options{Workers: 4, Host: "test"})
	if err != nil {
		t.Fatalf("backup.Run: %v", err)
	}
	return snap
}

// restored reads a snapshot back into a Mailbox.
func restored(t *testing.T, r *repo.Repository, snap *repo.Snapshot) *archivetest.Mailbox {
	return repotest.Restore(t, r, snap)
}

// serverState reads what the server holds, with folder paths as the
// Source names them (delimiter replaced by "/").
func serverState(t *testing.T, c *imapclient.Client) *archivetest.Mailbox {
	t.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	mb := archivetest.NewMailbox()
	for _, l := range list {
		if slices.ContainsFunc(l.Attrs, func(a goimap.MailboxAttr) bool { return strings.EqualFold(string(a), `\Noselect`) }) {
			continue
		}
		p := l.Mailbox
		if l.Delim != 0 {
			p = strings.ReplaceAll(p, string(l.Delim), "/")
		}
		mb.AddFolder(archive.Folder{Path: p})
		for _, m := range imaptest.Fetch(t, c, l.Mailbox) {
			mb.Add(p, archivetest.Msg{Flags: m.Flags, InternalDate: m.Date, Body: m.Body})
		}
	}
	return mb
}

// loadMaildir collects a Maildir tree (our testdata) as messages.
func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

var _ = context.Background

// normHash returns the exact fingerprint of a message (line ends made
// CRLF, NUL as 0x80), as a server that stores it gives it back.
func normHash(t testing.TB, b []byte) mailform.Sum {
	t.Helper()
	p, err := mailform.Fingerprint(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return p.Exact
}
