package repo

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

// manyPacks returns n packs of blobs blobs each, in frames of up to 7.
func manyPacks(rng *rand.Rand, n, blobs int) []PackInfo {
	rid := func() (id dedup.ID) {
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		return id
	}
	var out []PackInfo
	for range n {
		p := PackInfo{ID: rid()}
		var off uint32
		for left := blobs; left > 0; {
			f := pack.Frame{Offset: off, Flags: uint8(rng.IntN(2))}
			for range min(left, 1+rng.IntN(7)) {
				b := pack.Blob{Type: pack.BlobType(1 + rng.IntN(2)), ID: rid(), Length: uint32(1 + rng.IntN(100000))}
				f.RawLength += b.Length
				f.Blobs = append(f.Blobs, b)
				left--
			}
			f.Length = f.RawLength/2 + crypto.Overhead
			off += f.Length
			p.Header.Frames = append(p.Header.Frames, f)
		}
		p.Size = p.Header.Size() + 200
		out = append(out, p)
	}
	return out
}

// wantLocations returns where each blob of packs is, as addToIndex says.
func wantLocations(packs []PackInfo) map[dedup.ID]struct {
	loc  dedup.Location
	pack dedup.ID
} {
	want := make(map[dedup.ID]struct {
		loc  dedup.Location
		pack dedup.ID
	})
	for _, p := range packs {
		for _, f := range p.Header.Frames {
			var off uint32
			for _, b := range f.Blobs {
				want[b.ID] = struct {
					loc  dedup.Location
					pack dedup.ID
				}{dedup.Location{FrameOffset: f.Offset, FrameLength: f.Length, FrameRaw: f.RawLength, Offset: off, Length: b.Length, Flags: f.Flags, Type: uint8(b.Type)}, p.ID}
				off += b.Length
			}
		}
	}
	return want
}

// checkRun looks up every blob of packs in rf, and IDs that are not there.
func checkRun(t *testing.T, rf *runFile, packs []PackInfo, rng *rand.Rand) {
	t.Helper()
	want := wantLocations(packs)
	if rf.n != len(want) {
		t.Errorf("run holds %d records, want %d", rf.n, len(want))
	}
	for id, w := range want {
		loc, p, ok := rf.Lookup(id)
		if !ok || loc != w.loc || p != w.pack {
			t.Fatalf("Lookup(%s) = %+v, %s, %v; want %+v, %s", id.Short(), loc, p.Short(), ok, w.loc, w.pack.Short())
		}
	}
	for range 1000 {
		var id dedup.ID
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		if _, _, ok := rf.Lookup(id); ok {
			t.Fatalf("Lookup(%s) of a blob not stored = true", id.Short())
		}
	}
}

// TestRuns: a run built from index files answers for every blob of them,
// and for no other, after it is opened again; runs merge into one that
// answers for all; the files each run holds are kept.
func TestRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := crypto.NewRandomKey()
	dir := t.TempDir()
	fileA, fileB := dedup.Hash([]byte("a")).String(), dedup.Hash([]byte("b")).String()
	packsA := manyPacks(rng, 3, 500) // 1,500 blobs: some 22 pages
	packsB := manyPacks(rng, 2, 100)

	b := newRunBuilder(dir, key)
	if err := b.addFile(fileA, packsA); err != nil {
		t.Fatal(err)
	}
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	if err := b.addFile(fileB, packsB); err != nil {
		t.Fatal(err)
	}
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	if len(b.out) != 2 {
		t.Fatalf("builder wrote %d runs, want 2", len(b.out))
	}
	checkRun(t, b.out[0], packsA, rng)
	checkRun(t, b.out[1], packsB, rng)

	// Opened again from its file.
	again, err := openRun(b.out[0].path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	checkRun(t, again, packsA, rng)
	if len(again.files) != 1 || len(again.files[fileA]) != 3 || len(again.packs) != 3 || again.packs[1].size != packsA[1].Size {
		t.Errorf("reopened run: files %v, packs %v", again.files, again.packs)
	}
	// Another key does not open it.
	if _, err := openRun(b.out[0].path, crypto.NewRandomKey()); err == nil {
		t.Error("openRun with another key = nil error")
	}

	merged, err := mergeRuns(dir, key, b.out)
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Close()
	checkRun(t, merged, append(append([]PackInfo{}, packsA...), packsB...), rng)
	if len(merged.files) != 2 || len(merged.files[fileA]) != 3 || len(merged.files[fileB]) != 2 {
		t.Errorf("merged run holds files %v", merged.files)
	}
	for _, rf := range b.out {
		rf.Close()
	}
}

