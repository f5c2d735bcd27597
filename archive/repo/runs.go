package repo

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

// Index runs keep the index on local disk instead of in memory (issue 20):
// a run is a file of blob locations sorted by blob ID, built from index
// files, in the repository's cache folder. index/ stays the truth: a run
// names the index files it was built from, and a run one of whose files
// is gone (a prune) is thrown away. Only what locates a blob stays in
// memory: for each page of a run its first ID, and a Bloom filter that
// answers most lookups of new blobs without reading the disk (1.25 bytes
// a blob for the filter, 0.5 for the fence, against some 120 for the map).
//
// A run file is:
//
//	page_1 || … || page_n || Seal(trailer) || uint32le(len(Seal(trailer)))
//	page_i  = Seal(run id[16] || uint32le(i-1) || uint16le(count) || record* || zero padding),
//	          runPage bytes in all
//	record  = id[32] || uint32le(pack, as numbered in the trailer) ||
//	          uint32le(frame offset, frame length, frame raw length,
//	          offset, length) || flags || type
//	trailer = "PBRN\x01" || run id[16] || uvarint(records) || uvarint(pages) ||
//	          uvarint(packs) || (pack id[32] || uvarint(size))* ||
//	          uvarint(files) || (index file name[32] || uvarint(k) || uvarint(pack)^k)* ||
//	          (first id of each page)[32]* || uvarint(filter words) || uint64le*
//
// Everything is sealed with the master key, so the cache tells no one
// without the password which blobs the repository holds, and any change
// to it is found: a page that fails to open makes its lookups answer "not
// stored" (the blob is then stored again, never lost), a trailer that
// fails makes the run be rebuilt.
const (
	runMagic    = "PBRN\x01"
	runPage     = 4096
	runRecord   = 32 + 6*4 + 2
	runPageHead = 16 + 4 + 2
	runPerPage  = (runPage - crypto.Overhead - runPageHead) / runRecord
	// runBatch is how many records a run is built of at most in memory
	// (about 4 MiB); more make several runs.
	runBatch = 1 << 16
	// maxRuns runs are kept; past it, opening the index merges them.
	maxRuns = 8
	// runSuffix ends the names of run files.
	runSuffix = ".run"
)

// runRec is one record of a run.
type runRec struct {
	id   dedup.ID
	pack uint32 // in the run's pack table
	loc  dedup.Location
}

func (rec *runRec) append(b []byte) []byte {
	b = append(b, rec.id[:]...)
	b = binary.LittleEndian.AppendUint32(b, rec.pack)
	for _, v := range []uint32{rec.loc.FrameOffset, rec.loc.FrameLength, rec.loc.FrameRaw, rec.loc.Offset, rec.loc.Length} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return append(b, rec.loc.Flags, rec.loc.Type)
}

func parseRec(b []byte) runRec {
	var rec runRec
	copy(rec.id[:], b)
	u := func(i int) uint32 { return binary.LittleEndian.Uint32(b[32+4*i:]) }
	rec.pack = u(0)
	rec.loc = dedup.Location{FrameOffset: u(1), FrameLength: u(2), FrameRaw: u(3), Offset: u(4), Length: u(5), Flags: b[56], Type: b[57]}
	return rec
}

// runPack is a pack of a run's table.
type runPack struct {
	id   dedup.ID
	size int64
}

// runFile is an open run. It implements dedup.Run.
type runFile struct {
	path   string
	f      *os.File
	key    *crypto.Key
	id     [16]byte
	n      int // records
	packs  []runPack
	files  map[string][]int // index file name → its packs in the table
	fence  []dedup.ID       // first ID of each page
	filter bloom
	pages  *pageCache // shared by the repository's runs; nil: none
	seq    uint64     // tells the run's pages apart in pages
}

var pagePool = sync.Pool{New: func() any { b := make([]byte, runPage); return &b }}

