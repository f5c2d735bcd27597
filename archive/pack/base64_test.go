package pack

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/crypto"
)

// lines returns the base64 of n random bytes cut into lines of width
// characters, each ending in eol, the last one as long as it comes.
func lines(seed uint64, n, width int, eol string) string {
	enc := base64.StdEncoding.EncodeToString(randomBytes(seed, n))
	var sb strings.Builder
	for len(enc) > width {
		sb.WriteString(enc[:width] + eol)
		enc = enc[width:]
	}
	sb.WriteString(enc + eol)
	return sb.String()
}

// TestBase64Lines: frames of every shape come back byte for byte, those
// with base64 lines stored decoded (a quarter smaller), the others not.
func TestBase64Lines(t *testing.T) {
	head := "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
	mail := benchMail(256 << 10)
	tests := []struct {
		name   string
		raw    string
		ok     bool
		coded  int // bytes of lines stored decoded, when ok
		approx bool
	}{
		{"LF 76", head + lines(1, 57*100, 76, "\n"), true, 100 * 77, false},
		{"CRLF 76", strings.ReplaceAll(head, "\n", "\r\n") + lines(2, 57*100, 76, "\r\n"), true, 100 * 78, false},
		{"LF 64, padded last line", head + lines(3, 48*50+1, 64, "\n") + "--b1--\n", true, 50 * 65, false},
		{"72 then 76", lines(4, 54*30, 72, "\n") + lines(5, 57*30, 76, "\n"), true, 30*73 + 30*77, false},
		{"begins mid-line", lines(6, 57*40, 76, "\n")[30:], true, 39 * 77, false},
		{"no line end at the end", strings.TrimSuffix(lines(7, 57*40, 76, "\n"), "\n"), true, 39 * 77, false},
		{"a mail", string(mail), true, len(mail) * 7 / 10, true},
		{"text", strings.Repeat("Received: from mail.example.eu by mx.example.eu\n", 200), false, 0, false},
		{"a few lines", "hello\n" + lines(8, 57*10, 76, "\n"), false, 0, false},
		{"lines of 36", lines(9, 27*200, 36, "\n"), false, 0, false},
		{"width not a multiple of 4", strings.ReplaceAll(lines(10, 57*40, 76, "\n"), "\n", "A\n"), false, 0, false},
		{"a quarter is not enough", strings.Repeat("x", 57*40*5) + "\n" + lines(11, 57*40, 76, "\n"), false, 0, false},
		{"bare CR line ends", strings.ReplaceAll(lines(12, 57*40, 76, "\n"), "\n", "\r"), false, 0, false},
		{"empty", "", false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := []byte(tt.raw)
			seg, ok := appendBase64Lines([]byte("dst"), raw, b64MinRun)
			if ok != tt.ok {
				t.Fatalf("appendBase64Lines ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if string(seg) != "dst" {
					t.Fatalf("appendBase64Lines returned %q, want dst as it was", seg)
				}
				return
			}
			if !bytes.HasPrefix(seg, []byte("dst")) {
				t.Fatal("appendBase64Lines did not append to dst")
			}
			seg = seg[3:]
			// Each coded line is a quarter smaller, its line end gone.
			saved := len(raw) - len(seg)
			if !tt.approx {
				if min := tt.coded/4 - 20; saved < min || saved > tt.coded/4+tt.coded/50 {
					t.Errorf("%d bytes saved of %d, want about a quarter of %d", saved, len(raw), tt.coded)
				}
			} else if saved < tt.coded/4 {
				t.Errorf("%d bytes saved of %d, want at least a quarter of %d", saved, len(raw), tt.coded)
			}
			got, err := appendRawFromBase64Lines([]byte("x"), seg, len(raw))
			if err != nil || !bytes.Equal(got, append([]byte("x"), raw...)) {
				t.Fatalf("appendRawFromBase64Lines = %d bytes, %v; want the %d bytes back", len(got), err, len(raw))
			}
			for _, n := range []int{len(raw) - 1, len(raw) + 1} {
				if _, err := appendRawFromBase64Lines(nil, seg, n); !errors.Is(err, errBase64Frame) {
					t.Errorf("raw length %d of %d: %v, want errBase64Frame", n, len(raw), err)
				}
			}
		})
	}
}

