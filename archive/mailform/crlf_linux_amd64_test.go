package mailform

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
)

// crlfAlphabets are the bytes random inputs of the AVX2 tests are made
// of: line ends dense and sparse, bare and in pairs.
var crlfAlphabets = []string{
	"ab\r\n", "abcdefgh\n", "abcdefghijklmnopqrstuvwxyz0123456789\r\n",
	"\r", "\n", "\r\n\n\r", "a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r",
}

// crlfInputs returns random inputs of length n: from each alphabet, and
// lines of LF and CRLF text.
func crlfInputs(r *rand.Rand, n int) [][]byte {
	var ins [][]byte
	for _, al := range crlfAlphabets {
		b := make([]byte, n)
		for i := range b {
			b[i] = al[r.IntN(len(al))]
		}
		ins = append(ins, b)
	}
	for _, eol := range []string{"\n", "\r\n"} {
		var b []byte
		for len(b) < n {
			b = append(b, strings.Repeat("x", r.IntN(80))+eol...)
		}
		ins = append(ins, b[:n])
	}
	return ins
}

// TestConvertAVX2 checks convert with AVX2 against naiveCRLF and against
// itself without: every length to 300, onto buffers with every amount of
// room from none to more than enough, so that the assembly stops at
// both its limits.
func TestConvertAVX2(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2 on this CPU")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for n := 0; n <= 300; n++ {
		for _, src := range crlfInputs(r, n) {
			want := append([]byte("pre"), naiveCRLF(src)...)
			for _, room := range []int{0, 1, 32, 95, 96, 97, 128, n, 2*n + 128} {
				dst := make([]byte, 3, 3+room)
				copy(dst, "pre")
				got, pending := convert(dst, src)
				if pending {
					got = append(got, '\r', '\n')
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("convert(%q) with room %d = %q, want %q", src, room, got, want)
				}
			}
		}
	}
}

// TestCRLFAllocatesOnce: CRLF, which sizes its result exactly, allocates
// it once: the assembly does not ask for room it will not need.
func TestCRLFAllocatesOnce(t *testing.T) {
	for _, line := range []string{"a line of text\n", "a line of text\r\n\r", strings.Repeat("QUJD", 19) + "\n"} {
		b := bytes.Repeat([]byte(line), 1000)
		if n := testing.AllocsPerRun(10, func() { CRLF(b) }); n != 1 {
			t.Errorf("CRLF of %q x 1000: %v allocations, want 1", line, n)
		}
	}
}

// TestConvertAVX2Bounds runs the assembly with src ending at a page that
// cannot be read and dst ending at one that cannot be written: it must
// touch neither, convert what it reports read into what it reports
// written, and never stop between a CR and its LF.
func TestConvertAVX2Bounds(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2 on this CPU")
	}
	page := syscall.Getpagesize()
	guarded := func() []byte {
		m, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Munmap(m) })
		if err := syscall.Mprotect(m[page:], syscall.PROT_NONE); err != nil {
			t.Fatal(err)
		}
		return m[:page]
	}
	srcPage, dstPage := guarded(), guarded()
	r := rand.New(rand.NewPCG(7, 8))
	for n := 64; n <= 260; n++ {
		for _, in := range crlfInputs(r, n) {
			src := srcPage[page-n:]
			copy(src, in)
			for _, room := range []int{96, 97, 128, n + 96, 2*n + 96} {
				dst := dstPage[page-room:]
				w, rd := convertAVX2(&dst[0], room, &src[0], n)
				if rd > n-1 || w > room || rd == 0 {
					t.Fatalf("n %d room %d: read %d, wrote %d", n, room, rd, w)
				}
				if got, want := dst[:w], naiveCRLF(src[:rd]); !bytes.Equal(got, want) {
					t.Fatalf("convertAVX2(%q) = %q, want %q", src[:rd], got, want)
				}
				if src[rd-1] == '\r' && src[rd] == '\n' {
					t.Fatalf("convertAVX2(%q) stopped between a CR and its LF at %d", src, rd)
				}
			}
		}
	}
}

// FuzzConvertAVX2: CRLF and a CRLFWriter fed in two pieces agree with
// naiveCRLF.
func FuzzConvertAVX2(f *testing.F) {
	f.Add([]byte(strings.Repeat("a line\n", 20)), 7)
	f.Add([]byte(strings.Repeat("a line\r\n\r", 20)), 40)
	f.Add([]byte(strings.Repeat("\r", 100)), 33)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		want := naiveCRLF(b)
		if got := CRLF(b); !bytes.Equal(got, want) {
			t.Fatalf("CRLF(%q) = %q, want %q", b, got, want)
		}
		cut = min(max(cut, 0), len(b))
		var out bytes.Buffer
		w := NewCRLFWriter(&out)
		w.Write(b[:cut])
		w.Write(b[cut:])
		w.Close()
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("CRLFWriter(%q | %q) = %q, want %q", b[:cut], b[cut:], out.Bytes(), want)
		}
	})
}
