package repo

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/pack"
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
// returned slice must not be modified.
func (r *Repository) LoadBlob(ctx context.Context, id dedup.ID) ([]byte, error) {
	if err := r.EnsureIndex(ctx); err != nil {
		return nil, &BlobError{ID: id, Err: err}
	}
	loc, ok := r.index.Lookup(id)
	if !ok {
		return nil, &BlobError{ID: id, Err: errNotIndexed}
	}
	packID := r.index.Pack(loc.Pack)
	frame, err := r.loadFrame(ctx, packID, loc)
	if err != nil {
		return nil, &BlobError{ID: id, Pack: packID, Err: err}
	}
	if uint64(loc.Offset)+uint64(loc.Length) > uint64(len(frame)) {
		return nil, &BlobError{ID: id, Pack: packID, Err: asDamaged(errors.New("blob outside its frame"))}
	}
	b := frame[loc.Offset : loc.Offset+loc.Length]
	// A blob read again from a cached frame was checked the first time:
	// the frame's bytes do not change.
	k := frameKey{packID, loc.FrameOffset}
	if !r.trustIndex && !r.cache.checked(k, loc.Offset, id) {
		if dedup.Hash(b) != id {
			return nil, &BlobError{ID: id, Pack: packID, Err: asDamaged(errors.New("content does not match its id"))}
		}
		r.cache.markChecked(k, loc.Offset, id)
	}
	return b, nil
}

type frameKey struct {
	pack dedup.ID
	off  uint32
}

func (r *Repository) loadFrame(ctx context.Context, packID dedup.ID, loc dedup.Location) ([]byte, error) {
	k := frameKey{packID, loc.FrameOffset}
	if b, ok := r.cache.get(k); ok {
		return b, nil
	}
	rd, err := r.be.Load(ctx, backend.Handle{Type: backend.PackFile, Name: packID.String()}, int64(loc.FrameOffset), int64(loc.FrameLength))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	compressed := loc.Flags&pack.FlagZstd != 0
	var sealed []byte
	if compressed {
		// Opened in place and decompressed into a new slice: the sealed
		// bytes are not needed afterwards.
		sealed = getSealed(int(loc.FrameLength))
		defer putSealed(sealed)
	} else {
		sealed = make([]byte, loc.FrameLength)
	}
	if _, err := io.ReadFull(rd, sealed); err != nil {
		return nil, err
	}
	plain, err := r.codec.Open(sealed, loc.Flags, loc.FrameRaw)
	if err != nil {
		return nil, asDamaged(err)
	}
	r.cache.put(k, plain)
	return plain, nil
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
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).k)
	}
}

// frameCache keeps recently opened frames: restoring a folder reads the
// blobs of one frame one after the other.
type frameCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[frameKey]*list.Element
}

type cacheEntry struct {
	k       frameKey
	b       []byte
	checked map[uint32]dedup.ID // offset → the ID the blob there matched
}

func newFrameCache(max int) *frameCache {
	return &frameCache{max: max, ll: list.New(), items: make(map[frameKey]*list.Element)}
}

func (c *frameCache) get(k frameKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*cacheEntry).b, true
	}
	return nil, false
}

func (c *frameCache) put(k frameKey, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.ll.PushFront(&cacheEntry{k: k, b: b})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).k)
	}
}

// checked reports whether the blob at off of the cached frame k was
// checked against id.
func (c *frameCache) checked(k frameKey, off uint32, id dedup.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[k]
	if !ok {
		return false
	}
	got, ok := e.Value.(*cacheEntry).checked[off]
	return ok && got == id
}

// markChecked records that the blob at off of frame k matches id (if the
// frame is still cached).
func (c *frameCache) markChecked(k frameKey, off uint32, id dedup.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		ce := e.Value.(*cacheEntry)
		if ce.checked == nil {
			ce.checked = map[uint32]dedup.ID{}
		}
		ce.checked[off] = id
	}
}
