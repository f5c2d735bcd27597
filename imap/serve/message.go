package serve

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"sync"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"codeberg.org/planb/planb/archive/mailform"
)

// What the server learns by reading a message is kept in its caches, keyed
// by the message's ID (its content), for every session and mailbox: the
// wire size (one pass over the stored bytes), the header (the first bytes
// only) and the MIME structure (one pass, which also gives the wire size).

// header is a message's header in its wire form.
type header struct {
	raw       []byte // the header with the empty line that ends it (at most mailform.MaxHeader bytes)
	bodyStart int64  // wire offset of the body
	fields    []field
}

// maxCachedHeader is the largest header the server keeps in its cache.
const maxCachedHeader = 64 << 10

// smallMessage is the largest message a command reads from the store once
// into memory (a buffer of the connection) rather than streaming it once
// to learn its size and again to send it. Most mail is smaller.
const smallMessage = 256 << 10

// source gives one message of a mailbox: its stored bytes from the store,
// or a small message's wire form, read and converted once.
type source struct {
	mb   Mailbox
	i    int
	msg  Message
	wire *[]byte // a loaded message's wire form, from smallPool; nil: read the store
}

// smallPool holds the buffers of small messages' wire forms (2 ×
// smallMessage bytes: a message's wire form may be twice its size).
var smallPool = sync.Pool{New: func() any { b := make([]byte, 0, 2*smallMessage); return &b }}

func newSource(mb Mailbox, i int) *source {
	return &source{mb: mb, i: i, msg: mb.Messages()[i]}
}

// loaded reports whether the message is in memory.
func (src *source) loaded() bool { return src.wire != nil }

// load reads a small message into memory, once, converting its bytes to
// the wire form as they come from the store (from the repository's frames
// themselves when the store's reader writes them out).
func (src *source) load(ctx context.Context) error {
	if src.wire != nil || src.msg.Size > smallMessage {
		return nil
	}
	rc, err := src.mb.Open(ctx, src.i)
	if err != nil {
		return err
	}
	defer rc.Close()
	buf := smallPool.Get().(*[]byte)
	app := mailform.CRLFAppender{B: (*buf)[:0]}
	n, err := io.Copy(&app, rc) // by the reader's WriteTo where it has one
	app.Close()
	*buf = app.B
	src.wire = buf
	if err == nil && n != src.msg.Size {
		err = fmt.Errorf("%w: message is %d bytes, not %d", errWrongSize, n, src.msg.Size)
	}
	if err == nil {
		err = checkStored(src, int64(len(app.B)))
	}
	if err != nil {
		src.release()
	}
	return err
}

// wireBytes returns a loaded message's wire form.
func (src *source) wireBytes() []byte { return *src.wire }

// release gives a loaded message's buffer back.
func (src *source) release() {
	if src.wire != nil {
		*src.wire = (*src.wire)[:0]
		smallPool.Put(src.wire)
		src.wire = nil
	}
}

// open returns a reader of the message's stored bytes.
func (src *source) open(ctx context.Context) (io.ReadSeekCloser, error) {
	return src.mb.Open(ctx, src.i)
}

// size returns a message's wireSize: from the cache, from its wire form
// if loaded, from the store, else measured. Only a measured one has marks.
func (s *Server) size(ctx context.Context, src *source) (*wireSize, error) {
	if ws, ok := s.sizes.get(src.msg.ID); ok {
		return ws, nil
	}
	if src.loaded() {
		ws := &wireSize{size: int64(len(src.wireBytes())), sizeOnly: true}
		s.sizes.put(src.msg.ID, ws)
		return ws, nil
	}
	if src.msg.Wire > 0 {
		return &wireSize{size: src.msg.Wire, sizeOnly: true}, nil
	}
	return s.measure(ctx, src)
}

// measure reads a message once to learn its wireSize, marks included,
// and caches it.
func (s *Server) measure(ctx context.Context, src *source) (*wireSize, error) {
	raw, err := src.open(ctx)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	ws, err := measure(raw, src.msg.Size)
	if err != nil {
		return nil, err
	}
	if err := checkStored(src, ws.size); err != nil {
		return nil, err
	}
	s.sizes.put(src.msg.ID, ws)
	return ws, nil
}

