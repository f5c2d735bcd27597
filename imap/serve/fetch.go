package serve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// binaryKey names a decoded section of a message, for the cache of
// BINARY sizes.
type binaryKey struct {
	id   [32]byte
	path string
}

// fetchPlan is what FETCH sends for one message, all learnt before the
// response starts: a message that cannot be read is left out of the
// response rather than cut in the middle of it. A large message whose
// size the store gave is read only as it is sent: if it turns out
// damaged then, the response is cut, and the server remembers the
// message (Server.damaged) to leave it out from then on.
type fetchPlan struct {
	src      *source
	ws       *wireSize
	hdr      *header
	root     *part
	bodies   []section
	binaries []section
	binSizes []int64
	seen     bool // the fetch sets \Seen
}

func (ss *session) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) error {
	sel := ss.sel
	failed := 0
	var firstErr error
	idx := ss.indexes(numSet)
	whole := fetchesWhole(options)
	for k, i := range idx {
		plan, err := ss.plan(sel, i, options)
		if whole {
			// Read the next message (in this command, else in the
			// mailbox: clients ask for one message per command) on
			// another core while this one is sent.
			next := i + 1
			if k+1 < len(idx) {
				next = idx[k+1]
			}
			ss.readAhead(sel, next)
		}
		if err != nil {
			plan.src.release()
			var ie *goimap.Error
			if errors.As(err, &ie) {
				return err
			}
			ss.damage(sel, i, err)
			failed++
			firstErr = err
			continue
		}
		err = ss.send(w, sel, i, options, plan)
		plan.src.release()
		if err != nil {
			// The response is cut: the client cannot make sense of the
			// connection any more. A damaged message is remembered, so
			// that the client, connecting again, is refused it with NO
			// and gets the others.
			ss.damage(sel, i, err)
			if c := ss.conn.NetConn(); c != nil {
				c.Close()
			}
			return err
		}
	}
	if failed > 0 {
		return &goimap.Error{
			Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeServerBug,
			Text: fmt.Sprintf("%d messages could not be read from the archive (first: %v)", failed, oneLine(firstErr)),
		}
	}
	return nil
}