// Lookup finds id in the run. A page that cannot be read or opened
// answers false (see dedup.Run).
func (rf *runFile) Lookup(id dedup.ID) (dedup.Location, dedup.ID, bool) {
	if !rf.filter.has(id) {
		return dedup.Location{}, dedup.ID{}, false
	}
	// The last page whose first ID is at most id.
	i, found := slices.BinarySearchFunc(rf.fence, id, func(a, b dedup.ID) int { return bytes.Compare(a[:], b[:]) })
	if !found {
		i--
	}
	if i < 0 {
		return dedup.Location{}, dedup.ID{}, false
	}
	rec, ok := rf.pages.find(rf, i, id)
	if !ok || int(rec.pack) >= len(rf.packs) {
		return dedup.Location{}, dedup.ID{}, false
	}
	return rec.loc, rf.packs[rec.pack].id, true
}

// findRec finds id among a page's records.
func findRec(recs []byte, id dedup.ID) (runRec, bool) {
	n := len(recs) / runRecord
	j := sort.Search(n, func(k int) bool { return bytes.Compare(recs[k*runRecord:k*runRecord+32], id[:]) >= 0 })
	if j == n || !bytes.Equal(recs[j*runRecord:j*runRecord+32], id[:]) {
		return runRec{}, false
	}
	return parseRec(recs[j*runRecord:]), true
}

// pageCache keeps opened pages of the runs, so that a blob looked up
// again soon (planb serve reads each large message twice) or a blob near
// it costs neither a read nor an opening. It is direct-mapped: page i of
// run rf has one slot, and a page read later takes it over. A nil
// *pageCache keeps nothing.
type pageCache struct {
	mu    sync.Mutex
	slots []pageSlot
}

type pageSlot struct {
	seq  uint64 // of the run (runFile.seq); 0: empty
	i    int
	recs []byte // the page's records; capacity runPage
}

// defaultIndexPages is how many pages a repository's cache keeps at most
// (1 MiB), unless SetIndexPages says otherwise.
const defaultIndexPages = 256

func newPageCache(n int) *pageCache { return &pageCache{slots: make([]pageSlot, max(n, 1))} }

// SetIndexPages makes the repository keep up to n pages of its cached
// index (4 KiB each, filled as they are read) instead of 256: a long
// running reader of the whole archive keeps them all.
func (r *Repository) SetIndexPages(n int) {
	c := r.pages
	c.mu.Lock()
	c.slots = make([]pageSlot, max(n, 1))
	c.mu.Unlock()
}

// slot returns the slot of page i of rf.
func (c *pageCache) slot(rf *runFile, i int) *pageSlot {
	h := uint64(i)*0x9e3779b97f4a7c15 ^ uint64(rf.seq)*0xbf58476d1ce4e5b9
	return &c.slots[(h>>32)%uint64(len(c.slots))]
}

// find looks id up in page i of rf, from the cache or from the file.
func (c *pageCache) find(rf *runFile, i int, id dedup.ID) (runRec, bool) {
	if c != nil && rf.seq != 0 {
		c.mu.Lock()
		if s := c.slot(rf, i); s.seq == rf.seq && s.i == i {
			rec, ok := findRec(s.recs, id)
			c.mu.Unlock()
			return rec, ok
		}
		c.mu.Unlock()
	}
	bp := pagePool.Get().(*[]byte)
	defer pagePool.Put(bp)
	recs, err := rf.page(i, *bp)
	if err != nil {
		return runRec{}, false
	}
	if c != nil && rf.seq != 0 {
		c.mu.Lock()
		s := c.slot(rf, i)
		if s.recs == nil {
			s.recs = make([]byte, 0, runPage)
		}
		s.seq, s.i, s.recs = rf.seq, i, append(s.recs[:0], recs...)
		c.mu.Unlock()
	}
	return findRec(recs, id)
}

