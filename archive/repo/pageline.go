package repo

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"codeberg.org/planb/planb/dedup"
)

// A page line is what json.Marshal makes of an Entry: its fields in the
// struct's order, no spaces, strings escaped. A nightly run reads every
// line of every folder of its parent (a million for a large mailbox), and
// encoding/json spent most of that run's time and garbage on them.
// decodeLine reads the lines json.Marshal writes; anything else (another
// order, spaces, escapes other than \\ and \", invalid UTF-8, null) it
// leaves to encoding/json, so that every line decodes exactly as
// json.Unmarshal decodes it.

// decodeLine decodes line into e and reports whether it could; e is then
// what json.Unmarshal gives.
func decodeLine(line []byte, e *Entry) bool {
	p := lineParser{b: line}
	if !p.lit(`{"id":`) {
		return false
	}
	id, ok := p.str()
	if !ok || e.ID.UnmarshalText(id) != nil {
		return false
	}
	if !p.lit(`,"sid":`) {
		return false
	}
	if e.SourceID, ok = p.text(); !ok {
		return false
	}
	if p.lit(`,"f":`) {
		if e.Flags, ok = p.strings(); !ok {
			return false
		}
	}
	if !p.lit(`,"d":`) {
		return false
	}
	start := p.i
	if _, ok := p.str(); !ok || e.Date.UnmarshalJSON(line[start:p.i]) != nil {
		return false
	}
	if !p.lit(`,"s":`) {
		return false
	}
	if e.Size, ok = p.int(); !ok {
		return false
	}
	if p.lit(`,"w":`) {
		if e.Wire, ok = p.int(); !ok {
			return false
		}
	}
	if p.lit(`,"fp":`) {
		if e.Fingerprint, ok = p.text(); !ok {
			return false
		}
	}
	if p.lit(`,"l":`) {
		if e.Labels, ok = p.strings(); !ok {
			return false
		}
	}
	if p.lit(`,"c":`) {
		e.Chunks = []dedup.ID{}
		if !p.array(func() bool {
			s, ok := p.str()
			var c dedup.ID
			if !ok || c.UnmarshalText(s) != nil {
				return false
			}
			e.Chunks = append(e.Chunks, c)
			return true
		}) {
			return false
		}
	}
	return p.lit("}") && p.i == len(line)
}

type lineParser struct {
	b []byte
	i int
}

// lit consumes s if it comes next.
func (p *lineParser) lit(s string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return false
	}
	p.i += len(s)
	return true
}

// str consumes a string and returns its content, unescaped; it refuses
// escapes other than \\ and \", control characters and invalid UTF-8
// (which json.Unmarshal would replace).
func (p *lineParser) str() ([]byte, bool) {
	if !p.lit(`"`) {
		return nil, false
	}
	start := p.i
	var out []byte // nil: no escape so far, the content is b[start:i]
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			if out != nil {
				s = append(out, s...)
			}
			p.i++
			return s, utf8.Valid(s)
		case c == '\\':
			if p.i+1 == len(p.b) || p.b[p.i+1] != '\\' && p.b[p.i+1] != '"' {
				return nil, false
			}
			out = append(append(out, p.b[start:p.i]...), p.b[p.i+1])
			p.i += 2
			start = p.i
		case c < 0x20:
			return nil, false
		default:
			p.i++
		}
	}
	return nil, false
}

// text consumes a string and returns it as a Go string.
func (p *lineParser) text() (string, bool) {
	s, ok := p.str()
	return string(s), ok
}

// array consumes an array, each element by item.
func (p *lineParser) array(item func() bool) bool {
	if !p.lit("[") {
		return false
	}
	for first := true; !p.lit("]"); first = false {
		if !first && !p.lit(",") || !item() {
			return false
		}
	}
	return true
}

// strings consumes an array of strings.
func (p *lineParser) strings() ([]string, bool) {
	out := []string{}
	ok := p.array(func() bool {
		s, ok := p.text()
		out = append(out, s)
		return ok
	})
	return out, ok
}

// int consumes an integer as JSON writes it: -?(0|[1-9][0-9]*).
func (p *lineParser) int() (int64, bool) {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || p.b[digits] == '0' && p.i-digits > 1 {
		return 0, false
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
	return n, err == nil
}
