package repo

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

func fillID(b byte) (id dedup.ID) {
	for i := range id {
		id[i] = b
	}
	return id
}

// randomPacks returns n packs with consistent random headers.
func randomPacks(rng *rand.Rand, n int) []PackInfo {
	var out []PackInfo
	for range n {
		var p PackInfo
		for i := range p.ID {
			p.ID[i] = byte(rng.Uint32())
		}
		var off uint32
		for range rng.IntN(5) {
			f := pack.Frame{Offset: off, Flags: uint8(rng.IntN(2))}
			for range 1 + rng.IntN(4) {
				b := pack.Blob{Type: pack.BlobType(1 + rng.IntN(2)), Length: uint32(rng.IntN(100000))}
				for i := range b.ID {
					b.ID[i] = byte(rng.Uint32())
				}
				f.RawLength += b.Length
				f.Blobs = append(f.Blobs, b)
			}
			f.Length = f.RawLength/2 + crypto.Overhead
			off += f.Length
			p.Header.Frames = append(p.Header.Frames, f)
		}
		if p.Header.Frames == nil {
			p.Header.Frames = []pack.Frame{}
		}
		p.Size = p.Header.Size() + 200
		out = append(out, p)
	}
	return out
}

func TestIndexEncodingGolden(t *testing.T) {
	packs := []PackInfo{{
		ID:   fillID(0xaa),
		Size: 1000,
		Header: pack.Header{Frames: []pack.Frame{
			{Offset: 0, Length: 41, Flags: 0, RawLength: 1, Blobs: []pack.Blob{{Type: pack.DataBlob, ID: fillID(0x11), Length: 1}}},
		}},
	}}
	want := []byte("PBIX\x01")
	want = append(want, 0x01) // one pack
	want = append(want, bytes.Repeat([]byte{0xaa}, 32)...)
	want = append(want, 0xe8, 0x07)                   // size 1000
	want = append(want, 0x01, 0x00, 0x29, 0x00, 0x01) // 1 frame: offset 0, length 41, flags 0, raw 1
	want = append(want, 0x01, 0x01)                   // 1 blob, data
	want = append(want, bytes.Repeat([]byte{0x11}, 32)...)
	want = append(want, 0x01) // length 1
	got := encodeIndex(packs)
	if !bytes.Equal(got, want) {
		t.Fatalf("encodeIndex =\n%x\nwant\n%x", got, want)
	}
	dec, err := decodeIndex(got)
	if err != nil || !reflect.DeepEqual(dec, packs) {
		t.Errorf("decodeIndex = %+v, %v; want %+v", dec, err, packs)
	}
}

func TestIndexRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	tests := []struct {
		name  string
		packs []PackInfo
	}{
		{"one empty pack", randomPacks(rng, 1)[:1]},
		{"ten packs", randomPacks(rng, 10)},
		{"500 packs", randomPacks(rng, 500)},
	}
	tests[0].packs[0].Header.Frames = []pack.Frame{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeIndex(tt.packs)
			got, err := decodeIndex(b)
			if err != nil {
				t.Fatalf("decodeIndex(encodeIndex) = %v", err)
			}
			if !reflect.DeepEqual(got, tt.packs) {
				t.Errorf("decodeIndex(encodeIndex(%d packs)) differs", len(tt.packs))
			}
		})
	}
	if got, err := decodeIndex(encodeIndex(nil)); err != nil || len(got) != 0 {
		t.Errorf("decodeIndex(encodeIndex(nil)) = %+v, %v; want no pack", got, err)
	}
}

func TestDecodeIndexErrors(t *testing.T) {
	good := encodeIndex(randomPacks(rand.New(rand.NewPCG(2, 2)), 3))
	for n := range len(good) {
		if _, err := decodeIndex(good[:n]); err == nil {
			t.Errorf("decodeIndex(first %d of %d bytes) = nil error", n, len(good))
		}
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "bad index magic"},
		{"pack header magic", []byte("PBPK\x01\x00"), "bad index magic"},
		{"version 2", []byte("PBIX\x02\x00"), "bad index magic"},
		{"trailing byte", append(bytes.Clone(good), 0), "trailing bytes in index"},
		{"too many packs", binary.AppendUvarint([]byte("PBIX\x01"), 1<<24+1), "truncated or damaged varint"},
		{"pack size above 4 GiB", binary.AppendUvarint(append([]byte("PBIX\x01\x01"), make([]byte, 32)...), 1<<32+1), "truncated or damaged varint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeIndex(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decodeIndex = %+v, %v; want an error containing %q", got, err, tt.wantErr)
			}
		})
	}
}