// checkStored refuses a message whose wire size, size, is not the one its
// store gave: literals already sent with it would be wrong.
func checkStored(src *source, size int64) error {
	if src.msg.Wire > 0 && size != src.msg.Wire {
		return fmt.Errorf("%w: message is %d bytes on the wire, not %d as stored", errWrongSize, size, src.msg.Wire)
	}
	return nil
}

func (s *Server) header(ctx context.Context, src *source) (*header, error) {
	if h, ok := s.headers.get(src.msg.ID); ok {
		return h, nil
	}
	var r io.Reader
	if src.loaded() {
		r = bytes.NewReader(src.wireBytes())
	} else {
		raw, err := src.open(ctx)
		if err != nil {
			return nil, err
		}
		defer raw.Close()
		wr := wholeWire(raw)
		defer wr.release()
		r = wr
	}
	br := bufio.NewReaderSize(r, 4096)
	h := &header{}
	for len(h.raw) < mailform.MaxHeader {
		line, err := br.ReadSlice('\n')
		if len(line) > mailform.MaxHeader-len(h.raw) {
			line = line[:mailform.MaxHeader-len(h.raw)]
		}
		h.raw = append(h.raw, line...)
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
		if err == nil && string(line) == "\r\n" {
			break
		}
	}
	h.bodyStart = int64(len(h.raw))
	h.fields = headerFields(h.raw)
	if len(h.raw) <= maxCachedHeader {
		s.headers.put(src.msg.ID, h)
	}
	return h, nil
}

// structure returns a message's MIME structure, and its wire size.
func (s *Server) structure(ctx context.Context, src *source) (*part, *wireSize, error) {
	root, ok := s.structs.get(src.msg.ID)
	ws, ok2 := s.sizes.get(src.msg.ID)
	if ok && ok2 {
		return root, ws, nil
	}
	p := newMIMEParser()
	if src.loaded() {
		p.Write(src.wireBytes())
		root = p.finish()
		if !ok2 {
			ws = &wireSize{size: int64(len(src.wireBytes())), sizeOnly: true}
		}
	} else {
		var meas measurer
		raw, err := src.open(ctx)
		if err != nil {
			return nil, nil, err
		}
		defer raw.Close()
		wr := wholeWire(io.TeeReader(raw, &meas))
		defer wr.release()
		buf := getBlock()
		defer putBlock(buf)
		if _, err := io.CopyBuffer(p, wr, *buf); err != nil {
			return nil, nil, err
		}
		root = p.finish()
		if ws, err = meas.result(src.msg.Size); err != nil {
			return nil, nil, err
		}
		if err := checkStored(src, ws.size); err != nil {
			return nil, nil, err
		}
	}
	s.structs.put(src.msg.ID, root)
	s.sizes.put(src.msg.ID, ws)
	return root, ws, nil
}

// wire returns a reader of the wire bytes [off, off+n) of a message.
func (s *Server) wire(ctx context.Context, src *source, ws *wireSize, off, n int64) (io.ReadCloser, error) {
	if src.loaded() {
		w := src.wireBytes()
		off = min(max(off, 0), int64(len(w)))
		return io.NopCloser(bytes.NewReader(w[off : off+min(max(n, 0), int64(len(w))-off)])), nil
	}
	if ws.sizeOnly && off >= markEvery {
		// A window far into the message: learn where its lines start,
		// once, rather than convert all that comes before it each time.
		var err error
		if ws, err = s.measure(ctx, src); err != nil {
			return nil, err
		}
	}
	raw, err := src.open(ctx)
	if err != nil {
		return nil, err
	}
	wr, err := newWireReader(raw, ws, off, n)
	if err != nil {
		raw.Close()
		return nil, err
	}
	return wireCloser{wr, raw}, nil
}

type wireCloser struct {
	*wireReader
	raw io.Closer
}

func (w wireCloser) Close() error {
	w.release()
	return w.raw.Close()
}