// TestRunDamage: a run with a damaged page, a page out of its place, a
// damaged or cut trailer does not open; a page damaged after the run was
// opened answers "not stored" (never a wrong location).
func TestRunDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	key := crypto.NewRandomKey()
	dir := t.TempDir()
	packs := manyPacks(rng, 1, 300)
	b := newRunBuilder(dir, key)
	if err := b.addFile(dedup.Hash([]byte("f")).String(), packs); err != nil {
		t.Fatal(err)
	}
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	rf := b.out[0]
	defer rf.Close()
	raw, err := os.ReadFile(rf.path)
	if err != nil {
		t.Fatal(err)
	}
	want := wantLocations(packs)
	pageOf := func(id dedup.ID) int {
		for i := len(rf.fence) - 1; i >= 0; i-- {
			if string(rf.fence[i][:]) <= string(id[:]) {
				return i
			}
		}
		return -1
	}

	// One bit flipped in page 1; page 2 replaced by page 3.
	bad := append([]byte{}, raw...)
	bad[runPage+100] ^= 1
	copy(bad[2*runPage:3*runPage], raw[3*runPage:4*runPage])
	// Under the open run, in place.
	if err := os.WriteFile(rf.path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for id, w := range want {
		loc, p, ok := rf.Lookup(id)
		switch pg := pageOf(id); {
		case pg == 1 || pg == 2:
			if ok {
				t.Fatalf("blob of damaged page %d found: %+v", pg, loc)
			}
			lost++
		case !ok || loc != w.loc || p != w.pack:
			t.Fatalf("blob of page %d: %+v, %v; want %+v", pg, loc, ok, w.loc)
		}
	}
	if lost != 2*runPerPage {
		t.Errorf("%d blobs not found, want %d (two pages)", lost, 2*runPerPage)
	}

	for name, data := range map[string][]byte{
		"page flipped, page moved": bad,
		"trailer flipped":          func() []byte { d := append([]byte{}, raw...); d[len(d)-10] ^= 1; return d }(),
		"cut":                      raw[:len(raw)-1],
		"page cut":                 raw[runPage:],
		"empty":                    nil,
	} {
		p := filepath.Join(dir, "x"+runSuffix)
		os.WriteFile(p, data, 0o600)
		if rf, err := openRun(p, key); err == nil {
			rf.Close()
			t.Errorf("%s: openRun = nil error", name)
		}
	}
}

// TestStored: Stored answers as Has for blobs in runs, in the map, in
// removed packs and not stored, both by lookups (few IDs) and by reading
// the runs in order (many).
func TestStored(t *testing.T) {
	ctx := t.Context()
	r, err := Init(ctx, mem.New(), testPassword, &Options{IndexCache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	save := func(tag string, n int) []dedup.ID {
		s := r.NewSaver(ctx)
		var ids []dedup.ID
		for i := range n {
			data := fmt.Appendf(nil, "%s blob %d", tag, i)
			id := dedup.Hash(data)
			if _, err := s.Add(pack.DataBlob, id, data); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if _, err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	inRun := save("run", 300)
	gonePack := save("gone", 50)
	if len(r.index.Runs()) != 2 || r.index.Len() != 0 {
		t.Fatalf("%d runs, %d blobs in the map; want 2 runs, none in the map", len(r.index.Runs()), r.index.Len())
	}
	loc, _ := r.index.Lookup(gonePack[0])
	r.index.RemovePack(r.index.Pack(loc.Pack))
	inMap := dedup.Hash([]byte("in the map"))
	r.addToIndex(PackInfo{ID: dedup.Hash([]byte("a pack")), Header: pack.Header{Frames: []pack.Frame{{Length: 100, RawLength: 10, Blobs: []pack.Blob{{Type: pack.DataBlob, ID: inMap, Length: 10}}}}}})

	var ids []dedup.ID
	var want []bool
	add := func(list []dedup.ID, stored bool) {
		for _, id := range list {
			ids = append(ids, id, id) // twice: both answered
			want = append(want, stored, stored)
		}
	}
	add(inRun, true)
	add(gonePack, false)
	add([]dedup.ID{inMap}, true)
	for i := range 100 {
		add([]dedup.ID{dedup.Hash(fmt.Appendf(nil, "never %d", i))}, false)
	}
	for _, n := range []int{4, len(ids)} { // lookups, then a scan
		got := r.Stored(ids[:n])
		for i := range n {
			if got[i] != want[i] || got[i] != r.index.Has(ids[i]) {
				t.Fatalf("Stored of %d IDs: #%d = %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}

// TestRunPageCache: lookups through the repository's page cache answer as
// the runs' files do, with a cache much smaller than the runs (pages of
// two runs fight over three slots) and with one that holds them all;
// the latter answers every lookup again once the files are closed.
func TestRunPageCache(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	key := crypto.NewRandomKey()
	packsA, packsB := manyPacks(rng, 3, 500), manyPacks(rng, 2, 300)
	for _, slots := range []int{3, 1024} {
		t.Run(fmt.Sprint(slots), func(t *testing.T) {
			b := newRunBuilder(t.TempDir(), key)
			for k, packs := range [][]PackInfo{packsA, packsB} {
				if err := b.addFile(dedup.Hash([]byte{byte(k)}).String(), packs); err != nil {
					t.Fatal(err)
				}
				if err := b.flush(); err != nil {
					t.Fatal(err)
				}
			}
			c := newPageCache(slots)
			for k, rf := range b.out {
				rf.pages, rf.seq = c, uint64(k+1)
			}
			for range 2 {
				checkRun(t, b.out[0], packsA, rng)
				checkRun(t, b.out[1], packsB, rng)
			}
			filled := 0
			for _, s := range c.slots {
				if s.seq != 0 {
					filled++
				}
			}
			if pages := len(b.out[0].fence) + len(b.out[1].fence); slots > pages && filled != pages {
				t.Errorf("%d of %d slots filled, want every page of the runs: %d", filled, slots, pages)
			}
			for _, rf := range b.out {
				rf.Close()
			}
			if slots == 1024 {
				checkRun(t, b.out[0], packsA, rng)
				checkRun(t, b.out[1], packsB, rng)
			}
		})
	}
}
