package repo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/dedup"
)

func testEntry(i int) Entry {
	body := fmt.Appendf(nil, "message %d", i)
	return Entry{
		ID:       dedup.Hash(body),
		SourceID: fmt.Sprint(1000 + i),
		Flags:    []string{archive.FlagSeen},
		Date:     time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour),
		Size:     int64(len(body)),
	}
}

// writePages stores entries as pages through a fresh saver and returns the
// page IDs and how many new blobs the saver stored.
func writePages(t *testing.T, r *Repository, entries []Entry) ([]dedup.ID, int64) {
	t.Helper()
	s := r.NewSaver(t.Context())
	pw := NewPageWriter(s)
	var size int64
	for i := range entries {
		if err := pw.Add(&entries[i]); err != nil {
			t.Fatal(err)
		}
		size += entries[i].Size
	}
	pages, count, bytes, err := pw.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if count != int64(len(entries)) || bytes != size {
		t.Errorf("PageWriter.Finish: %d entries, %d bytes; want %d, %d", count, bytes, len(entries), size)
	}
	st, err := s.Flush()
	if err != nil {
		t.Fatal(err)
	}
	return pages, st.Blobs
}

// readPages returns the entries of pages, in order, through Entries.
func readPages(t *testing.T, r *Repository, pages []dedup.ID) []Entry {
	t.Helper()
	snap := &Snapshot{Folders: []FolderEntry{{Folder: archive.Folder{Path: "INBOX"}, Pages: pages}}}
	var out []Entry
	if err := r.Entries(t.Context(), snap, 0, func(e Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func entriesEqual(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		return x.ID == y.ID && x.SourceID == y.SourceID && x.Date.Equal(y.Date) && x.Size == y.Size && slices.Equal(x.Flags, y.Flags)
	})
}

func TestPagesAppend(t *testing.T) {
	r, _ := newTestRepo(t)
	var entries []Entry
	for i := range 5010 {
		entries = append(entries, testEntry(i))
	}
	before, _ := writePages(t, r, entries[:5000])
	if len(before) < 5 {
		t.Fatalf("5000 entries make %d pages, want several", len(before))
	}
	if got := readPages(t, r, before); !entriesEqual(got, entries[:5000]) {
		t.Fatalf("Entries returned %d entries, want the 5000 written", len(got))
	}

	// Every page but the last ends at a content-defined break.
	for i, p := range before {
		data, err := r.LoadBlob(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
		var last Entry
		if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil {
			t.Fatal(err)
		}
		if i < len(before)-1 && last.ID[0] != 0 && len(lines) != maxPage {
			t.Errorf("page %d of %d ends with id %s after %d entries: not a break", i, len(before), last.ID.Short(), len(lines))
		}
	}

	after, added := writePages(t, r, entries)
	if got := readPages(t, r, after); !entriesEqual(got, entries) {
		t.Fatalf("Entries returned %d entries, want the 5010 written", len(got))
	}
	k := len(before) - 1
	if !slices.Equal(after[:k], before[:k]) {
		t.Errorf("appending 10 entries changed pages before the last one:\nbefore %v\nafter  %v", before, after)
	}
	if n := len(after) - k; n < 1 || n > 2 {
		t.Errorf("appending 10 entries wrote %d new pages, want 1 or 2", n)
	}
	if added != int64(len(after)-k) {
		t.Errorf("the saver stored %d new blobs, want %d (the new pages only)", added, len(after)-k)
	}
}

func TestPagesChangeInTheMiddle(t *testing.T) {
	r, _ := newTestRepo(t)
	var entries []Entry
	for i := range 3000 {
		entries = append(entries, testEntry(i))
	}
	before, _ := writePages(t, r, entries)
	entries[1500].Flags = []string{archive.FlagSeen, archive.FlagFlagged}
	after, added := writePages(t, r, entries)
	if len(after) != len(before) {
		t.Fatalf("changing flags changed the page count: %d → %d", len(before), len(after))
	}
	diff := 0
	for i := range before {
		if before[i] != after[i] {
			diff++
		}
	}
	if diff != 1 || added != 1 {
		t.Errorf("changing one entry changed %d pages and stored %d blobs, want 1 and 1", diff, added)
	}
}

func TestPagesMaxSize(t *testing.T) {
	r, _ := newTestRepo(t)
	// No ID starts with a zero byte: pages break at maxPage entries.
	var entries []Entry
	for i := 0; len(entries) < 2*maxPage+100; i++ {
		if e := testEntry(i); e.ID[0] != 0 {
			entries = append(entries, e)
		}
	}
	pages, _ := writePages(t, r, entries)
	var sizes []int
	for _, p := range pages {
		sizes = append(sizes, len(readPages(t, r, []dedup.ID{p})))
	}
	if want := []int{maxPage, maxPage, 100}; !slices.Equal(sizes, want) {
		t.Errorf("page sizes = %v, want %v", sizes, want)
	}
	// An entry with a zero first byte ends its page.
	e := testEntry(0)
	e.ID[0] = 0
	one := []Entry{testEntry(1), e, testEntry(2)}
	if one[0].ID[0] == 0 || one[2].ID[0] == 0 {
		t.Fatal("test entries start with a zero byte")
	}
	pages, _ = writePages(t, r, one)
	if len(pages) != 2 || len(readPages(t, r, pages[:1])) != 2 {
		t.Errorf("entries [x, 00..., y] made %d pages, want 2, the first of 2 entries", len(pages))
	}
	// No entries, no pages.
	if pages, _ := writePages(t, r, nil); len(pages) != 0 {
		t.Errorf("no entries made %d pages, want 0", len(pages))
	}
}

func TestEntryChunkIDs(t *testing.T) {
	id := dedup.Hash([]byte("m"))
	c1, c2 := dedup.Hash([]byte("c1")), dedup.Hash([]byte("c2"))
	tests := []struct {
		name string
		e    Entry
		want []dedup.ID
	}{
		{"one chunk", Entry{ID: id, Size: 1}, []dedup.ID{id}},
		{"empty message", Entry{ID: dedup.Hash(nil), Size: 0}, nil},
		{"chunks", Entry{ID: id, Size: 100, Chunks: []dedup.ID{c1, c2}}, []dedup.ID{c1, c2}},
	}
	for _, tt := range tests {
		if got := tt.e.ChunkIDs(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: ChunkIDs() = %v, want %v", tt.name, got, tt.want)
		}
	}
	// The JSON form uses short keys and omits empty fields.
	b, err := json.Marshal(Entry{ID: id, SourceID: "7", Date: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"` + id.String() + `","sid":"7","d":"2024-05-06T07:08:09Z","s":1}`; string(b) != want {
		t.Errorf("Entry JSON = %s, want %s", b, want)
	}
}

// TestPagesByteCap: a folder of very large messages (thousands of chunks
// each) makes pages that readers accept: none over the cap, let alone the
// frame limit, and they read back whole.
func TestPagesByteCap(t *testing.T) {
	r, _ := newTestRepo(t)
	var entries []Entry
	for i := 0; len(entries) < 24; i++ {
		e := testEntry(i)
		if e.ID[0] == 0 {
			continue
		}
		// A 1.3 GiB message cut into 20,000 chunks: about 1.3 MiB of JSON.
		e.Size = 20000 * 64 << 10
		for j := range 20000 {
			e.Chunks = append(e.Chunks, dedup.Hash(fmt.Appendf(nil, "%d/%d", i, j)))
		}
		entries = append(entries, e)
	}
	pages, _ := writePages(t, r, entries)
	for _, p := range pages {
		loc, ok := r.Index().Lookup(p)
		if !ok {
			t.Fatalf("page %s not indexed", p.Short())
		}
		if loc.Length > maxPageBytes {
			t.Errorf("page %s has %d bytes, want at most %d", p.Short(), loc.Length, maxPageBytes)
		}
	}
	got := readPages(t, r, pages)
	if !entriesEqual(got, entries) {
		t.Errorf("read back %d entries, want the %d written", len(got), len(entries))
	}
	for i := range got {
		if !slices.Equal(got[i].Chunks, entries[i].Chunks) {
			t.Fatalf("entry %d: chunks differ", i)
		}
	}
}