// TestBase64LinesRejects: malformed segments are errors, never a panic
// nor more than the raw length.
func TestBase64LinesRejects(t *testing.T) {
	good, ok := appendBase64Lines(nil, []byte(lines(1, 57*40, 76, "\n")), b64MinRun)
	if !ok {
		t.Fatal("no segments")
	}
	seg := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	uv := func(n uint64) []byte { return binary.AppendUvarint(nil, n) }
	tests := []struct {
		name   string
		seg    []byte
		rawLen int
	}{
		{"empty", nil, 0},
		{"truncated", good[:len(good)/2], 57 * 40 / 3 * 4},
		{"trailing byte", append(bytes.Clone(good), 0), len(lines(1, 57*40, 76, "\n"))},
		{"literal past the end", seg(uv(10), []byte("abc")), 3},
		{"literal longer than raw", seg(uv(3), []byte("abc"), uv(0)), 2},
		{"no line count", seg(uv(1), []byte("a")), 1},
		{"width 0", seg(uv(0), uv(1), []byte{0, 0}, make([]byte, 3)), 1},
		{"eol 2", seg(uv(0), uv(1), []byte{1, 2}, make([]byte, 3)), 6},
		{"lines past the end", seg(uv(0), uv(2), []byte{1, 0}, make([]byte, 3), uv(0), uv(0)), 10},
		{"lines longer than raw", seg(uv(0), uv(1), []byte{1, 0}, make([]byte, 3), uv(0), uv(0)), 4},
		{"huge line count", seg(uv(0), uv(1<<62), []byte{255, 1}), 1 << 20},
	}
	for _, tt := range tests {
		if got, err := appendRawFromBase64Lines(nil, tt.seg, tt.rawLen); !errors.Is(err, errBase64Frame) {
			t.Errorf("%s: %d bytes, %v; want errBase64Frame", tt.name, len(got), err)
		}
	}
	// The smallest frames of each kind.
	for _, tc := range []struct {
		seg  []byte
		want string
	}{
		{seg(uv(0), uv(0)), ""},
		{seg(uv(2), []byte("hi"), uv(0)), "hi"},
		{seg(uv(0), uv(1), []byte{1, 1}, []byte("\x00\x10\x83"), uv(1), []byte("!"), uv(0)), "ABCD\r\n!"},
	} {
		if got, err := appendRawFromBase64Lines(nil, tc.seg, len(tc.want)); err != nil || string(got) != tc.want {
			t.Errorf("segments %x = %q, %v; want %q", tc.seg, got, err, tc.want)
		}
	}
}

// TestEncodeB64 checks the encoder against the standard library's, for
// every length up to 300 bytes and every alignment of the 8-byte loads.
func TestEncodeB64(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	src := make([]byte, 310)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	src[0], src[1], src[2] = 0xff, 0xff, 0xff // the last letters, + and /
	for n := 0; n <= 300; n += 3 {
		for off := 0; off < 4; off++ {
			in := src[off : off+n]
			want := base64.StdEncoding.EncodeToString(in)
			dst := make([]byte, n/3*4+8)
			copy(dst[n/3*4:], "sentinel")
			encodeB64(dst[:n/3*4], in)
			if string(dst[:n/3*4]) != want {
				t.Fatalf("encodeB64(%d bytes at %d) = %q, want %q", n, off, dst[:n/3*4], want)
			}
			if string(dst[n/3*4:]) != "sentinel" {
				t.Fatalf("encodeB64(%d bytes) wrote past its output", n)
			}
			back := make([]byte, n+2)
			if !decodeLine(back, dst[:n/3*4]) || !bytes.Equal(back[:n], in) {
				t.Fatalf("decodeLine(encodeB64(%d bytes)) differs", n)
			}
			if n > 0 {
				dst[rng.IntN(n/3*4)] = "\n=-\x00\xff"[rng.IntN(5)]
				if decodeLine(back, dst[:n/3*4]) {
					t.Fatalf("decodeLine took a line with a character not base64")
				}
			}
			// encodeLinesAVX2, two lines of n bytes with either line end,
			// reading 4 bytes past them.
			if useAVX2 && n >= 24 && off+2*n+4 <= len(src) {
				for eol := 1; eol <= 2; eol++ {
					out := make([]byte, 2*(n/3*4+eol)+8)
					copy(out[len(out)-8:], "sentinel")
					encodeLinesAVX2(&out[0], &src[off], 2, n, n/3*4, eol)
					end := "\r\n"[2-eol:]
					want2 := want + end + base64.StdEncoding.EncodeToString(src[off+n:off+2*n]) + end
					if string(out[:len(out)-8]) != want2 || string(out[len(out)-8:]) != "sentinel" {
						t.Fatalf("encodeLinesAVX2(2 lines of %d bytes at %d, eol %d) = %q, want %q", n, off, eol, out, want2)
					}
				}
			}
		}
	}
}

