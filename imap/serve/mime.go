package serve

import (
	"bytes"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
)

// part is one entity of a message's MIME structure: the message itself, a
// body part, or the message a message/rfc822 part encapsulates. Offsets
// count bytes of the message's wire form.
type part struct {
	start     int64 // the header starts here
	bodyStart int64 // the header (with its empty line) ends, the body starts
	end       int64 // the body ends (before the line end of a boundary)
	lines     int64 // lines of the body

	typ, subtype string // lower case
	params       map[string]string
	id, desc     string
	encoding     string // Content-Transfer-Encoding, lower case; "" for 7bit
	disposition  string
	dispParams   map[string]string
	hasDisp      bool // a Content-Disposition, maybe of type ""
	language     []string
	location     string

	children []*part          // of a multipart
	message  *part            // of a message/rfc822 or message/global part
	envelope *goimap.Envelope // of a message (the root or an encapsulated one)

	// While parsing.
	isMessage bool   // the root or an encapsulated message
	inDigest  bool   // a child of a multipart/digest (default type message/rfc822)
	inHeader  bool   // the header's empty line is still to come
	header    []byte // the header so far, at most maxPartHeader bytes
	boundary  string // a multipart's boundary
	open      bool   // the boundary is open: its closing delimiter is still to come
	lfAtBody  int64  // LFs in the message before bodyStart
}

const (
	// lineKeep is how much of a body line the parser keeps: enough for
	// any boundary line. A header line is kept whole, up to what is left
	// of maxPartHeader, so that a parameter after 20 KB of others (a
	// boundary last on a long Content-Type line) is still read.
	lineKeep = 16 << 10
	// maxPartHeader is how much of a header the parser reads fields from.
	maxPartHeader = 256 << 10
	// maxDepth bounds the nesting of entities the parser follows, as
	// Dovecot's (100 MIME parts) does.
	maxDepth = 100
	// maxBoundary is the length a boundary is cut to.
	maxBoundary = 80
)

// mimeParser finds the MIME structure of a message's wire form written to
// it in pieces, in one pass and bounded memory.
type mimeParser struct {
	root  *part
	stack []*part // open entities, root first

	off    int64 // wire offset of the next byte
	nlf    int64 // LFs before off
	line   []byte
	lineN  int64 // bytes of the current line so far
	lineAt int64 // where the current line starts
	lineLF int64 // LFs before the current line
	last2  [2]byte

	prevTerm int // line end length of the previous line
}

func newMIMEParser() *mimeParser {
	root := &part{isMessage: true, inHeader: true}
	return &mimeParser{root: root, stack: []*part{root}, line: make([]byte, 0, 256)}
}

func (m *mimeParser) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		m.add(chunk)
		p = p[len(chunk):]
		if i >= 0 {
			m.endLine()
		}
	}
	return n, nil
}

func (m *mimeParser) add(b []byte) {
	keep := lineKeep
	if top := m.stack[len(m.stack)-1]; top.inHeader {
		keep = max(keep, maxPartHeader-len(top.header))
	}
	if room := keep - len(m.line); room > 0 {
		m.line = append(m.line, b[:min(room, len(b))]...)
	}
	m.lineN += int64(len(b))
	for _, c := range b[max(0, len(b)-2):] {
		m.last2[0], m.last2[1] = m.last2[1], c
	}
	m.off += int64(len(b))
	m.nlf += int64(bytes.Count(b, []byte{'\n'}))
}

// endLine handles the line just completed (or cut by the end).
func (m *mimeParser) endLine() {
	term := 0
	switch {
	case m.lineN >= 2 && m.last2 == [2]byte{'\r', '\n'}:
		term = 2
	case m.lineN >= 1 && m.last2[1] == '\n':
		term = 1
	}
	content := m.lineN - int64(term)
	text := m.line[:min(int64(len(m.line)), content)]
	m.onLine(text, content)
	m.prevTerm = term
	m.line, m.lineN, m.lineAt, m.lineLF = m.line[:0], 0, m.off, m.nlf
	m.last2 = [2]byte{}
}

func (m *mimeParser) onLine(text []byte, content int64) {
	if bytes.HasPrefix(text, []byte("--")) && content == int64(len(text)) {
		// The open boundary that starts the line; when several do (one
		// is a prefix of another), the longest, as Dovecot has it, and
		// of equal ones the innermost (RFC 2046 section 5.1.2).
		j, closing := -1, false
		for k := len(m.stack) - 1; k >= 0; k-- {
			b := m.stack[k].boundary
			if !m.stack[k].open || j >= 0 && len(b) <= len(m.stack[j].boundary) {
				continue
			}
			if c, ok := isDelimiter(text, b); ok {
				j, closing = k, c
			}
		}
		if j >= 0 {
			owner := m.stack[j]
			// The line end before a delimiter belongs to it.
			end := m.lineAt - int64(m.prevTerm)
			lf := m.lineLF
			if m.prevTerm > 0 {
				lf--
			}
			for k := len(m.stack) - 1; k > j; k-- {
				m.close(m.stack[k], end, lf)
			}
			m.stack = m.stack[:j+1]
			if closing {
				owner.open = false
				return
			}
			child := &part{start: m.off, inHeader: true, inDigest: owner.subtype == "digest"}
			owner.children = append(owner.children, child)
			if len(m.stack) < maxDepth {
				m.stack = append(m.stack, child)
			}
			return
		}
	}
	top := m.stack[len(m.stack)-1]
	if !top.inHeader {
		return
	}
	if content == 0 {
		m.endHeader(top, m.off, m.nlf)
		return
	}
	if room := maxPartHeader - len(top.header); room > 0 {
		top.header = append(top.header, text[:min(room, len(text))]...)
		top.header = append(top.header, '\n')
	}
}

