package dedup

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/restic/chunker"
)

// testPol is an irreducible polynomial (the one restic's own tests use).
const testPol = chunker.Pol(0x3DA3358B4DC173)

func testParams() Params {
	return Params{Polynomial: testPol, MinSize: DefaultMinSize, MaxSize: DefaultMaxSize, AverageBits: DefaultAverageBits}
}

// randomBytes returns n pseudo-random bytes, the same for the same seed.
func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// chunks cuts data and returns the chunks (copied).
func chunks(t *testing.T, c *Chunker) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 0, DefaultMaxSize)
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, bytes.Clone(ch))
	}
}

func sizes(cs [][]byte) []int {
	out := make([]int, len(cs))
	for i, c := range cs {
		out[i] = len(c)
	}
	return out
}

func TestChunkerDeterministic(t *testing.T) {
	data := randomBytes(1, 2<<20)
	p := testParams()
	first := sizes(chunks(t, NewChunker(p, bytes.NewReader(data))))
	// The boundaries are a function of the polynomial and the parameters
	// only: a changed chunker would silently stop deduplicating against
	// existing repositories.
	wantFirst := []int{50559, 22737, 22201, 59098, 58872, 47197}
	if len(first) < len(wantFirst) || !slices.Equal(first[:len(wantFirst)], wantFirst) {
		t.Errorf("first chunk sizes = %v, want %v...", first[:min(len(first), len(wantFirst))], wantFirst)
	}

	tests := []struct {
		name string
		rd   func() io.Reader
	}{
		{"again", func() io.Reader { return bytes.NewReader(data) }},
		{"one byte reads", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }},
		{"half reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sizes(chunks(t, NewChunker(p, tt.rd())))
			if !slices.Equal(got, first) {
				t.Errorf("chunk sizes = %v, want %v", got, first)
			}
		})
	}

	// Reset reuses a chunker for another stream with the same parameters
	// (the average bits included).
	c := NewChunker(p, bytes.NewReader(randomBytes(2, 300<<10)))
	chunks(t, c)
	c.Reset(bytes.NewReader(data))
	if got := sizes(chunks(t, c)); !slices.Equal(got, first) {
		t.Errorf("after Reset: chunk sizes = %v, want %v", got, first)
	}

	// Another polynomial cuts elsewhere.
	other := p
	other.Polynomial = chunker.Pol(0x24704AC643C2DF) // irreducible, checked below
	if !other.Polynomial.Irreducible() {
		t.Fatalf("test polynomial %x is not irreducible", uint64(other.Polynomial))
	}
	if got := sizes(chunks(t, NewChunker(other, bytes.NewReader(data)))); slices.Equal(got, first) {
		t.Errorf("polynomial %x cuts like %x: %v", uint64(other.Polynomial), uint64(testPol), got)
	}
}