// page reads page i into buf and returns its records, one after the
// other, in a slice of buf.
func (rf *runFile) page(i int, buf []byte) ([]byte, error) {
	if _, err := rf.f.ReadAt(buf[:runPage], int64(i)*runPage); err != nil {
		return nil, err
	}
	plain, err := rf.key.OpenInPlace(buf[:runPage])
	if err != nil {
		return nil, err
	}
	if len(plain) < runPageHead || !bytes.Equal(plain[:16], rf.id[:]) || binary.LittleEndian.Uint32(plain[16:]) != uint32(i) {
		return nil, errors.New("run page out of place")
	}
	n := int(binary.LittleEndian.Uint16(plain[20:]))
	if n > runPerPage || runPageHead+n*runRecord > len(plain) {
		return nil, errors.New("run page too full")
	}
	return plain[runPageHead : runPageHead+n*runRecord], nil
}

// Close closes the run's file.
func (rf *runFile) Close() error { return rf.f.Close() }

// bloom is a Bloom filter of blob IDs, about 1% false positives at 10
// bits a blob. IDs are SHA-256 sums: their bytes serve as the hashes.
type bloom []uint64

const bloomProbes = 7

func newBloom(n int) bloom { return make(bloom, (max(n, 1)*10+63)/64) }

func (f bloom) positions(id dedup.ID, fn func(word int, bit uint64)) {
	m := uint64(len(f)) * 64
	h1 := binary.LittleEndian.Uint64(id[0:])
	h2 := binary.LittleEndian.Uint64(id[8:]) | 1
	for i := range uint64(bloomProbes) {
		p := (h1 + i*h2) % m
		fn(int(p/64), 1<<(p%64))
	}
}

func (f bloom) add(id dedup.ID) {
	f.positions(id, func(w int, bit uint64) { f[w] |= bit })
}

func (f bloom) has(id dedup.ID) bool {
	if len(f) == 0 {
		return false
	}
	ok := true
	f.positions(id, func(w int, bit uint64) { ok = ok && f[w]&bit != 0 })
	return ok
}

// runWriter writes a run file from records given in ID order.
type runWriter struct {
	dir   string
	key   *crypto.Key
	tmp   *os.File
	id    [16]byte
	n     int
	last  dedup.ID
	page  []byte // plaintext of the page being filled
	count int    // its records
	seald []byte
	fence []dedup.ID
	filt  bloom
}

// newRunWriter starts a run of at most n records in dir.
func newRunWriter(dir string, key *crypto.Key, n int) (*runWriter, error) {
	tmp, err := os.CreateTemp(dir, ".tmp-run-*")
	if err != nil {
		return nil, err
	}
	w := &runWriter{dir: dir, key: key, tmp: tmp, filt: newBloom(n), page: make([]byte, 0, runPage)}
	rand.Read(w.id[:])
	return w, nil
}

// add adds a record; a record with the ID of the one before is dropped
// (both locations are valid; the first is kept).
func (w *runWriter) add(rec *runRec) error {
	if w.n > 0 && rec.id == w.last {
		return nil
	}
	if w.count == runPerPage {
		if err := w.flushPage(); err != nil {
			return err
		}
	}
	if w.count == 0 {
		w.page = append(w.page[:0], w.id[:]...)
		w.page = binary.LittleEndian.AppendUint32(w.page, uint32(len(w.fence)))
		w.page = append(w.page, 0, 0)
		w.fence = append(w.fence, rec.id)
	}
	w.page = rec.append(w.page)
	w.count++
	w.n++
	w.last = rec.id
	w.filt.add(rec.id)
	return nil
}

func (w *runWriter) flushPage() error {
	binary.LittleEndian.PutUint16(w.page[20:], uint16(w.count))
	plain := w.page[:runPage-crypto.Overhead]
	clear(plain[runPageHead+w.count*runRecord:])
	w.seald = w.key.Seal(w.seald[:0], plain)
	w.count = 0
	_, err := w.tmp.Write(w.seald)
	return err
}