// isDelimiter reports whether line is a boundary delimiter line of
// boundary, and whether it is the closing one. As RFC 2046 section 5.1.1
// tells implementors, the boundary need only start the line after its
// "--": what follows it does not matter (as for Dovecot).
func isDelimiter(line []byte, boundary string) (closing, ok bool) {
	rest, found := bytes.CutPrefix(line[2:], []byte(boundary))
	if !found {
		return false, false
	}
	return bytes.HasPrefix(rest, []byte("--")), true
}

// endHeader ends p's header: its body starts at bodyStart, after lf LFs.
func (m *mimeParser) endHeader(p *part, bodyStart, lf int64) {
	p.inHeader = false
	p.bodyStart, p.lfAtBody = bodyStart, lf
	p.parseHeader()
	nested := p.typ == "multipart" || p.typ == "message" && (p.subtype == "rfc822" || p.subtype == "global")
	if nested && len(m.stack) >= maxDepth {
		// Deeper than the parser follows: the part is text, its
		// nested parts its body, as Dovecot shows what lies past its
		// own limit.
		p.typ, p.subtype, p.params = "text", "plain", map[string]string{"charset": "us-ascii"}
		return
	}
	switch {
	case p.typ == "multipart":
		// RFC 2046 section 5.1.1 has boundaries of at most 70
		// characters; a longer one is cut to 80, as Dovecot cuts it,
		// so that nested ones that differ only past that are one.
		// An empty boundary (RFC 2046 has none) is one all the same,
		// as for Dovecot: "--" starts a part.
		var b string
		b, p.open = p.params["boundary"]
		p.boundary = b[:min(len(b), maxBoundary)]
	case p.typ == "message" && (p.subtype == "rfc822" || p.subtype == "global"):
		p.message = &part{start: bodyStart, isMessage: true, inHeader: true}
		if len(m.stack) < maxDepth {
			m.stack = append(m.stack, p.message)
		}
	}
}

// close ends p's body at end; lf is the number of LFs before end.
func (m *mimeParser) close(p *part, end, lf int64) {
	if end < p.start {
		// p started after the delimiter line that opened it, whose
		// line end the delimiter that ends p takes: p is empty, at
		// end, inside the part that holds it. So is a message whose
		// part's header that line end seemed to end.
		p.start = end
	}
	if p.inHeader {
		m.endHeader(p, max(end, p.start), lf)
	}
	if p.bodyStart > end && end >= p.start {
		// The empty line that ended the header was the line end of
		// the delimiter that ends the part (RFC 2046 section 5.1.1):
		// a header without its empty line, and no body.
		p.bodyStart, p.lfAtBody = end, lf
	}
	p.end = max(end, p.bodyStart)
	// A body's lines are its line ends, as Dovecot and Cyrus count them:
	// a last line without one (the message's end, or a part's whose line
	// end belongs to the boundary after it, RFC 2046 section 5.1.1) is
	// no line of RFC 5322 section 2.1.
	p.lines = max(0, lf-p.lfAtBody)
	if p.message != nil && p.message.end == 0 {
		m.close(p.message, end, lf)
	}
	if p.typ == "multipart" && len(p.children) == 0 {
		// A multipart without a delimiter: RFC 3501's body-type-mpart
		// has at least one part. Shown as Dovecot shows it, with one
		// empty text/plain part.
		p.children = []*part{{
			start: p.end, bodyStart: p.end, end: p.end,
			typ: "text", subtype: "plain", params: map[string]string{"charset": "us-ascii"},
		}}
	}
}

// finish ends the message and returns its structure.
func (m *mimeParser) finish() *part {
	if m.lineN > 0 {
		m.endLine()
	}
	for k := len(m.stack) - 1; k >= 0; k-- {
		m.close(m.stack[k], m.off, m.nlf)
	}
	m.stack = nil
	return m.root
}

// field is one header field, unfolded.
type field struct{ name, value string }