func FuzzDecodeIndex(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 3))
	f.Add(encodeIndex(nil))
	f.Add(encodeIndex(randomPacks(rng, 1)))
	f.Add(encodeIndex(randomPacks(rng, 3)))
	f.Add([]byte("PBIX\x01\xff\xff\xff\x07"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := decodeIndex(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes equal.
		enc := encodeIndex(packs)
		again, err := decodeIndex(enc)
		if err != nil {
			t.Fatalf("re-encoded index does not decode: %v", err)
		}
		if len(packs) != len(again) {
			t.Fatalf("re-encoded index has %d packs, want %d", len(again), len(packs))
		}
		for i := range packs {
			if len(packs[i].Header.Frames) == 0 {
				packs[i].Header.Frames, again[i].Header.Frames = nil, nil
			}
		}
		if !reflect.DeepEqual(packs, again) {
			t.Fatalf("index changed through encoding")
		}
		if !bytes.Equal(encodeIndex(again), enc) {
			t.Fatal("index encoding not stable")
		}
	})
}

// TestSaveLoadIndex stores index files through the repository and reads
// them back, as Open does.
func TestSaveLoadIndex(t *testing.T) {
	r, be := newTestRepo(t)
	ctx := t.Context()
	packs := randomPacks(rand.New(rand.NewPCG(4, 4)), 6)
	n1, err := r.SaveIndex(ctx, packs[:4])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveIndex(ctx, packs[4:]); err != nil {
		t.Fatal(err)
	}
	// The name is the SHA-256 of the stored bytes.
	sealed := be.Contents()[backend.Handle{Type: backend.IndexFile, Name: n1}]
	if dedup.Hash(sealed).String() != n1 {
		t.Errorf("index file %s is not named by its content's hash", n1)
	}
	r2, err := Open(ctx, be, testPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	wantBlobs := 0
	for _, p := range packs {
		if !r2.Index().HasPack(p.ID) {
			t.Errorf("pack %s not indexed after Open", p.ID.Short())
		}
		for _, f := range p.Header.Frames {
			var off uint32
			for _, b := range f.Blobs {
				wantBlobs++
				loc, ok := r2.Index().Lookup(b.ID)
				want := dedup.Location{Pack: loc.Pack, FrameOffset: f.Offset, FrameLength: f.Length, FrameRaw: f.RawLength, Offset: off, Length: b.Length, Flags: f.Flags, Type: uint8(b.Type)}
				if !ok || loc != want || r2.Index().Pack(loc.Pack) != p.ID {
					t.Errorf("blob %s: Lookup = %+v, %v; want %+v in pack %s", b.ID.Short(), loc, ok, want, p.ID.Short())
				}
				off += b.Length
			}
		}
	}
	if r2.Index().Len() != wantBlobs {
		t.Errorf("index has %d blobs, want %d", r2.Index().Len(), wantBlobs)
	}

	// A damaged index file is skipped and named; the others load.
	if err := be.Corrupt(backend.Handle{Type: backend.IndexFile, Name: n1}, 50); err != nil {
		t.Fatal(err)
	}
	r3, err := Open(ctx, be, testPassword, nil)
	if err != nil {
		t.Fatalf("Open with a damaged index = %v, want it skipped", err)
	}
	if err := r3.EnsureIndex(ctx); err != nil {
		t.Fatalf("EnsureIndex with a damaged index = %v, want it skipped", err)
	}
	if got := r3.DamagedIndex(); !slices.Equal(got, []string{n1}) {
		t.Errorf("DamagedIndex() = %v, want [%s]", got, n1)
	}
	for i, p := range packs {
		if got, want := r3.Index().HasPack(p.ID), i >= 4; got != want {
			t.Errorf("pack %d indexed = %v, want %v", i, got, want)
		}
	}
}
