package mailform

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"unicode"

	"golang.org/x/text/encoding/htmlindex"
)

// Sum is a SHA-256 sum.
type Sum [sha256.Size]byte

// Print is a message's fingerprints, from the exact to the forgiving.
type Print struct {
	// Exact is the message with CRLF line ends and NUL bytes as 0x80 (what
	// a server that stores it returns; Dovecot gives NUL back as 0x80).
	Exact Sum
	// Stripped is Exact without the header fields servers add (see
	// AddedField); Added names those found, once each, in order.
	Stripped Sum
	Added    []string
	// Semantic is what a reader sees: the Date (as an instant), the From
	// addresses, the Subject (decoded) and every part's decoded content
	// (text with its charset decoded and its line ends and trailing space
	// normalised). It survives a server that rebuilds the MIME structure.
	// Message-IDs are left out: servers add them to messages without one.
	Semantic Sum
	// Envelope is the part of Semantic that the header gives (Date, From,
	// Subject): two versions of one message, one altered, share it.
	Envelope Sum
	// MessageID is the Message-ID field, or "".
	MessageID string
	// Size is the message's size after CRLF conversion.
	Size int64
	// Repaired is the X-Planb-Repaired field of a repaired copy (see
	// Repair), else ""; Original is then the original's Print, or nil if it
	// could not be recovered (too large, or damaged).
	Repaired string
	Original *Print
}

// AddedField reports whether a header field of this name is one that mail
// servers add to a message they store: Proton Mail Bridge's and its IMAP
// engine gluon's X-Pm-* fields (X-Pm-Gluon-Id, X-Pm-Internal-Id...).
func AddedField(name string) bool {
	return len(name) >= 5 && strings.EqualFold(name[:5], "X-Pm-")
}

// maxRecover is the largest repaired copy whose original Fingerprint
// recovers: it is held in memory.
const maxRecover = 64 << 20

// Fingerprint reads a whole message and returns its Print. It holds the
// header (at most MaxHeader bytes) in memory, and a repaired copy of at
// most 64 MiB; everything else streams.
func Fingerprint(r io.Reader) (*Print, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	p := &Print{}
	fs := fields(head)
	var hdr textHeader
	for _, f := range fs {
		if !f.valid {
			continue
		}
		hdr.add(f.name, f.value)
		if AddedField(f.name) && !containsFold(p.Added, f.name) {
			p.Added = append(p.Added, f.name)
		}
	}
	p.MessageID = strings.TrimSpace(hdr.get("Message-Id"))
	p.Repaired = hdr.get("X-Planb-Repaired")

	// Each print is one normalised stream, header then body, so that
	// where the header was found to end (a bare CR, a cut at MaxHeader)
	// does not change it.
	exact, stripped := sha256.New(), sha256.New()
	size := &countWriter{}
	exactW := &normWriter{w: io.MultiWriter(exact, size)}
	strippedW := &normWriter{w: stripped}
	exactW.Write(head)
	if n := len(head); n > 0 && !bytes.HasSuffix(head, []byte("\n")) {
		// Cut at MaxHeader in the middle of a line: nothing to strip.
		strippedW.Write(head)
	} else {
		for _, f := range fs {
			if !f.valid || !AddedField(f.name) {
				strippedW.Write(f.raw)
			}
		}
		strippedW.Write(headSeparator(head, fs))
	}

	pr, pw := io.Pipe()
	semDone := make(chan [2]Sum, 1)
	go func() {
		env, s := semantic(&hdr, pr)
		io.Copy(io.Discard, pr)
		semDone <- [2]Sum{env, s}
	}()
	var keep *bytes.Buffer
	writers := []io.Writer{exactW, strippedW, pw}
	if p.Repaired != "" {
		keep = bytes.NewBuffer(append([]byte(nil), head...))
		writers = append(writers, &limitWriter{b: keep, max: maxRecover})
	}
	_, err = io.Copy(io.MultiWriter(writers...), br)
	exactW.Close()
	strippedW.Close()
	pw.Close()
	sums := <-semDone
	p.Envelope, p.Semantic = sums[0], sums[1]
	if err != nil {
		return nil, err
	}
	p.Size = size.n
	p.Exact = combine("exact", exact.Sum(nil))
	p.Stripped = combine("stripped", stripped.Sum(nil))
	if keep != nil && keep.Len() <= maxRecover {
		if orig, err := Recover(keep.Bytes()); err == nil {
			p.Original, _ = Fingerprint(bytes.NewReader(orig))
		}
	}
	return p, nil
}

