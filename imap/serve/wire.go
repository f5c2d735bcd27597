package serve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"

	"codeberg.org/planb/planb/archive/mailform"
)

// A message goes on the wire with CRLF line ends, as IMAP wants it: every
// bare LF and bare CR of the stored bytes becomes CRLF (mailform.CRLF), as
// Dovecot does with the LF files of a Maildir. Unlike restore, which
// APPENDs a message holding a "binary" part as it is stored, the server
// converts those too: a text literal cannot carry them unchanged either,
// and a header can then be read without a pass over the whole message.
// RFC822.SIZE, BODYSTRUCTURE's sizes and the offsets of partial fetches
// all count bytes of this wire form.

// wireSize is what one pass over a message's stored bytes learns to put it
// on the wire and to start reading it anywhere.
type wireSize struct {
	size int64 // bytes on the wire
	// marks are places where converting may start again: a line start at
	// raw offset raw is at wire offset wire. One about every markEvery
	// bytes, in ascending order.
	marks []mark
	// sizeOnly: size is the store's (Message.Wire) or a loaded wire
	// form's, and marks were not computed; a window far into the
	// message measures it first.
	sizeOnly bool
}

type mark struct{ raw, wire int64 }

// markEvery is the distance between two marks: a partial fetch at any
// offset converts at most about this much before its first byte.
const markEvery = 64 << 10

// blockSize is how much of a message one read takes.
const blockSize = 32 << 10

// measurer computes the wireSize of a message's stored bytes written to
// it in pieces.
type measurer struct {
	ends    mailform.LineEndCounter
	ws      wireSize
	n, last int64 // bytes written; raw offset of the last mark
}

func (m *measurer) Write(b []byte) (int, error) {
	k := len(b)
	// Split at the piece's last LF: past it no CR waits for its LF, so
	// the count so far gives the wire offset of a line start.
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 && m.n+int64(i)+1-m.last >= markEvery {
		m.ends.Write(b[:i+1])
		m.last = m.n + int64(i) + 1
		m.ws.marks = append(m.ws.marks, mark{raw: m.last, wire: m.last + m.ends.Added()})
		m.ends.Write(b[i+1:])
	} else {
		m.ends.Write(b)
	}
	m.n += int64(k)
	return k, nil
}

// result returns the wireSize of what was written, which must be want
// bytes (the message's stored size).
func (m *measurer) result(want int64) (*wireSize, error) {
	if m.n != want {
		return nil, fmt.Errorf("%w: message is %d bytes, not %d", errWrongSize, m.n, want)
	}
	ws := m.ws
	ws.size = m.n + m.ends.Added()
	return &ws, nil
}

// measure reads a message's stored bytes once and returns its wireSize.
// want is the stored size: a message of another length is an error.
func measure(raw io.Reader, want int64) (*wireSize, error) {
	var m measurer
	buf := getBlock()
	defer putBlock(buf)
	if _, err := io.CopyBuffer(&m, raw, *buf); err != nil {
		return nil, err
	}
	return m.result(want)
}

// blockPool holds the blockSize buffers messages are read in.
var blockPool = sync.Pool{New: func() any { b := make([]byte, blockSize); return &b }}

func getBlock() *[]byte  { return blockPool.Get().(*[]byte) }
func putBlock(b *[]byte) { blockPool.Put(b) }

// wireReader gives the bytes [off, off+n) of a message's wire form, read
// from its stored bytes. Readers (and their buffers) are recycled: get one
// with wholeWire or newWireReader, give it back with release.
type wireReader struct {
	raw   io.Reader
	conv  *mailform.CRLFWriter
	out   bytes.Buffer
	buf   []byte
	skip  int64 // wire bytes still to drop before off
	left  int64 // wire bytes still to give
	sized bool  // the message is known to have at least off+left bytes
	eof   bool
}

var readerPool = sync.Pool{New: func() any {
	r := &wireReader{buf: make([]byte, blockSize)}
	r.conv = mailform.NewCRLFWriter(&r.out)
	return r
}}

