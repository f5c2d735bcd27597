package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"mime"
	"strings"
)

// A countWriter counts the bytes and line feeds written through it, for
// the S= and W= parts of Maildir file names.
type countWriter struct {
	w     *bufio.Writer
	n     int64
	lines int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.lines += int64(bytes.Count(p[:n], []byte{'\n'}))
	return n, err
}

func (c *countWriter) WriteString(s string) (int, error) {
	n, err := c.w.WriteString(s)
	c.n += int64(n)
	c.lines += int64(strings.Count(s[:n], "\n"))
	return n, err
}

// header appends "Name: value" folded at spaces to lines of at most 78
// bytes, and a line feed.
func header(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ':')
	col := len(name) + 1
	for i, f := range strings.Split(value, " ") {
		if i > 0 && col+1+len(f) > 78 {
			b = append(b, "\n\t"...)
			col = 8
		} else {
			b = append(b, ' ')
			col++
		}
		b = append(b, f...)
		col += len(f)
	}
	return append(b, '\n')
}

// encodeHeaderText returns s, or s as RFC 2047 encoded words if it is not
// ASCII.
func encodeHeaderText(r *rand.Rand, s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			if r.IntN(2) == 0 {
				return mime.BEncoding.Encode("utf-8", s)
			}
			return mime.QEncoding.Encode("utf-8", s)
		}
	}
	return s
}

// randomBase64 appends n characters of random base64, like a signature.
func randomBase64(b []byte, r *rand.Rand, n int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < n; i++ {
		b = append(b, alphabet[r.IntN(64)])
	}
	return b
}

// appendQuotedPrintable appends src encoded as quoted-printable with "\n"
// line ends and soft breaks before column 76.
func appendQuotedPrintable(b, src []byte) []byte {
	const hex = "0123456789ABCDEF"
	col := 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\n' {
			b = append(b, '\n')
			col = 0
			continue
		}
		atEOL := i+1 == len(src) || src[i+1] == '\n'
		plain := (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !atEOL)
		w := 1
		if !plain {
			w = 3
		}
		if col+w > 75 {
			b = append(b, "=\n"...)
			col = 0
		}
		if plain {
			b = append(b, c)
		} else {
			b = append(b, '=', hex[c>>4], hex[c&15])
		}
		col += w
	}
	return b
}

// writeBase64 copies src to w as base64 in lines of 76 characters. The
// same bytes always give the same text.
func writeBase64(w io.Writer, src io.Reader) error {
	const lines = 1024
	in := make([]byte, 57*lines)
	out := make([]byte, 77*lines)
	for {
		n, err := io.ReadFull(src, in)
		if n > 0 {
			o := 0
			for i := 0; i < n; i += 57 {
				end := min(i+57, n)
				base64.StdEncoding.Encode(out[o:], in[i:end])
				o += base64.StdEncoding.EncodedLen(end - i)
				out[o] = '\n'
				o++
			}
			if _, werr := w.Write(out[:o]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// wrap appends text with its paragraphs ("\n"-separated) wrapped at
// width columns, each line prefixed by prefix.
func wrap(b []byte, text []byte, width int, prefix string) []byte {
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		if len(line) == 0 {
			b = append(b, strings.TrimRight(prefix, " ")...)
			b = append(b, '\n')
			continue
		}
		for len(line) > 0 {
			b = append(b, prefix...)
			if len(line) <= width {
				b = append(b, line...)
				b = append(b, '\n')
				break
			}
			cut := bytes.LastIndexByte(line[:width], ' ')
			if cut <= 0 {
				cut = bytes.IndexByte(line, ' ')
				if cut < 0 {
					cut = len(line)
				}
			}
			b = append(b, line[:cut]...)
			b = append(b, '\n')
			line = bytes.TrimLeft(line[cut:], " ")
		}
	}
	return b
}

// htmlEscape appends s with &, < and > escaped.
func htmlEscape(b, s []byte) []byte {
	for _, c := range s {
		switch c {
		case '&':
			b = append(b, "&amp;"...)
		case '<':
			b = append(b, "&lt;"...)
		case '>':
			b = append(b, "&gt;"...)
		default:
			b = append(b, c)
		}
	}
	return b
}
