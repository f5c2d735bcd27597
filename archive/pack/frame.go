package pack

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"codeberg.org/planb/planb/archive/crypto"
	"github.com/klauspost/compress/zstd"
)

// Codec compresses and seals frames. It is safe for concurrent use.
type Codec struct {
	key  *crypto.Key
	comp Compression
	b64  bool // frames of base64 lines are written with them decoded
	enc  *zstd.Encoder
	dec  *zstd.Decoder
}

// Compression says how a codec compresses frames. Every codec reads the
// frames of both: it is a choice made when writing.
type Compression uint8

const (
	// CompressionMax entropy-codes every zstd block, those of literals
	// only too: base64 attachments, which have no repeats but only 64
	// symbols, take about a quarter less room.
	CompressionMax Compression = iota
	// CompressionFast leaves blocks of literals only as they are: base64
	// attachments are then stored uncompressed, and frames of them read
	// without Huffman decoding. The repository is about a fifth larger;
	// reading it (restore, export, check --read-data, serve) costs about
	// 40% less CPU (BenchmarkOpen).
	CompressionFast
)

// compressionNames are the names of the compressions, in a config and on
// the command line.
var compressionNames = [...]string{CompressionMax: "max", CompressionFast: "fast"}

// String returns the name ParseCompression reads.
func (c Compression) String() string {
	if int(c) < len(compressionNames) {
		return compressionNames[c]
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression returns the Compression named s ("max" or "fast").
func ParseCompression(s string) (Compression, error) {
	for c, name := range compressionNames {
		if s == name {
			return Compression(c), nil
		}
	}
	return 0, fmt.Errorf("compression %q: want max or fast", s)
}

// MaxFrameRaw bounds the plaintext size of one frame on read.
const MaxFrameRaw = 16 << 20

// NewCodec returns a codec sealing with key, with CompressionMax.
func NewCodec(key *crypto.Key) *Codec { return NewCodecWith(key, CompressionMax) }

// NewCodecWith returns a codec sealing with key that compresses as comp
// says. It compresses on as many goroutines at once as GOMAXPROCS:
// zstd.Encoder.EncodeAll hands out one encoder state per call from a pool
// of that size.
func NewCodecWith(key *crypto.Key, comp Compression) *Codec {
	enc := newEncoder(comp != CompressionFast)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderLowmem(true),
		zstd.IgnoreChecksum(true))
	if err != nil {
		panic(err)
	}
	return &Codec{key: key, comp: comp, enc: enc, dec: dec}
}

// WithCompression returns a codec of the same key and decoder that
// compresses as comp says (c itself if it does already).
func (c *Codec) WithCompression(comp Compression) *Codec {
	if comp == c.comp {
		return c
	}
	return &Codec{key: c.key, comp: comp, b64: c.b64, enc: newEncoder(comp != CompressionFast), dec: c.dec}
}

// WithBase64Lines returns a codec of the same key, compression and
// decoder that writes frames of base64 lines with them decoded
// (FlagBase64) when on is true, and as they are otherwise (c itself if it
// does already). Every codec reads both.
func (c *Codec) WithBase64Lines(on bool) *Codec {
	if on == c.b64 {
		return c
	}
	d := *c
	d.b64 = on
	return &d
}

// Base64Lines says whether the codec writes base64 lines decoded.
func (c *Codec) Base64Lines() bool { return c.b64 }

// Compression returns how the codec compresses.
func (c *Codec) Compression() Compression { return c.comp }

// newEncoder returns the codec's zstd encoder. allLitEntropy: blocks that
// are literals only are entropy-coded too (CompressionMax).
func newEncoder(allLitEntropy bool) *zstd.Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true),
		// Base64 attachments have no repeats but only 64 symbols: entropy
		// coding alone saves a quarter, which the fast levels skip by
		// default. It costs time to read: BenchmarkOpen.
		zstd.WithAllLitEntropyCompression(allLitEntropy),
		// Frames are authenticated and every blob is checked against its
		// SHA-256: zstd's own checksum would only cost time (writing and
		// reading); frames written with one still read.
		zstd.WithEncoderCRC(false),
		// A frame is one chunk (at most 512 KiB by default) or a group of
		// about 256 KiB: a window of 1 MiB sees all of it, and each
		// encoder state keeps 1 MiB of history instead of 8.
		zstd.WithWindowSize(1<<20))
	if err != nil {
		panic(err) // only on invalid options
	}
	return enc
}

