package backup_test

import (
	"bytes"
	"testing"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/repo"
)

// TestWireSizes: every entry records the size its message has with CRLF
// line ends, as mailform converts it (what planb serve sends), for
// messages read whole and streamed, with line ends of every kind, a CR LF
// pair cut between two reads of a streamed message, and a CR at the very
// end; an unchanged message keeps it in the next snapshot.
func TestWireSizes(t *testing.T) {
	// A streamed message is read as its first 1 MiB + 1 bytes and then
	// the rest: put a CR LF pair, and a lone CR, across that cut.
	const cut = 1<<20 + 1
	lines := func(n int, end string) []byte {
		var b bytes.Buffer
		for b.Len() < n {
			b.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit" + end)
		}
		return b.Bytes()[:n]
	}
	pairAcross := append(lines(cut-1, "\n"), '\r', '\n')
	pairAcross = append(pairAcross, lines(300<<10, "\r\n")...)
	crAcross := append(lines(cut-1, "\r\n"), '\r', 'x')
	crAcross = append(crAcross, lines(200<<10, "\n")...)
	bodies := map[string][]byte{
		"lf":             []byte("From: a@example.eu\nSubject: lf\n\nbody\nmore\n"),
		"crlf":           []byte("From: a@example.eu\r\nSubject: crlf\r\n\r\nbody\r\n"),
		"mixed":          []byte("From: a@example.eu\r\nSubject: mixed\n\r\nbare\rcr\n\rlf\r\n\r"),
		"cr at end":      []byte("Subject: cr\r\n\r\nends in\r"),
		"no line end":    []byte("no newline\x00NUL"),
		"empty":          nil,
		"only line ends": []byte("\n\r\n\r\r\n\n\n"),
		"big lf":         lines(3<<20, "\n"),
		"big crlf":       lines(2<<20+17, "\r\n"),
		"pair across":    pairAcross,
		"cr across":      crAcross,
	}
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	want := map[string]int64{}
	for name, body := range bodies {
		mb.Add("INBOX", archivetest.Msg{SourceID: name, InternalDate: date(1), Body: body})
		want[name] = int64(len(mailform.AppendCRLF(nil, body)))
	}
	r, _ := newRepo(t)
	check := func(snap *repo.Snapshot) {
		t.Helper()
		seen := 0
		err := r.Entries(t.Context(), snap, 0, func(e repo.Entry) error {
			seen++
			if e.Wire != want[e.SourceID] {
				t.Errorf("%q: Wire = %d, want %d (Size %d)", e.SourceID, e.Wire, want[e.SourceID], e.Size)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if seen != len(bodies) {
			t.Fatalf("%d entries, want %d", seen, len(bodies))
		}
	}
	snap, err := backup.Run(t.Context(), r, mb, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(snap)
	if string(bodies["pair across"][cut-1:cut+1]) != "\r\n" || string(bodies["cr across"][cut-1:cut+1]) != "\rx" {
		t.Fatal("the test's pair is not where the read is cut")
	}
	// Unchanged, and one message re-flagged: entries kept from the parent.
	mb.SetFlags("INBOX", "lf", []string{archive.FlagSeen})
	snap2, err := backup.Run(t.Context(), r, mb, &backup.Options{Parent: snap})
	if err != nil {
		t.Fatal(err)
	}
	check(snap2)
}
