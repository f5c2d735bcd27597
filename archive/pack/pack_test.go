package pack

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/dedup"
)

func fill(b byte) (id dedup.ID) {
	for i := range id {
		id[i] = b
	}
	return id
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// goldenHeader and goldenEncoding pin the header's binary encoding, which
// index files share (see archive/FORMAT.md).
var goldenHeader = Header{Frames: []Frame{
	{Offset: 0, Length: 50, Flags: FlagZstd, RawLength: 300, Blobs: []Blob{
		{Type: DataBlob, ID: fill(0x11), Length: 100},
		{Type: TreeBlob, ID: fill(0x22), Length: 200},
	}},
	{Offset: 50, Length: 200, Flags: 0, RawLength: 160, Blobs: []Blob{
		{Type: DataBlob, ID: fill(0x33), Length: 160},
	}},
}}

func goldenEncoding() []byte {
	var b []byte
	b = append(b, 0x02)             // 2 frames
	b = append(b, 0x00, 0x32, 0x01) // offset 0, length 50, flags zstd
	b = append(b, 0xac, 0x02, 0x02) // raw length 300, 2 blobs
	b = append(b, 0x01)             // data blob
	b = append(b, bytes.Repeat([]byte{0x11}, 32)...)
	b = append(b, 0x64) // length 100
	b = append(b, 0x02) // tree blob
	b = append(b, bytes.Repeat([]byte{0x22}, 32)...)
	b = append(b, 0xc8, 0x01)             // length 200
	b = append(b, 0x32, 0xc8, 0x01, 0x00) // offset 50, length 200, no flags
	b = append(b, 0xa0, 0x01, 0x01)       // raw length 160, 1 blob
	b = append(b, 0x01)
	b = append(b, bytes.Repeat([]byte{0x33}, 32)...)
	b = append(b, 0xa0, 0x01) // length 160
	return b
}

func TestHeaderEncodingGolden(t *testing.T) {
	got := goldenHeader.AppendBinary([]byte("x"))
	if want := append([]byte("x"), goldenEncoding()...); !bytes.Equal(got, want) {
		t.Fatalf("AppendBinary =\n%x\nwant\n%x", got, want)
	}
	d := NewDecoder(goldenEncoding())
	h := d.Header()
	if d.Err() != nil || len(d.Rest()) != 0 {
		t.Fatalf("Decoder.Header: err %v, %d bytes left", d.Err(), len(d.Rest()))
	}
	if !reflect.DeepEqual(h, goldenHeader) {
		t.Errorf("Decoder.Header = %+v, want %+v", h, goldenHeader)
	}
	if h.Size() != 250 {
		t.Errorf("Size() = %d, want 250", h.Size())
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    Header
	}{
		{"empty", Header{Frames: []Frame{}}},
		{"golden", goldenHeader},
		{"empty frame", Header{Frames: []Frame{{Offset: 0, Length: crypto.Overhead}}}},
		{"large values", Header{Frames: []Frame{{Offset: 1<<32 - 100, Length: 1<<32 - 1, RawLength: 1<<32 - 1, Blobs: []Blob{{Type: 200, ID: fill(0xff), Length: 1<<32 - 1}}}}}},
		{"random", randomHeader(rand.New(rand.NewPCG(1, 2)), 50, 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := tt.h.AppendBinary(nil)
			d := NewDecoder(append(bytes.Clone(enc), "rest"...))
			got := d.Header()
			if d.Err() != nil {
				t.Fatalf("Decoder.Header: %v", d.Err())
			}
			if string(d.Rest()) != "rest" {
				t.Errorf("Rest() = %q, want %q", d.Rest(), "rest")
			}
			if !reflect.DeepEqual(got, tt.h) {
				t.Errorf("Decoder.Header = %+v, want %+v", got, tt.h)
			}
		})
	}
}

// randomHeader returns a consistent header of up to maxFrames frames of up
// to maxBlobs blobs whose frames tile a pack from offset 0.
func randomHeader(rng *rand.Rand, maxFrames, maxBlobs int) Header {
	h := Header{Frames: []Frame{}}
	var off uint32
	for range rng.IntN(maxFrames + 1) {
		f := Frame{Offset: off, Flags: uint8(rng.IntN(2))}
		for range rng.IntN(maxBlobs + 1) {
			var bl Blob
			bl.Type = BlobType(1 + rng.IntN(2))
			for i := range bl.ID {
				bl.ID[i] = byte(rng.Uint32())
			}
			bl.Length = uint32(rng.IntN(1 << (1 + rng.IntN(20))))
			f.RawLength += bl.Length
			f.Blobs = append(f.Blobs, bl)
		}
		f.Length = crypto.Overhead + uint32(rng.IntN(int(f.RawLength)+1))
		off += f.Length
		h.Frames = append(h.Frames, f)
	}
	return h
}

func TestDecoderRejects(t *testing.T) {
	enc := goldenEncoding()
	// Every strict prefix is truncated.
	for n := range len(enc) {
		d := NewDecoder(enc[:n])
		d.Header()
		if d.Err() == nil {
			t.Errorf("Decoder.Header(first %d of %d bytes) = nil error, want one", n, len(enc))
		}
	}
	tests := []struct {
		name    string
		h       Header
		wantErr string
	}{
		{"raw length is not the blobs' sum", Header{Frames: []Frame{{Length: 100, RawLength: 10, Blobs: []Blob{{Type: DataBlob, Length: 9}}}}}, "inconsistent frame"},
		{"sealed frame shorter than the overhead", Header{Frames: []Frame{{Length: crypto.Overhead - 1, RawLength: 1, Blobs: []Blob{{Type: DataBlob, Length: 1}}}}}, "inconsistent frame"},
		{"unknown flag", Header{Frames: []Frame{{Length: 100, Flags: 4, RawLength: 1, Blobs: []Blob{{Type: DataBlob, Length: 1}}}}}, "inconsistent frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(tt.h.AppendBinary(nil))
			d.Header()
			if d.Err() == nil || !strings.Contains(d.Err().Error(), tt.wantErr) {
				t.Errorf("Decoder.Header = %v, want an error containing %q", d.Err(), tt.wantErr)
			}
		})
	}
	// Counts above the limits are refused before any allocation.
	for _, b := range [][]byte{
		binary.AppendUvarint(nil, 1<<24+1),
		append([]byte{1, 0, 100, 0, 0}, binary.AppendUvarint(nil, 1<<20+1)...),
		{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, // varint overflow
	} {
		d := NewDecoder(b)
		d.Header()
		if d.Err() == nil || !strings.Contains(d.Err().Error(), "varint") {
			t.Errorf("Decoder.Header(%x) = %v, want a varint error", b, d.Err())
		}
	}
	// Errors stick.
	d := NewDecoder(nil)
	d.Byte()
	if d.ID() != (dedup.ID{}) || d.Uvarint(10) != 0 || d.Err() == nil || !strings.Contains(d.Err().Error(), "byte") {
		t.Errorf("decoder after a failure: err %v, want the first error (byte)", d.Err())
	}
}

func TestCodec(t *testing.T) {
	c := NewCodec(crypto.NewRandomKey())
	text := []byte(strings.Repeat("Received: from mail.example.eu by mx.example.eu\r\n", 2000))
	random := randomBytes(1, 100<<10)
	tests := []struct {
		name      string
		raw       []byte
		wantFlags uint8
	}{
		{"compressible", text, FlagZstd},
		{"incompressible", random, 0},
		{"empty", nil, 0},
		{"tiny", []byte("x"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, flags := c.Seal([]byte("dst"), tt.raw)
			if !bytes.HasPrefix(sealed, []byte("dst")) {
				t.Fatal("Seal did not append to dst")
			}
			sealed = sealed[3:]
			if flags != tt.wantFlags {
				t.Errorf("Seal flags = %d, want %d", flags, tt.wantFlags)
			}
			switch {
			case flags == 0 && len(sealed) != len(tt.raw)+crypto.Overhead:
				t.Errorf("uncompressed frame: %d sealed bytes, want %d", len(sealed), len(tt.raw)+crypto.Overhead)
			case flags == FlagZstd && len(sealed) > len(tt.raw)/10:
				t.Errorf("compressible frame: %d sealed bytes for %d, want < 10%%", len(sealed), len(tt.raw))
			}
			// Open decrypts in place: each call gets its own copy.
			got, err := c.Open(bytes.Clone(sealed), flags, uint32(len(tt.raw)))
			if err != nil || !bytes.Equal(got, tt.raw) {
				t.Fatalf("Open(Seal(%d bytes)) = %d bytes, %v", len(tt.raw), len(got), err)
			}
			if _, err := c.Open(bytes.Clone(sealed), flags, uint32(len(tt.raw))+1); err == nil || !strings.Contains(err.Error(), "want") {
				t.Errorf("Open with a wrong raw length = %v, want a length error", err)
			}
			bad := bytes.Clone(sealed)
			bad[len(bad)/2] ^= 1
			if _, err := c.Open(bad, flags, uint32(len(tt.raw))); !errors.Is(err, crypto.ErrAuth) {
				t.Errorf("Open of a damaged frame = %v, want ErrAuth", err)
			}
		})
	}
	if _, err := c.Open(c.key.Seal(nil, []byte("x")), 0, MaxFrameRaw+1); err == nil || err.Error() != "frame too large" {
		t.Errorf("Open(rawLen %d) = %v, want frame too large", MaxFrameRaw+1, err)
	}
	// A frame flagged zstd that does not decompress.
	if _, err := c.Open(c.key.Seal(nil, []byte("not zstd")), FlagZstd, 8); err == nil || !strings.HasPrefix(err.Error(), "decompress frame") {
		t.Errorf("Open of a bad zstd frame = %v, want a decompress error", err)
	}
	// Another key's codec cannot open it.
	sealed, flags := c.Seal(nil, text)
	if _, err := NewCodec(crypto.NewRandomKey()).Open(sealed, flags, uint32(len(text))); !errors.Is(err, crypto.ErrAuth) {
		t.Errorf("Open with another key = %v, want ErrAuth", err)
	}
}

// TestCompression: a base64 attachment is entropy-coded with
// CompressionMax (about 3/4 of its size) and left as it is, so stored
// uncompressed, with CompressionFast; text compresses with either; either
// codec of the same key opens the other's frames byte for byte.
func TestCompression(t *testing.T) {
	key := crypto.NewRandomKey()
	maxC, fast := NewCodecWith(key, CompressionMax), NewCodecWith(key, CompressionFast)
	if NewCodec(key).Compression() != CompressionMax || fast.Compression() != CompressionFast {
		t.Fatalf("codecs compress %v and %v, want max and fast", NewCodec(key).Compression(), fast.Compression())
	}
	b64 := []byte(base64.StdEncoding.EncodeToString(randomBytes(3, 192<<10)))
	text := []byte(strings.Repeat("Received: from mail.example.eu by mx.example.eu\r\n", 2000))
	for _, tc := range []sealCase{
		{"max base64", maxC, b64, FlagZstd, 0.74, 0.78},
		{"fast base64", fast, b64, 0, 1, 1.01},
		{"max text", maxC, text, FlagZstd, 0, 0.01},
		{"fast text", fast, text, FlagZstd, 0, 0.01},
	} {
		checkSeal(t, tc, maxC, fast)
	}
	for _, s := range []string{"max", "fast"} {
		if c, err := ParseCompression(s); err != nil || c.String() != s {
			t.Errorf("ParseCompression(%q) = %v, %v", s, c, err)
		}
	}
	if _, err := ParseCompression("auto"); err == nil || err.Error() != `compression "auto": want max or fast` {
		t.Errorf("ParseCompression(auto) = %v", err)
	}
}

// sealCase is a frame a codec seals: its flags and its sealed size.
type sealCase struct {
	name      string
	c         *Codec
	raw       []byte
	wantFlags uint8
	lo, hi    float64 // sealed/raw
}

// checkSeal seals tc.raw with tc.c, checks the flags and the sealed size,
// and that each of openers opens the frame byte for byte (into a buffer
// of its size, as the repository's frame cache does); it returns the
// sealed frame and its flags.
func checkSeal(t *testing.T, tc sealCase, openers ...*Codec) ([]byte, uint8) {
	t.Helper()
	sealed, flags := tc.c.Seal(nil, tc.raw)
	ratio := float64(len(sealed)) / float64(len(tc.raw))
	if flags != tc.wantFlags || ratio < tc.lo || ratio > tc.hi {
		t.Errorf("%s: flags %d, sealed/raw %.3f; want flags %d, %.2f-%.2f", tc.name, flags, ratio, tc.wantFlags, tc.lo, tc.hi)
	}
	for _, o := range openers {
		got, err := o.OpenInto(make([]byte, 0, len(tc.raw)), bytes.Clone(sealed), flags, uint32(len(tc.raw)))
		if err != nil || !bytes.Equal(got, tc.raw) {
			t.Errorf("%s: the %v codec (base64 lines %v) opens %d bytes, %v", tc.name, o.Compression(), o.Base64Lines(), len(got), err)
		}
	}
	return sealed, flags
}

func TestCodecPlain(t *testing.T) {
	c := NewCodec(crypto.NewRandomKey())
	for _, raw := range [][]byte{nil, []byte(`{"version":1}`), bytes.Repeat([]byte(`{"id":"x"}`+"\n"), 1000), randomBytes(2, 5000)} {
		sealed := c.SealPlain(raw)
		if len(raw) > 100 && bytes.Contains(sealed, raw[:100]) {
			t.Error("SealPlain output contains the plaintext")
		}
		got, err := c.OpenPlain(sealed)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("OpenPlain(SealPlain(%d bytes)) = %d bytes, %v", len(raw), len(got), err)
		}
		// The plaintext under the seal is a zstd frame.
		inner, err := c.key.Open(nil, sealed)
		if err != nil || !bytes.HasPrefix(inner, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			t.Errorf("SealPlain: sealed content starts %x, %v; want the zstd magic", inner[:min(4, len(inner))], err)
		}
		sealed[0] ^= 1
		if _, err := c.OpenPlain(sealed); !errors.Is(err, crypto.ErrAuth) {
			t.Errorf("OpenPlain of a damaged file = %v, want ErrAuth", err)
		}
	}
}

