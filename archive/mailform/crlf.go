package mailform

import (
	"bytes"
	"io"
	"slices"
	"unsafe"
)

// CRLF returns b with every bare LF and every bare CR made CRLF. It returns
// b itself when b has none, so that the common case costs one scan and no
// copy.
func CRLF(b []byte) []byte {
	extra := BareLineEnds(b)
	if extra == 0 {
		return b
	}
	return AppendCRLF(make([]byte, 0, len(b)+extra), b)
}

// AppendCRLF appends b to dst with every bare LF and every bare CR made
// CRLF, and returns the extended buffer.
func AppendCRLF(dst, b []byte) []byte {
	out, pending := convert(dst, b)
	if pending {
		out = append(out, '\r', '\n')
	}
	return out
}

// BareLineEnds returns the number of bare LF and bare CR bytes in b: the
// number of bytes that CRLF adds.
func BareLineEnds(b []byte) int {
	lf := bytes.Count(b, []byte{'\n'})
	cr := bytes.Count(b, []byte{'\r'})
	if cr == 0 {
		return lf // the common case of LF files: no pair to look for
	}
	return lf + cr - 2*bytes.Count(b, []byte("\r\n"))
}

// LineEndCounter counts the bare line ends of a message written to it in
// pieces: it.Added() is what CRLF adds to everything written so far. The
// zero value is ready to use; it is not safe for concurrent use.
type LineEndCounter struct {
	bare   int64
	prevCR bool // the last byte written was a CR
}

// Write counts p; it never fails.
func (c *LineEndCounter) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	if c.prevCR {
		if p[0] == '\n' {
			p = p[1:] // the CR's own LF
		} else {
			c.bare++
		}
	}
	c.prevCR = len(p) > 0 && p[len(p)-1] == '\r'
	if c.prevCR {
		p = p[:len(p)-1]
	}
	c.bare += int64(BareLineEnds(p))
	return n, nil
}

// Added returns the bytes CRLF adds to what was written, counting a CR at
// the very end as bare.
func (c *LineEndCounter) Added() int64 {
	if c.prevCR {
		return c.bare + 1
	}
	return c.bare
}

// convert appends src to dst with every line end made CRLF. A CR at the
// very end of src is not written: pending says so, and the caller decides
// with the next byte whether it was bare. It looks for line ends with
// bytes.IndexByte, so that text with few CRs converts at memory speed,
// after convertAVX2 has done all but the last bytes where it can.
func convert(dst, src []byte) (out []byte, pending bool) {
	if useAVX2 && len(src) >= 64 {
		dst, src = convertBlocks(dst, src)
	}
	start, pos := 0, 0
	cr := bytes.IndexByte(src, '\r')
	for pos < len(src) {
		if cr >= 0 && cr < pos {
			if cr = bytes.IndexByte(src[pos:], '\r'); cr >= 0 {
				cr += pos
			}
		}
		lf := bytes.IndexByte(src[pos:], '\n')
		if lf >= 0 {
			lf += pos
		}
		switch {
		case cr >= 0 && (lf < 0 || cr < lf):
			dst = append(dst, src[start:cr]...)
			if cr+1 == len(src) {
				return dst, true
			}
			dst = append(dst, '\r', '\n')
			pos = cr + 1
			if src[pos] == '\n' {
				pos++
			}
		case lf >= 0:
			dst = append(dst, src[start:lf]...)
			dst = append(dst, '\r', '\n')
			pos = lf + 1
		default:
			pos = len(src)
			continue
		}
		start = pos
	}
	return append(dst, src[start:]...), false
}

// convertBlocks converts all but the last bytes of src onto dst with
// convertAVX2 and returns the bytes left.
func convertBlocks(dst, src []byte) ([]byte, []byte) {
	for len(src) >= 64 {
		if cap(dst)-len(dst) < 96 {
			if len(src) < 256 {
				break // the Go loop ends it, in the room left if it is enough
			}
			// Room for a line end every 16 bytes; more when that was short.
			dst = slices.Grow(dst, len(src)+len(src)/16+128)
		}
		free := dst[len(dst):cap(dst)]
		w, r := convertAVX2(unsafe.SliceData(free), len(free), unsafe.SliceData(src), len(src))
		dst, src = dst[:len(dst)+w], src[r:]
	}
	return dst, src
}

// CRLFAppender converts what is written to it, with bare LF and bare CR
// made CRLF, onto the end of B: no buffer of its own, one copy of each
// byte. Close adds the line end of a bare CR that ended what was
// written. The zero value is ready to use; it is not safe for concurrent
// use.
type CRLFAppender struct {
	B       []byte
	pending bool // the last byte written was a CR whose line end is not in B yet
}

// Write converts p onto B; it never fails.
func (a *CRLFAppender) Write(p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	if a.pending {
		a.pending = false
		a.B = append(a.B, '\r', '\n')
		if p[0] == '\n' {
			p = p[1:]
		}
	}
	a.B, a.pending = convert(a.B, p)
	return n, nil
}

// Close adds the line end of a bare CR that ended what was written.
func (a *CRLFAppender) Close() error {
	if a.pending {
		a.pending = false
		a.B = append(a.B, '\r', '\n')
	}
	return nil
}

// CRLFWriter writes to its underlying writer what is written to it, with
// bare LF and bare CR made CRLF. Close (which does not close the
// underlying writer) writes the line end of a message that ends with a
// bare CR. A CRLFWriter is not safe for concurrent use.
type CRLFWriter struct {
	w   io.Writer
	app CRLFAppender // converts each piece into app.B, which is written
}

// NewCRLFWriter returns a CRLFWriter writing to w.
func NewCRLFWriter(w io.Writer) *CRLFWriter { return &CRLFWriter{w: w} }

// Reset makes c write to w, as a new CRLFWriter would, keeping its buffer.
func (c *CRLFWriter) Reset(w io.Writer) { c.w, c.app.pending = w, false }

const crlfChunk = 32 << 10

// Write converts p and writes it.
func (c *CRLFWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), crlfChunk)
		c.app.B = c.app.B[:0]
		c.app.Write(p[:k])
		p = p[k:]
		if _, err := c.w.Write(c.app.B); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Close writes the line end of a bare CR that ended the message.
func (c *CRLFWriter) Close() error {
	if !c.app.pending {
		return nil
	}
	c.app.pending = false
	_, err := c.w.Write([]byte("\r\n"))
	return err
}