// TestCodecBase64Lines: a codec writing base64 lines decoded flags the
// frames it does so, compressed or not; every codec of the key opens them
// byte for byte; they are as small as CompressionMax's entropy coding or
// smaller.
func TestCodecBase64Lines(t *testing.T) {
	key := crypto.NewRandomKey()
	plain := NewCodec(key)
	b64, fast := plain.WithBase64Lines(true), NewCodecWith(key, CompressionFast).WithBase64Lines(true)
	if plain.Base64Lines() || !b64.Base64Lines() || b64.Compression() != CompressionMax || fast.Compression() != CompressionFast {
		t.Fatal("WithBase64Lines changed the wrong setting")
	}
	if b64.WithBase64Lines(true) != b64 || b64.WithBase64Lines(false).Base64Lines() {
		t.Fatal("WithBase64Lines does not toggle")
	}
	if !b64.WithCompression(CompressionFast).Base64Lines() {
		t.Fatal("WithCompression lost the base64 setting")
	}
	attachment := []byte(lines(1, 192<<10, 76, "\n"))
	mail := benchMail(256 << 10)
	for _, tc := range []sealCase{
		{"attachment", b64, attachment, FlagBase64, 0.72, 0.76},
		{"attachment, fast", fast, attachment, FlagBase64, 0.72, 0.76},
		{"attachment, as it is", plain, attachment, FlagZstd, 0.74, 0.79},
		{"mail", b64, mail, FlagZstd | FlagBase64, 0.5, 0.7},
		{"text", b64, []byte(strings.Repeat("Received: from mail.example.eu by mx.example.eu\n", 2000)), FlagZstd, 0, 0.01},
	} {
		sealed, flags := checkSeal(t, tc, plain, b64, fast)
		if flags&FlagBase64 != 0 {
			if _, err := b64.Open(bytes.Clone(sealed), flags&^FlagBase64, uint32(len(tc.raw))); err == nil {
				t.Errorf("%s: opened without its base64 flag", tc.name)
			}
		}
	}
	if _, err := b64.Open(b64.key.Seal(nil, []byte("x")), 4, 1); err == nil || err.Error() != "frame has unknown flags 0x4" {
		t.Errorf("Open with flag 4 = %v, want unknown flags", err)
	}
}

// FuzzBase64Lines: any bytes come back byte for byte through the segment
// form, and any bytes as segments are refused or give exactly the raw
// length, without panicking.
func FuzzBase64Lines(f *testing.F) {
	// Small seeds: the fuzzer slows to a crawl on inputs of kilobytes.
	f.Add([]byte(lines(1, 30*12, 48, "\n")), 0)
	f.Add([]byte("x\n"+lines(2, 30*12, 40, "\r\n")+"y"), 5)
	f.Fuzz(func(t *testing.T, raw []byte, rawLen int) {
		// Runs of any length, so that small inputs have some.
		if seg, ok := appendBase64Lines(nil, raw, 1); ok {
			if got, err := appendRawFromBase64Lines(nil, seg, len(raw)); err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("round trip of %d bytes: %d bytes, %v", len(raw), len(got), err)
			}
		}
		rawLen = max(rawLen, 0) % (1 << 16)
		if got, err := appendRawFromBase64Lines(nil, raw, rawLen); err == nil && len(got) != rawLen {
			t.Fatalf("segments gave %d bytes, want %d", len(got), rawLen)
		}
	})
}

// BenchmarkBase64Lines measures the transform alone on a mail frame (see
// benchMail): "decode" as a backup stores a frame, "encode" as reading
// puts it back.
func BenchmarkBase64Lines(b *testing.B) {
	raw := benchMail(256 << 10)
	seg, ok := appendBase64Lines(nil, raw, b64MinRun)
	if !ok {
		b.Fatal("no base64 lines")
	}
	b.Run("decode", func(b *testing.B) {
		dst := make([]byte, 0, len(raw))
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			appendBase64Lines(dst[:0], raw, b64MinRun)
		}
	})
	b.Run("encode", func(b *testing.B) {
		dst := make([]byte, 0, len(raw))
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := appendRawFromBase64Lines(dst[:0], seg, len(raw)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBase64LinesWidths: lines of every width, with either line end, come
// back byte for byte, with and without AVX2 (where the processor has it).
func TestBase64LinesWidths(t *testing.T) {
	for _, avx := range []bool{false, useAVX2} {
		for width := b64MinWidth; width <= b64MaxWidth; width += 4 {
			for _, eol := range []string{"\n", "\r\n"} {
				in := width / 4 * 3
				raw := []byte(lines(uint64(width), in*(2+b64MinRun/width), width, eol))
				seg, ok := appendBase64Lines(nil, raw, b64MinRun)
				if !ok {
					t.Fatalf("width %d: no base64 lines found", width)
				}
				old := useAVX2
				setAVX2(avx)
				got, err := appendRawFromBase64Lines(nil, seg, len(raw))
				setAVX2(old)
				if err != nil || !bytes.Equal(got, raw) {
					t.Fatalf("width %d, eol %q, AVX2 %v: %v, %d bytes back of %d", width, eol, avx, err, len(got), len(raw))
				}
			}
		}
	}
}