// headerFields splits a header into its fields; a line that is no field
// is a field without a name (its value the line), and each NUL of a
// value is 0x80.
func headerFields(h []byte) []field {
	var fs []field
	for _, l := range bytes.Split(h, []byte{'\n'}) {
		l = bytes.TrimSuffix(l, []byte{'\r'})
		if len(l) == 0 {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(fs) > 0 {
			fs[len(fs)-1].value += string(l)
			continue
		}
		name, value, ok := bytes.Cut(l, []byte{':'})
		if !ok || len(bytes.TrimSpace(name)) == 0 {
			// A line that is no field is kept, unnamed, for TEXT:
			// it is in the header all the same.
			fs = append(fs, field{"", string(l)})
			continue
		}
		fs = append(fs, field{string(bytes.TrimRight(name, " \t")), string(bytes.TrimLeft(value, " \t"))})
	}
	for i := range fs {
		// A NUL, which no IMAP string may carry, is 0x80 in ENVELOPE
		// and BODYSTRUCTURE as in BODY[] (nulFilter).
		fs[i].value = strings.ReplaceAll(fs[i].value, "\x00", "\x80")
	}
	return fs
}

func get(fs []field, name string) string {
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			return strings.TrimSpace(f.value)
		}
	}
	return ""
}

// parseHeader reads the fields of p's header that BODYSTRUCTURE and
// ENVELOPE show, and lets the header go.
func (p *part) parseHeader() {
	fs := headerFields(p.header)
	p.header = nil
	ct := get(fs, "Content-Type")
	mt, params := parseParams(ct)
	if typ, sub, ok := strings.Cut(mt, "/"); ok && isToken(typ) && isToken(sub) {
		p.typ, p.subtype, p.params = typ, sub, params
		if _, ok := params["charset"]; typ == "text" && !ok {
			// RFC 2046 section 4.1.2: a text part without a charset is
			// US-ASCII. Said, as Dovecot and Cyrus say it, so that no
			// client guesses another.
			if p.params == nil {
				p.params = map[string]string{}
			}
			p.params["charset"] = "us-ascii"
		}
	} else if p.inDigest && ct == "" {
		p.typ, p.subtype = "message", "rfc822"
	} else {
		p.typ, p.subtype = "text", "plain"
		p.params = map[string]string{"charset": "us-ascii"}
	}
	p.id = get(fs, "Content-ID")
	p.desc = get(fs, "Content-Description")
	if cte := strings.ToLower(stripComments(get(fs, "Content-Transfer-Encoding"))); isToken(strings.TrimSpace(cte)) {
		// A value that is no token ("8 bit") is none: 7bit, RFC 2045
		// section 6.1, as Dovecot has it.
		p.encoding = strings.TrimSpace(cte)
	}
	if d := get(fs, "Content-Disposition"); d != "" {
		// A disposition without its type ("; filename=x") keeps its
		// parameters, with the type "", as Dovecot sends it: the
		// filename is what a client shows.
		if v, dp := parseParams(d); isToken(v) || v == "" && dp != nil {
			p.disposition, p.dispParams, p.hasDisp = v, dp, true
		}
	}
	if l := get(fs, "Content-Language"); l != "" {
		for _, s := range strings.Split(l, ",") {
			if s = strings.TrimSpace(s); s != "" {
				p.language = append(p.language, s)
			}
		}
	}
	p.location = get(fs, "Content-Location")
	if p.isMessage {
		p.envelope = envelope(fs)
	}
}

// isToken reports whether s is a token of RFC 2045 section 5.1.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// bodyStructure returns p's BODYSTRUCTURE. A message/global part shows
// the message it holds (its envelope, structure and lines) to an
// IMAP4rev2 session only (rev2): RFC 9051's body-type-msg has it, RFC
// 3501's has message/rfc822 alone, and an IMAP4rev1 client would read
// those fields as extension data. Dovecot (an IMAP4rev1 server) shows it
// as a single part too.
func (p *part) bodyStructure(rev2 bool) goimap.BodyStructure {
	var disp *goimap.BodyStructureDisposition
	if p.hasDisp {
		disp = &goimap.BodyStructureDisposition{Value: p.disposition, Params: p.dispParams}
	}
	if p.typ == "multipart" && len(p.children) > 0 {
		bs := &goimap.BodyStructureMultiPart{
			Subtype:  p.subtype,
			Extended: &goimap.BodyStructureMultiPartExt{Params: p.params, Disposition: disp, Language: p.language, Location: p.location},
		}
		for _, c := range p.children {
			bs.Children = append(bs.Children, c.bodyStructure(rev2))
		}
		return bs
	}
	bs := &goimap.BodyStructureSinglePart{
		Type: p.typ, Subtype: p.subtype, Params: p.params,
		ID: p.id, Description: p.desc, Encoding: p.encoding,
		Size:     uint32(min(p.end-p.bodyStart, 1<<32-1)),
		Extended: &goimap.BodyStructureSinglePartExt{Disposition: disp, Language: p.language, Location: p.location},
	}
	switch {
	case p.message != nil && (p.subtype == "rfc822" || rev2):
		bs.MessageRFC822 = &goimap.BodyStructureMessageRFC822{
			Envelope: p.message.envelope, BodyStructure: p.message.bodyStructure(rev2), NumLines: p.lines,
		}
	case p.typ == "text":
		bs.Text = &goimap.BodyStructureText{NumLines: p.lines}
	}
	return bs
}
