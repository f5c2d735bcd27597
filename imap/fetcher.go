package imap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/mutf7"
)

// fetcher reads messages of a mailbox on a connection of planb's own,
// for a resume check and for verify. go-imap's client stops at answers it
// cannot parse, and servers send such answers for whole messages: Cyrus
// returns BODY[] of a message with NUL bytes as a literal8 (~{n}), gluon
// (Proton Mail Bridge) internal dates that go-imap refuses. A fetcher
// reads an untagged FETCH item by item, in any order, skipping what it
// did not ask for, and streams BODY[] (literal or literal8) through
// mailform.Fingerprint; every line is bounded, no literal is held.
type fetcher struct {
	a *appender // dialled with dialRaw: no reader goroutine
	// uidValidity is the UIDVALIDITY of the mailbox last examined, from
	// its "* OK [UIDVALIDITY n]" answer (0: none came).
	uidValidity uint32
}

// statusError is the server's refusal (NO, BAD) of a command on a
// connection of planb's own, or its BYE during one. code is the response
// code's atom ("OVERQUOTA", "THROTTLED"), upper case, or "".
type statusError struct {
	cmd, status, code, text string
}

// newStatusError splits a response code off text ("[THROTTLED] later").
func newStatusError(cmd, status, text string) *statusError {
	e := &statusError{cmd: cmd, status: status, text: text}
	if strings.HasPrefix(text, "[") {
		if j := strings.IndexByte(text, ']'); j > 0 {
			code, _, _ := strings.Cut(text[1:j], " ")
			e.code, e.text = strings.ToUpper(code), strings.TrimSpace(text[j+1:])
		}
	}
	return e
}

func (e *statusError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%s: %s [%s] %s", e.cmd, e.status, e.code, e.text)
	}
	return fmt.Sprintf("%s: %s %s", e.cmd, e.status, e.text)
}

// noteUntagged keeps what the fetcher needs of an untagged answer that
// is not a FETCH: the UIDVALIDITY of the mailbox being examined.
func (f *fetcher) noteUntagged(seg string) {
	rest, ok := strings.CutPrefix(trimCRLF(seg), "* ")
	if !ok || !hasPrefixFold(rest, "OK [UIDVALIDITY ") {
		return
	}
	num, _, _ := strings.Cut(rest[len("OK [UIDVALIDITY "):], "]")
	if n, err := strconv.ParseUint(num, 10, 32); err == nil {
		f.uidValidity = uint32(n)
	}
}

// examine opens mailbox (its UTF-8 name) read-only and returns its
// UIDVALIDITY; condstore asks for CONDSTORE (RFC 7162) on it.
func (f *fetcher) examine(mailbox string, condstore bool) (uint32, error) {
	q, ok := f.mailboxArg(mailbox)
	if !ok {
		return 0, fmt.Errorf("examine %q: cannot quote the name", mailbox)
	}
	if condstore {
		q += " (CONDSTORE)"
	}
	f.uidValidity = 0
	if err := f.command("EXAMINE "+q, nil); err != nil {
		return 0, fmt.Errorf("examine %q: %w", mailbox, err)
	}
	return f.uidValidity, nil
}

