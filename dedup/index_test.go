package dedup

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestIndex(t *testing.T) {
	ix := NewIndex()
	p1, p2 := Hash([]byte("pack 1")), Hash([]byte("pack 2"))
	if ix.HasPack(p1) || ix.Len() != 0 || len(ix.Packs()) != 0 {
		t.Fatalf("empty index: HasPack=%v Len=%d Packs=%v", ix.HasPack(p1), ix.Len(), ix.Packs())
	}
	n1 := ix.AddPack(p1)
	n2 := ix.AddPack(p2)
	if n1 != 0 || n2 != 1 {
		t.Errorf("AddPack numbers = %d, %d; want 0, 1", n1, n2)
	}
	if again := ix.AddPack(p1); again != n1 {
		t.Errorf("AddPack(p1) again = %d, want %d", again, n1)
	}
	if got := ix.Packs(); !slices.Equal(got, []ID{p1, p2}) {
		t.Errorf("Packs() = %v, want [p1 p2]", got)
	}
	if ix.Pack(n2) != p2 || !ix.HasPack(p2) {
		t.Errorf("Pack(%d) = %s, HasPack = %v; want %s, true", n2, ix.Pack(n2), ix.HasPack(p2), p2)
	}
	// Packs returns a copy.
	ps := ix.Packs()
	ps[0] = ID{}
	if ix.Pack(0) != p1 {
		t.Error("changing the slice Packs returned changed the index")
	}

	a, b := Hash([]byte("a")), Hash([]byte("b"))
	locA := Location{Pack: n1, FrameOffset: 0, FrameLength: 100, FrameRaw: 60, Offset: 10, Length: 20, Flags: 1, Type: 1}
	locA2 := Location{Pack: n2, FrameOffset: 500, FrameLength: 80, FrameRaw: 40, Offset: 0, Length: 20, Type: 1}
	locB := Location{Pack: n2, FrameOffset: 0, FrameLength: 500, FrameRaw: 460, Offset: 0, Length: 460, Type: 2}
	ix.Add(a, locA)
	ix.Add(b, locB)
	ix.Add(a, locA2) // first wins

	tests := []struct {
		id   ID
		want Location
		ok   bool
	}{
		{a, locA, true},
		{b, locB, true},
		{Hash([]byte("c")), Location{}, false},
	}
	for _, tt := range tests {
		got, ok := ix.Lookup(tt.id)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%s) = %+v, %v; want %+v, %v", tt.id.Short(), got, ok, tt.want, tt.ok)
		}
		if ix.Has(tt.id) != tt.ok {
			t.Errorf("Has(%s) = %v, want %v", tt.id.Short(), !tt.ok, tt.ok)
		}
	}
	if ix.Len() != 2 {
		t.Errorf("Len() = %d, want 2", ix.Len())
	}
	seen := make(map[ID]Location)
	ix.Each(func(id ID, loc Location) { seen[id] = loc })
	if len(seen) != 2 || seen[a] != locA || seen[b] != locB {
		t.Errorf("Each saw %+v, want a and b with their first locations", seen)
	}
}

func TestIndexConcurrent(t *testing.T) {
	ix := NewIndex()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				n := ix.AddPack(Hash(fmt.Appendf(nil, "pack %d", i%10)))
				ix.Add(Hash(fmt.Appendf(nil, "blob %d", i)), Location{Pack: n, Offset: uint32(g)})
				ix.Lookup(Hash(fmt.Appendf(nil, "blob %d", i/2)))
			}
		}()
	}
	wg.Wait()
	if ix.Len() != 200 || len(ix.Packs()) != 10 {
		t.Errorf("after concurrent adds: Len = %d, packs = %d; want 200, 10", ix.Len(), len(ix.Packs()))
	}
	for i := range 10 {
		id := Hash(fmt.Appendf(nil, "pack %d", i))
		if n := ix.AddPack(id); ix.Pack(n) != id {
			t.Errorf("pack %d: number %d names %s", i, n, ix.Pack(n))
		}
	}
}

