package imap

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// maxResponse bounds a server response read on a go-imap connection,
// the literals of message bodies excepted (they stream): go-imap holds a
// response's strings, flags and lists in memory, a few times their size
// on the wire. maxSearchResponse bounds a SEARCH or ESEARCH answer, which
// go-imap reads number by number (or as one UID set): one without ESEARCH
// lists every UID of a folder in one line, and 64 MiB hold those of about
// eight million messages.
const (
	maxResponse       = 4 << 20
	maxSearchResponse = 64 << 20
)

// errResponseTooLong is the error of a read that would take a response
// past its bound.
type errResponseTooLong int64

func (e errResponseTooLong) Error() string {
	return fmt.Sprintf("the server sent a response longer than %d MiB", int64(e)>>20)
}

// ioConn is the connection below a go-imap client (above TLS). It bounds
// what the client takes into memory and, once started, how long it waits.
//
// Bounds: every response the server sends is scanned as go-imap will
// parse it (lines, quoted strings, literals); a response longer than
// maxResponse (maxSearchResponse for SEARCH and ESEARCH), not counting
// the literals that follow a BODY[...] or BINARY[...] item of a FETCH
// (which go-imap streams), fails the read before go-imap has buffered
// more than that.
//
// Deadlines: go-imap's own (SetDeadline and friends) are ignored. Once
// start is called, every write must end within the timeout and, while a
// command is outstanding (its tag sent and its tagged answer not read),
// a read must bring a byte within the timeout; a write that moves bytes
// gives the pending read the timeout again. Time spent outside Read, by
// a consumer slow to take a message, does not count. An idle connection
// (nothing outstanding) waits without a deadline.
//
// The tags of the commands are read from what the client writes; a line
// sent after a continuation request ("+") is an answer to it, not a
// command. Read and Write may be called concurrently, each by one
// goroutine at a time.
type ioConn struct {
	net.Conn // below: deadlines are set on it

	mu          sync.Mutex
	timeout     time.Duration // 0 until start
	outstanding map[string]bool
	conts       int       // continuation requests not answered yet
	tooLong     error     // the scanner's, once a response went past its bound
	quietUntil  time.Time // an IDLE: until then, silence is expected

	r respScanner
	w cmdScanner
}

func newIOConn(c net.Conn) *ioConn {
	return &ioConn{Conn: c, outstanding: make(map[string]bool)}
}

// start sets the timeout on the connection's I/O from now on.
func (c *ioConn) start(timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timeout = timeout
	if len(c.outstanding) > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(timeout))
	}
}

func (c *ioConn) Read(p []byte) (int, error) {
	if err := c.r.err; err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.timeout > 0 {
		if len(c.outstanding) > 0 {
			c.Conn.SetReadDeadline(c.readDeadline())
		} else {
			c.Conn.SetReadDeadline(time.Time{})
		}
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	if n > 0 {
		if serr := c.r.scan(p[:n], c); serr != nil {
			c.mu.Lock()
			c.tooLong = serr
			c.mu.Unlock()
			return 0, serr
		}
	}
	return n, err
}

// readDeadline is the deadline of a read while a command is outstanding
// (c.mu held): the timeout from now, or from the end of a quiet period.
func (c *ioConn) readDeadline() time.Time {
	now := time.Now()
	if c.quietUntil.After(now) {
		return c.quietUntil.Add(c.timeout)
	}
	return now.Add(c.timeout)
}

// quiet lets the outstanding command (an IDLE) wait for the server until
// t, and the timeout after that; the zero time ends the quiet period.
func (c *ioConn) quiet(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quietUntil = t
	if c.timeout > 0 && len(c.outstanding) > 0 {
		c.Conn.SetReadDeadline(c.readDeadline())
	}
}

// overrun returns the error of a response that went past its bound, if
// one did: the server is not worth another try.
func (c *ioConn) overrun() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tooLong
}

// answered is called by the scanner with the tag of a tagged answer.
func (c *ioConn) answered(tag string) {
	c.mu.Lock()
	delete(c.outstanding, tag)
	c.mu.Unlock()
}

// continuation is called by the scanner for a continuation request.
func (c *ioConn) continuation() {
	c.mu.Lock()
	c.conts++
	c.mu.Unlock()
}

func (c *ioConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.w.scan(p, c)
	timeout := c.timeout
	c.mu.Unlock()
	if timeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	n, err := c.Conn.Write(p)
	if n > 0 && timeout > 0 {
		c.mu.Lock()
		if len(c.outstanding) > 0 {
			c.Conn.SetReadDeadline(c.readDeadline())
		}
		c.mu.Unlock()
	}
	return n, err
}