// damage logs that message i of sel could not be read and, if it never
// can be (ErrDamaged, or bytes that do not match its stored sizes),
// remembers it as damaged.
func (ss *session) damage(sel *selected, i int, err error) {
	m := sel.msgs[i]
	ss.srv.log.Error("fetch", "user", ss.name, "mailbox", sel.name, "uid", m.UID, "err", err)
	if errors.Is(err, ErrDamaged) || errors.Is(err, errShort) || errors.Is(err, errLonger) || errors.Is(err, errWrongSize) {
		ss.srv.damaged.put(m.ID, err)
	}
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// fetchesWhole reports whether a FETCH asks for whole messages, as a
// client that downloads them does.
func fetchesWhole(options *goimap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if len(bs.Part) == 0 && bs.Specifier == goimap.PartSpecifierNone {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if len(bs.Part) == 0 {
			return true
		}
	}
	return false
}

// ahead is a message being read ahead by a goroutine of its own.
type ahead struct {
	sel  *selected
	i    int
	src  *source
	done chan struct{}
}

// readAhead starts reading message i of sel ahead, unless another read is
// under way: a small message is loaded (and converted), a large one
// measured unless the store knows its size.
func (ss *session) readAhead(sel *selected, i int) {
	if ss.ahead != nil || i >= len(sel.msgs) {
		return
	}
	if _, bad := ss.srv.damaged.get(sel.msgs[i].ID); bad {
		return
	}
	a := &ahead{sel: sel, i: i, src: newSource(sel.mbox, i), done: make(chan struct{})}
	ss.ahead = a
	if ss.work == nil {
		// One goroutine for the session's reads ahead: one for each
		// message would grow a new stack to the reader's depth 20,000
		// times in a client's download of a folder.
		ss.work = make(chan *ahead, 1)
		go ss.readAheads(ss.work)
	}
	ss.work <- a
}

// readAheads reads the messages sent on work, until work is closed.
func (ss *session) readAheads(work <-chan *ahead) {
	for a := range work {
		// Errors are left for the command that asks for the message.
		if a.src.load(ss.ctx) == nil {
			ss.srv.size(ss.ctx, a.src)
		}
		close(a.done)
	}
}

// takeAhead returns the source read ahead for message i of sel, or nil;
// a read-ahead of another message is dropped.
func (ss *session) takeAhead(sel *selected, i int) *source {
	a := ss.ahead
	if a == nil {
		return nil
	}
	<-a.done
	ss.ahead = nil
	if a.sel == sel && a.i == i {
		return a.src
	}
	a.src.release()
	return nil
}

// plan learns what FETCH needs of message i.
func (ss *session) plan(sel *selected, i int, options *goimap.FetchOptions) (*fetchPlan, error) {
	ctx, srv := ss.ctx, ss.srv
	p := &fetchPlan{src: ss.takeAhead(sel, i)}
	if p.src == nil {
		p.src = newSource(sel.mbox, i)
	}
	var err error
	needSize, needHeader, needRoot := options.RFC822Size, options.Envelope, options.BodyStructure != nil
	sendsBody := len(options.BinarySection)+len(options.BinarySectionSize) > 0
	for _, bs := range options.BodySection {
		switch {
		case len(bs.Part) > 0 || bs.Specifier == goimap.PartSpecifierMIME:
			needRoot = true
		case bs.Specifier == goimap.PartSpecifierNone:
			needSize, sendsBody = true, true
		case bs.Specifier == goimap.PartSpecifierText:
			needSize, needHeader, sendsBody = true, true, true
		default: // HEADER, HEADER.FIELDS
			needHeader = true
		}
		p.seen = p.seen || !bs.Peek
	}
	for _, bs := range options.BinarySection {
		needSize = true
		if len(bs.Part) > 0 {
			needRoot = true
		}
		p.seen = p.seen || !bs.Peek
	}
	if len(options.BinarySectionSize) > 0 {
		needRoot = true
	}
	// A small message that must be read whole is read once, for all. Its
	// size alone does not need it read when the store knows it
	// (RFC822.SIZE of a whole folder, as clients ask when they open it).
	id := p.src.msg.ID
	_, sized := srv.sizes.get(id)
	_, parsed := srv.structs.get(id)
	reads := needRoot && !parsed || needSize && !sized && p.src.msg.Wire == 0 || sendsBody
	// A message found damaged is not read again (its flags, date and
	// what the server learnt of it are still sent).
	if err, bad := srv.damaged.get(id); bad {
		if _, headed := srv.headers.get(id); reads || needHeader && !headed {
			return p, err
		}
	}
	if reads {
		if err := p.src.load(ctx); err != nil {
			return p, err
		}
	}
	if needRoot {
		if p.root, p.ws, err = srv.structure(ctx, p.src); err != nil {
			return p, err
		}
	} else if needSize {
		if p.ws, err = srv.size(ctx, p.src); err != nil {
			return p, err
		}
	}
	if needHeader {
		if p.hdr, err = srv.header(ctx, p.src); err != nil {
			return p, err
		}
	}
	for _, bs := range options.BodySection {
		sec, err := ss.bodySection(p, bs)
		if err != nil {
			return p, err
		}
		sec.partial(bs.Partial)
		sec.text = true
		p.bodies = append(p.bodies, sec)
	}
	for _, bs := range options.BinarySection {
		sec, _, err := ss.binarySection(p, bs.Part)
		if err != nil {
			return p, err
		}
		sec.partial(bs.Partial)
		p.binaries = append(p.binaries, sec)
	}
	for _, bs := range options.BinarySectionSize {
		_, size, err := ss.binarySection(p, bs.Part)
		if err != nil {
			return p, err
		}
		p.binSizes = append(p.binSizes, size)
	}
	p.seen = p.seen && !sel.readOnly && !hasFlag(ss.flagsOf(sel, i), `\Seen`)
	return p, nil
}

// bodySection returns what BODY[section] of message i is, before <partial>.
func (ss *session) bodySection(p *fetchPlan, bs *goimap.FetchItemBodySection) (section, error) {
	if len(bs.Part) == 0 {
		switch bs.Specifier {
		case goimap.PartSpecifierNone:
			return section{off: 0, n: p.ws.size}, nil
		case goimap.PartSpecifierText:
			return section{off: p.hdr.bodyStart, n: p.ws.size - min(p.hdr.bodyStart, p.ws.size)}, nil
		case goimap.PartSpecifierHeader:
			if len(bs.HeaderFields) > 0 || len(bs.HeaderFieldsNot) > 0 {
				return section{inMem: true, mem: filterHeader(p.hdr.raw, append(bs.HeaderFields, bs.HeaderFieldsNot...), len(bs.HeaderFieldsNot) > 0)}, nil
			}
			return section{inMem: true, mem: p.hdr.raw}, nil
		}
		return section{inMem: true}, nil
	}
	e := resolve(p.root, bs.Part)
	if e == nil {
		return section{inMem: true}, nil
	}
	switch bs.Specifier {
	case goimap.PartSpecifierNone:
		return section{off: e.bodyStart, n: e.end - e.bodyStart}, nil
	case goimap.PartSpecifierMIME:
		return section{off: e.start, n: e.bodyStart - e.start}, nil
	}
	m := e.message
	if m == nil {
		return section{inMem: true}, nil
	}
	switch {
	case bs.Specifier == goimap.PartSpecifierText:
		return section{off: m.bodyStart, n: m.end - m.bodyStart}, nil
	case len(bs.HeaderFields) > 0 || len(bs.HeaderFieldsNot) > 0:
		h, err := ss.srv.readRange(ss.ctx, p.src, p.ws, m.start, m.bodyStart-m.start)
		if err != nil {
			return section{}, err
		}
		return section{inMem: true, mem: filterHeader(h, append(bs.HeaderFields, bs.HeaderFieldsNot...), len(bs.HeaderFieldsNot) > 0)}, nil
	}
	return section{off: m.start, n: m.bodyStart - m.start}, nil
}

// binarySection returns BINARY[part] of message i, before <partial>, and
// its size.
func (ss *session) binarySection(p *fetchPlan, path []int) (section, int64, error) {
	if len(path) == 0 {
		return section{off: 0, n: p.ws.size}, p.ws.size, nil
	}
	e := resolve(p.root, path)
	if e == nil {
		return section{inMem: true}, 0, nil
	}
	body := section{off: e.bodyStart, n: e.end - e.bodyStart}
	switch e.encoding {
	case "", "7bit", "8bit", "binary":
		return body, body.n, nil
	}
	if _, ok := decoder(nil, e.encoding); !ok {
		return section{}, 0, errUnknownCTE
	}
	key := binaryKey{p.src.msg.ID, fmt.Sprint(path)}
	n, ok := ss.srv.binary.get(key)
	if !ok {
		rc, err := ss.srv.wire(ss.ctx, p.src, p.ws, body.off, body.n)
		if err != nil {
			return section{}, 0, err
		}
		d, _ := decoder(rc, e.encoding)
		buf := getBlock()
		n, err = io.CopyBuffer(io.Discard, d, *buf)
		putBlock(buf)
		rc.Close()
		if err != nil {
			return section{}, 0, err
		}
		ss.srv.binary.put(key, n)
	}
	return section{off: 0, n: n, cte: e.encoding, partOff: body.off, partN: body.n}, n, nil
}

// send writes the FETCH response of message i.
func (ss *session) send(w *imapserver.FetchWriter, sel *selected, i int, options *goimap.FetchOptions, p *fetchPlan) error {
	m := sel.msgs[i]
	if p.seen {
		ss.setFlags(sel, i, append(ss.flagsOf(sel, i), `\Seen`))
	}
	rw := w.CreateMessage(uint32(i + 1))
	if options.UID {
		rw.WriteUID(goimap.UID(m.UID))
	}
	if options.Flags || p.seen {
		rw.WriteFlags(imapFlags(ss.flagsOf(sel, i)))
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.Date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(p.ws.size)
	}
	if options.Envelope {
		rw.WriteEnvelope(envelope(p.hdr.fields))
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(p.root.bodyStructure(ss.conn.EnabledCaps().Has(goimap.CapIMAP4rev2)))
	}
	buf := getBlock()
	defer putBlock(buf)
	for k, bs := range options.BodySection {
		sec := p.bodies[k]
		if err := ss.copySection(rw.WriteBodySection(bs, sec.len()), p, sec, *buf); err != nil {
			return err
		}
	}
	for k, bs := range options.BinarySection {
		sec := p.binaries[k]
		if err := ss.copySection(rw.WriteBinarySection(bs, sec.n), p, sec, *buf); err != nil {
			return err
		}
	}
	for k, bs := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bs, uint32(p.binSizes[k]))
	}
	return rw.Close()
}