func getWireReader(raw io.Reader, left int64, sized bool) *wireReader {
	r := readerPool.Get().(*wireReader)
	r.raw, r.left, r.sized, r.skip, r.eof = raw, left, sized, 0, false
	r.out.Reset()
	r.conv.Reset(&r.out)
	return r
}

// wholeWire returns a reader of the whole wire form of the message whose
// stored bytes raw gives from their start.
func wholeWire(raw io.Reader) *wireReader {
	return getWireReader(raw, math.MaxInt64, false)
}

// newWireReader seeks raw and returns a reader of the wire bytes
// [off, off+n) of the message ws describes; n is cut at the message's end.
func newWireReader(raw io.ReadSeeker, ws *wireSize, off, n int64) (*wireReader, error) {
	off = min(max(off, 0), ws.size)
	n = min(max(n, 0), ws.size-off)
	if n == 0 {
		return getWireReader(raw, 0, true), nil
	}
	start := mark{}
	if i := sort.Search(len(ws.marks), func(i int) bool { return ws.marks[i].wire > off }); i > 0 {
		start = ws.marks[i-1]
	}
	if _, err := raw.Seek(start.raw, io.SeekStart); err != nil {
		return nil, err
	}
	r := getWireReader(raw, n, true)
	r.skip = off - start.wire
	return r, nil
}

// release gives the reader back; it must not be used afterwards.
func (r *wireReader) release() {
	r.raw = nil
	readerPool.Put(r)
}

// errShort says that a message's bytes ended before its size.
var errShort = errors.New("message shorter than its size")

// errLonger says that a message's bytes went on past its stored size.
var errLonger = errors.New("message longer than its stored size")

// errWrongSize says that a message's bytes do not have the size its store
// gave.
var errWrongSize = errors.New("wrong size")

func (r *wireReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	for r.out.Len() == 0 {
		if r.eof && r.sized {
			return 0, errShort
		}
		if r.eof {
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, _ := r.out.Read(p)
	r.left -= int64(n)
	return n, nil
}

// writeWhole writes the whole wire form of the message whose stored bytes
// raw gives from their start, which must be n bytes, to w. It converts the
// stored bytes as they come: from the repository's frames themselves when
// raw can write them out (io.WriterTo), with none of a wireReader's
// copies. A message shorter than n gives errShort, a longer one errLonger
// once n bytes are written.
func writeWhole(w io.Writer, raw io.Reader, n int64) error {
	win := &windowWriter{w: w, left: n}
	conv := crlfPool.Get().(*mailform.CRLFWriter)
	conv.Reset(win)
	defer func() {
		conv.Reset(nil)
		crlfPool.Put(conv)
	}()
	_, err := io.Copy(conv, raw) // by raw's WriteTo where it has one
	if err == nil {
		err = conv.Close()
	}
	if err == nil && win.left > 0 {
		err = errShort
	}
	return err
}

var crlfPool = sync.Pool{New: func() any { return mailform.NewCRLFWriter(nil) }}

// windowWriter passes on the first left bytes written to it; a byte more
// is errLonger.
type windowWriter struct {
	w    io.Writer
	left int64
}

func (ww *windowWriter) Write(p []byte) (int, error) {
	over := int64(len(p)) > ww.left
	if over {
		p = p[:ww.left]
	}
	k, err := ww.w.Write(p)
	ww.left -= int64(k)
	if err == nil && over {
		err = errLonger
	}
	return k, err
}

// more reports whether the message has wire bytes past the window.
func (r *wireReader) more() (bool, error) {
	for r.out.Len() == 0 && !r.eof {
		if err := r.fill(); err != nil {
			return false, err
		}
	}
	return r.out.Len() > 0, nil
}

// fill converts the next block of stored bytes and drops what comes before
// the window.
func (r *wireReader) fill() error {
	r.out.Reset()
	k, err := r.raw.Read(r.buf)
	if k > 0 {
		r.conv.Write(r.buf[:k]) // into a bytes.Buffer: never fails
	}
	if err == io.EOF {
		r.eof = true
		r.conv.Close()
	} else if err != nil {
		return err
	}
	if r.skip > 0 {
		d := min(r.skip, int64(r.out.Len()))
		r.out.Next(int(d))
		r.skip -= d
	}
	return nil
}