func TestChunkerReassemblesAndBounds(t *testing.T) {
	small := Params{Polynomial: testPol, MinSize: 1024, MaxSize: 8192, AverageBits: 12}
	tests := []struct {
		name string
		p    Params
		data []byte
	}{
		{"one byte", testParams(), []byte{42}},
		{"below min", testParams(), randomBytes(3, DefaultMinSize-1)},
		{"exactly min", testParams(), randomBytes(4, DefaultMinSize)},
		{"random 3 MiB", testParams(), randomBytes(5, 3<<20)},
		{"zeros 2 MiB", testParams(), make([]byte, 2<<20)}, // no boundary ever: all MaxSize
		{"base64 text", testParams(), []byte(strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n", 20000))},
		{"small params", small, randomBytes(6, 200<<10)},
		{"small params zeros", small, make([]byte, 100<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := chunks(t, NewChunker(tt.p, bytes.NewReader(tt.data)))
			if got := bytes.Join(cs, nil); !bytes.Equal(got, tt.data) {
				t.Fatalf("chunks join to %d bytes, want the %d input bytes", len(got), len(tt.data))
			}
			for i, c := range cs {
				last := i == len(cs)-1
				if len(c) > int(tt.p.MaxSize) || (!last && len(c) < int(tt.p.MinSize)) || len(c) == 0 {
					t.Errorf("chunk %d of %d has %d bytes, want %d..%d", i, len(cs), len(c), tt.p.MinSize, tt.p.MaxSize)
				}
			}
		})
	}
}

func TestChunkerEmpty(t *testing.T) {
	c := NewChunker(testParams(), bytes.NewReader(nil))
	for i := range 2 {
		if ch, err := c.Next(nil); err != io.EOF || ch != nil {
			t.Errorf("Next #%d on an empty stream = %d bytes, %v; want nil, io.EOF", i, len(ch), err)
		}
	}
}

func TestChunkerReadError(t *testing.T) {
	boom := errors.New("boom")
	rd := io.MultiReader(bytes.NewReader(randomBytes(7, 1000)), iotest.ErrReader(boom))
	c := NewChunker(testParams(), rd)
	if _, err := c.Next(nil); !errors.Is(err, boom) {
		t.Errorf("Next on a failing reader = %v, want %v", err, boom)
	}
}

// TestChunkerContentDefined inserts bytes at the start of a large input:
// only the chunks around the insertion change.
func TestChunkerContentDefined(t *testing.T) {
	p := testParams()
	orig := randomBytes(8, 4<<20)
	ids := make(map[ID]bool)
	for _, c := range chunks(t, NewChunker(p, bytes.NewReader(orig))) {
		ids[Hash(c)] = true
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"100 bytes at the start", append(randomBytes(9, 100), orig...)},
		{"100 bytes in the middle", slices.Concat(orig[:2<<20], randomBytes(10, 100), orig[2<<20:])},
		{"first 1000 bytes removed", orig[1000:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := chunks(t, NewChunker(p, bytes.NewReader(tt.data)))
			shared := 0
			for _, c := range cs {
				if ids[Hash(c)] {
					shared++
				}
			}
			if shared*100 <= len(cs)*80 {
				t.Errorf("%d of %d chunks shared with the original, want > 80%%", shared, len(cs))
			}
		})
	}
}

func TestParamsValidate(t *testing.T) {
	good := testParams()
	tests := []struct {
		name    string
		mod     func(*Params)
		wantErr string
	}{
		{"defaults", func(*Params) {}, ""},
		{"min equals max", func(p *Params) { p.MinSize, p.MaxSize = 64<<10, 64<<10 }, ""},
		{"max 8 MiB", func(p *Params) { p.MaxSize = 8 << 20 }, ""},
		{"bits 10", func(p *Params) { p.AverageBits = 10 }, ""},
		{"bits 22", func(p *Params) { p.AverageBits = 22 }, ""},
		{"zero polynomial", func(p *Params) { p.Polynomial = 0 }, "not irreducible"},
		{"one", func(p *Params) { p.Polynomial = 1 }, "not irreducible"},
		{"degree 1", func(p *Params) { p.Polynomial = 3 }, "not irreducible"},                       // x+1: irreducible, but the chunker needs degree 53
		{"reducible polynomial", func(p *Params) { p.Polynomial = testPol * 2 }, "not irreducible"}, // divisible by x
		{"min zero", func(p *Params) { p.MinSize = 0 }, "out of range"},
		// The chunker's window is 64 bytes: below that it never cuts and
		// ignores MaxSize.
		{"min below window", func(p *Params) { p.MinSize, p.MaxSize = 32, 1024 }, "out of range"},
		{"max below min", func(p *Params) { p.MaxSize = p.MinSize - 1 }, "out of range"},
		{"max above 8 MiB", func(p *Params) { p.MaxSize = 8<<20 + 1 }, "out of range"},
		{"bits 9", func(p *Params) { p.AverageBits = 9 }, "average bits 9 out of range"},
		{"bits 23", func(p *Params) { p.AverageBits = 23 }, "average bits 23 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good
			tt.mod(&p)
			err := p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("Validate(%+v) = %v, want nil", p, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate(%+v) = %v, want an error containing %q", p, err, tt.wantErr)
			}
		})
	}
}

func TestNewParams(t *testing.T) {
	p1, err := NewParams()
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Validate(); err != nil {
		t.Errorf("NewParams() = %+v, which does not validate: %v", p1, err)
	}
	if p1.MinSize != DefaultMinSize || p1.MaxSize != DefaultMaxSize || p1.AverageBits != DefaultAverageBits {
		t.Errorf("NewParams() = %+v, want the default sizes", p1)
	}
	p2, err := NewParams()
	if err != nil {
		t.Fatal(err)
	}
	if p1.Polynomial == p2.Polynomial {
		t.Errorf("two NewParams() share polynomial %x, want a random one each", uint64(p1.Polynomial))
	}
}