// finish writes the trailer and moves the run into place under its name.
func (w *runWriter) finish(packs []runPack, files map[string][]int) (*runFile, error) {
	if w.count > 0 {
		if err := w.flushPage(); err != nil {
			return nil, w.abort(err)
		}
	}
	t := []byte(runMagic)
	t = append(t, w.id[:]...)
	t = binary.AppendUvarint(t, uint64(w.n))
	t = binary.AppendUvarint(t, uint64(len(w.fence)))
	t = binary.AppendUvarint(t, uint64(len(packs)))
	for _, p := range packs {
		t = append(t, p.id[:]...)
		t = binary.AppendUvarint(t, uint64(p.size))
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	t = binary.AppendUvarint(t, uint64(len(names)))
	for _, name := range names {
		id, err := dedup.ParseID(name)
		if err != nil {
			return nil, w.abort(err)
		}
		t = append(t, id[:]...)
		t = binary.AppendUvarint(t, uint64(len(files[name])))
		for _, k := range files[name] {
			t = binary.AppendUvarint(t, uint64(k))
		}
	}
	for _, id := range w.fence {
		t = append(t, id[:]...)
	}
	t = binary.AppendUvarint(t, uint64(len(w.filt)))
	for _, word := range w.filt {
		t = binary.LittleEndian.AppendUint64(t, word)
	}
	sealed := w.key.Seal(nil, t)
	sealed = binary.LittleEndian.AppendUint32(sealed, uint32(len(sealed)))
	if _, err := w.tmp.Write(sealed); err != nil {
		return nil, w.abort(err)
	}
	if err := w.tmp.Sync(); err != nil {
		return nil, w.abort(err)
	}
	path := filepath.Join(w.dir, hex.EncodeToString(w.id[:])+runSuffix)
	if err := os.Rename(w.tmp.Name(), path); err != nil {
		return nil, w.abort(err)
	}
	rf := &runFile{path: path, f: w.tmp, key: w.key, id: w.id, n: w.n, packs: packs, files: files, fence: w.fence, filter: w.filt}
	return rf, nil
}

func (w *runWriter) abort(err error) error {
	w.tmp.Close()
	os.Remove(w.tmp.Name())
	return err
}

// openRun opens a run file and reads its trailer.
func openRun(path string, key *crypto.Key) (*runFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	rf, err := readRunTrailer(f, key)
	if err == nil {
		rf.path = path
		err = rf.verify()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rf, nil
}

// verify reads the whole run once and checks every page: that it opens,
// is in its place, starts where the fence says, holds IDs in order and
// packs of the table, and that the pages hold as many records as the
// trailer says. A run that passes answers every lookup from then on (a
// later read error only loses the blobs of its page, see Lookup). It
// costs a sequential read of the file, some 60 MB for a million blobs.
func (rf *runFile) verify() error {
	c := &runCursor{rf: rf, buf: make([]byte, runPage)}
	n := 0
	var last dedup.ID
	for {
		page := c.page
		ok, err := c.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if c.page != page && c.rec.id != rf.fence[c.page-1] {
			return fmt.Errorf("page %d does not start where the fence says", c.page-1)
		}
		if n > 0 && bytes.Compare(last[:], c.rec.id[:]) >= 0 {
			return fmt.Errorf("page %d: records out of order", c.page-1)
		}
		if int(c.rec.pack) >= len(rf.packs) {
			return fmt.Errorf("page %d: a record of pack %d, out of its table", c.page-1, c.rec.pack)
		}
		last = c.rec.id
		n++
	}
	if n != rf.n {
		return fmt.Errorf("run holds %d records, its trailer says %d", n, rf.n)
	}
	return nil
}

func readRunTrailer(f *os.File, key *crypto.Key) (*runFile, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var lb [4]byte
	if size < 4 {
		return nil, errors.New("run file too short")
	}
	if _, err := f.ReadAt(lb[:], size-4); err != nil {
		return nil, err
	}
	tl := int64(binary.LittleEndian.Uint32(lb[:]))
	if tl > size-4 || tl > 1<<30 {
		return nil, errors.New("bad run trailer length")
	}
	sealed := make([]byte, tl)
	if _, err := f.ReadAt(sealed, size-4-tl); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	t, err := key.OpenInPlace(sealed)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(t, []byte(runMagic)) || len(t) < len(runMagic)+16 {
		return nil, errors.New("bad run magic")
	}
	rf := &runFile{f: f, key: key, files: make(map[string][]int)}
	copy(rf.id[:], t[len(runMagic):])
	d := pack.NewDecoder(t[len(runMagic)+16:])
	rf.n = int(d.Uvarint(1 << 40))
	pages := int(d.Uvarint(1 << 32))
	np := d.Uvarint(1 << 32)
	for i := uint64(0); i < np && d.Err() == nil; i++ {
		rf.packs = append(rf.packs, runPack{id: d.ID(), size: int64(d.Uvarint(1 << 40))})
	}
	nf := d.Uvarint(1 << 32)
	for i := uint64(0); i < nf && d.Err() == nil; i++ {
		name := d.ID().String()
		k := d.Uvarint(np)
		idx := make([]int, 0, min(k, 1<<16))
		for j := uint64(0); j < k && d.Err() == nil; j++ {
			p := d.Uvarint(np - 1)
			idx = append(idx, int(p))
		}
		rf.files[name] = idx
	}
	if pages != (rf.n+runPerPage-1)/runPerPage || int64(pages)*runPage != size-4-tl {
		return nil, errors.New("run trailer does not match the file's size")
	}
	rf.fence = make([]dedup.ID, 0, pages)
	for range pages {
		if d.Err() != nil {
			break
		}
		rf.fence = append(rf.fence, d.ID())
	}
	nw := d.Uvarint(1 << 32)
	if d.Err() == nil && uint64(len(d.Rest())) != 8*nw {
		return nil, errors.New("bad run filter")
	}
	if d.Err() != nil {
		return nil, d.Err()
	}
	rest := d.Rest()
	rf.filter = make(bloom, nw)
	for i := range rf.filter {
		rf.filter[i] = binary.LittleEndian.Uint64(rest[8*i:])
	}
	return rf, nil
}

// runBuilder gathers the packs of index files and writes them as runs of
// at most about runBatch records.
type runBuilder struct {
	dir   string
	key   *crypto.Key
	recs  []runRec
	packs []runPack
	pnum  map[dedup.ID]int
	files map[string][]int
	out   []*runFile
}

func newRunBuilder(dir string, key *crypto.Key) *runBuilder {
	return &runBuilder{dir: dir, key: key, pnum: make(map[dedup.ID]int), files: make(map[string][]int)}
}

// addFile adds the packs one index file lists; a run is written once
// runBatch records are gathered.
func (b *runBuilder) addFile(name string, packs []PackInfo) error {
	idx := make([]int, 0, len(packs))
	for _, p := range packs {
		n, ok := b.pnum[p.ID]
		if !ok {
			n = len(b.packs)
			b.pnum[p.ID] = n
			b.packs = append(b.packs, runPack{p.ID, p.Size})
		}
		idx = append(idx, n)
		p.blobs(func(id dedup.ID, loc dedup.Location) {
			b.recs = append(b.recs, runRec{id: id, pack: uint32(n), loc: loc})
		})
	}
	b.files[name] = idx
	if len(b.recs) >= runBatch {
		return b.flush()
	}
	return nil
}

// flush writes what was gathered as a run, if anything was.
func (b *runBuilder) flush() error {
	if len(b.files) == 0 {
		return nil
	}
	slices.SortStableFunc(b.recs, func(x, y runRec) int { return bytes.Compare(x.id[:], y.id[:]) })
	w, err := newRunWriter(b.dir, b.key, len(b.recs))
	if err != nil {
		return err
	}
	for i := range b.recs {
		if err := w.add(&b.recs[i]); err != nil {
			return w.abort(err)
		}
	}
	rf, err := w.finish(b.packs, b.files)
	if err != nil {
		return err
	}
	b.out = append(b.out, rf)
	b.recs = b.recs[:0]
	b.packs = nil
	b.pnum = make(map[dedup.ID]int)
	b.files = make(map[string][]int)
	return nil
}

// mergeRuns writes the records of runs as one run, reading them page by
// page: memory is a page a run, the new run's fence and filter.
func mergeRuns(dir string, key *crypto.Key, runs []*runFile) (*runFile, error) {
	total := 0
	var packs []runPack
	pnum := make(map[dedup.ID]int)
	files := make(map[string][]int)
	maps := make([][]int, len(runs)) // each run's pack numbers → the new ones
	for i, rf := range runs {
		total += rf.n
		maps[i] = make([]int, len(rf.packs))
		for k, p := range rf.packs {
			n, ok := pnum[p.id]
			if !ok {
				n = len(packs)
				pnum[p.id] = n
				packs = append(packs, p)
			}
			maps[i][k] = n
		}
		for name, idx := range rf.files {
			out := make([]int, len(idx))
			for k, p := range idx {
				out[k] = maps[i][p]
			}
			files[name] = out
		}
	}
	w, err := newRunWriter(dir, key, total)
	if err != nil {
		return nil, err
	}
	h := &runHeap{}
	for i, rf := range runs {
		c := &runCursor{rf: rf, run: i, buf: make([]byte, runPage)}
		ok, err := c.next()
		if err != nil {
			return nil, w.abort(fmt.Errorf("%s: %w", rf.path, err))
		}
		if ok {
			h.cs = append(h.cs, c)
		}
	}
	heap.Init(h)
	for h.Len() > 0 {
		c := h.cs[0]
		rec := c.rec
		p := int(rec.pack)
		if p >= len(maps[c.run]) {
			return nil, w.abort(fmt.Errorf("%s: a record of pack %d, out of its table", c.rf.path, p))
		}
		rec.pack = uint32(maps[c.run][p])
		if err := w.add(&rec); err != nil {
			return nil, w.abort(err)
		}
		ok, err := c.next()
		if err != nil {
			return nil, w.abort(fmt.Errorf("%s: %w", c.rf.path, err))
		}
		if ok {
			heap.Fix(h, 0)
		} else {
			heap.Pop(h)
		}
	}
	return w.finish(packs, files)
}

// runCursor reads a run's records in order.
type runCursor struct {
	rf   *runFile
	run  int // in the merge's list, which breaks ties
	buf  []byte
	page int
	recs []byte // the page's records not read yet
	rec  runRec
}

func (c *runCursor) next() (bool, error) {
	for len(c.recs) == 0 {
		if c.page == len(c.rf.fence) {
			return false, nil
		}
		recs, err := c.rf.page(c.page, c.buf)
		if err != nil {
			return false, fmt.Errorf("page %d: %w", c.page, err)
		}
		c.page++
		c.recs = recs
	}
	c.rec = parseRec(c.recs)
	c.recs = c.recs[runRecord:]
	return true, nil
}

type runHeap struct{ cs []*runCursor }

func (h *runHeap) Len() int { return len(h.cs) }
func (h *runHeap) Less(i, j int) bool {
	if c := bytes.Compare(h.cs[i].rec.id[:], h.cs[j].rec.id[:]); c != 0 {
		return c < 0
	}
	return cmp.Less(h.cs[i].run, h.cs[j].run)
}
func (h *runHeap) Swap(i, j int) { h.cs[i], h.cs[j] = h.cs[j], h.cs[i] }
func (h *runHeap) Push(x any)    { h.cs = append(h.cs, x.(*runCursor)) }
func (h *runHeap) Pop() any {
	c := h.cs[len(h.cs)-1]
	h.cs = h.cs[:len(h.cs)-1]
	return c
}

// loadRuns loads the index from the runs of the cache folder, which it
// brings up to date with index/ first: runs built from an index file that
// is gone are thrown away, index files no run holds are read and written
// as new runs, and more than maxRuns runs are merged into one.
func (r *Repository) loadRuns(ctx context.Context) error {
	start := time.Now()
	names, err := r.indexNames(ctx, true)
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(names))
	for _, n := range names {
		present[n] = true
	}
	runs, covered := r.openRuns(present, start)
	var missing []string
	for _, n := range names {
		if !covered[n] {
			missing = append(missing, n)
		}
	}
	// Runs of a few index files each would make many runs: the missing
	// files go into one builder, written every runBatch records.
	a := r.newIndexAdder()
	a.hold = true
	for i := 0; i < len(missing); i += 4 {
		results, err := r.readIndexFiles(ctx, missing[i:min(i+4, len(missing))])
		if err != nil {
			a.drop()
			for _, rf := range runs {
				rf.Close()
			}
			return err
		}
		a.add(results)
	}
	damaged := a.finish()
	runs = append(runs, a.written...)
	if len(runs) > maxRuns {
		if merged, err := mergeRuns(r.runDir, r.key, runs); err != nil {
			r.log.Warn("index cache: merging runs failed", "err", err)
		} else {
			for _, rf := range runs {
				rf.Close()
				os.Remove(rf.path)
			}
			runs = []*runFile{merged}
		}
	}
	for _, rf := range runs {
		r.installRun(rf)
	}
	sort.Strings(damaged)
	r.indexMu.Lock()
	r.damagedIndex = damaged
	r.indexMu.Unlock()
	r.indexLoaded.Store(true)
	r.log.Debug("index loaded from the cache", "runs", len(runs), "files_read", len(missing), "took", time.Since(start))
	return nil
}

// openRuns opens the runs of the cache folder that hold only index files
// present lists, and returns them with the names of the files they hold.
// A run that does not open (damaged, or cut short by a crash) is removed,
// and so is one that holds a file gone from index/ before start (a run
// newer than start may hold a file written since: it is left alone).
func (r *Repository) openRuns(present map[string]bool, start time.Time) ([]*runFile, map[string]bool) {
	covered := make(map[string]bool)
	ents, err := os.ReadDir(r.runDir)
	if err != nil {
		r.log.Warn("index cache unreadable", "err", err)
		return nil, covered
	}
	var runs []*runFile
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(r.runDir, name)
		if strings.HasPrefix(name, ".tmp-run-") {
			// Left by a killed process, unless one is writing it now.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
				os.Remove(path)
			}
			continue
		}
		if !strings.HasSuffix(name, runSuffix) {
			continue
		}
		rf, err := openRun(path, r.key)
		if err != nil {
			r.log.Debug("index cache: removing an unreadable run", "err", err)
			os.Remove(path)
			continue
		}
		stale := false
		for n := range rf.files {
			if !present[n] {
				stale = true
				break
			}
		}
		if stale {
			rf.Close()
			if fi, err := e.Info(); err == nil && fi.ModTime().Before(start) {
				os.Remove(path)
			}
			continue
		}
		runs = append(runs, rf)
		for n := range rf.files {
			covered[n] = true
		}
	}
	return runs, covered
}

