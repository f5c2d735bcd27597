package pack

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/dedup"
)

// BlobType says what a blob holds.
type BlobType uint8

// Blob types.
const (
	DataBlob BlobType = 1 // a chunk of a message
	TreeBlob BlobType = 2 // a page of a folder's message list
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("BlobType(%d)", uint8(t))
}

// Frame flags.
const (
	FlagZstd   = 1 << 0 // the frame's plaintext is zstd-compressed
	FlagBase64 = 1 << 1 // the frame's base64 lines are stored decoded (base64.go)
)

// Blob describes one blob inside a frame.
type Blob struct {
	Type   BlobType
	ID     dedup.ID
	Length uint32 // plaintext length
}

// Frame describes one sealed frame of a pack.
type Frame struct {
	Offset    uint32 // where the sealed frame starts in the pack
	Length    uint32 // sealed length
	Flags     uint8
	RawLength uint32 // plaintext length of the frame (sum of blob lengths)
	Blobs     []Blob
}

// Header lists the frames of one pack.
type Header struct {
	Frames []Frame
}

const headerMagic = "PBPK\x01"

// MaxHeaderSize bounds a pack header on read, against damaged length fields.
const MaxHeaderSize = 64 << 20

// AppendBinary encodes the frames' descriptions (offsets included) to b.
// The same encoding is used in index files.
func (h *Header) AppendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(h.Frames)))
	for _, f := range h.Frames {
		b = binary.AppendUvarint(b, uint64(f.Offset))
		b = binary.AppendUvarint(b, uint64(f.Length))
		b = append(b, f.Flags)
		b = binary.AppendUvarint(b, uint64(f.RawLength))
		b = binary.AppendUvarint(b, uint64(len(f.Blobs)))
		for _, bl := range f.Blobs {
			b = append(b, byte(bl.Type))
			b = append(b, bl.ID[:]...)
			b = binary.AppendUvarint(b, uint64(bl.Length))
		}
	}
	return b
}

// Decoder reads the binary encoding of headers and index files.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder returns a decoder of b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Err returns the first decoding error.
func (d *Decoder) Err() error { return d.err }

// Rest returns the undecoded bytes.
func (d *Decoder) Rest() []byte { return d.b }

func (d *Decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("truncated or damaged %s", what)
	}
}

