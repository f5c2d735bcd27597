package mailform

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// MaxHeader is the most header bytes this package keeps of a message:
// beyond it the rest of a header is treated as body.
const MaxHeader = 1 << 20

// Info is what one cheap pass over a message finds: enough to put it on
// the wire.
type Info struct {
	// Size is the message's size after CRLF conversion: the size of its
	// literal on the wire.
	Size int64
	// NUL says the message holds a NUL byte, which only a BINARY literal
	// (RFC 3516) can carry.
	NUL bool
	// Header is the header section as stored, without the empty line that
	// ends it (at most MaxHeader bytes). Scan returns a slice of its input.
	Header []byte
	// Header8Bit says a header byte is over 0x7f; HeaderUTF8 that those
	// bytes are valid UTF-8 (RFC 6532), which UTF8=ACCEPT (RFC 6855) can
	// carry.
	Header8Bit bool
	HeaderUTF8 bool
	// BinaryPart says a part declares "Content-Transfer-Encoding:
	// binary": its bytes are data, whose line ends must not be touched.
	BinaryPart bool
}

// WireSize is the size of the message on the wire: with CRLF line ends,
// unless it holds a binary part, which goes as it is.
func (i Info) WireSize(raw int64) int64 {
	if i.BinaryPart {
		return raw
	}
	return i.Size
}

// Scan returns the Info of a message held in memory.
func Scan(b []byte) Info {
	info := Info{Size: int64(len(b) + BareLineEnds(b)), NUL: bytes.IndexByte(b, 0) >= 0, BinaryPart: binaryCTE(b)}
	info.Header = b[:headerLen(b)]
	info.Header8Bit, info.HeaderUTF8 = eightBit(info.Header)
	return info
}

// binaryCTE reports whether b declares a binary transfer encoding: a
// "Content-Transfer-Encoding:" followed by "binary", in any case. A
// declaration cut by the end of b is not seen.
//
// It looks at each ':' (rare in mail text, found at memory speed by
// bytes.IndexByte) and at the name before it: searching for a letter of
// the name instead stops every few bytes of text.
func binaryCTE(b []byte) bool {
	const name = "content-transfer-encoding"
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], ':')
		if j < 0 {
			return false
		}
		j += i
		i = j + 1
		if j < len(name) || b[j-1]|0x20 != 'g' || !bytes.EqualFold(b[j-len(name):j], []byte(name)) {
			continue
		}
		rest := bytes.TrimLeft(b[i:], " \t")
		if len(rest) >= 6 && bytes.EqualFold(rest[:6], []byte("binary")) {
			return true
		}
	}
}

// headerLen returns the length of the header section of b: up to the first
// empty line, at most MaxHeader bytes.
func headerLen(b []byte) int {
	if len(b) > 0 && (b[0] == '\n' || len(b) > 1 && b[0] == '\r' && b[1] == '\n') {
		return 0
	}
	n := len(b)
	// Look for the second separator only before the first: in a message
	// of LF line ends, a search for "\n\r\n" would otherwise stop at
	// every line of the body.
	for _, sep := range []string{"\n\n", "\n\r\n"} {
		if i := bytes.Index(b[:min(n+1, len(b), MaxHeader+2)], []byte(sep)); i >= 0 && i+1 < n {
			n = i + 1 // keep the line end of the last field
		}
	}
	return min(n, MaxHeader)
}

func eightBit(h []byte) (has, utf bool) {
	for _, c := range h {
		if c >= 0x80 {
			return true, utf8.Valid(h)
		}
	}
	return false, true
}

// Scanner computes the Info of a message written to it in pieces, as it
// streams by. It is not safe for concurrent use.
type Scanner struct {
	binary  bool
	tail    []byte // the last bytes written, for a declaration cut in two
	n       int64  // bytes written
	ends    LineEndCounter
	nul     bool
	head    []byte
	headEnd bool // the header is complete
}