// installRun adds a run to the index and its packs and files to the
// repository's tables.
func (r *Repository) installRun(rf *runFile) {
	ids := make([]dedup.ID, len(rf.packs))
	for i, p := range rf.packs {
		r.index.AddPack(p.id)
		ids[i] = p.id
	}
	r.indexMu.Lock()
	for _, p := range rf.packs {
		r.packSize[p.id] = p.size
	}
	for name, idx := range rf.files {
		ps := make([]dedup.ID, len(idx))
		for k, i := range idx {
			ps[k] = rf.packs[i].id
		}
		r.indexFile[name] = ps
	}
	r.runSeq++
	rf.pages, rf.seq = r.pages, r.runSeq
	r.runs = append(r.runs, rf)
	r.indexMu.Unlock()
	r.index.AddRun(rf, ids)
}

// spill moves the packs of an index file just written from the map into a
// run, when the index is cached on disk.
func (r *Repository) spill(name string, packs []PackInfo) {
	if r.runDir == "" {
		return
	}
	b := newRunBuilder(r.runDir, r.key)
	err := b.addFile(name, packs)
	if err == nil {
		err = b.flush()
	}
	if err != nil {
		r.log.Warn("index cache: keeping new blobs in memory", "err", err)
		return
	}
	for _, rf := range b.out {
		r.installRun(rf)
	}
}