func TestIndexRemovePack(t *testing.T) {
	ix := NewIndex()
	p1, p2 := Hash([]byte("pack 1")), Hash([]byte("pack 2"))
	n1, n2 := ix.AddPack(p1), ix.AddPack(p2)
	a, b, c := Hash([]byte("a")), Hash([]byte("b")), Hash([]byte("c"))
	ix.Add(a, Location{Pack: n1, Length: 1})
	ix.Add(b, Location{Pack: n2, Length: 2})
	ix.Add(c, Location{Pack: n1, Length: 3})
	ix.RemovePack(p1)
	ix.RemovePack(Hash([]byte("never added"))) // no-op
	tests := []struct {
		id   ID
		want bool
	}{
		{a, false},
		{b, true},
		{c, false},
	}
	for _, tt := range tests {
		if got := ix.Has(tt.id); got != tt.want {
			t.Errorf("Has(%s) after RemovePack = %v, want %v", tt.id.Short(), got, tt.want)
		}
	}
	if ix.HasPack(p1) || !ix.HasPack(p2) || !slices.Equal(ix.Packs(), []ID{p2}) {
		t.Errorf("after RemovePack(p1): HasPack = %v, %v; Packs() = %v; want false, true, [p2]", ix.HasPack(p1), ix.HasPack(p2), ix.Packs())
	}
	// Added again, the pack gets a new number; the old blobs stay gone.
	if n := ix.AddPack(p1); n == n1 || n == n2 {
		t.Errorf("AddPack(p1) again = %d, want a new number", n)
	}
	if ix.Has(a) || ix.Len() != 1 {
		t.Errorf("after adding p1 again: Has(a) = %v, Len() = %d; want false, 1", ix.Has(a), ix.Len())
	}
}

// mapRun is a Run over a map.
type mapRun map[ID]struct {
	loc  Location
	pack ID
}

func (m mapRun) Lookup(id ID) (Location, ID, bool) {
	e, ok := m[id]
	return e.loc, e.pack, ok
}

// TestIndexRuns: blobs in runs are found, with the pack numbered as the
// index numbers it; AddRun forgets the map's blobs of the run's packs;
// a removed pack hides its blobs in runs; the newest run answers first.
func TestIndexRuns(t *testing.T) {
	ix := NewIndex()
	p1, p2 := Hash([]byte("pack 1")), Hash([]byte("pack 2"))
	ix.AddPack(Hash([]byte("pack 0")))
	n1, n2 := ix.AddPack(p1), ix.AddPack(p2)
	a, b, c := Hash([]byte("a")), Hash([]byte("b")), Hash([]byte("c"))
	ix.Add(a, Location{Pack: n1, Offset: 1})
	ix.Add(c, Location{Pack: n2, Offset: 3})
	run := mapRun{}
	run[a] = struct {
		loc  Location
		pack ID
	}{Location{Offset: 1, Pack: 99}, p1}
	run[b] = struct {
		loc  Location
		pack ID
	}{Location{Offset: 2}, p1}
	ix.AddRun(run, []ID{p1})
	if ix.Len() != 1 {
		t.Errorf("after AddRun, %d blobs in the map, want 1 (c, of another pack)", ix.Len())
	}
	for id, want := range map[ID]Location{a: {Pack: n1, Offset: 1}, b: {Pack: n1, Offset: 2}, c: {Pack: n2, Offset: 3}} {
		if loc, ok := ix.Lookup(id); !ok || loc != want {
			t.Errorf("Lookup = %+v, %v; want %+v", loc, ok, want)
		}
	}
	// A newer run holding b in p2 answers first.
	newer := mapRun{}
	newer[b] = struct {
		loc  Location
		pack ID
	}{Location{Offset: 7}, p2}
	ix.AddRun(newer, nil)
	if loc, ok := ix.Lookup(b); !ok || loc != (Location{Pack: n2, Offset: 7}) {
		t.Errorf("Lookup(b) = %+v, %v; want the newer run's location", loc, ok)
	}
	// p2 removed: b falls back to the older run, c is gone.
	ix.RemovePack(p2)
	if loc, ok := ix.Lookup(b); !ok || loc != (Location{Pack: n1, Offset: 2}) {
		t.Errorf("after RemovePack(p2), Lookup(b) = %+v, %v; want the older run's", loc, ok)
	}
	if ix.Has(c) {
		t.Error("blob of a removed pack still found")
	}
	ix.RemovePack(p1)
	if ix.Has(a) || ix.Has(b) {
		t.Error("blobs of runs in removed packs still found")
	}
	if len(ix.Runs()) != 2 {
		t.Errorf("Runs() = %d, want 2", len(ix.Runs()))
	}
}
