package dedup

import (
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Params are a repository's chunking parameters, stored in its config.
type Params struct {
	Polynomial  chunker.Pol `json:"polynomial"`
	MinSize     uint        `json:"min_size"`
	MaxSize     uint        `json:"max_size"`
	AverageBits int         `json:"average_bits"`
}

// Mail-sized defaults: most messages (< 16 KiB) stay one chunk; a large
// attachment is cut into ~64 KiB pieces so that the same attachment in
// several messages, at different offsets, is stored about once.
const (
	DefaultMinSize     = 16 << 10
	DefaultMaxSize     = 512 << 10
	DefaultAverageBits = 16
)

// NewParams returns default parameters with a fresh random polynomial.
func NewParams() (Params, error) {
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return Params{}, err
	}
	return Params{Polynomial: pol, MinSize: DefaultMinSize, MaxSize: DefaultMaxSize, AverageBits: DefaultAverageBits}, nil
}

// Validate checks parameters read from a config.
func (p Params) Validate() error {
	if p.Polynomial.Deg() != 53 || !p.Polynomial.Irreducible() {
		return errors.New("chunker polynomial is not irreducible of degree 53")
	}
	if p.MinSize < 64 || p.MaxSize < p.MinSize || p.MaxSize > 8<<20 {
		return fmt.Errorf("chunker sizes %d..%d out of range", p.MinSize, p.MaxSize)
	}
	if p.AverageBits < 10 || p.AverageBits > 22 {
		return fmt.Errorf("chunker average bits %d out of range", p.AverageBits)
	}
	return nil
}

// Chunker cuts a stream into content-defined chunks. A Chunker is not safe
// for concurrent use; reuse one per goroutine with Reset.
type Chunker struct {
	p Params
	c *chunker.Chunker
}

// NewChunker returns a chunker for p reading rd.
func NewChunker(p Params, rd io.Reader) *Chunker {
	c := chunker.NewWithBoundaries(rd, p.Polynomial, p.MinSize, p.MaxSize)
	c.SetAverageBits(p.AverageBits)
	return &Chunker{p: p, c: c}
}

// Reset makes the chunker read rd from its start.
func (c *Chunker) Reset(rd io.Reader) {
	c.c.ResetWithBoundaries(rd, c.p.Polynomial, c.p.MinSize, c.p.MaxSize)
	c.c.SetAverageBits(c.p.AverageBits)
}

// Next returns the next chunk, reusing buf when it is large enough. It
// returns io.EOF after the last chunk. An empty stream yields no chunk.
func (c *Chunker) Next(buf []byte) ([]byte, error) {
	ch, err := c.c.Next(buf)
	if err != nil {
		return nil, err
	}
	return ch.Data, nil
}
