package imap

import (
	"fmt"
	"path/filepath"
	"testing"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestDovecotHashRoundTrip: every message of testdata, appended to Dovecot
// and fetched back, has the same exact fingerprint (Dovecot returns CRLF
// line ends) and the same date to the second.
func TestDovecotHashRoundTrip(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	src, err := mailfile.NewMaildirSource(filepath.Join(repoRoot(t), "testdata", "mail", "maildir"), nil)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := mb.Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fs {
		for _, m := range mb.Messages(f.Path) {
			if len(m.Body) == 0 {
				continue
			}
			n++
			x := fmt.Sprintf("X%d", n)
			imaptest.Append(t, c, x, []imaptest.Message{{Body: m.Body, Date: m.InternalDate}})
			got := imaptest.Fetch(t, c, x)
			h1, h2 := normHash(t, m.Body), normHash(t, got[0].Body)
			if h1 != h2 || got[0].Date.Unix() != m.InternalDate.Unix() {
				t.Errorf("%s %s: %q came back as %q, date %v as %v", f.Path, m.SourceID, m.Body, got[0].Body, m.InternalDate, got[0].Date)
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d messages tried", n)
	}
}
