package repo

import (
	"bytes"
	"errors"
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