// headSeparator returns the part of head after its last field: the empty
// line that ends the header, if it was read into head.
func headSeparator(head []byte, fs []field) []byte {
	n := 0
	for _, f := range fs {
		n += len(f.raw)
	}
	return head[min(n, len(head)):]
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func combine(kind string, parts ...[]byte) Sum {
	h := sha256.New()
	h.Write([]byte(kind))
	for _, p := range parts {
		h.Write(p)
	}
	var s Sum
	copy(s[:], h.Sum(nil))
	return s
}

// readHeader reads the header section and the empty line that ends it,
// at most MaxHeader bytes (a longer header is cut at a line end when one
// comes before the limit).
func readHeader(br *bufio.Reader) ([]byte, error) {
	var head []byte
	for len(head) < MaxHeader {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			head = append(head, line...)
			continue
		}
		head = append(head, line...)
		if err == io.EOF {
			return head, nil
		}
		if err != nil {
			return nil, err
		}
		if isEmptyLine(head, len(line)) {
			return head, nil
		}
	}
	return head, nil
}

// isEmptyLine reports whether the last n bytes of head, a line that ends
// with LF, are an empty line.
func isEmptyLine(head []byte, n int) bool {
	l := head[len(head)-n:]
	if len(head) > n {
		// A line read in pieces is long, not empty.
		prev := head[len(head)-n-1]
		if prev != '\n' {
			return false
		}
	}
	return bytes.Equal(l, []byte("\n")) || bytes.Equal(l, []byte("\r\n"))
}

// normLen returns len(b) after CRLF conversion.
func normLen(b []byte) int64 { return int64(len(b) + BareLineEnds(b)) }

// normWriter writes with CRLF line ends and NUL bytes as 0x80.
type normWriter struct {
	w   io.Writer
	crw *CRLFWriter
	buf []byte
}