// copySection writes a section into its literal and closes it.
func (ss *session) copySection(wc io.WriteCloser, p *fetchPlan, sec section, buf []byte) error {
	var err error
	var w io.Writer = wc
	if sec.text {
		w = &nulFilter{w: wc}
	}
	switch {
	case sec.inMem:
		_, err = w.Write(sec.mem)
	case sec.n == 0:
	case sec.cte == "" && p.src.loaded():
		// A loaded message: one write, so that the client reads it in
		// few pieces.
		wb := p.src.wireBytes()
		_, err = w.Write(wb[min(sec.off, int64(len(wb))):min(sec.off+sec.n, int64(len(wb)))])
	case sec.cte == "" && sec.off == 0 && sec.n == p.ws.size:
		// A whole message (as clients download them).
		var raw io.ReadSeekCloser
		if raw, err = p.src.open(ss.ctx); err == nil {
			err = writeWhole(w, raw, sec.n)
			raw.Close()
		}
	case sec.cte == "":
		var rc io.ReadCloser
		if rc, err = ss.srv.wire(ss.ctx, p.src, p.ws, sec.off, sec.n); err == nil {
			err = copyExactly(w, rc, sec.n, buf)
			if err == nil && p.ws.sizeOnly && sec.off+sec.n == p.ws.size {
				err = checkEnd(rc)
			}
			rc.Close()
		}
	default:
		// Decode the part's body from its start; send the window.
		var rc io.ReadCloser
		if rc, err = ss.srv.wire(ss.ctx, p.src, p.ws, sec.partOff, sec.partN); err == nil {
			d, _ := decoder(rc, sec.cte)
			if _, err = io.CopyN(io.Discard, d, sec.off); err == nil {
				err = copyExactly(w, d, sec.n, buf)
			}
			rc.Close()
		}
	}
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// nulFilter passes bytes on with each NUL as 0x80, as Dovecot sends them:
// the literal of a BODY[] section cannot carry NUL (CHAR8 of RFC 3501
// section 9 and RFC 9051 section 9); BINARY[] can (literal8, RFC 3516).
// The section's size is unchanged.
type nulFilter struct {
	w   io.Writer
	buf []byte
}

func (f *nulFilter) Write(p []byte) (int, error) {
	if bytes.IndexByte(p, 0) < 0 {
		return f.w.Write(p)
	}
	f.buf = append(f.buf[:0], p...)
	for i, c := range f.buf {
		if c == 0 {
			f.buf[i] = 0x80
		}
	}
	return f.w.Write(f.buf)
}

// checkEnd returns errLonger if rc, which gave a message up to its stored
// wire size, has more: the literal sent was too short.
func checkEnd(rc io.Reader) error {
	wc, ok := rc.(wireCloser)
	if !ok {
		return nil
	}
	more, err := wc.more()
	if err == nil && more {
		err = errLonger
	}
	return err
}

// copyExactly copies n bytes from r to w.
func copyExactly(w io.Writer, r io.Reader, n int64, buf []byte) error {
	k, err := io.CopyBuffer(w, io.LimitReader(r, n), buf)
	if err == nil && k < n {
		err = fmt.Errorf("message ended %d bytes early", n-k)
	}
	return err
}
