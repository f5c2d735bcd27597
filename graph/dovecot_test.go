package graph_test

import (
	"path/filepath"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestGraphToDovecot is the day planb is for: a Microsoft 365 mailbox
// (the fake) is backed up, restored into a European IMAP host (a real
// Dovecot) and verified there message by message.
func TestGraphToDovecot(t *testing.T) {
	d := imaptest.Start(t)
	user, pw := d.NewUser(t)

	f := newFixture(t)
	mb := f.tenant.AddMailbox("alice@contoso.eu", "Alice")
	wk := map[string]string{"Sent": "sentitems", "Drafts": "drafts", "Trash": "deleteditems", "Junk": "junkemail", "Archive": "archive"}
	n := load(t, mb, filepath.Join(root(), "testdata", "mail", "maildir"), "", wk)

	r := repotest.New(t, nil)
	snap, err := backup.Run(t.Context(), r, f.client(t, nil).Source(mb.Address), nil)
	if err != nil {
		t.Fatalf("backup graph: %v", err)
	}
	if snap.Partial || snap.Summary.Messages != int64(n) {
		t.Fatalf("snapshot partial=%v with %d messages, want %d", snap.Partial, snap.Summary.Messages, n)
	}

	o := &imap.Options{Host: d.Host, Port: d.TLSPort, User: user, Password: pw, TLS: imap.TLSImplicit,
		RootCAs: d.RootCAs, RetryDelay: 50 * time.Millisecond, Connections: 3}
	sink, err := imap.NewSink(t.Context(), o, &imap.SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Run(t.Context(), r, snap, sink, nil); err != nil {
		t.Fatalf("restore into Dovecot: %v", err)
	}
	// Dovecot refuses a zero-byte message (testdata has one): it is named
	// and the restore goes on. Nothing else may be refused or differ.
	empty := map[string]bool{}
	for i := range snap.Folders {
		r.Entries(t.Context(), snap, i, func(e repo.Entry) error {
			if e.Size == 0 {
				empty[e.SourceID] = true
			}
			return nil
		})
	}
	rep := sink.Report()
	if rep.Appended != int64(n-len(empty)) || len(rep.Refused) != len(empty) {
		t.Errorf("restore appended %d and refused %d messages, want %d and the %d empty one(s): %+v", rep.Appended, len(rep.Refused), n-len(empty), len(empty), rep)
	}
	for _, x := range rep.Refused {
		if !empty[x.SourceID] {
			t.Errorf("restore refused %+v, which is not empty", x)
		}
	}

	a, err := imap.OpenAccount(t.Context(), o, imap.MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	vr, err := restore.Verify(t.Context(), r, snap, a, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, d := range vr.Differences {
		if d.Class == restore.Missing && empty[d.SourceID] {
			continue // the refused empty message
		}
		t.Errorf("verify: %+v", d)
	}
	if vr.Messages != int64(n) {
		t.Errorf("verified %d messages, want %d", vr.Messages, n)
	}
}
