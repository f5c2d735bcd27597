package repo

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

// Grouping of blobs into frames: small blobs share a frame of about
// groupTarget bytes; a blob of bigBlob bytes or more gets its own frame.
const (
	groupTarget = 256 << 10
	bigBlob     = 64 << 10
	// indexEvery packs, the saver writes an index file, so that a killed
	// run leaves most of its work indexed.
	indexEvery = 32
	// uploaders packs are saved at once.
	uploaders = 2
	// maxOpenGroups is how many partial groups of small blobs a saver
	// fills at once (one per stream and blob type); past it, the one
	// added to least recently is sealed as it is.
	maxOpenGroups = 8
)

// SaverStats counts what a Saver stored.
type SaverStats struct {
	Blobs       int64 // new blobs stored
	RawBytes    int64 // their plaintext size
	StoredBytes int64 // size of the packs written
	Packs       int64
}

// Saver stores new blobs into packs. Add and Sync are safe for concurrent
// use; Flush must be called once, after the last Add, and makes everything
// added durable and indexed.
type Saver struct {
	r   *Repository
	ctx context.Context

	// syncMu is held shared by Add and exclusively by Sync, so that Sync
	// waits for no blob added after it started.
	syncMu sync.RWMutex
	frames sync.WaitGroup // groups handed to the sealers, not yet in a pack
	packs  sync.WaitGroup // packs handed to the uploaders, not yet saved
	// flushReq asks packLoop to hand every pack it is filling to the
	// uploaders; it closes the channel it receives once it has.
	flushReq chan chan struct{}

	mu      sync.Mutex
	pending map[dedup.ID]struct{}
	groups  map[groupKey]*group
	adds    uint64 // Adds into groups so far: a group's last is its age
	err     error
	stats   SaverStats

	work    chan *group
	sealed  chan sealedFrame
	workers sync.WaitGroup
	packer  chan struct{}

	uploads   chan *pack.Writer
	uploaders sync.WaitGroup

	indexMu  sync.Mutex // guards newPacks and newBlobs
	newPacks []PackInfo
	newBlobs int // in newPacks
	rewrite  bool
}

type group struct {
	t     pack.BlobType
	buf   []byte
	blobs []pack.Blob
	last  uint64 // Saver.adds when a blob was last added
}

// groupKey names a group being filled: small blobs share a frame only
// with blobs of their own stream and type.
type groupKey struct {
	t      pack.BlobType
	stream string
}

type sealedFrame struct {
	t     pack.BlobType
	data  []byte
	frame pack.Frame
}

// NewSaver starts a saver. The context bounds all its backend calls.
func (r *Repository) NewSaver(ctx context.Context) *Saver { return r.newSaver(ctx, false) }

// newSaver starts a saver; with rewrite it stores blobs even when the index
// knows them (prune rewrites them into new packs).
func (r *Repository) newSaver(ctx context.Context, rewrite bool) *Saver {
	n := runtime.GOMAXPROCS(0)
	s := &Saver{
		r:       r,
		ctx:     ctx,
		pending: make(map[dedup.ID]struct{}),
		groups:  make(map[groupKey]*group),
		work:    make(chan *group, n),
		sealed:  make(chan sealedFrame, n),
		packer:  make(chan struct{}),
		rewrite: rewrite,

		flushReq: make(chan chan struct{}),
	}
	for range n {
		s.workers.Add(1)
		go s.sealWorker()
	}
	s.uploads = make(chan *pack.Writer)
	for range uploaders {
		s.uploaders.Add(1)
		go s.uploadLoop()
	}
	go s.packLoop()
	if err := r.EnsureIndex(ctx); err != nil {
		s.setErr(fmt.Errorf("save: %w", err))
	}
	return s
}