// Key returns the codec's key.
func (c *Codec) Key() *crypto.Key { return c.key }

var compPool = sync.Pool{New: func() any { return new([]byte) }}

// Seal compresses raw when that saves at least 1/16 of it, seals it and
// appends the result to dst; it returns the sealed bytes and the frame
// flags. A codec that writes base64 lines decoded first does so when they
// are a quarter of raw or more.
func (c *Codec) Seal(dst, raw []byte) ([]byte, uint8) {
	var flags uint8
	if c.b64 {
		tp := compPool.Get().(*[]byte)
		defer compPool.Put(tp)
		if t, ok := appendBase64Lines((*tp)[:0], raw, b64MinRun); ok {
			*tp = t
			raw, flags = t, FlagBase64
		}
	}
	bp := compPool.Get().(*[]byte)
	defer compPool.Put(bp)
	comp := c.enc.EncodeAll(raw, (*bp)[:0])
	*bp = comp
	if len(comp) < len(raw)-len(raw)/16 {
		return c.key.Seal(dst, comp), flags | FlagZstd
	}
	return c.key.Seal(dst, raw), flags
}

// Open authenticates and decrypts a sealed frame and returns its plaintext,
// which must be rawLen bytes long. It decrypts in place, overwriting
// sealed: an uncompressed frame's plaintext is a part of sealed, a
// compressed frame's is a new slice (sealed may then be reused).
func (c *Codec) Open(sealed []byte, flags uint8, rawLen uint32) ([]byte, error) {
	return c.OpenInto(nil, sealed, flags, rawLen)
}

// OpenInto is Open that decompresses a compressed frame (or puts back
// the base64 lines of one) into dst's storage when it holds rawLen bytes
// (a new slice otherwise).
func (c *Codec) OpenInto(dst, sealed []byte, flags uint8, rawLen uint32) ([]byte, error) {
	if rawLen > MaxFrameRaw {
		return nil, errors.New("frame too large")
	}
	if flags&^(FlagZstd|FlagBase64) != 0 {
		return nil, fmt.Errorf("frame has unknown flags %#x", flags)
	}
	plain, err := c.key.OpenInPlace(sealed)
	if err != nil {
		return nil, err
	}
	if cap(dst) < int(rawLen) && flags != 0 {
		dst = make([]byte, 0, rawLen)
	}
	switch flags {
	case FlagZstd:
		if plain, err = c.dec.DecodeAll(plain, dst[:0]); err != nil {
			return nil, fmt.Errorf("decompress frame: %w", err)
		}
	case FlagZstd | FlagBase64:
		tp := compPool.Get().(*[]byte)
		defer compPool.Put(tp)
		t, err := c.dec.DecodeAll(plain, (*tp)[:0])
		if err != nil {
			return nil, fmt.Errorf("decompress frame: %w", err)
		}
		*tp = t
		if plain, err = appendRawFromBase64Lines(dst[:0], t, int(rawLen)); err != nil {
			return nil, err
		}
	case FlagBase64:
		if plain, err = appendRawFromBase64Lines(dst[:0], plain, int(rawLen)); err != nil {
			return nil, err
		}
	}
	if uint32(len(plain)) != rawLen {
		return nil, fmt.Errorf("frame has %d bytes, want %d", len(plain), rawLen)
	}
	return plain, nil
}

// SealPlain seals a small metadata file (index, snapshot, lock, config):
// zstd-compressed, then sealed.
func (c *Codec) SealPlain(raw []byte) []byte {
	return c.key.Seal(nil, c.enc.EncodeAll(raw, nil))
}

// OpenPlain reverses SealPlain.
func (c *Codec) OpenPlain(sealed []byte) ([]byte, error) {
	plain, err := c.key.Open(nil, sealed)
	if err != nil {
		return nil, err
	}
	return c.dec.DecodeAll(plain, nil)
}