// Write scans p; it never fails.
func (s *Scanner) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !s.nul && bytes.IndexByte(p, 0) >= 0 {
		s.nul = true
	}
	if !s.binary {
		// The declaration may be cut between two writes: look at the
		// joint too, with the last bytes of what came before.
		const keep = 64
		joint := append(s.tail, p[:min(len(p), keep)]...)
		s.binary = binaryCTE(joint) || binaryCTE(p)
		if len(p) >= keep {
			s.tail = append(s.tail[:0], p[len(p)-keep:]...)
		} else {
			s.tail = append(s.tail[:0], joint[max(0, len(joint)-keep):]...)
		}
	}
	if !s.headEnd {
		room := MaxHeader + 2 - len(s.head)
		s.head = append(s.head, p[:min(room, len(p))]...)
		if hl := headerLen(s.head); hl < len(s.head) || len(s.head) >= MaxHeader+2 {
			s.head = s.head[:hl]
			s.headEnd = true
		}
	}
	s.ends.Write(p)
	s.n += int64(len(p))
	return len(p), nil
}

// Info returns what was found in everything written.
func (s *Scanner) Info() Info {
	info := Info{Size: s.n + s.ends.Added(), NUL: s.nul, BinaryPart: s.binary}
	info.Header = s.head
	if !s.headEnd {
		info.Header = s.head[:headerLen(s.head)]
	}
	info.Header8Bit, info.HeaderUTF8 = eightBit(info.Header)
	return info
}

// Problem is one way a message breaks a rule that strict servers enforce.
type Problem string

// The problems Check finds.
const (
	NoHeader      Problem = "no header"
	BadHeaderName Problem = "invalid header name"
	NoDate        Problem = "missing Date"
	BadDate       Problem = "unparseable Date"
	NoFrom        Problem = "missing From"
	BadFrom       Problem = "unparseable From"
	BadSender     Problem = "unparseable Sender"
	BadTo         Problem = "unparseable To"
	BadCc         Problem = "unparseable Cc"
	BadBcc        Problem = "unparseable Bcc"
	BadReplyTo    Problem = "unparseable Reply-To"
	BadMIME       Problem = "malformed MIME"
	// Unreadable is no problem Check finds: a server refused the message
	// as malformed (for a reason of its parser's). Repair wraps it.
	Unreadable Problem = "refused as malformed"
	Header8Bit Problem = "8-bit header"
	HeaderNUL  Problem = "NUL byte in header"
	BodyNUL    Problem = "NUL byte"
	LongHeader Problem = "header line over 998 bytes"
	LongLine   Problem = "line over 998 bytes"
)

// inBody says whether repairing p changes the body: the message is then
// delivered wrapped, with the original attached.
func (p Problem) inBody() bool {
	return p == BodyNUL || p == LongLine || p == BadMIME || p == Unreadable
}

// maxLine is RFC 5322's limit on a line, without its CRLF.
const maxLine = 998

// Check reads a whole message and returns the problems a strict server may
// refuse it for, in a fixed order, or none.
func Check(r io.Reader) ([]Problem, error) {
	c := checker{lastLong: -1, mime: newMIMECheck()}
	if _, err := io.Copy(&c, r); err != nil {
		c.mime.result()
		return nil, err
	}
	ps := c.problems()
	if !c.mime.result() && !hasProblem(ps, NoHeader) {
		ps = append(ps, BadMIME)
	}
	return ps, nil
}

// checker finds long lines and NUL bytes while the header is collected,
// and hands the message to a MIME check (see mimeOK).
type checker struct {
	mime      *mimeCheck
	s         Scanner
	pos       int64 // bytes written
	lineStart int64 // offset of the current line
	lastLong  int64 // offset of the last line over maxLine, -1 if none
	nuls      int
	last      byte // the last byte written
}

func (c *checker) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.s.Write(p)
	c.mime.Write(p)
	c.nuls += bytes.Count(p, []byte{0})
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		end := c.pos + int64(i+j) // offset of the LF
		l := end - c.lineStart
		prev := c.last
		if i+j > 0 {
			prev = p[i+j-1]
		}
		if l > 0 && prev == '\r' {
			l--
		}
		if l > maxLine {
			c.lastLong = c.lineStart
		}
		c.lineStart = end + 1
		i += j + 1
	}
	c.pos += int64(len(p))
	c.last = p[len(p)-1]
	if c.pos-c.lineStart > maxLine+1 {
		c.lastLong = c.lineStart
	}
	return len(p), nil
}

