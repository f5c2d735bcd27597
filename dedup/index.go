package dedup

import (
	"slices"
	"sync"
)

// Location says where a blob is kept: in which pack, in which frame of it
// and where inside the frame's plaintext.
type Location struct {
	Pack        uint32 // Index.Pack(Location.Pack) gives the pack's ID
	FrameOffset uint32
	FrameLength uint32
	FrameRaw    uint32 // plaintext length of the frame
	Offset      uint32 // of the blob in the frame's plaintext
	Length      uint32 // of the blob
	Flags       uint8  // the frame's flags
	Type        uint8  // the blob's type
}

// Index maps blob IDs to their locations. It is safe for concurrent use.
// When a blob is stored twice (two concurrent backups), the first location
// added wins; both stay valid until prune.
//
// Blobs live in a map in memory, or in runs (see Run): sorted sets kept
// elsewhere, such as files on disk, which the index asks after its map.
// The pack table (Pack, HasPack, Packs, RemovePack) covers both.
type Index struct {
	mu      sync.RWMutex
	packs   []ID
	packNum map[ID]uint32
	blobs   map[ID]Location
	runs    []Run
}

// A Run holds blob locations outside the index's map, such as a sorted
// file of them. Lookup returns the location of a blob and the ID of its
// pack (the index sets Location.Pack); a run that cannot answer (a read
// fails) answers false: the blob then counts as not stored, and is stored
// again rather than lost. Lookup must be safe for concurrent use.
type Run interface {
	Lookup(id ID) (loc Location, pack ID, ok bool)
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{packNum: make(map[ID]uint32), blobs: make(map[ID]Location)}
}

// AddPack registers a pack and returns its number for Location.Pack.
func (ix *Index) AddPack(id ID) uint32 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if n, ok := ix.packNum[id]; ok {
		return n
	}
	n := uint32(len(ix.packs))
	ix.packs = append(ix.packs, id)
	ix.packNum[id] = n
	return n
}

// HasPack reports whether the pack is indexed.
func (ix *Index) HasPack(id ID) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	_, ok := ix.packNum[id]
	return ok
}

// Pack returns the ID of pack number n.
func (ix *Index) Pack(n uint32) ID {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.packs[n]
}

// Packs returns the IDs of every indexed pack, in the order they were
// added, without the removed ones.
func (ix *Index) Packs() []ID {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]ID, 0, len(ix.packNum))
	for n, id := range ix.packs {
		if m, ok := ix.packNum[id]; ok && m == uint32(n) {
			out = append(out, id)
		}
	}
	return out
}

// RemovePack forgets a pack and every blob whose location is in it (a
// pack found missing). Its number is not reused. Adding the pack again
// gives it a new number.
func (ix *Index) RemovePack(id ID) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n, ok := ix.packNum[id]
	if !ok {
		return
	}
	delete(ix.packNum, id)
	for b, loc := range ix.blobs {
		if loc.Pack == n {
			delete(ix.blobs, b)
		}
	}
}

// Add records a blob's location unless the blob is already known.
func (ix *Index) Add(id ID, loc Location) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.blobs[id]; !ok {
		ix.blobs[id] = loc
	}
}

// Lookup returns a blob's location: from the map, else from the first run
// that holds the blob in a pack not removed.
func (ix *Index) Lookup(id ID) (Location, bool) {
	ix.mu.RLock()
	loc, ok := ix.blobs[id]
	runs := ix.runs
	ix.mu.RUnlock()
	if ok {
		return loc, true
	}
	// Runs are read without the lock: they are immutable, and a read
	// from disk must not hold up Add.
	for i := len(runs) - 1; i >= 0; i-- {
		loc, pack, ok := runs[i].Lookup(id)
		if !ok {
			continue
		}
		ix.mu.RLock()
		n, live := ix.packNum[pack]
		ix.mu.RUnlock()
		if live {
			loc.Pack = n
			return loc, true
		}
	}
	return Location{}, false
}

// AddRun adds a run, whose packs must be added (AddPack) first, and
// forgets the blobs of the map that lie in packs, which the run holds: the
// map keeps only what no run answers for. Runs added later are asked
// first.
func (ix *Index) AddRun(r Run, packs []ID) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.runs = append(slices.Clip(ix.runs), r)
	if len(packs) == 0 || len(ix.blobs) == 0 {
		return
	}
	nums := make(map[uint32]bool, len(packs))
	for _, p := range packs {
		if n, ok := ix.packNum[p]; ok {
			nums[n] = true
		}
	}
	for b, loc := range ix.blobs {
		if nums[loc.Pack] {
			delete(ix.blobs, b)
		}
	}
}

// Runs returns the runs added, oldest first.
func (ix *Index) Runs() []Run {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return slices.Clone(ix.runs)
}

// InMap reports whether a blob is in the map (not in a run).
func (ix *Index) InMap(id ID) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	_, ok := ix.blobs[id]
	return ok
}

// Has reports whether a blob is indexed.
func (ix *Index) Has(id ID) bool {
	_, ok := ix.Lookup(id)
	return ok
}

// Len returns the number of blobs in the map (not in runs).
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.blobs)
}

// Each calls fn for every blob of the map (not of the runs), in no
// particular order, holding a read lock:
// fn must not call back into the index.
func (ix *Index) Each(fn func(id ID, loc Location)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for id, loc := range ix.blobs {
		fn(id, loc)
	}
}
