package serve

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The values and parameters of Content-Type and Content-Disposition are
// read as IMAP servers read them for BODYSTRUCTURE, not by mime's strict
// parser: a parameter that breaks RFC 2045 (an unquoted "=" in a value,
// a duplicate, an attribute without a value) costs that parameter alone,
// not the others, so that one bad parameter does not take a multipart's
// boundary with it. Parameters of RFC 2231 ("name*", "name*0") are sent
// as they are written, for the client to decode, as Dovecot sends them.

// parseParams splits a header field's value into its value (lower case,
// trimmed) and its parameters (attributes in lower case; nil if none).
func parseParams(s string) (string, map[string]string) {
	value, rest := nextParam(s)
	value = strings.ToLower(strings.TrimSpace(stripComments(value)))
	var params map[string]string
	for rest != "" {
		var p string
		p, rest = nextParam(rest)
		attr, val, ok := strings.Cut(p, "=")
		attr = strings.ToLower(strings.TrimSpace(attr))
		if !ok || attr == "" || strings.ContainsAny(attr, " \t\"") {
			continue // no attribute or no value: dropped
		}
		if params == nil {
			params = map[string]string{}
		}
		if _, dup := params[attr]; !dup {
			params[attr] = paramValue(val)
		}
	}
	joinContinuations(params)
	return value, params
}

// joinContinuations joins the pieces of an RFC 2231 parameter continued
// over several (name*0*=utf-8”a; name*1*=b) into one, as Dovecot sends
// them: "name*" with the charset and encoding left for the client to
// decode when the first piece is encoded, else "name". Pieces that are no
// run from 0 stay as they are.
func joinContinuations(params map[string]string) {
	type piece struct {
		n      int
		ext    bool
		key, v string
	}
	groups := map[string][]piece{}
	for k, v := range params {
		name, rest, ok := strings.Cut(k, "*")
		if !ok || name == "" || rest == "" {
			continue
		}
		ext := strings.HasSuffix(rest, "*")
		n, err := strconv.Atoi(strings.TrimSuffix(rest, "*"))
		if err != nil || n < 0 {
			continue
		}
		groups[name] = append(groups[name], piece{n, ext, k, v})
	}
	for name, ps := range groups {
		slices.SortFunc(ps, func(a, b piece) int { return a.n - b.n })
		run := true
		for i, p := range ps {
			run = run && p.n == i
		}
		key := name
		if ps[0].ext {
			key += "*"
		}
		if _, dup := params[key]; !run || dup {
			continue
		}
		var b strings.Builder
		for _, p := range ps {
			if ps[0].ext && !p.ext {
				b.WriteString(url.PathEscape(p.v)) // a literal piece in an encoded value
			} else {
				b.WriteString(p.v)
			}
			delete(params, p.key)
		}
		params[key] = b.String()
	}
}

// nextParam returns s up to its first ";" outside a quoted string, and
// what follows that ";".
func nextParam(s string) (string, string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// paramValue returns a parameter's value: a quoted string, its quoted
// pairs unescaped (RFC 822 section 3.4.4), or a run of bytes up to white
// space (what follows, say a parameter without its ";", is dropped).
func paramValue(s string) string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, `"`) {
		if i := strings.IndexAny(s, " \t\r\n"); i >= 0 {
			s = s[:i]
		}
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
			continue
		}
		if c == '"' {
			break
		}
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// stripComments removes RFC 822 comments ("(...)") from a value.
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}