// sent is called by the command scanner (c.mu held) with the first word
// of each line the client starts: a command's tag, unless the line
// answers a continuation request.
func (c *ioConn) sent(tag string) {
	if c.conts > 0 {
		c.conts--
		return
	}
	c.outstanding[tag] = true
	if c.timeout > 0 && len(c.outstanding) == 1 {
		// Wake the pending read, which waits without a deadline.
		c.Conn.SetReadDeadline(c.readDeadline())
	}
}

// literalData is called by the command scanner (c.mu held) when the
// client sends what follows a synchronizing literal's announcement,
// which answers a continuation request.
func (c *ioConn) literalData() {
	if c.conts > 0 {
		c.conts--
	}
}

// The deadlines of go-imap are replaced by those of ioConn.
func (c *ioConn) SetDeadline(time.Time) error      { return nil }
func (c *ioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *ioConn) SetWriteDeadline(time.Time) error { return nil }

// cmdScanner follows what the client writes: commands ("TAG SP ...
// CRLF") and the literals they carry ("{n}", "{n+}", "~{n}" at the end of
// a line, then n bytes).
type cmdScanner struct {
	lit    int64  // literal bytes still to come
	sync   bool   // the literal announced last waits for a continuation request
	inLine bool   // in a line, past its tag
	tag    []byte // the tag read so far, at a line's start
	last   []byte // the end of the current line, for a literal's announcement
}

// scan reads p; c.mu is held.
func (s *cmdScanner) scan(p []byte, c *ioConn) {
	for len(p) > 0 {
		if s.sync {
			// go-imap sends what follows a synchronizing literal's
			// announcement once the server asked for it.
			c.literalData()
			s.sync = false
		}
		if s.lit > 0 {
			k := min(int64(len(p)), s.lit)
			s.lit -= k
			p = p[k:]
			continue
		}
		b := p[0]
		p = p[1:]
		if !s.inLine {
			if b == ' ' || b == '\r' || b == '\n' {
				s.inLine = b == ' '
				if len(s.tag) > 0 {
					c.sent(string(s.tag))
				}
				s.tag = s.tag[:0]
				s.last = s.last[:0]
				continue
			}
			if len(s.tag) < 64 {
				s.tag = append(s.tag, b)
			}
			continue
		}
		if b != '\n' {
			s.last = appendTail(s.last, b)
			continue
		}
		if n, sync, ok := announced(s.last); ok {
			s.lit, s.sync = n, sync
			s.last = s.last[:0]
			continue // the command goes on after the literal
		}
		s.inLine = false
	}
}

// appendTail appends b to tail and keeps at least its last 64 bytes
// (at most 128).
func appendTail(tail []byte, b ...byte) []byte {
	if len(b) >= 64 {
		return append(tail[:0], b[len(b)-64:]...)
	}
	if len(tail)+len(b) > 128 {
		tail = append(tail[:0], tail[len(tail)-(64-len(b)):]...)
	}
	return append(tail, b...)
}

// announced reports whether line (without its LF) ends with a literal's
// announcement, "{n}" or "{n+}" (synchronizing or not), after which go-imap
// accepts a space and a CR.
func announced(line []byte) (n int64, sync, ok bool) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	line = bytes.TrimSuffix(line, []byte(" "))
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false, false
	}
	i := bytes.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	num := line[i+1 : len(line)-1]
	sync = !bytes.HasSuffix(num, []byte("+"))
	n, err := strconv.ParseInt(string(bytes.TrimSuffix(num, []byte("+"))), 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, sync, true
}

// respScanner follows what the server sends, response by response, as
// go-imap's client parses it. A response is text ("+ ...", a tagged
// answer, "* OK|NO|BAD|BYE|PREAUTH ...": go-imap reads it to the line's
// end) or data, where go-imap reads quoted strings (which it lets run over
// lines) and literals ("{n}" or "~{n}" at the end of a line, then n
// bytes, after which the response goes on).
type respScanner struct {
	n       int64  // bytes of the current response, body literals excepted
	max     int64  // its bound
	head    []byte // its first bytes, to tell its kind
	kind    byte   // 0 not known yet, 't' text, 'd' data
	fetch   bool   // data: an untagged FETCH
	quoted  bool   // data: in a quoted string
	escaped bool   // data: after a backslash in a quoted string
	lit     int64  // literal bytes still to come
	litFree bool   // the literal is a message body: not counted
	last    []byte // the end of the current line
	err     error
}

