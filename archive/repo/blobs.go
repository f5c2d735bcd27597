package repo

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/dedup"
)

// errNotIndexed says that no index file lists a blob.
var errNotIndexed = errors.New("not in index")

// BlobError says that a blob could not be loaded; Pack names the pack. Err
// wraps ErrDamaged when the blob's frame or content failed its checks, and
// backend.ErrNotExist when its pack is gone.
type BlobError struct {
	ID   dedup.ID
	Pack dedup.ID
	Err  error
}

func (e *BlobError) Error() string {
	if e.Pack.IsNull() {
		return fmt.Sprintf("blob %s: %v", e.ID.Short(), e.Err)
	}
	return fmt.Sprintf("blob %s in pack %s: %v", e.ID.Short(), e.Pack, e.Err)
}

func (e *BlobError) Unwrap() error { return e.Err }

// LoadBlob returns the plaintext of a blob, checked against its ID. The
// returned slice must not be modified; it stays valid.
func (r *Repository) LoadBlob(ctx context.Context, id dedup.ID) ([]byte, error) {
	b, _, err := r.loadBlob(ctx, id, true)
	return b, err
}

// BlobRef holds the frame of a blob that LoadBlobRef returned.
type BlobRef struct {
	c *frameCache
	e *cacheEntry
}

// Release says that the blob's slice is no longer used: the memory of its
// frame may then hold another. Releasing a zero BlobRef does nothing.
func (ref BlobRef) Release() {
	if ref.e != nil {
		ref.c.release(ref.e)
	}
}

// LoadBlobRef is LoadBlob for a reader that says when it is done with the
// blob: the slice stays valid until ref.Release. A reader of many blobs
// (restore, planb serve) thus reuses the memory of the frames it read
// instead of allocating and clearing some for every frame. A ref that is
// never released costs only that reuse.
func (r *Repository) LoadBlobRef(ctx context.Context, id dedup.ID) ([]byte, BlobRef, error) {
	b, e, err := r.loadBlob(ctx, id, false)
	if err != nil {
		return nil, BlobRef{}, err
	}
	return b, BlobRef{r.cache, e}, nil
}

// loadBlob returns a blob and the cache entry of its frame: pinned, or
// with keep marked as kept for good.
func (r *Repository) loadBlob(ctx context.Context, id dedup.ID, keep bool) ([]byte, *cacheEntry, error) {
	if err := r.EnsureIndex(ctx); err != nil {
		return nil, nil, &BlobError{ID: id, Err: err}
	}
	loc, ok := r.index.Lookup(id)
	if !ok {
		return nil, nil, &BlobError{ID: id, Err: errNotIndexed}
	}
	packID := r.index.Pack(loc.Pack)
	c := r.cache
	e, err := r.loadFrame(ctx, c, packID, loc, keep)
	if err != nil {
		return nil, nil, &BlobError{ID: id, Pack: packID, Err: err}
	}
	fail := func(err error) ([]byte, *cacheEntry, error) {
		if !keep {
			c.release(e)
		}
		return nil, nil, &BlobError{ID: id, Pack: packID, Err: asDamaged(err)}
	}
	if uint64(loc.Offset)+uint64(loc.Length) > uint64(len(e.b)) {
		return fail(errors.New("blob outside its frame"))
	}
	b := e.b[loc.Offset : loc.Offset+loc.Length]
	// A blob read again from a cached frame was checked the first time:
	// the frame's bytes do not change.
	if !r.trustIndex && !c.checked(e, loc.Offset, id) {
		if dedup.Hash(b) != id {
			return fail(errors.New("content does not match its id"))
		}
		c.markChecked(e, loc.Offset, id)
	}
	return b, e, nil
}

type frameKey struct {
	pack dedup.ID
	off  uint32
}

// loadFrame returns the cache entry of the frame at loc, from the cache or
// read and opened (see loadBlob for keep).
func (r *Repository) loadFrame(ctx context.Context, c *frameCache, packID dedup.ID, loc dedup.Location, keep bool) (*cacheEntry, error) {
	k := frameKey{packID, loc.FrameOffset}
	if e := c.acquire(k, keep); e != nil {
		return e, nil
	}
	rd, err := r.be.Load(ctx, backend.Handle{Type: backend.PackFile, Name: packID.String()}, int64(loc.FrameOffset), int64(loc.FrameLength))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	compressed := loc.Flags != 0 // zstd, base64 lines decoded, or both
	var sealed, buf []byte
	if compressed {
		// Opened in place and decompressed into buf: the sealed bytes
		// are not needed afterwards.
		sealed = getSealed(int(loc.FrameLength))
		defer putSealed(sealed)
		buf = getFrameBuf(int(loc.FrameRaw))
	} else {
		buf = getFrameBuf(int(loc.FrameLength))
		sealed = buf[:loc.FrameLength]
	}
	if _, err := io.ReadFull(rd, sealed); err != nil {
		putFrameBuf(buf)
		return nil, err
	}
	plain, err := r.codec.OpenInto(buf, sealed, loc.Flags, loc.FrameRaw)
	if err != nil {
		putFrameBuf(buf)
		return nil, asDamaged(err)
	}
	// An uncompressed frame is opened in place (in buf); a compressed one
	// is decompressed into buf unless it turned out larger.
	if compressed && (cap(plain) == 0 || &plain[:1][0] != &buf[:1][0]) {
		putFrameBuf(buf)
		buf = nil
	}
	return c.insert(k, plain, buf, keep), nil
}

// sealedPool recycles the buffers compressed frames are read into: a
// restore reads thousands of frames of about groupTarget bytes.
var sealedPool sync.Pool