// mailboxArg returns mailbox as a command argument: a quoted string, of
// its UTF-8 name where the connection enabled UTF8=ACCEPT (RFC 6855),
// else of its modified UTF-7 name.
func (f *fetcher) mailboxArg(mailbox string) (string, bool) {
	if !f.a.utf8 {
		return quoted(mutf7.Encode(mailbox))
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(mailbox); i++ {
		switch c := mailbox[i]; c {
		case 0, '\r', '\n':
			return "", false
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String(), utf8.ValidString(mailbox)
}

func dialFetcher(ctx context.Context, o *Options) (*fetcher, error) {
	a, err := dialRaw(ctx, o)
	if err != nil {
		return nil, err
	}
	return &fetcher{a: a}, nil
}

func (f *fetcher) close() {
	tag := f.a.nextTag()
	f.a.nc.SetDeadline(time.Now().Add(2 * time.Second))
	f.a.bw.WriteString(tag + " LOGOUT\r\n")
	if f.a.bw.Flush() == nil {
		f.a.await(tag, nil)
	}
	f.a.nc.Close()
}

// command sends a command and reads responses until its tagged answer,
// handing the items of each untagged FETCH to onFetch. A refusal (NO,
// BAD) is an error.
func (f *fetcher) command(cmd string, onFetch func(p *itemParser) error) error {
	a := f.a
	tag := a.nextTag()
	a.nc.SetWriteDeadline(time.Now().Add(a.timeout))
	a.bw.WriteString(tag + " " + cmd + "\r\n")
	if err := a.bw.Flush(); err != nil {
		return err
	}
	for {
		a.nc.SetReadDeadline(time.Now().Add(a.timeout))
		seg, err := f.segment()
		if err != nil {
			return err
		}
		if rest, ok := fetchPrefix(seg); ok && onFetch != nil {
			if err := onFetch(&itemParser{f: f, seg: rest}); err != nil {
				return err
			}
			continue
		}
		// Anything else, with the literals it may carry.
		for {
			n, ok := literalAtEnd(seg)
			if !ok {
				break
			}
			if _, err := io.CopyN(io.Discard, a.br, n); err != nil {
				return err
			}
			if seg, err = f.segment(); err != nil {
				return err
			}
		}
		switch {
		case trimCRLF(seg) == "":
		case strings.HasPrefix(seg, "* "):
			f.noteUntagged(seg)
			if err := a.untagged(seg); err != nil {
				if a.bye != "" {
					return newStatusError(strings.Fields(cmd)[0], "BYE", a.bye)
				}
				return err
			}
		case strings.HasPrefix(seg, "+"):
			return fmt.Errorf("unexpected continuation request %q", trimCRLF(seg))
		default:
			t, ans, err := parseTagged(seg)
			if err != nil {
				return err
			}
			if t != tag {
				return fmt.Errorf("answer for unknown tag %q", t)
			}
			if ans.status != "OK" {
				return &statusError{cmd: strings.Fields(cmd)[0], status: ans.status, code: ans.code, text: ans.text}
			}
			a.nc.SetDeadline(time.Time{})
			return nil
		}
	}
}

// segment reads the server's text up to the next LF (a literal can only
// be announced at the end of one), at most maxResponseLine bytes.
func (f *fetcher) segment() (string, error) {
	var out []byte
	for {
		frag, err := f.a.br.ReadSlice('\n')
		if len(out)+len(frag) > maxResponseLine {
			return "", fmt.Errorf("response line longer than %d bytes", maxResponseLine)
		}
		out = append(out, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(out) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return string(out), err
	}
}

// fetchPrefix reports whether seg starts an untagged FETCH ("* 12 FETCH
// (") and returns what follows it.
func fetchPrefix(seg string) (string, bool) {
	rest, ok := strings.CutPrefix(seg, "* ")
	if !ok {
		return "", false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || len(rest) < i+8 || !strings.EqualFold(rest[i:i+8], " FETCH (") {
		return "", false
	}
	return rest[i+8:], true
}

// fetchPrints reads the messages uids of mailbox (EXAMINE, then UID
// FETCH in batches) and calls fn with each one's UID, flags, size and
// fingerprint.
func (f *fetcher) fetchPrints(ctx context.Context, mailbox string, uids []goimap.UID, fn func(TargetMessage) error) error {
	q, ok := quoted(mutf7.Encode(mailbox))
	if !ok {
		return fmt.Errorf("examine %q: cannot quote the name", mailbox)
	}
	if err := f.command("EXAMINE "+q, nil); err != nil {
		return fmt.Errorf("examine %q: %w", mailbox, err)
	}
	const step = 500
	for len(uids) > 0 {
		var set goimap.UIDSet
		for _, u := range uids[:min(step, len(uids))] {
			set.AddNum(u)
		}
		uids = uids[min(step, len(uids)):]
		var ferr error
		err := f.command("UID FETCH "+set.String()+" (UID FLAGS RFC822.SIZE BODY.PEEK[])", func(p *itemParser) error {
			m, err := p.message()
			if err != nil {
				return err
			}
			if m.UID != 0 && m.Print != nil && ferr == nil {
				ferr = fn(m)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("fetch %q: %w", mailbox, err)
		}
		if ferr != nil {
			return ferr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// errFetchSyntax is a FETCH answer that cannot be read.
var errFetchSyntax = errors.New("malformed FETCH response")

// itemParser reads the items of one FETCH response: seg is the text not
// read yet of the current segment; a literal at its end is read from the
// connection, and the response goes on in the next segment.
type itemParser struct {
	f   *fetcher
	seg string
}

func (p *itemParser) skipSpace() {
	p.seg = strings.TrimLeft(p.seg, " ")
}

// next returns the next byte of the response without taking it, or 0 at
// the end of a segment.
func (p *itemParser) next() byte {
	if p.seg == "" {
		return 0
	}
	return p.seg[0]
}

// items reads the items up to the closing parenthesis, handing each
// item's name (upper case) to item, which reads the value of those it
// knows and reports whether it did; the values of the others are
// skipped.
func (p *itemParser) items(item func(name string) (bool, error)) error {
	for {
		p.skipSpace()
		if p.next() == ')' {
			if rest := trimCRLF(p.seg[1:]); strings.TrimSpace(rest) != "" {
				return fmt.Errorf("%w: %q after the items", errFetchSyntax, rest)
			}
			return nil
		}
		name, err := p.itemName()
		if err != nil {
			return err
		}
		p.skipSpace()
		ok, err := item(strings.ToUpper(name))
		if err != nil {
			return err
		}
		if !ok {
			if err := p.skipValue(0); err != nil {
				return err
			}
		}
	}
}

// message reads the items up to the closing parenthesis: UID, FLAGS,
// RFC822.SIZE and BODY[] (streamed through mailform.Fingerprint); other
// items are skipped.
func (p *itemParser) message() (TargetMessage, error) {
	var m TargetMessage
	err := p.items(func(name string) (bool, error) {
		switch name {
		case "UID":
			n, err := p.number()
			m.UID = goimap.UID(n)
			return true, err
		case "RFC822.SIZE":
			n, err := p.number()
			m.Size = int64(n)
			return true, err
		case "FLAGS":
			var err error
			m.Flags, err = p.flags()
			return true, err
		case "BODY[]":
			return true, p.string(func(r io.Reader) error {
				pr, err := mailform.Fingerprint(r)
				m.Print = pr
				return err
			})
		}
		return false, nil
	})
	return m, err
}

// gmMessage is what one FETCH answer says of a message of a label-based
// mailbox (Gmail's X-GM-EXT-1), each item with whether it came.
type gmMessage struct {
	UID       goimap.UID
	Flags     []string // as sent, without \Recent
	HasFlags  bool
	Date      time.Time // INTERNALDATE; zero if absent or unreadable
	Size      int64
	MsgID     uint64 // X-GM-MSGID
	HasMsgID  bool
	Labels    []string // X-GM-LABELS, as the server spells them
	HasLabels bool
}

// maxLabelBytes bounds the labels of one message: their bytes plus 16
// per label.
const maxLabelBytes = 1 << 20

// gmMessage reads the items up to the closing parenthesis: UID, FLAGS,
// INTERNALDATE, RFC822.SIZE, X-GM-MSGID (a number) and X-GM-LABELS (a
// parenthesized list of astrings: atoms such as \Inbox, quoted strings,
// literals); other items are skipped.
func (p *itemParser) gmMessage() (gmMessage, error) {
	var m gmMessage
	err := p.items(func(name string) (bool, error) {
		var err error
		switch name {
		case "UID":
			var n uint64
			n, err = p.number()
			if err == nil && (n == 0 || n > 1<<32-1) {
				err = fmt.Errorf("%w: UID %d", errFetchSyntax, n)
			}
			m.UID = goimap.UID(n)
		case "RFC822.SIZE":
			var n uint64
			n, err = p.number()
			if err == nil && n > 1<<62 {
				err = fmt.Errorf("%w: size %d", errFetchSyntax, n)
			}
			m.Size = int64(n)
		case "FLAGS":
			m.Flags, err = p.flags()
			m.HasFlags = true
		case "INTERNALDATE":
			if p.next() != '"' {
				return false, nil
			}
			var s string
			if s, err = p.quoted(); err == nil {
				m.Date, _ = time.Parse("_2-Jan-2006 15:04:05 -0700", s)
			}
		case "X-GM-MSGID":
			m.MsgID, err = p.number()
			m.HasMsgID = true
		case "X-GM-LABELS":
			m.Labels, err = p.labels()
			m.HasLabels = true
		default:
			return false, nil
		}
		return true, err
	})
	return m, err
}

// labels reads a parenthesized list of astrings (NIL: none).
func (p *itemParser) labels() ([]string, error) {
	if c := p.next(); c == 'N' || c == 'n' {
		if a := p.atom(); !strings.EqualFold(a, "NIL") {
			return nil, fmt.Errorf("%w: label list %q", errFetchSyntax, a)
		}
		return nil, nil
	}
	if p.next() != '(' {
		return nil, fmt.Errorf("%w: label list", errFetchSyntax)
	}
	p.seg = p.seg[1:]
	var (
		labels []string
		budget = maxLabelBytes
	)
	for {
		p.skipSpace()
		var label string
		switch c := p.next(); c {
		case ')':
			p.seg = p.seg[1:]
			return labels, nil
		case 0, '\r', '\n', '(':
			return nil, fmt.Errorf("%w: label list not closed", errFetchSyntax)
		case '"', '{', '~':
			err := p.string(func(r io.Reader) error {
				b, err := io.ReadAll(io.LimitReader(r, int64(budget)+1))
				label = string(b)
				return err
			})
			if err != nil {
				return nil, err
			}
		default:
			label = p.atom()
		}
		budget -= len(label) + 16
		if budget < 0 {
			return nil, fmt.Errorf("%w: labels longer than %d bytes", errFetchSyntax, maxLabelBytes)
		}
		labels = append(labels, label)
	}
}

// itemName reads an item name: an atom, with a bracketed section
// ("BODY[HEADER.FIELDS (DATE)]") and a partial ("<0>").
func (p *itemParser) itemName() (string, error) {
	depth := 0
	for i := 0; i < len(p.seg); i++ {
		switch c := p.seg[i]; {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth == 0 && (c == ' ' || c == '(' || c == ')' || c == '\r' || c == '\n'):
			if i == 0 {
				return "", fmt.Errorf("%w: no item name in %q", errFetchSyntax, trimCRLF(p.seg))
			}
			name := p.seg[:i]
			p.seg = p.seg[i:]
			return name, nil
		}
	}
	return "", fmt.Errorf("%w: item name at the end of a line", errFetchSyntax)
}

// atom reads up to a space, a parenthesis or the line end.
func (p *itemParser) atom() string {
	i := strings.IndexAny(p.seg, " ()\r\n")
	if i < 0 {
		i = len(p.seg)
	}
	a := p.seg[:i]
	p.seg = p.seg[i:]
	return a
}

func (p *itemParser) number() (uint64, error) {
	a := p.atom()
	n, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: number %q", errFetchSyntax, a)
	}
	return n, nil
}

// flags reads "(\Seen $Kw)", leaving \Recent out.
func (p *itemParser) flags() ([]string, error) {
	if p.next() != '(' {
		return nil, fmt.Errorf("%w: flag list", errFetchSyntax)
	}
	end := strings.IndexByte(p.seg, ')')
	if end < 0 {
		return nil, fmt.Errorf("%w: flag list", errFetchSyntax)
	}
	var flags []string
	for _, f := range strings.Fields(p.seg[1:end]) {
		if !strings.EqualFold(f, `\Recent`) {
			flags = append(flags, f)
		}
	}
	p.seg = p.seg[end+1:]
	return flags, nil
}

// string reads a literal, a literal8, a quoted string or NIL (as empty)
// and hands its content to use, which may read it; the rest is skipped.
func (p *itemParser) string(use func(io.Reader) error) error {
	switch c := p.next(); {
	case c == '"':
		s, err := p.quoted()
		if err != nil {
			return err
		}
		return use(strings.NewReader(s))
	case c == '{' || c == '~':
		n, ok := literalAtEnd(p.seg)
		if !ok || !strings.HasPrefix(strings.TrimPrefix(p.seg, "~"), "{") {
			return fmt.Errorf("%w: literal %q", errFetchSyntax, trimCRLF(p.seg))
		}
		lit := io.LimitReader(p.f.a.br, n)
		err := use(lit)
		if _, cerr := io.Copy(io.Discard, lit); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		p.seg, err = p.f.segment()
		return err
	case c == 'N' || c == 'n':
		if a := p.atom(); !strings.EqualFold(a, "NIL") {
			return fmt.Errorf("%w: %q", errFetchSyntax, a)
		}
		return use(strings.NewReader(""))
	}
	return fmt.Errorf("%w: string %q", errFetchSyntax, trimCRLF(p.seg))
}

// quoted reads a quoted string.
func (p *itemParser) quoted() (string, error) {
	var b strings.Builder
	for i := 1; i < len(p.seg); i++ {
		switch c := p.seg[i]; c {
		case '"':
			p.seg = p.seg[i+1:]
			return b.String(), nil
		case '\\':
			i++
			if i < len(p.seg) {
				b.WriteByte(p.seg[i])
			}
		case '\r', '\n':
			return "", fmt.Errorf("%w: quoted string", errFetchSyntax)
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("%w: quoted string", errFetchSyntax)
}

// skipValue skips one value: an atom or number, a quoted string, a
// literal (or literal8), or a parenthesized list of values.
func (p *itemParser) skipValue(depth int) error {
	if depth > 50 {
		return fmt.Errorf("%w: nesting too deep", errFetchSyntax)
	}
	switch c := p.next(); {
	case c == '"' || c == '{' || c == '~':
		return p.string(func(io.Reader) error { return nil })
	case c == '(':
		p.seg = p.seg[1:]
		for {
			p.skipSpace()
			switch p.next() {
			case ')':
				p.seg = p.seg[1:]
				return nil
			case 0, '\r', '\n':
				return fmt.Errorf("%w: list not closed", errFetchSyntax)
			}
			if err := p.skipValue(depth + 1); err != nil {
				return err
			}
		}
	case c == 0 || c == '\r' || c == '\n' || c == ')':
		return fmt.Errorf("%w: value missing", errFetchSyntax)
	}
	p.atom()
	return nil
}