func (s *Saver) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// Err returns the first error the saver met.
func (s *Saver) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stats returns what the saver stored so far.
func (s *Saver) Stats() SaverStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Has reports whether the blob is stored or being stored.
func (s *Saver) Has(id dedup.ID) bool {
	if s.r.index.Has(id) {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	return ok
}

// Add stores data as a blob of type t unless a blob with that ID is stored
// already; it reports whether the blob was new. data is copied.
func (s *Saver) Add(t pack.BlobType, id dedup.ID, data []byte) (bool, error) {
	return s.AddTo("", t, id, data)
}

// AddTo is Add for a blob of a stream, such as one folder of a backup:
// small blobs share frames only with blobs of the same stream, so that a
// reader of the stream (a restore of that folder, planb serve) opens each
// frame once rather than once for every stream it was mixed with.
func (s *Saver) AddTo(stream string, t pack.BlobType, id dedup.ID, data []byte) (bool, error) {
	s.syncMu.RLock()
	defer s.syncMu.RUnlock()
	if !s.rewrite && s.r.index.Has(id) {
		return false, s.Err()
	}
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return false, err
	}
	if _, ok := s.pending[id]; ok {
		s.mu.Unlock()
		return false, nil
	}
	s.pending[id] = struct{}{}
	s.stats.Blobs++
	s.stats.RawBytes += int64(len(data))
	var full []*group
	if len(data) >= bigBlob {
		full = append(full, &group{t: t, buf: append(getBuf(), data...), blobs: []pack.Blob{{Type: t, ID: id, Length: uint32(len(data))}}})
	} else {
		k := groupKey{t, stream}
		g := s.groups[k]
		if g == nil {
			if len(s.groups) >= maxOpenGroups {
				full = append(full, s.takeOldestGroup())
			}
			g = &group{t: t, buf: getBuf()}
			s.groups[k] = g
		}
		s.adds++
		g.last = s.adds
		g.buf = append(g.buf, data...)
		g.blobs = append(g.blobs, pack.Blob{Type: t, ID: id, Length: uint32(len(data))})
		if len(g.buf) >= groupTarget {
			full = append(full, g)
			delete(s.groups, k)
		}
	}
	s.frames.Add(len(full))
	s.mu.Unlock()
	for i, g := range full {
		select {
		case s.work <- g:
		case <-s.ctx.Done():
			s.frames.Add(-(len(full) - i))
			return true, s.ctx.Err()
		}
	}
	return true, nil
}

// takeOldestGroup removes the partial group added to least recently and
// returns it. s.mu is held.
func (s *Saver) takeOldestGroup() *group {
	var oldest groupKey
	var g *group
	for k, o := range s.groups {
		if g == nil || o.last < g.last {
			oldest, g = k, o
		}
	}
	delete(s.groups, oldest)
	return g
}

func (s *Saver) sealWorker() {
	defer s.workers.Done()
	for g := range s.work {
		sealed, flags := s.r.codec.Seal(getBuf(), g.buf)
		s.sealed <- sealedFrame{t: g.t, data: sealed, frame: pack.Frame{Flags: flags, RawLength: uint32(len(g.buf)), Blobs: g.blobs}}
		putBuf(g.buf)
	}
}

func (s *Saver) packLoop() {
	defer close(s.packer)
	writers := make(map[pack.BlobType]*pack.Writer)
	upload := func(t pack.BlobType, w *pack.Writer) {
		delete(writers, t)
		s.packs.Add(1)
		s.uploads <- w
	}
	sealed := s.sealed
	for sealed != nil {
		select {
		case f, ok := <-sealed:
			if !ok {
				sealed = nil
				continue
			}
			if w := s.addFrame(writers, f); w != nil && w.Size() >= s.r.cfg.PackSize {
				upload(f.t, w)
			}
			s.frames.Done()
		case done := <-s.flushReq:
			for t, w := range writers {
				upload(t, w)
			}
			close(done)
		}
	}
	for t, w := range writers {
		upload(t, w)
	}
	close(s.uploads)
	s.uploaders.Wait()
	if len(s.newPacks) > 0 && s.Err() == nil {
		s.writeIndex()
	}
}

// addFrame adds a sealed frame to the pack of its type and returns that
// pack, or nil after an error (then the frame is dropped).
func (s *Saver) addFrame(writers map[pack.BlobType]*pack.Writer, f sealedFrame) *pack.Writer {
	defer putBuf(f.data)
	if s.Err() != nil {
		return nil // drain
	}
	w := writers[f.t]
	if w == nil {
		var err error
		if w, err = pack.NewWriter(s.r.key, s.r.tmpDir); err != nil {
			s.setErr(err)
			return nil
		}
		writers[f.t] = w
	}
	if _, err := w.Add(f.data, f.frame); err != nil {
		s.setErr(err)
		return nil
	}
	return w
}

