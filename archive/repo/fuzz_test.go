package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/dedup"
)

func fuzzSnapshot() *Snapshot {
	parent := dedup.Hash([]byte("parent"))
	return &Snapshot{
		Version: Version, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Host: "h", Username: "u",
		Tags: []string{"nightly"}, Source: "imaps://a@b", Parent: &parent, Partial: true,
		Skipped: []Skipped{{Folder: "INBOX", SourceID: "7", Error: "refused"}},
		Folders: []FolderEntry{{
			Folder: archive.Folder{Path: "INBOX", Name: "INBOX", Delimiter: "/", SpecialUse: archive.Sent},
			Cursor: []byte{1, 2, 3}, Pages: []dedup.ID{dedup.Hash([]byte("p"))}, Messages: 2, Bytes: 300,
		}},
		Summary:  Summary{Messages: 2, Bytes: 300, Duration: time.Second},
		Repaired: &Repair{},
	}
}

// FuzzDecodeSnapshot decodes arbitrary plaintext as a snapshot file: what
// decodes encodes and decodes again to the same snapshot.
func FuzzDecodeSnapshot(f *testing.F) {
	b, err := json.Marshal(fuzzSnapshot())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"time":"2026-01-02T03:04:05+01:00","folders":[{"path":"x","pages":[]}]}`))
	f.Add([]byte(`{"version":1,"folders":null,"parent":null,"summary":{"duration":-1}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		enc, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("decoded snapshot %+v does not encode: %v", s, err)
		}
		again, err := decodeSnapshot(enc)
		if err != nil {
			t.Fatalf("re-encoded snapshot %s does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(normalSnapshot(s), normalSnapshot(again)) {
			t.Fatalf("snapshot changed through encoding:\n%+v\n%+v", s, again)
		}
	})
}

// normalSnapshot clears what JSON cannot tell apart: empty and nil slices,
// and time zones of the same instant.
func normalSnapshot(s *Snapshot) *Snapshot {
	c := *s
	c.Time = c.Time.UTC()
	if len(c.Tags) == 0 {
		c.Tags = nil
	}
	if len(c.Skipped) == 0 {
		c.Skipped = nil
	}
	c.Folders = nil
	for _, f := range s.Folders {
		if len(f.Cursor) == 0 {
			f.Cursor = nil
		}
		if len(f.Pages) == 0 {
			f.Pages = nil
		}
		c.Folders = append(c.Folders, f)
	}
	if c.Repaired != nil {
		r := *c.Repaired
		r.Time = r.Time.UTC()
		if len(r.Lost) == 0 {
			r.Lost = nil
		}
		c.Repaired = &r
	}
	return &c
}

// FuzzDecodePage decodes arbitrary plaintext as a page of a folder's
// message list: the entries that decode, written by a PageWriter's
// encoding, decode to the same entries.
func FuzzDecodePage(f *testing.F) {
	var page bytes.Buffer
	for i := range 3 {
		e := testEntry(i)
		if i == 1 {
			e.Chunks = []dedup.ID{dedup.Hash([]byte("a")), dedup.Hash([]byte("b"))}
			e.Fingerprint = "ck"
		}
		b, _ := json.Marshal(&e)
		page.Write(b)
		page.WriteByte('\n')
	}
	f.Add(page.Bytes())
	f.Add([]byte("{}\n\n{\"s\":-1}"))
	f.Add([]byte("{\"id\":\"00\"}\n"))
	f.Add([]byte("null\n[]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var entries []Entry
		err := decodePage(b, func(e Entry) error {
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			return
		}
		var enc bytes.Buffer
		for i := range entries {
			line, err := json.Marshal(&entries[i])
			if err != nil {
				t.Fatalf("entry %+v does not encode: %v", entries[i], err)
			}
			enc.Write(line)
			enc.WriteByte('\n')
		}
		var again []Entry
		if err := decodePage(enc.Bytes(), func(e Entry) error {
			again = append(again, e)
			return nil
		}); err != nil {
			t.Fatalf("re-encoded page does not decode: %v", err)
		}
		if len(again) != len(entries) {
			t.Fatalf("re-encoded page has %d entries, want %d", len(again), len(entries))
		}
		for i := range entries {
			a, b := entries[i], again[i]
			a.Date, b.Date = a.Date.UTC(), b.Date.UTC()
			if len(a.Flags) == 0 {
				a.Flags = nil
			}
			if len(a.Chunks) == 0 {
				a.Chunks = nil
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("entry %d changed through encoding: %+v, want %+v", i, b, a)
			}
		}
		// fn's error ends the page and comes back as it is.
		stop := errors.New("stop")
		if len(entries) > 0 {
			if err := decodePage(b, func(Entry) error { return stop }); err != stop {
				t.Fatalf("decodePage with a failing fn = %v, want its error", err)
			}
		}
	})
}