// bodyItem matches the end of a line that announces the literal of a
// BODY[...] or BINARY[...] item.
var bodyItem = regexp.MustCompile(`(?i)(^|[ (])(BODY|BINARY)\[[^\]\[{}"\r\n]*\](<[0-9]+>)? ~?\{[0-9]+\}$`)

// scan reads p; c gets the tags of tagged answers.
func (s *respScanner) scan(p []byte, c *ioConn) error {
	for len(p) > 0 {
		if s.lit > 0 {
			k := min(int64(len(p)), s.lit)
			s.lit -= k
			p = p[k:]
			if !s.litFree {
				if s.n += k; s.n > s.limit() {
					s.err = errResponseTooLong(s.limit())
					return s.err
				}
			}
			continue
		}
		if s.kind != 0 && !s.quoted && !s.escaped {
			// Up to the next byte that matters, at once.
			stops := "\n"
			if s.kind == 'd' {
				stops = "\"\n"
			}
			i := bytes.IndexAny(p, stops)
			if i < 0 {
				i = len(p)
			}
			if i > 0 {
				if s.n += int64(i); s.n > s.limit() {
					s.err = errResponseTooLong(s.limit())
					return s.err
				}
				s.last = appendTail(s.last, p[:i]...)
				p = p[i:]
				continue
			}
		}
		b := p[0]
		p = p[1:]
		if s.n++; s.n > s.limit() {
			s.err = errResponseTooLong(s.limit())
			return s.err
		}
		if s.kind == 0 {
			switch {
			case b == '"' || b == '(' || b == '{' || len(s.head) >= 64:
				// Past the words that start a response.
				s.classify(c, true)
			case b == ' ' || b == '\r' || b == '\n':
				s.classify(c, b != ' ')
				if s.kind == 0 {
					s.head = append(s.head, b)
				}
			default:
				s.head = append(s.head, b)
			}
		}
		if s.kind == 'd' {
			switch {
			case s.escaped:
				s.escaped = false
			case s.quoted && b == '\\':
				s.escaped = true
			case b == '"':
				s.quoted = !s.quoted
			}
			if s.quoted {
				continue // go-imap reads CR and LF into the string
			}
		}
		if b != '\n' {
			s.last = appendTail(s.last, b)
			continue
		}
		if s.kind == 'd' {
			line := bytes.TrimSuffix(bytes.TrimSuffix(s.last, []byte("\r")), []byte(" "))
			if n, _, ok := announced(line); ok {
				s.lit = n
				s.litFree = s.fetch && bodyItem.Match(line)
				s.last = s.last[:0]
				continue
			}
		}
		s.endResponse()
	}
	return nil
}

// classify tells the kind of the response from its first words (its
// tag and type, or "* NUMBER TYPE") once they are in, or with what there
// is when final, and hands c the tag of a tagged answer.
func (s *respScanner) classify(c *ioConn, final bool) {
	f := bytes.Fields(s.head)
	switch {
	case len(f) == 0:
		if final {
			s.kind = 't'
		}
	case string(f[0]) == "+":
		s.kind = 't'
		c.continuation()
	case string(f[0]) != "*":
		s.kind = 't'
		c.answered(string(f[0]))
	case len(f) == 1 || len(f) == 2 && isNumber(string(f[1])):
		if final {
			s.kind = 'd'
		}
	default:
		typ, number := string(f[1]), isNumber(string(f[1]))
		if number {
			typ = string(f[2])
		}
		s.kind = 'd'
		if isStatus(typ) {
			s.kind = 't'
		}
		s.fetch = number && equalFold(typ, "FETCH")
		if !number && (equalFold(typ, "SEARCH") || equalFold(typ, "ESEARCH")) {
			s.max = maxSearchResponse
		}
	}
}

func (s *respScanner) limit() int64 {
	if s.max > 0 {
		return s.max
	}
	return maxResponse
}

func (s *respScanner) endResponse() {
	s.n, s.max = 0, 0
	s.head = s.head[:0]
	s.kind = 0
	s.fetch = false
	s.quoted, s.escaped = false, false
	s.last = s.last[:0]
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isStatus(typ string) bool {
	for _, s := range []string{"OK", "NO", "BAD", "BYE", "PREAUTH"} {
		if equalFold(typ, s) {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool { return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b)) }
