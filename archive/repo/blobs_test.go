package repo

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

// TestTrustIndex: by default LoadBlob refuses a blob whose content does
// not match its ID (an index pointing at another blob); after TrustIndex
// it no longer hashes blobs, but a damaged frame is still refused.
func TestTrustIndex(t *testing.T) {
	ctx := t.Context()
	r, be := newTestRepo(t)
	data := bytes.Repeat([]byte("the only blob of the pack\r\n"), 100)
	id := dedup.Hash(data)
	s := r.NewSaver(ctx)
	if _, err := s.Add(pack.DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	loc, ok := r.index.Lookup(id)
	if !ok {
		t.Fatal("saved blob not in the index")
	}
	wrong := dedup.Hash([]byte("another blob"))
	r.index.Add(wrong, loc)

	if _, err := r.LoadBlob(ctx, wrong); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "does not match its id") {
		t.Fatalf("LoadBlob of a blob the index places wrongly = %v, want ErrDamaged", err)
	}
	r.TrustIndex()
	if got, err := r.LoadBlob(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("LoadBlob with TrustIndex = %d bytes, %v; want the blob", len(got), err)
	}
	if got, err := r.LoadBlob(ctx, wrong); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("LoadBlob with TrustIndex of a wrongly placed blob = %d bytes, %v; want what the index points at", len(got), err)
	}

	// A damaged frame: opened by a repository that has not cached it.
	packID := r.index.Pack(loc.Pack)
	if err := be.Corrupt(backend.Handle{Type: backend.PackFile, Name: packID.String()}, int64(loc.FrameOffset)+int64(loc.FrameLength)/2); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be, testPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	r2.TrustIndex()
	if _, err := r2.LoadBlob(ctx, id); !errors.Is(err, ErrDamaged) {
		t.Fatalf("LoadBlob with TrustIndex of a damaged frame = %v, want ErrDamaged", err)
	}
}

// TestFrameReuse: a frame's memory is reused once the cache has dropped it
// and its BlobRefs are released, never while a BlobRef holds it or after
// LoadBlob handed a slice of it out; reading frames with LoadBlobRef and
// Release allocates a fraction of what LoadBlob does.
func TestFrameReuse(t *testing.T) {
	ctx := t.Context()
	r, _ := newTestRepo(t)
	rng := rand.New(rand.NewPCG(7, 8))
	var ids []dedup.ID
	var blobs [][]byte
	s := r.NewSaver(ctx)
	for i := range 120 {
		// A frame of its own each: random bytes (stored as they are) and
		// text (compressed).
		data := make([]byte, bigBlob+rng.IntN(bigBlob))
		if i%2 == 0 {
			for k := range data {
				data[k] = byte(rng.Uint32())
			}
		} else {
			for k := range data {
				data[k] = "abcdefgh\r\n"[rng.IntN(10)]
			}
		}
		id := dedup.Hash(data)
		if _, err := s.Add(pack.DataBlob, id, data); err != nil {
			t.Fatal(err)
		}
		ids, blobs = append(ids, id), append(blobs, data)
	}
	if _, err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	r.SetFrameCache(4)

	// Held: by a BlobRef never released, and by LoadBlob.
	heldRef, ref, err := r.LoadBlobRef(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	kept, err := r.LoadBlob(ctx, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	readAll := func() {
		t.Helper()
		for i := 2; i < len(ids); i++ {
			b, ref, err := r.LoadBlobRef(ctx, ids[i])
			if err != nil || !bytes.Equal(b, blobs[i]) {
				t.Fatalf("LoadBlobRef(blob %d) = %d bytes, %v; want the blob", i, len(b), err)
			}
			ref.Release()
		}
	}
	readAll()
	readAll()
	if !bytes.Equal(heldRef, blobs[0]) || !bytes.Equal(kept, blobs[1]) {
		t.Fatal("a frame held by a BlobRef or handed out by LoadBlob was reused")
	}
	ref.Release()

	if raceEnabled {
		return // sync.Pool drops a quarter of what it is given
	}
	allocated := func(load func(i int)) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 2; i < len(ids); i++ {
			load(i)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	withRefs := allocated(func(i int) {
		_, ref, err := r.LoadBlobRef(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		ref.Release()
	})
	withoutRefs := allocated(func(i int) {
		if _, err := r.LoadBlob(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
	})
	if withRefs*4 > withoutRefs {
		t.Errorf("reading %d frames allocated %d bytes with BlobRefs, %d without: want a quarter or less", len(ids)-2, withRefs, withoutRefs)
	}
}
