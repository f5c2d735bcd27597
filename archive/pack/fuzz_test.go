package pack

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"codeberg.org/planb/planb/archive/crypto"
)

// fuzzKey is a fixed key, so that the fuzzer's corpus stays meaningful.
var fuzzKey = func() *crypto.Key {
	k, err := crypto.KeyFromBytes(bytes.Repeat([]byte{7}, crypto.KeySize))
	if err != nil {
		panic(err)
	}
	return k
}()

// FuzzParseHeader feeds arbitrary bytes to ParseHeader, both as a raw pack
// tail and as the plaintext of a correctly sealed header (the only way for
// fuzzed bytes to get past authentication). Nothing may panic, and any
// header that parses must re-encode to a header that decodes equal.
func FuzzParseHeader(f *testing.F) {
	f.Add(goldenEncoding(), int64(0))
	f.Add([]byte{0}, int64(0))
	seed := randomHeader(rand.New(rand.NewPCG(3, 4)), 3, 3)
	f.Add(seed.AppendBinary(nil), int64(100))
	f.Add([]byte{}, int64(-1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, int64(1<<40))
	f.Fuzz(func(t *testing.T, data []byte, extra int64) {
		// Raw tails never pass authentication, but must not panic.
		for _, size := range []int64{int64(len(data)), extra} {
			if _, need, err := ParseHeader(fuzzKey, data, size); err == nil && need == 0 {
				t.Fatalf("ParseHeader accepted %d unsealed bytes", len(data))
			}
		}

		// data as a header's plaintext, correctly sealed; the pack's size
		// is what the decoded frames claim, or that plus extra.
		d := NewDecoder(data)
		claimed := d.Header()
		tail := sealedTail(fuzzKey, append([]byte(headerMagic), data...))
		for _, size := range []int64{int64(len(tail)) + claimed.Size(), int64(len(tail)) + claimed.Size() + extra%1024} {
			h, need, err := ParseHeader(fuzzKey, tail, size)
			if need != 0 && err == nil && need <= len(tail) {
				t.Fatalf("ParseHeader asks for %d bytes with a %d-byte tail", need, len(tail))
			}
			if err != nil || need != 0 {
				continue
			}
			if d.Err() != nil || len(d.Rest()) != 0 {
				t.Fatalf("ParseHeader accepted a header the decoder refuses: %v, %d bytes left", d.Err(), len(d.Rest()))
			}
			checkReencode(t, h)
			var off int64
			for i, fr := range h.Frames {
				var sum uint64
				for _, b := range fr.Blobs {
					sum += uint64(b.Length)
				}
				if int64(fr.Offset) != off || sum != uint64(fr.RawLength) || fr.Length < crypto.Overhead || fr.Flags&^FlagZstd != 0 {
					t.Fatalf("accepted frame %d is inconsistent: %+v", i, fr)
				}
				off += int64(fr.Length)
			}
			if off+int64(len(tail)) != size {
				t.Fatalf("accepted frames end at %d, pack size %d, tail %d", off, size, len(tail))
			}
		}
	})
}

// checkReencode requires h to encode and decode back to itself, and the
// encoding to be stable.
func checkReencode(t *testing.T, h Header) {
	t.Helper()
	enc := h.AppendBinary(nil)
	d := NewDecoder(enc)
	h2 := d.Header()
	if d.Err() != nil || len(d.Rest()) != 0 {
		t.Fatalf("re-encoded header does not decode: %v, %d bytes left", d.Err(), len(d.Rest()))
	}
	if len(h.Frames) == 0 && len(h2.Frames) == 0 {
		h.Frames, h2.Frames = nil, nil
	}
	if !reflect.DeepEqual(h, h2) {
		t.Fatalf("header changed through encoding:\n%+v\n%+v", h, h2)
	}
	if enc2 := h2.AppendBinary(nil); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable:\n%x\n%x", enc, enc2)
	}
}

// FuzzHeaderRoundTrip encodes random consistent headers and decodes them.
func FuzzHeaderRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint8(0), uint8(0))
	f.Add(uint64(3), uint64(4), uint8(1), uint8(1))
	f.Add(uint64(5), uint64(6), uint8(20), uint8(50))
	f.Fuzz(func(t *testing.T, s1, s2 uint64, frames, blobs uint8) {
		h := randomHeader(rand.New(rand.NewPCG(s1, s2)), int(frames%64), int(blobs%64))
		enc := h.AppendBinary(nil)
		d := NewDecoder(enc)
		got := d.Header()
		if d.Err() != nil || len(d.Rest()) != 0 {
			t.Fatalf("Decoder.Header: %v, %d bytes left", d.Err(), len(d.Rest()))
		}
		if !reflect.DeepEqual(got, h) {
			t.Fatalf("Decoder.Header = %+v, want %+v", got, h)
		}
		checkReencode(t, got)
		// Sealed in a pack of the right size, it parses to the same header.
		tail := sealedTail(fuzzKey, append([]byte(headerMagic), enc...))
		ph, need, err := ParseHeader(fuzzKey, tail, h.Size()+int64(len(tail)))
		if err != nil || need != 0 || !reflect.DeepEqual(ph, h) {
			t.Fatalf("ParseHeader = %+v, %d, %v; want %+v", ph, need, err, h)
		}
	})
}