func (n *normWriter) Write(p []byte) (int, error) {
	if n.crw == nil {
		n.crw = NewCRLFWriter(n.w)
	}
	q := p
	if bytes.IndexByte(p, 0) >= 0 {
		n.buf = append(n.buf[:0], p...)
		for i, c := range n.buf {
			if c == 0 {
				n.buf[i] = 0x80
			}
		}
		q = n.buf
	}
	if _, err := n.crw.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (n *normWriter) Close() error {
	if n.crw == nil {
		return nil
	}
	return n.crw.Close()
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// limitWriter keeps what is written while b holds at most max bytes, then
// drops it all (b.Len() tells: over max).
type limitWriter struct {
	b   *bytes.Buffer
	max int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.b.Len() <= l.max {
		if l.b.Len()+len(p) > l.max {
			l.b.Reset()
			l.b.Grow(l.max + 1)
			l.b.Write(make([]byte, l.max+1))
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

// textHeader holds a message's or part's fields, unfolded.
type textHeader struct {
	names, values []string
}

func (h *textHeader) add(name, value string) {
	h.names = append(h.names, name)
	h.values = append(h.values, unfold(value))
}

// get returns the first value of the field, or "".
func (h *textHeader) get(name string) string {
	for i, n := range h.names {
		if strings.EqualFold(n, name) {
			return h.values[i]
		}
	}
	return ""
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(input), nil
}

// semantic hashes what a reader sees of a message with header h and body
// r: its envelope (Date, From, Subject), and the envelope with the body.
// It reads r to its end.
func semantic(h *textHeader, r io.Reader) (env, all Sum) {
	s := sha256.New()
	date := h.get("Date")
	if t, err := mail.ParseDate(date); err == nil {
		fmt.Fprintf(s, "date %d\n", t.Unix())
	} else {
		fmt.Fprintf(s, "date %q\n", collapse(date))
	}
	from := h.get("From")
	if l, err := mail.ParseAddressList(from); err == nil {
		for _, a := range l {
			fmt.Fprintf(s, "from %s\n", strings.ToLower(a.Address))
		}
	} else {
		fmt.Fprintf(s, "from %q\n", collapse(from))
	}
	subject := h.get("Subject")
	if d, err := wordDecoder.DecodeHeader(subject); err == nil {
		subject = d
	}
	fmt.Fprintf(s, "subject %q\n", collapse(subject))
	copy(env[:], s.Sum(nil))
	part(s, h.get("Content-Type"), h.get("Content-Transfer-Encoding"), r, 0)
	copy(all[:], s.Sum(nil))
	return env, all
}

// collapse trims s and makes each run of white space one space.
func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// maxDepth bounds the nesting of multiparts that part follows.
const maxDepth = 20

// part adds to s the sum of each leaf part of a body of this content type
// and transfer encoding. It reads r to its end, or to where it breaks.
func part(s io.Writer, ctype, cte string, r io.Reader, depth int) {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || ctype == "" {
		mt, params = "text/plain", map[string]string{"charset": params["charset"]}
	}
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < maxDepth {
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				if err != io.EOF {
					fmt.Fprintf(s, "broken multipart\n")
					leaf(s, "application/octet-stream", nil, "", r)
				}
				return
			}
			part(s, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1)
		}
	}
	leaf(s, mt, params, cte, r)
}

// leaf adds to s the sum of one part's decoded content.
func leaf(s io.Writer, mt string, params map[string]string, cte string, r io.Reader) {
	var dec io.Reader = r
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		dec = base64.NewDecoder(base64.StdEncoding, &spaceDropper{r: r})
	case "quoted-printable":
		dec = quotedprintable.NewReader(r)
	}
	h := sha256.New()
	kind := "bytes"
	if strings.HasPrefix(mt, "text/") {
		kind = "text"
		if cs := params["charset"]; cs != "" {
			if enc, err := htmlindex.Get(cs); err == nil {
				dec = enc.NewDecoder().Reader(dec)
			}
		}
		tw := &textNorm{w: h}
		_, err := io.Copy(tw, dec)
		tw.Close()
		if err != nil {
			kind = "broken"
		}
	} else if _, err := io.Copy(h, dec); err != nil {
		kind = "broken"
	}
	io.Copy(io.Discard, r)
	fmt.Fprintf(s, "%s %x\n", kind, h.Sum(nil))
}

// spaceDropper drops the white space that base64 bodies carry besides line
// ends (base64.NewDecoder skips CR and LF only).
type spaceDropper struct{ r io.Reader }

func (d *spaceDropper) Read(p []byte) (int, error) {
	for {
		n, err := d.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c != ' ' && c != '\t' {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// textNorm writes text with LF line ends, without trailing white space on
// each line and without trailing empty lines. A line longer than 64 KiB is
// written in pieces, its white space kept.
type textNorm struct {
	w      io.Writer
	line   []byte
	empty  int  // empty lines not yet written
	skipLF bool // the last Write ended with a CR: an LF next is its line end
}

const maxTextLine = 64 << 10

func (t *textNorm) Write(p []byte) (int, error) {
	n := len(p)
	if t.skipLF && len(p) > 0 && p[0] == '\n' {
		p = p[1:]
	}
	t.skipLF = false
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			t.line = append(t.line, p...)
			if len(t.line) > maxTextLine {
				t.flushEmpty()
				t.w.Write(t.line)
				t.line = t.line[:0]
			}
			break
		}
		t.line = append(t.line, p[:i]...)
		t.endLine()
		if p[i] == '\r' {
			if i+1 == len(p) {
				t.skipLF = true
			} else if p[i+1] == '\n' {
				i++
			}
		}
		p = p[i+1:]
	}
	return n, nil
}

func (t *textNorm) flushEmpty() {
	for ; t.empty > 0; t.empty-- {
		t.w.Write([]byte{'\n'})
	}
}

func (t *textNorm) endLine() {
	l := bytes.TrimRightFunc(t.line, unicode.IsSpace)
	if len(l) == 0 {
		t.empty++
	} else {
		t.flushEmpty()
		t.w.Write(l)
		t.w.Write([]byte{'\n'})
	}
	t.line = t.line[:0]
}

func (t *textNorm) Close() error {
	if len(t.line) > 0 {
		t.endLine()
	}
	return nil
}

// ErrNotRepaired is returned by Recover for a message that is not a
// repaired copy.
var ErrNotRepaired = errors.New("not a repaired copy")

// Fingerprinter computes the Print of a message written to it in pieces,
// as Fingerprint would read it. Write never fails; Print ends the
// message.
type Fingerprinter struct {
	pw   *io.PipeWriter
	done chan struct{}
	p    *Print
	err  error
}

// NewFingerprinter returns a Fingerprinter; its Print must be called.
func NewFingerprinter() *Fingerprinter {
	pr, pw := io.Pipe()
	f := &Fingerprinter{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.p, f.err = Fingerprint(pr)
		pr.CloseWithError(f.err)
	}()
	return f
}

// Write adds p to the message.
func (f *Fingerprinter) Write(p []byte) (int, error) {
	f.pw.Write(p)
	return len(p), nil
}

// Print ends the message and returns its Print.
func (f *Fingerprinter) Print() (*Print, error) {
	f.pw.Close()
	<-f.done
	return f.p, f.err
}
