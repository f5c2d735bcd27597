package serve

import (
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strings"
)

// decoder returns a reader of r's content decoded from the transfer
// encoding cte, and whether the encoding is known. Content that does not
// decode ends where it stops decoding, the same way each time it is read:
// BINARY counts its size in one pass and sends it in another.
func decoder(r io.Reader, cte string) (io.Reader, bool) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit", "8bit", "binary":
		return r, true
	case "base64":
		src := &errSource{r: r}
		return &lenient{r: base64.NewDecoder(base64.StdEncoding, &base64Only{r: src}), src: src}, true
	case "quoted-printable":
		src := &errSource{r: r}
		return &lenient{r: quotedprintable.NewReader(src), src: src}, true
	}
	return nil, false
}

// errSource remembers the error of the reader it wraps, so that lenient
// can tell a failure to read from content that does not decode.
type errSource struct {
	r   io.Reader
	err error
}

func (e *errSource) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// lenient ends a decoded stream at its first decoding error; errors of
// the source pass.
type lenient struct {
	r   io.Reader
	src *errSource
}

func (l *lenient) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		if l.src.err != nil {
			return n, l.src.err
		}
		return n, io.EOF
	}
	return n, err
}

// base64Only drops every byte that is not of the base64 alphabet (line
// ends, spaces, garbage), as mail readers do.
type base64Only struct{ r io.Reader }

func (b *base64Only) Read(p []byte) (int, error) {
	for {
		n, err := b.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if base64Alphabet(c) {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}