// writePack writes a pack of the given blobs, one frame per group.
func writePack(t *testing.T, c *Codec, groups [][][]byte) (dedup.ID, Header, []byte) {
	t.Helper()
	w, err := NewWriter(c.Key(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i, g := range groups {
		raw := bytes.Join(g, nil)
		f := Frame{RawLength: uint32(len(raw))}
		for _, b := range g {
			f.Blobs = append(f.Blobs, Blob{Type: DataBlob, ID: dedup.Hash(b), Length: uint32(len(b))})
		}
		sealed, flags := c.Seal(nil, raw)
		f.Flags = flags
		before := w.Size()
		got, err := w.Add(sealed, f)
		if err != nil {
			t.Fatal(err)
		}
		if int64(got.Offset) != before || int(got.Length) != len(sealed) || w.Size() != before+int64(len(sealed)) || w.Count() != i+1 {
			t.Fatalf("Add: frame %+v, size %d, count %d", got, w.Size(), w.Count())
		}
	}
	id, hdr, rd, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := w.Finish(); err == nil {
		t.Error("second Finish = nil error, want one")
	}
	return id, hdr, data
}

func TestWriterParseHeader(t *testing.T) {
	c := NewCodec(crypto.NewRandomKey())
	groups := [][][]byte{
		{[]byte("small one"), []byte("small two"), bytes.Repeat([]byte("Subject: x\r\n"), 500)},
		{randomBytes(3, 70<<10)},
		{[]byte("")},
	}
	id, hdr, data := writePack(t, c, groups)
	if sum := sha256.Sum256(data); id != dedup.ID(sum) {
		t.Errorf("pack ID %s is not the SHA-256 of its %d bytes", id, len(data))
	}
	if len(hdr.Frames) != 3 {
		t.Fatalf("Finish header has %d frames, want 3", len(hdr.Frames))
	}
	hl := binary.LittleEndian.Uint32(data[len(data)-4:])
	if int64(len(data)) != hdr.Size()+int64(hl)+4 {
		t.Errorf("pack is %d bytes, want frames %d + header %d + 4", len(data), hdr.Size(), hl)
	}

	// The whole pack as tail.
	got, need, err := ParseHeader(c.Key(), data, int64(len(data)))
	if err != nil || need != 0 || !reflect.DeepEqual(got, hdr) {
		t.Fatalf("ParseHeader(whole pack) = %+v, %d, %v; want %+v", got, need, err, hdr)
	}
	// A short tail asks for more, then parses.
	got, need, err = ParseHeader(c.Key(), data[len(data)-10:], int64(len(data)))
	if err != nil || need != int(hl)+4 {
		t.Fatalf("ParseHeader(10-byte tail) = need %d, %v; want %d, nil", need, err, hl+4)
	}
	got, need, err = ParseHeader(c.Key(), data[len(data)-need:], int64(len(data)))
	if err != nil || need != 0 || !reflect.DeepEqual(got, hdr) {
		t.Errorf("ParseHeader(exact tail) = %+v, %d, %v; want %+v", got, need, err, hdr)
	}

	// Every blob comes back from its frame.
	for i, f := range got.Frames {
		raw, err := c.Open(data[f.Offset:f.Offset+f.Length], f.Flags, f.RawLength)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		var off uint32
		for j, b := range f.Blobs {
			if !bytes.Equal(raw[off:off+b.Length], groups[i][j]) || b.ID != dedup.Hash(groups[i][j]) {
				t.Errorf("frame %d blob %d differs", i, j)
			}
			off += b.Length
		}
	}
}

func TestWriterEmptyPack(t *testing.T) {
	c := NewCodec(crypto.NewRandomKey())
	_, hdr, data := writePack(t, c, nil)
	got, _, err := ParseHeader(c.Key(), data, int64(len(data)))
	if err != nil || len(got.Frames) != 0 || hdr.Size() != 0 {
		t.Errorf("empty pack: ParseHeader = %+v, %v", got, err)
	}
}

// sealedTail builds a pack tail around the header plaintext plain, after
// frames bytes of frames.
func sealedTail(key *crypto.Key, plain []byte) []byte {
	tail := key.Seal(nil, plain)
	return binary.LittleEndian.AppendUint32(tail, uint32(len(tail)))
}

func TestParseHeaderRejects(t *testing.T) {
	c := NewCodec(crypto.NewRandomKey())
	key := c.Key()
	_, hdr, data := writePack(t, c, [][][]byte{{[]byte("one")}, {[]byte("two")}})
	size := int64(len(data))
	hl := int(binary.LittleEndian.Uint32(data[len(data)-4:]))
	framesLen := int(hdr.Size())
	flip := func(i int) []byte {
		b := bytes.Clone(data)
		b[i] ^= 1
		return b
	}
	withLen := func(n uint32) []byte {
		b := bytes.Clone(data)
		binary.LittleEndian.PutUint32(b[len(b)-4:], n)
		return b
	}
	frames := data[:framesLen]
	tests := []struct {
		name    string
		tail    []byte
		size    int64
		wantErr string
	}{
		{"empty", nil, size, "pack too short"},
		{"three bytes", data[len(data)-3:], size, "pack too short"},
		{"length above the pack", withLen(uint32(size)), size, "length out of range"},
		{"length above the maximum", withLen(MaxHeaderSize + 1), size, "length out of range"},
		{"length below the overhead", withLen(crypto.Overhead - 1), size, "length out of range"},
		{"length zero", withLen(0), size, "length out of range"},
		{"length one short", withLen(uint32(hl - 1)), size, "authentication failed"},
		{"tampered header start", flip(framesLen), size, "authentication failed"},
		{"tampered header end", flip(len(data) - 5), size, "authentication failed"},
		{"pack larger than said", data, size + 1, "size mismatch"},
		{"pack smaller than said", data[1:], size - 1, "size mismatch"},
		{"wrong magic", append(bytes.Clone(frames), sealedTail(key, append([]byte("PBPK\x02"), hdr.AppendBinary(nil)...))...), size, "bad magic"},
		{"no magic", append(bytes.Clone(frames), sealedTail(key, hdr.AppendBinary(nil))...), size - 5, "bad magic"},
		{"trailing bytes", append(bytes.Clone(frames), sealedTail(key, append(hdr.AppendBinary([]byte(headerMagic)), 0))...), size + 1, "trailing bytes"},
		{"truncated header", append(bytes.Clone(frames), sealedTail(key, hdr.AppendBinary([]byte(headerMagic))[:20])...), size - int64(len(hdr.AppendBinary(nil))) + 15, "truncated or damaged"},
		{"frames overlap", overlapping(key, hdr, frames), size, "frames do not tile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, need, err := ParseHeader(key, tt.tail, tt.size)
			if err == nil || need != 0 || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseHeader = %+v, need %d, %v; want an error containing %q", h, need, err, tt.wantErr)
			}
		})
	}
	if _, _, err := ParseHeader(crypto.NewRandomKey(), data, size); !errors.Is(err, crypto.ErrAuth) {
		t.Errorf("ParseHeader with another key = %v, want ErrAuth", err)
	}
}

// overlapping returns a pack whose header says frame 2 starts inside frame
// 1, with the right total size.
func overlapping(key *crypto.Key, hdr Header, frames []byte) []byte {
	h := Header{Frames: append([]Frame(nil), hdr.Frames...)}
	h.Frames[1].Offset--
	h.Frames[1].Length++
	return append(bytes.Clone(frames), sealedTail(key, h.AppendBinary([]byte(headerMagic)))...)
}
