package mailform

import (
	"bytes"
	"io"
)

// CRLF returns b with every bare LF and every bare CR made CRLF. It returns
// b itself when b has none, so that the common case costs one scan and no
// copy.
func CRLF(b []byte) []byte {
	extra := BareLineEnds(b)
	if extra == 0 {
		return b
	}
	out, pending := convert(make([]byte, 0, len(b)+extra), b)
	if pending {
		out = append(out, '\r', '\n')
	}
	return out
}

// BareLineEnds returns the number of bare LF and bare CR bytes in b: the
// number of bytes that CRLF adds.
func BareLineEnds(b []byte) int {
	n := 0
	for i := 0; ; {
		j := bytes.IndexAny(b[i:], "\r\n")
		if j < 0 {
			return n
		}
		i += j
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i += 2
			continue
		}
		n++
		i++
	}
}

// convert appends src to dst with every line end made CRLF. A CR at the
// very end of src is not written: pending says so, and the caller decides
// with the next byte whether it was bare.
func convert(dst, src []byte) (out []byte, pending bool) {
	start := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '\n':
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\r', '\n')
			start = i + 1
		case '\r':
			dst = append(dst, src[start:i]...)
			if i+1 == len(src) {
				return dst, true
			}
			dst = append(dst, '\r', '\n')
			if src[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	return append(dst, src[start:]...), false
}

// CRLFWriter writes to its underlying writer what is written to it, with
// bare LF and bare CR made CRLF. Close (which does not close the
// underlying writer) writes the line end of a message that ends with a
// bare CR. A CRLFWriter is not safe for concurrent use.
type CRLFWriter struct {
	w       io.Writer
	buf     []byte
	pending bool // the last byte written was a CR whose line end is not out yet
}

// NewCRLFWriter returns a CRLFWriter writing to w.
func NewCRLFWriter(w io.Writer) *CRLFWriter { return &CRLFWriter{w: w} }

// Reset makes c write to w, as a new CRLFWriter would, keeping its buffer.
func (c *CRLFWriter) Reset(w io.Writer) { c.w, c.pending = w, false }

const crlfChunk = 32 << 10

// Write converts p and writes it.
func (c *CRLFWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		c.buf = c.buf[:0]
		if c.pending {
			c.pending = false
			c.buf = append(c.buf, '\r', '\n')
			if p[0] == '\n' {
				p = p[1:]
			}
		}
		k := min(len(p), crlfChunk)
		c.buf, c.pending = convert(c.buf, p[:k])
		p = p[k:]
		if _, err := c.w.Write(c.buf); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Close writes the line end of a bare CR that ended the message.
func (c *CRLFWriter) Close() error {
	if !c.pending {
		return nil
	}
	c.pending = false
	_, err := c.w.Write([]byte("\r\n"))
	return err
}
