package backup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// TestEntryRecords: an entry decoded from its record is the entry, and
// prints the same JSON (a page of an unchanged folder must be the same
// bytes), for dates in any zone, the zero date and dates far away, with
// and without flags, labels and chunks.
func TestEntryRecords(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	odd := time.FixedZone("", -(3*3600 + 30*60 + 15))
	entries := []repo.Entry{
		{},
		{SourceID: "1700000000.M1P2.host", Fingerprint: "2048.1700000000123456789", ID: dedup.Hash([]byte("a")), Size: 2048, Wire: 2101,
			Date: time.Date(2026, 12, 5, 3, 4, 5, 6, time.UTC), Flags: []string{`\Seen`, "$Label1"}},
		{SourceID: "42", Date: time.Date(2025, 1, 2, 3, 4, 5, 0, paris), Labels: []string{"Work", "Ünïcode/ラベル"},
			Chunks: []dedup.ID{dedup.Hash([]byte("c1")), dedup.Hash([]byte("c2"))}, Size: 1 << 40, Wire: 1<<41 - 1},
		{SourceID: "far", Date: time.Date(9999, 12, 31, 23, 59, 59, 999999999, odd)},
		{SourceID: "old", Date: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{SourceID: "local", Date: time.Date(2024, 6, 1, 12, 0, 0, 0, time.Local)},
		{SourceID: "before 1970", Date: time.Date(1969, 7, 20, 20, 17, 40, 5, paris)},
	}
	l := newEntryList()
	for i := range entries {
		if got := l.add(&entries[i]); got != i {
			t.Fatalf("add #%d = %d", i, got)
		}
	}
	for i, want := range entries {
		got, ok := l.get(i)
		if !ok {
			t.Fatalf("get(%d) = false", i)
		}
		wj, _ := json.Marshal(&want)
		gj, _ := json.Marshal(&got)
		if !bytes.Equal(wj, gj) {
			t.Errorf("entry %d prints\n%s\nwant\n%s", i, gj, wj)
		}
		if !got.Date.Equal(want.Date) || got.ID != want.ID || got.Size != want.Size || got.Wire != want.Wire || got.SourceID != want.SourceID ||
			got.Fingerprint != want.Fingerprint || !reflect.DeepEqual(got.Flags, want.Flags) ||
			!reflect.DeepEqual(got.Labels, want.Labels) || !reflect.DeepEqual(got.Chunks, want.Chunks) {
			t.Errorf("entry %d = %+v, want %+v", i, got, want)
		}
		if _, off := got.Date.Zone(); want.Date.Location() != time.UTC {
			if _, woff := want.Date.Zone(); off != woff {
				t.Errorf("entry %d: offset %d, want %d", i, off, woff)
			}
		}
	}
	if !l.fingerprintIs(1, "2048.1700000000123456789") || l.fingerprintIs(1, "2048") || l.fingerprintIs(2, "") == false {
		t.Error("fingerprintIs is wrong")
	}

	// flagsAre: the flags a source reports, in any order and repeated,
	// against a record's (normalized when stored, as normFlags does).
	i := l.add(&repo.Entry{SourceID: "flagged", Date: time.Date(2025, 1, 2, 3, 4, 5, 6, odd), Size: 300,
		Flags: normFlags([]string{`\Seen`, "$Label1", `\Answered`}), Labels: []string{"Work"}, Chunks: []dedup.ID{dedup.Hash(nil)}})
	for _, c := range []struct {
		i     int
		flags []string
		want  bool
	}{
		{i, []string{"$Label1", `\Answered`, `\Seen`}, true},
		{i, []string{`\Seen`, `\Answered`, "$Label1", `\Seen`}, true},
		{i, []string{`\Seen`, `\Answered`}, false},
		{i, []string{`\Seen`, `\Answered`, "$Label1", `\Flagged`}, false},
		{i, []string{`\Seen`, `\Answered`, "$Label2"}, false},
		{i, nil, false},
		{0, nil, true},
		{0, []string{}, true},
		{0, []string{`\Seen`}, false},
		{3, nil, true}, // a date in another zone
		{2, []string{"Work"}, false},
	} {
		if got := l.flagsAre(c.i, c.flags); got != c.want {
			t.Errorf("flagsAre(%d, %q) = %v, want %v", c.i, c.flags, got, c.want)
		}
	}
}

// TestEntryList: entries are found by source ID, replaced in place,
// deleted (their slot kept), also when source IDs' hashes collide; a
// frozen copy does not change with the list.
func TestEntryList(t *testing.T) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprint("collide=", collide), func(t *testing.T) {
			l := newEntryList()
			if collide {
				l.hash = func(s string) uint64 { return uint64(len(s) % 3) }
			}
			const n = 5000 // a few arena chunks with the padding below
			pad := string(bytes.Repeat([]byte("x"), 500))
			for i := range n {
				l.add(&repo.Entry{SourceID: fmt.Sprint("m", i), Fingerprint: pad, Size: int64(i)})
			}
			if len(l.chunks) < 2 {
				t.Errorf("%d arena chunks, want several", len(l.chunks))
			}
			frozen := l.frozen()
			// Replace the even ones, delete every third.
			for i := 0; i < n; i += 2 {
				if j := l.add(&repo.Entry{SourceID: fmt.Sprint("m", i), Size: int64(-i)}); j != i {
					t.Fatalf("replacing m%d took slot %d", i, j)
				}
			}
			for i := 0; i < n; i += 3 {
				j, ok := l.find(fmt.Sprint("m", i))
				if !ok || j != i {
					t.Fatalf("find(m%d) = %d, %v", i, j, ok)
				}
				l.remove(j)
			}
			if l.Len() != n {
				t.Errorf("Len() = %d, want %d (deleted slots kept)", l.Len(), n)
			}
			var seen []int64
			l.each(func(e *repo.Entry) error { seen = append(seen, e.Size); return nil })
			var want []int64
			for i := range n {
				switch {
				case i%3 == 0:
				case i%2 == 0:
					want = append(want, int64(-i))
				default:
					want = append(want, int64(i))
				}
			}
			if !reflect.DeepEqual(seen, want) {
				t.Errorf("each gave %d entries, want %d in order", len(seen), len(want))
			}
			for i := range n {
				j, ok := l.find(fmt.Sprint("m", i))
				if ok != (i%3 != 0) || ok && j != i {
					t.Fatalf("find(m%d) = %d, %v", i, j, ok)
				}
			}
			if _, ok := l.find("m-none"); ok {
				t.Error("find of an unknown source ID = true")
			}
			// The frozen copy still has every entry as it was.
			k := 0
			frozen.each(func(e *repo.Entry) error {
				if e.Size != int64(k) || e.Fingerprint != pad {
					t.Fatalf("frozen entry %d = size %d", k, e.Size)
				}
				k++
				return nil
			})
			if k != n {
				t.Errorf("frozen copy has %d entries, want %d", k, n)
			}
		})
	}
}
