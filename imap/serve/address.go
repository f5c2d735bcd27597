package serve

import (
	"strings"

	goimap "github.com/emersion/go-imap/v2"
)

// The address lists of ENVELOPE (RFC 3501 section 7.4.2) are read the
// lenient way mail readers read them, not by RFC 5322's grammar alone:
// one address that breaks it ("f..x@example.com", a bare name) must not
// lose the others. Groups ("undisclosed-recipients:;") are sent as RFC
// 3501 has them: a start (no host, the group's name as mailbox) and an
// end (all NIL). What an address lacks is filled in as Dovecot fills it
// (MISSING_MAILBOX, MISSING_DOMAIN): a NIL host would read as a group.

const (
	missingMailbox = "MISSING_MAILBOX"
	missingDomain  = "MISSING_DOMAIN"
)

// addressList returns the addresses of a header field's value, nil when
// it holds none.
func addressList(v string) []goimap.Address {
	p := addrParser{s: v}
	var out []goimap.Address
	inGroup := false
	for {
		p.skip(",")
		if p.i >= len(p.s) {
			break
		}
		if p.s[p.i] == ';' {
			p.i++
			if inGroup {
				out = append(out, goimap.Address{})
				inGroup = false
			}
			continue
		}
		phrase, comment, stop := p.phrase()
		switch stop {
		case ':':
			p.i++
			if inGroup {
				// A group in a group: RFC 5322 has none; end the
				// first.
				out = append(out, goimap.Address{})
			}
			// The group's name as written, encoded words and all, as
			// Dovecot sends it: imapserver encodes a display name, not
			// a mailbox, and a decoded one may hold a NUL or CR.
			out = append(out, goimap.Address{Mailbox: strings.Join(phrase, " ")})
			inGroup = true
		case '<':
			p.i++
			local, domain := p.angle()
			out = append(out, filled(displayName(phrase), local, domain))
		case '@':
			p.i++
			domain, c := p.domain()
			if comment == "" {
				comment = c
			}
			out = append(out, filled(displayName([]string{comment}), strings.Join(phrase, ""), domain))
		default: // ',', ';' or the end: no address
			switch {
			case len(phrase) == 1: // a local part alone
				out = append(out, filled("", phrase[0], ""))
			case len(phrase) > 1: // a name alone
				out = append(out, filled(displayName(phrase), "", ""))
			}
		}
	}
	if inGroup {
		out = append(out, goimap.Address{})
	}
	return out
}

func filled(name, mailbox, host string) goimap.Address {
	if mailbox == "" {
		mailbox = missingMailbox
	}
	if host == "" {
		host = missingDomain
	}
	return goimap.Address{Name: name, Mailbox: mailbox, Host: host}
}

// displayName joins a phrase's words with single spaces and decodes its
// encoded words (RFC 2047).
func displayName(words []string) string {
	return decodeWords(strings.Join(words, " "))
}

type addrParser struct {
	s string
	i int
}

// skip skips white space, comments and any of the bytes of also.
func (p *addrParser) skip(also string) string {
	var comment string
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || strings.IndexByte(also, c) >= 0:
			p.i++
		case c == '(':
			comment = p.comment()
		default:
			return comment
		}
	}
	return comment
}

// comment reads a comment (nested ones too) and returns its text.
func (p *addrParser) comment() string {
	var b strings.Builder
	depth := 0
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\' && p.i < len(p.s):
			b.WriteByte(p.s[p.i])
			p.i++
			continue
		case c == '(':
			depth++
			if depth == 1 {
				continue
			}
		case c == ')':
			depth--
			if depth == 0 {
				return strings.TrimSpace(b.String())
			}
		}
		b.WriteByte(c)
	}
	return strings.TrimSpace(b.String())
}

// quoted reads a quoted string from its opening quote and returns its
// content.
func (p *addrParser) quoted() string {
	var b strings.Builder
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\' && p.i < len(p.s):
			b.WriteByte(p.s[p.i])
			p.i++
		case c == '"':
			return b.String()
		case c == '\r' || c == '\n':
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// phrase reads words (atoms, with dots, and quoted strings) up to one of
// "<:@,;" or the end, which it returns (0 for the end), with the last
// comment seen.
func (p *addrParser) phrase() (words []string, comment string, stop byte) {
	for {
		if c := p.skip(""); c != "" {
			comment = c
		}
		if p.i >= len(p.s) {
			return words, comment, 0
		}
		switch c := p.s[p.i]; c {
		case '<', ':', '@', ',', ';':
			return words, comment, c
		case '"':
			words = append(words, p.quoted())
		case '>', ')', '[', ']', '\\':
			p.i++ // stray: dropped
		default:
			words = append(words, p.atom())
		}
	}
}

// atom reads a run of bytes that are no specials of an address (dots are
// kept: "f..x" is a local part as it is written).
func (p *addrParser) atom() string {
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune(" \t\r\n()<>@,;:\\\"[]", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

// domain reads a domain up to ",", ";", "<", ">" or the end, and returns
// it with the last comment seen (an old "user@host (Name)").
func (p *addrParser) domain() (string, string) {
	var b strings.Builder
	var comment string
	for p.i < len(p.s) {
		if c := p.skip(""); c != "" {
			comment = c
		}
		if p.i >= len(p.s) {
			break
		}
		c := p.s[p.i]
		switch {
		case c == ',' || c == ';' || c == '<' || c == '>':
			return b.String(), comment
		case c == '[':
			start := p.i
			for p.i < len(p.s) && p.s[p.i] != ']' {
				p.i++
			}
			p.i = min(p.i+1, len(p.s))
			b.WriteString(p.s[start:p.i])
		case c == '"':
			b.WriteString(p.quoted())
		case strings.IndexByte("()@:\\]", c) >= 0:
			p.i++
			if c == '@' || c == ':' {
				b.WriteByte(c)
			}
		default:
			b.WriteString(p.atom())
		}
	}
	return b.String(), comment
}

// angle reads an angle address after its "<", up to its ">", and returns
// its local part and domain. A source route ("@a,@b:") is dropped.
func (p *addrParser) angle() (local, domain string) {
	p.skip("")
	if p.i < len(p.s) && p.s[p.i] == '@' {
		if k := strings.IndexByte(p.s[p.i:], ':'); k >= 0 && !strings.ContainsAny(p.s[p.i:p.i+k], ">") {
			p.i += k + 1
		}
	}
	var lp strings.Builder
	for p.i < len(p.s) {
		p.skip("")
		if p.i >= len(p.s) {
			break
		}
		c := p.s[p.i]
		switch c {
		case '>':
			p.i++
			return lp.String(), ""
		case '@':
			p.i++
			domain, _ = p.domain()
			p.skip("")
			if p.i < len(p.s) && p.s[p.i] == '>' {
				p.i++
			}
			return lp.String(), domain
		case '"':
			lp.WriteString(p.quoted())
		case ',', ';', '<', ':', '(', ')', '[', ']', '\\':
			if c == ',' || c == ';' {
				return lp.String(), ""
			}
			p.i++
		default:
			lp.WriteString(p.atom())
		}
	}
	return lp.String(), domain
}