// indexAdder adds the index files read to the index: into runs when the
// index is cached on disk, else into the map. Index files whose run cannot
// be written (the cache's disk is full) go to the map: the cache saves
// memory, nothing else.
type indexAdder struct {
	r       *Repository
	b       *runBuilder   // nil: the map
	pending []indexResult // in b, in no run yet
	damaged []string
	// hold leaves the runs written to the caller (in written) instead
	// of installing them.
	hold    bool
	written []*runFile
}

func (r *Repository) newIndexAdder() *indexAdder {
	a := &indexAdder{r: r}
	if r.runDir != "" {
		a.b = newRunBuilder(r.runDir, r.key)
	}
	return a
}

func (a *indexAdder) add(results []indexResult) {
	for _, res := range results {
		if res.err != nil {
			a.damaged = append(a.damaged, a.r.warnDamaged(res))
			continue
		}
		if a.b == nil {
			a.r.addIndexFile(res)
			continue
		}
		a.pending = append(a.pending, res)
		if err := a.b.addFile(res.name, res.packs); err != nil {
			a.fail(err)
			continue
		}
		a.settle()
	}
}

// settle takes the runs the builder wrote.
func (a *indexAdder) settle() {
	if len(a.b.out) == 0 {
		return
	}
	for _, rf := range a.b.out {
		if a.hold {
			a.written = append(a.written, rf)
		} else {
			a.r.installRun(rf)
		}
	}
	a.b.out = nil
	a.pending = a.pending[:0]
}