func (c *checker) problems() []Problem {
	if c.pos-c.lineStart > maxLine {
		c.lastLong = c.lineStart
	}
	info := c.s.Info()
	ps := HeaderProblems(info.Header)
	head := info.Header
	if hasProblem(ps, NoHeader) {
		head = nil // it is all body
	}
	if c.nuls > bytes.Count(head, []byte{0}) {
		ps = append(ps, BodyNUL)
	}
	if c.lastLong >= int64(len(head)) {
		ps = append(ps, LongLine)
	}
	return ps
}

func hasProblem(ps []Problem, p Problem) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// field is one header field: its name as written, its value with the
// folding kept, and the raw lines it came from.
type field struct {
	name  string
	value string
	raw   []byte
	valid bool // a name of printable ASCII without ':', and a ':'
}

// fields splits a header section into its fields. A line that is neither
// a field nor a continuation becomes a field of its own, not valid.
func fields(h []byte) []field {
	var out []field
	for len(h) > 0 {
		end := bytes.IndexByte(h, '\n')
		if end < 0 {
			end = len(h)
		} else {
			end++
		}
		line := h[:end]
		h = h[end:]
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			f := &out[len(out)-1]
			f.raw = append(f.raw, line...)
			f.value += string(line)
			continue
		}
		f := field{raw: bytes.Clone(line)}
		if name, value, ok := bytes.Cut(line, []byte{':'}); ok && validName(name) {
			f.name, f.value, f.valid = string(name), string(value), true
		}
		out = append(out, f)
	}
	return out
}

// validName reports whether n is a field name (RFC 5322 ftext: printable
// ASCII but ':').
func validName(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	for _, c := range n {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// unfold returns a field value without its folding and outer space.
func unfold(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "")
	v = strings.ReplaceAll(v, "\n", "")
	v = strings.ReplaceAll(v, "\r", "")
	return strings.TrimSpace(v)
}

// HeaderProblems returns the problems of a header section (as Info.Header
// holds it).
func HeaderProblems(h []byte) []Problem {
	fs := fields(h)
	if len(fs) == 0 || !fs[0].valid {
		return []Problem{NoHeader}
	}
	var ps []Problem
	add := func(p Problem) {
		if !hasProblem(ps, p) {
			ps = append(ps, p)
		}
	}
	var date, from, sender *field
	for i := range fs {
		f := &fs[i]
		if !f.valid {
			add(BadHeaderName)
			continue
		}
		switch strings.ToLower(f.name) {
		case "date":
			date = f
		case "from":
			from = f
		case "sender":
			sender = f
		}
		if p, ok := addressFields[strings.ToLower(f.name)]; ok && !listOK(f.value) {
			add(p)
		}
	}
	switch {
	case date == nil:
		add(NoDate)
	default:
		if _, err := mail.ParseDate(unfold(date.value)); err != nil {
			add(BadDate)
		}
	}
	switch {
	case from == nil:
		add(NoFrom)
	case !addressesOK(from.value):
		add(BadFrom)
	}
	if sender != nil && !addressesOK(sender.value) {
		add(BadSender)
	}
	if has, _ := eightBit(h); has {
		add(Header8Bit)
	}
	if bytes.IndexByte(h, 0) >= 0 {
		add(HeaderNUL)
	}
	for _, l := range bytes.Split(h, []byte{'\n'}) {
		if len(bytes.TrimSuffix(l, []byte{'\r'})) > maxLine {
			add(LongHeader)
			break
		}
	}
	return ps
}

// addressFields are the address list fields, besides From and Sender,
// that servers parse (Bridge: To, Cc and Bcc), with their problem.
var addressFields = map[string]Problem{"to": BadTo, "cc": BadCc, "bcc": BadBcc, "reply-to": BadReplyTo}

// listOK reports whether v parses as an address list, which may be empty
// ("undisclosed-recipients:;").
func listOK(v string) bool {
	if strings.TrimSpace(unfold(v)) == "" {
		return true
	}
	_, err := mail.ParseAddressList(unfold(v))
	return err == nil
}

func addressesOK(v string) bool {
	l, err := mail.ParseAddressList(unfold(v))
	return err == nil && len(l) > 0
}
