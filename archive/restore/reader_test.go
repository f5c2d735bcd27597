package restore_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/archive/restore"
)

// TestReaderSeek: a Reader of a message of many chunks, read partly or
// wholly, rewinds with Seek(0, io.SeekStart) and yields the same bytes
// again; Seek(0, io.SeekCurrent) tells the position; a seek to any offset,
// from the start, the current position or the end, reads on from there; a
// seek to a negative offset fails and leaves the reader where it was.
func TestReaderSeek(t *testing.T) {
	body := make([]byte, 3<<20) // several chunks
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte('a' + rng.IntN(26))
	}
	body = append([]byte("Subject: big\r\n\r\n"), body...)
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	mb.Add("INBOX", archivetest.Msg{InternalDate: time.Unix(1e9, 0), Body: body})
	r := repotest.New(t, nil)
	snap, err := backup.Run(t.Context(), r, mb, &backup.Options{Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var entries []repo.Entry
	if err := r.Entries(t.Context(), snap, 0, func(e repo.Entry) error { entries = append(entries, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || len(entries[0].ChunkIDs()) < 2 {
		t.Fatalf("snapshot holds %d entries (chunks %v), want one message of several chunks", len(entries), entries)
	}
	rd := restore.NewReader(t.Context(), r, &entries[0])
	for _, n := range []int{0, 100, 1 << 20, len(body)} {
		if _, err := rd.Seek(0, io.SeekStart); err != nil {
			t.Fatalf("Seek(0, SeekStart) = %v", err)
		}
		if _, err := io.ReadFull(rd, make([]byte, n)); err != nil {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		if pos, err := rd.Seek(0, io.SeekCurrent); pos != int64(n) || err != nil {
			t.Errorf("after reading %d bytes Seek(0, SeekCurrent) = %d, %v", n, pos, err)
		}
		if _, err := rd.Seek(-int64(n)-1, io.SeekCurrent); err == nil {
			t.Errorf("Seek(%d, SeekCurrent) = nil error, want one", -n-1)
		}
		if pos, _ := rd.Seek(0, io.SeekCurrent); pos != int64(n) {
			t.Errorf("a refused seek moved the reader to %d, want %d", pos, n)
		}
		if _, err := rd.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rd)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("after reading %d bytes and rewinding: %d bytes, %v; want the %d bytes of the message", n, len(got), err, len(body))
		}
	}
	size := int64(len(body))
	for _, c := range []struct {
		off    int64
		whence int
		want   int64
	}{
		{17, io.SeekStart, 17}, {1<<20 + 5, io.SeekStart, 1<<20 + 5}, {-100, io.SeekEnd, size - 100},
		{-(1 << 20), io.SeekCurrent, size - 100 - 1<<20}, {size, io.SeekStart, size}, {size + 10, io.SeekStart, size + 10},
	} {
		pos, err := rd.Seek(c.off, c.whence)
		if err != nil || pos != c.want {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d", c.off, c.whence, pos, err, c.want)
		}
		got := make([]byte, 1000)
		k, err := io.ReadFull(rd, got)
		want := body[min(c.want, size):]
		want = want[:min(len(want), 1000)]
		if !bytes.Equal(got[:k], want) || (k < 1000) != (err != nil) {
			t.Errorf("after Seek(%d, %d) read %d bytes, %v; want %d bytes of the message from %d", c.off, c.whence, k, err, len(want), c.want)
		}
		if _, err := rd.Seek(c.want, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
}