// envelope returns the ENVELOPE of a header's fields: its addresses
// read by addressList, the rest by imapserver.
func envelope(fs []field) *goimap.Envelope {
	var h textproto.Header
	for i := len(fs) - 1; i >= 0; i-- {
		h.Add(fs[i].name, fs[i].value)
	}
	env := imapserver.ExtractEnvelope(h)
	// Of several Date fields (RFC 5322 allows one), the last that parses,
	// as Dovecot, which takes the last.
	for i := len(fs) - 1; i >= 0; i-- {
		if strings.EqualFold(fs[i].name, "Date") {
			if d, err := mail.ParseDate(strings.TrimSpace(fs[i].value)); err == nil {
				env.Date = d
				break
			}
		}
	}
	env.From = addressList(get(fs, "From"))
	env.Sender = addressList(get(fs, "Sender"))
	env.ReplyTo = addressList(get(fs, "Reply-To"))
	env.To = addressList(get(fs, "To"))
	env.Cc = addressList(get(fs, "Cc"))
	env.Bcc = addressList(get(fs, "Bcc"))
	return env
}

// resolve returns the entity a section's part numbers name in the message
// whose structure is root, or nil.
func resolve(root *part, path []int) *part {
	cur := root
	for idx, k := range path {
		switch {
		case cur.typ == "multipart" && len(cur.children) > 0:
			if k < 1 || k > len(cur.children) {
				return nil
			}
			cur = cur.children[k-1]
		case cur.message != nil && idx > 0:
			m := cur.message
			if m.typ == "multipart" && len(m.children) > 0 {
				if k < 1 || k > len(m.children) {
					return nil
				}
				cur = m.children[k-1]
			} else if k == 1 {
				cur = m
			} else {
				return nil
			}
		case k != 1:
			return nil
		}
	}
	return cur
}

// section is what a BODY[...] item sends: bytes held in memory, or a range
// of the message's wire form.
type section struct {
	mem   []byte
	inMem bool
	// off and n are a range of the wire form or, for a section to decode,
	// the window of the decoded bytes to send.
	off, n int64
	// cte is the transfer encoding of a section to decode (BINARY of a
	// base64 or quoted-printable part), whose body is the wire range
	// [partOff, partOff+partN).
	cte            string
	partOff, partN int64
	// text: a BODY[] section, sent with each NUL as 0x80 (nulFilter).
	text bool
}

func (sec section) len() int64 {
	if sec.inMem {
		return int64(len(sec.mem))
	}
	return sec.n
}

// partial cuts a section to <offset.size>.
func (sec *section) partial(p *goimap.SectionPartial) {
	if p == nil {
		return
	}
	if sec.inMem {
		b := sec.mem[min(int64(len(sec.mem)), p.Offset):]
		sec.mem = b[:min(int64(len(b)), p.Size)]
		return
	}
	start := min(p.Offset, sec.n)
	sec.off += start
	sec.n = min(sec.n-start, p.Size)
}

// filterHeader returns the fields of a header (with the empty line that
// ends it, if it has one) that are (or with not, are not) among names,
// and the empty line if the header has one: RFC 3501 section 6.4.5
// includes it "except in the case of a message which has no body and no
// blank line".
func filterHeader(h []byte, names []string, not bool) []byte {
	var out bytes.Buffer
	keep, blank := false, false
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line = h[:i+1]
		}
		h = h[len(line):]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			blank = true
			break
		}
		if line[0] != ' ' && line[0] != '\t' {
			name, _, _ := bytes.Cut(line, []byte{':'})
			name = bytes.TrimRight(name, " \t")
			in := false
			for _, n := range names {
				if strings.EqualFold(n, string(name)) {
					in = true
					break
				}
			}
			keep = in != not
		}
		if keep {
			out.Write(line) // a last line without its line end stays so
		}
	}
	if blank {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// readRange reads the wire bytes [off, off+n) of a message into memory;
// n is at most mailform.MaxHeader (it is a header).
func (s *Server) readRange(ctx context.Context, src *source, ws *wireSize, off, n int64) ([]byte, error) {
	rc, err := s.wire(ctx, src, ws, off, min(n, mailform.MaxHeader))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// errUnknownCTE refuses BINARY of a part whose transfer encoding is
// unknown.
var errUnknownCTE = &goimap.Error{
	Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeUnknownCTE,
	Text: "Unknown Content-Transfer-Encoding",
}