// Uvarint decodes one unsigned varint.
func (d *Decoder) Uvarint(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > max {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Byte decodes one byte.
func (d *Decoder) Byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// ID decodes one ID.
func (d *Decoder) ID() (id dedup.ID) {
	if d.err != nil || len(d.b) < len(id) {
		d.fail("id")
		return id
	}
	copy(id[:], d.b)
	d.b = d.b[len(id):]
	return id
}

// Header decodes a header encoded by AppendBinary and checks that frames
// are consistent.
func (d *Decoder) Header() Header {
	var h Header
	n := d.Uvarint(1 << 24)
	if d.err != nil {
		return h
	}
	h.Frames = make([]Frame, 0, min(n, 4096))
	for i := uint64(0); i < n && d.err == nil; i++ {
		var f Frame
		f.Offset = uint32(d.Uvarint(1<<32 - 1))
		f.Length = uint32(d.Uvarint(1<<32 - 1))
		f.Flags = d.Byte()
		f.RawLength = uint32(d.Uvarint(1<<32 - 1))
		nb := d.Uvarint(1 << 20)
		var sum uint64
		for j := uint64(0); j < nb && d.err == nil; j++ {
			var bl Blob
			bl.Type = BlobType(d.Byte())
			bl.ID = d.ID()
			bl.Length = uint32(d.Uvarint(1<<32 - 1))
			sum += uint64(bl.Length)
			f.Blobs = append(f.Blobs, bl)
		}
		if d.err == nil && (sum != uint64(f.RawLength) || f.Length < crypto.Overhead || f.Flags&^(FlagZstd|FlagBase64) != 0) {
			d.err = errors.New("inconsistent frame in header")
		}
		h.Frames = append(h.Frames, f)
	}
	return h
}

// Size returns the total length of the frames (the pack minus its header).
func (h *Header) Size() int64 {
	if len(h.Frames) == 0 {
		return 0
	}
	last := h.Frames[len(h.Frames)-1]
	return int64(last.Offset) + int64(last.Length)
}

// Writer writes one pack to a temporary file. It is not safe for concurrent
// use.
type Writer struct {
	key  *crypto.Key
	f    *os.File
	w    *bufio.Writer
	h    hash.Hash
	off  int64
	hdr  Header
	done bool
}

// NewWriter starts a pack in a temporary file in dir (os.TempDir if empty).
func NewWriter(key *crypto.Key, dir string) (*Writer, error) {
	f, err := os.CreateTemp(dir, "planb-pack-")
	if err != nil {
		return nil, fmt.Errorf("create pack: %w", err)
	}
	// The file is only ever read through our open descriptor.
	_ = os.Remove(f.Name())
	w := &Writer{key: key, f: f, h: sha256.New()}
	w.w = bufio.NewWriterSize(io.MultiWriter(f, w.h), 256<<10)
	return w, nil
}

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.off }

// Count returns the number of frames written so far.
func (w *Writer) Count() int { return len(w.hdr.Frames) }

// Add writes one sealed frame described by f (its Offset and Length are set
// here) and returns the description with the offset filled in.
func (w *Writer) Add(sealed []byte, f Frame) (Frame, error) {
	if w.off+int64(len(sealed)) > 1<<32-1 {
		return f, errors.New("pack too large")
	}
	f.Offset = uint32(w.off)
	f.Length = uint32(len(sealed))
	if _, err := w.w.Write(sealed); err != nil {
		return f, fmt.Errorf("write pack: %w", err)
	}
	w.off += int64(len(sealed))
	w.hdr.Frames = append(w.hdr.Frames, f)
	return f, nil
}

// Finish writes the header and returns the pack's ID (the SHA-256 of the
// whole file), its header and a reader of the whole file positioned at its
// start. The caller must Close the Writer when done with the reader.
func (w *Writer) Finish() (dedup.ID, Header, io.ReadSeeker, error) {
	var id dedup.ID
	if w.done {
		return id, w.hdr, nil, errors.New("pack already finished")
	}
	w.done = true
	plain := w.hdr.AppendBinary([]byte(headerMagic))
	sealed := w.key.Seal(nil, plain)
	var trailer [4]byte
	binary.LittleEndian.PutUint32(trailer[:], uint32(len(sealed)))
	if _, err := w.w.Write(sealed); err != nil {
		return id, w.hdr, nil, fmt.Errorf("write pack: %w", err)
	}
	if _, err := w.w.Write(trailer[:]); err != nil {
		return id, w.hdr, nil, fmt.Errorf("write pack: %w", err)
	}
	if err := w.w.Flush(); err != nil {
		return id, w.hdr, nil, fmt.Errorf("write pack: %w", err)
	}
	copy(id[:], w.h.Sum(nil))
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return id, w.hdr, nil, err
	}
	return id, w.hdr, w.f, nil
}

// Close removes the temporary file.
func (w *Writer) Close() error { return w.f.Close() }

// ParseHeader reads a pack's header from its tail. tail must hold at least
// the sealed header and the 4-byte length (the last bytes of the pack);
// packSize is the size of the whole pack. If tail is too short, ParseHeader
// returns the number of tail bytes it needs and a nil error.
func ParseHeader(key *crypto.Key, tail []byte, packSize int64) (Header, int, error) {
	if len(tail) < 4 {
		return Header{}, 0, errors.New("pack too short")
	}
	hl := int64(binary.LittleEndian.Uint32(tail[len(tail)-4:]))
	if hl > MaxHeaderSize || hl+4 > packSize || hl < crypto.Overhead {
		return Header{}, 0, errors.New("pack header length out of range")
	}
	if int64(len(tail)) < hl+4 {
		return Header{}, int(hl + 4), nil
	}
	plain, err := key.Open(nil, tail[int64(len(tail))-4-hl:len(tail)-4])
	if err != nil {
		return Header{}, 0, fmt.Errorf("pack header: %w", err)
	}
	if !bytes.HasPrefix(plain, []byte(headerMagic)) {
		return Header{}, 0, errors.New("pack header: bad magic")
	}
	d := NewDecoder(plain[len(headerMagic):])
	h := d.Header()
	if d.Err() == nil && len(d.Rest()) != 0 {
		return h, 0, errors.New("pack header: trailing bytes")
	}
	if d.Err() != nil {
		return h, 0, fmt.Errorf("pack header: %w", d.Err())
	}
	// Frames must tile the pack exactly up to the header.
	var off int64
	for _, f := range h.Frames {
		if int64(f.Offset) != off {
			return h, 0, errors.New("pack header: frames do not tile the pack")
		}
		off += int64(f.Length)
	}
	if off+hl+4 != packSize {
		return h, 0, errors.New("pack header: size mismatch")
	}
	return h, 0, nil
}
