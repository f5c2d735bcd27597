package imap

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/imap/imaptest"
)

func TestHasher(t *testing.T) {
	crlf := "Message-ID: <a@b>\r\nSubject: x\r\n\r\nbody\r\nline\r\n"
	want, _, _ := HashOf(strings.NewReader(crlf))
	tests := []struct {
		name   string
		chunks []string
		same   bool
		id     string
	}{
		{"crlf", []string{crlf}, true, "<a@b>"},
		{"lf", []string{strings.ReplaceAll(crlf, "\r\n", "\n")}, true, "<a@b>"},
		{"cr|lf split", []string{"Message-ID: <a@b>\r", "\nSubject: x\r\n\r\nbody\nline\n"}, true, "<a@b>"},
		{"lf|lf split", []string{"Message-ID: <a@b>\n", "Subject: x\n", "\nbody\r\nline\n"}, true, "<a@b>"},
		{"other body", []string{strings.Replace(crlf, "body", "bodz", 1)}, false, "<a@b>"},
		{"no id", []string{"Subject: x\n\nbody\n"}, false, ""},
	}
	for _, tt := range tests {
		h := NewHasher()
		for _, c := range tt.chunks {
			h.Write([]byte(c))
		}
		if got := h.Sum() == want; got != tt.same {
			t.Errorf("%s: same hash = %v, want %v", tt.name, got, tt.same)
		}
		if got := h.MessageID(); got != tt.id {
			t.Errorf("%s: MessageID() = %q, want %q", tt.name, got, tt.id)
		}
	}
	a, _, _ := HashOf(strings.NewReader("x\x00y\n"))
	b, _, _ := HashOf(strings.NewReader("x\x80y\r\n"))
	if a != b {
		t.Errorf("HashOf(NUL) != HashOf(0x80)")
	}
}

// TestDovecotHashRoundTrip: every message of testdata, appended to Dovecot
// and fetched back, has the same Hash and the same date to the second.
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
			h1, _, _ := HashOf(bytes.NewReader(m.Body))
			h2, _, _ := HashOf(bytes.NewReader(got[0].Body))
			if h1 != h2 || got[0].Date.Unix() != m.InternalDate.Unix() {
				t.Errorf("%s %s: %q came back as %q, date %v as %v", f.Path, m.SourceID, m.Body, got[0].Body, m.InternalDate, got[0].Date)
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d messages tried", n)
	}
}