func getSealed(n int) []byte {
	if bp, ok := sealedPool.Get().(*[]byte); ok && cap(*bp) >= n {
		return (*bp)[:n]
	}
	return make([]byte, n, max(n, groupTarget+bigBlob))
}

func putSealed(b []byte) {
	if cap(b) > 2*(groupTarget+bigBlob) {
		return // an outsized frame: let it go
	}
	sealedPool.Put(&b)
}

// TrustIndex makes LoadBlob skip the check of a blob's content against its
// ID. Every frame is still opened with its authentication tag, so a
// damaged or altered pack is found all the same; what goes unchecked is
// only that the index points at the right blob, which the index's own
// authentication and `check` vouch for. Hashing every blob costs a
// reader that only shows mail (planb serve) about a sixth of its CPU.
// Restore, export and check keep the check.
func (r *Repository) TrustIndex() { r.trustIndex = true }

// SetFrameCache makes the repository keep the n frames it opened last
// (16 by default; a frame holds at most 16 MiB, most hold 64-512 KiB). A
// process that reads the same messages twice in a row, as planb serve
// does (once to learn a message's size on the wire, once to send it),
// keeps more.
func (r *Repository) SetFrameCache(n int) {
	c := r.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max(n, 1)
	c.trimLocked()
}

// frameCache keeps recently opened frames: restoring a folder reads the
// blobs of one frame one after the other. A frame's memory is reused for
// another frame once the cache has dropped it and every BlobRef to it is
// released, unless LoadBlob handed a slice of it out (kept).
type frameCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[frameKey]*list.Element
}

type cacheEntry struct {
	k       frameKey
	b       []byte              // the frame's plaintext
	buf     []byte              // the pooled memory b lies in; nil: none
	checked map[uint32]dedup.ID // offset → the ID the blob there matched
	refs    int                 // BlobRefs not released
	kept    bool                // a slice went out by LoadBlob
	dropped bool                // no longer in the cache
}

func newFrameCache(max int) *frameCache {
	return &frameCache{max: max, ll: list.New(), items: make(map[frameKey]*list.Element)}
}

// holdLocked pins e for a BlobRef, or marks it kept.
func (e *cacheEntry) holdLocked(keep bool) {
	if keep {
		e.kept = true
	} else {
		e.refs++
	}
}

// acquire returns the cached entry of frame k, held (holdLocked), or nil.
func (c *frameCache) acquire(k frameKey, keep bool) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil
	}
	c.ll.MoveToFront(el)
	e := el.Value.(*cacheEntry)
	e.holdLocked(keep)
	return e
}

// insert caches frame k, opened into b (in pooled memory buf, or nil), and
// returns its entry, held. If another reader cached k meanwhile, its entry
// is returned and buf goes back to the pool.
func (c *frameCache) insert(k frameKey, b, buf []byte, keep bool) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		putFrameBuf(buf)
		c.ll.MoveToFront(el)
		e := el.Value.(*cacheEntry)
		e.holdLocked(keep)
		return e
	}
	e := &cacheEntry{k: k, b: b, buf: buf}
	e.holdLocked(keep)
	c.items[k] = c.ll.PushFront(e)
	c.trimLocked()
	return e
}

// trimLocked drops the frames used least recently beyond max.
func (c *frameCache) trimLocked() {
	for c.ll.Len() > c.max {
		el := c.ll.Back()
		c.ll.Remove(el)
		e := el.Value.(*cacheEntry)
		delete(c.items, e.k)
		e.dropped = true
		c.reuseLocked(e)
	}
}

// release undoes a BlobRef's hold.
func (c *frameCache) release(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	c.reuseLocked(e)
}

// reuseLocked gives e's memory back to the pool once nothing can read it.
func (c *frameCache) reuseLocked(e *cacheEntry) {
	if e.dropped && e.refs == 0 && !e.kept && e.buf != nil {
		putFrameBuf(e.buf)
		e.buf, e.b = nil, nil
	}
}

// checked reports whether the blob at off of frame e was checked against
// id.
func (c *frameCache) checked(e *cacheEntry, off uint32, id dedup.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	got, ok := e.checked[off]
	return ok && got == id
}

// markChecked records that the blob at off of frame e matches id.
func (c *frameCache) markChecked(e *cacheEntry, off uint32, id dedup.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.checked == nil {
		e.checked = map[uint32]dedup.ID{}
	}
	e.checked[off] = id
}

// framePools recycle the memory of opened frames, in size classes a
// quarter of a power of two apart (so at most a quarter is unused).
var framePools [4 * 32]sync.Pool

// frameClass returns the pool of n bytes and its buffers' size.
func frameClass(n int) (int, int) {
	if n <= 4096 {
		return 0, 4096
	}
	e := bits.Len(uint(n-1)) - 1 // 1<<e < n <= 1<<(e+1)
	q := (n - 1 - 1<<e) >> (e - 2)
	return 4*e + q, 1<<e + (q+1)<<(e-2)
}

// getFrameBuf returns memory for at least n bytes (length 0).
func getFrameBuf(n int) []byte {
	i, size := frameClass(n)
	if bp, ok := framePools[i].Get().(*[]byte); ok {
		return (*bp)[:0]
	}
	return make([]byte, 0, size)
}

// putFrameBuf gives memory from getFrameBuf back (nil: nothing).
func putFrameBuf(b []byte) {
	if cap(b) == 0 {
		return
	}
	i, size := frameClass(cap(b))
	if size != cap(b) {
		return // not from getFrameBuf
	}
	b = b[:0]
	framePools[i].Put(&b)
}
