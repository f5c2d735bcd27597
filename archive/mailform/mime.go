package mailform

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"strings"
)

// mimeCheck reads a message written to it and tells whether its MIME
// structure is one a strict parser (Proton Mail Bridge's) reads: every
// multipart closed by its boundary, every transfer encoding one of RFC
// 2045's, every base64 part decodable.
type mimeCheck struct {
	pw   *io.PipeWriter
	done chan bool
}

func newMIMECheck() *mimeCheck {
	pr, pw := io.Pipe()
	m := &mimeCheck{pw: pw, done: make(chan bool, 1)}
	go func() {
		ok := mimeOK(pr)
		io.Copy(io.Discard, pr)
		m.done <- ok
	}()
	return m
}

func (m *mimeCheck) Write(p []byte) (int, error) {
	m.pw.Write(p)
	return len(p), nil
}

// result ends the message and reports whether its structure is sound.
func (m *mimeCheck) result() bool {
	m.pw.Close()
	return <-m.done
}

// mimeOK reads a whole message from r and reports whether its MIME
// structure is sound.
func mimeOK(r io.Reader) bool {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := readHeader(br)
	if err != nil {
		return false
	}
	var h textHeader
	for _, f := range fields(head) {
		if f.valid {
			h.add(f.name, f.value)
		}
	}
	return partOK(h.get("Content-Type"), h.get("Content-Transfer-Encoding"), br, 0)
}

func partOK(ctype, cte string, r io.Reader, depth int) bool {
	enc := strings.ToLower(strings.TrimSpace(cte))
	switch enc {
	case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
	default:
		return false
	}
	mt, params, err := mime.ParseMediaType(ctype)
	if ctype != "" && err != nil && err != mime.ErrInvalidMediaParameter {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(ctype)), "multipart/") {
			return false // a multipart whose boundary cannot be read
		}
		mt = "text/plain" // readers take it for text
	}
	if strings.HasPrefix(mt, "multipart/") && depth < maxDepth {
		b := params["boundary"]
		if b == "" {
			return false
		}
		closed := &delimWatch{delim: []byte("\n--" + b + "--"), tail: []byte{'\n'}}
		mr := multipart.NewReader(io.TeeReader(r, closed), b)
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return closed.seen
			}
			if err != nil {
				return false
			}
			if !partOK(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1) {
				return false
			}
		}
	}
	if enc == "base64" {
		_, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, r))
		return err == nil
	}
	return true
}

// delimWatch notes whether delim went by in what is written to it.
type delimWatch struct {
	delim []byte
	tail  []byte // the last bytes written, fewer than len(delim)
	seen  bool
}

func (d *delimWatch) Write(p []byte) (int, error) {
	if d.seen {
		return len(p), nil
	}
	buf := append(d.tail, p...)
	if bytes.Contains(buf, d.delim) {
		d.seen = true
	}
	keep := min(len(buf), len(d.delim)-1)
	d.tail = append(d.tail[:0], buf[len(buf)-keep:]...)
	return len(p), nil
}