// fail puts what is pending into the map and the rest after it too.
func (a *indexAdder) fail(err error) {
	a.r.log.Warn("index cache: keeping the index in memory", "err", err)
	for _, res := range a.pending {
		a.r.addIndexFile(res)
	}
	a.b, a.pending = nil, nil
}

// drop forgets the runs written, on an error.
func (a *indexAdder) drop() {
	for _, rf := range a.written {
		rf.Close()
	}
	a.written = nil
}

// finish writes what is pending and returns the damaged files' names.
func (a *indexAdder) finish() []string {
	if a.b != nil {
		if err := a.b.flush(); err != nil {
			a.fail(err)
		} else {
			a.settle()
		}
	}
	return a.damaged
}

// Stored reports for each of ids whether the index holds it, as
// Index().Has does. Looking up a blob of a run reads and opens a page of
// it; for many IDs Stored instead reads each run once, in order, and
// merges it with the IDs sorted (a backup checks every message of a
// parent folder this way: a million lookups took 7 CPU-seconds).
func (r *Repository) Stored(ids []dedup.ID) []bool {
	out := make([]bool, len(ids))
	var runs []*runFile
	records := 0
	for _, run := range r.index.Runs() {
		rf, ok := run.(*runFile)
		if !ok {
			runs = nil
			break
		}
		runs = append(runs, rf)
		records += rf.n
	}
	if runs == nil || len(ids)*32 < records {
		for i, id := range ids {
			out[i] = r.index.Has(id)
		}
		return out
	}
	order := make([]int32, 0, len(ids))
	for i, id := range ids {
		if r.index.InMap(id) {
			out[i] = true
		} else {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(ids[a][:], ids[b][:]) })
	for _, rf := range runs {
		c := &runCursor{rf: rf, buf: make([]byte, runPage)}
		k := 0
		for k < len(order) {
			ok, err := c.next()
			if err != nil || !ok {
				// A page that cannot be read: its blobs count as not
				// stored, as Lookup says.
				break
			}
			for k < len(order) && bytes.Compare(ids[order[k]][:], c.rec.id[:]) < 0 {
				k++
			}
			for j := k; j < len(order) && ids[order[j]] == c.rec.id; j++ {
				if int(c.rec.pack) < len(rf.packs) && r.index.HasPack(rf.packs[c.rec.pack].id) {
					out[order[j]] = true
				}
			}
		}
	}
	return out
}