// uploadLoop finishes and saves full packs. Several run at once, so that
// a slow Save (an upload, an fsync) overlaps with packing the next one.
func (s *Saver) uploadLoop() {
	defer s.uploaders.Done()
	for w := range s.uploads {
		if s.Err() != nil {
			w.Close()
		} else {
			s.finishPack(w)
		}
		s.packs.Done()
	}
}

func (s *Saver) finishPack(w *pack.Writer) {
	defer w.Close()
	id, hdr, rd, err := w.Finish()
	if err != nil {
		s.setErr(err)
		return
	}
	size := hdr.Size()
	end, err := rd.Seek(0, 2)
	if err == nil {
		size = end
		_, err = rd.Seek(0, 0)
	}
	if err != nil {
		s.setErr(err)
		return
	}
	if err := s.r.be.Save(s.ctx, backend.Handle{Type: backend.PackFile, Name: id.String()}, rd); err != nil {
		s.setErr(fmt.Errorf("save pack %s: %w", id.Short(), err))
		return
	}
	p := PackInfo{ID: id, Size: size, Header: hdr}
	s.r.addToIndex(p)
	s.mu.Lock()
	for _, f := range hdr.Frames {
		for _, b := range f.Blobs {
			delete(s.pending, b.ID)
		}
	}
	s.stats.StoredBytes += size
	s.stats.Packs++
	s.mu.Unlock()
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	s.newPacks = append(s.newPacks, p)
	for _, f := range hdr.Frames {
		s.newBlobs += len(f.Blobs)
	}
	// With the index cached on disk, the blobs of the packs not in an
	// index file yet are the ones in memory: they are bounded too.
	if len(s.newPacks) >= indexEvery || (s.r.runDir != "" && s.newBlobs >= runBatch) {
		s.writeIndex()
	}
}

// writeIndex writes an index file of the packs saved since the last one.
// The caller holds indexMu (or is the only goroutine left).
func (s *Saver) writeIndex() {
	name, err := s.r.SaveIndex(s.ctx, s.newPacks)
	if err != nil {
		s.setErr(err)
		return
	}
	s.r.spill(name, s.newPacks)
	s.newPacks, s.newBlobs = nil, 0
}

// Sync makes every blob added before it durable and indexed, as Flush
// does, and leaves the Saver open: it seals the partial frames, saves the
// packs being filled (even small ones) and writes an index file. Adds wait
// meanwhile. A backup calls it before it writes a checkpoint snapshot.
func (s *Saver) Sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	for _, g := range s.takeGroups() {
		s.frames.Add(1)
		s.work <- g
	}
	s.frames.Wait()
	done := make(chan struct{})
	s.flushReq <- done
	<-done
	s.packs.Wait()
	s.indexMu.Lock()
	if len(s.newPacks) > 0 && s.Err() == nil {
		s.writeIndex()
	}
	s.indexMu.Unlock()
	return s.Err()
}

// takeGroups removes the partial groups and returns them.
func (s *Saver) takeGroups() []*group {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rest []*group
	for k, g := range s.groups {
		rest = append(rest, g)
		delete(s.groups, k)
	}
	return rest
}

// Flush seals the last partial frames, finishes and saves every pack and
// writes their index. The Saver cannot be used afterwards.
func (s *Saver) Flush() (SaverStats, error) {
	for _, g := range s.takeGroups() {
		s.frames.Add(1)
		s.work <- g
	}
	close(s.work)
	s.workers.Wait()
	close(s.sealed)
	<-s.packer
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats, s.err
}

// Frame buffers are recycled: a backup seals thousands of frames of about
// the same size.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, groupTarget+bigBlob); return &b }}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if cap(b) > 2*(groupTarget+bigBlob) {
		return // an outsized frame: let it go
	}
	bufPool.Put(&b)
}
