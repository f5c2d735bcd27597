package serve

import (
	"encoding/base64"
	"io"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/transform"
)

// SEARCH reads text as mail readers show it, and mail readers are lenient:
// Outlook wrote UTF-7 for years, and mailers put raw 8-bit bytes in
// encoded words. Both are decoded here as Dovecot decodes them.

// charsetReader returns a reader of input decoded from charset to UTF-8:
// a charset of the WHATWG Encoding Standard, or UTF-7 (RFC 2152), which
// that standard leaves out.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	if isUTF7(charset) {
		return transform.NewReader(input, &utf7Decoder{}), nil
	}
	enc, err := htmlindex.Get(charset)
	if err != nil {
		return nil, err
	}
	return enc.NewDecoder().Reader(input), nil
}

func isUTF7(charset string) bool {
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "utf-7", "utf7", "unicode-1-1-utf-7", "csunicode11utf7":
		return true
	}
	return false
}

// decodeCharset returns b decoded from charset to UTF-8, and false if the
// charset is unknown.
func decodeCharset(charset string, b []byte) (string, bool) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return strings.ToValidUTF8(string(b), "\uFFFD"), true
	}
	r, err := charsetReader(charset, strings.NewReader(string(b)))
	if err != nil {
		return "", false
	}
	d, err := io.ReadAll(r)
	if err != nil {
		return "", false
	}
	return string(d), true
}

// decodeWords returns a field's value with its RFC 2047 encoded words
// decoded. It is lenient where mail is: raw 8-bit bytes and spaces in a
// "Q" word stand for themselves, a "B" word may lack its padding, and
// adjacent words of one charset are joined before they are decoded, so
// that a character split between two words is whole. A word that does
// not decode (an unknown charset, a malformed word) is left as written,
// and so is the text between words, except the white space between two
// encoded words, which RFC 2047 section 6.2 drops.
func decodeWords(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	var b strings.Builder
	// The run of adjacent encoded words not yet written: their charset,
	// decoded bytes and what they were as written.
	var runCharset, runRaw string
	var runBytes []byte
	flush := func() {
		if runRaw == "" {
			return
		}
		if s, ok := decodeCharset(runCharset, runBytes); ok {
			b.WriteString(s)
		} else {
			b.WriteString(runRaw)
		}
		runCharset, runRaw, runBytes = "", "", nil
	}
	for {
		i := strings.Index(v, "=?")
		if i < 0 {
			break
		}
		charset, data, n, ok := encodedWord(v[i:])
		if !ok {
			flush()
			b.WriteString(v[:i+2])
			v = v[i+2:]
			continue
		}
		between := v[:i]
		if runRaw != "" && strings.Trim(between, " \t\r\n") == "" {
			// White space between two encoded words is dropped.
			if strings.EqualFold(charset, runCharset) {
				runBytes = append(runBytes, data...)
				runRaw += between + v[i:i+n]
				v = v[i+n:]
				continue
			}
			between = ""
		}
		flush()
		b.WriteString(between)
		runCharset, runBytes, runRaw = charset, data, v[i:i+n]
		v = v[i+n:]
	}
	flush()
	b.WriteString(v)
	return b.String()
}

// encodedWord parses the encoded word at the start of s
// ("=?charset?Q?text?=", the charset perhaps with an RFC 2231 language
// after a "*") and returns its charset, its decoded bytes and its length.
func encodedWord(s string) (charset string, data []byte, n int, ok bool) {
	rest := s[2:]
	q := strings.IndexByte(rest, '?')
	if q <= 0 || len(rest) < q+3 || rest[q+2] != '?' {
		return "", nil, 0, false
	}
	charset, enc := rest[:q], rest[q+1]
	// RFC 2047's especials but ".", which charset names such as
	// ANSI_X3.4-1968 hold.
	if strings.ContainsAny(charset, " \t\r\n()<>@,;:\"/[]?=") {
		return "", nil, 0, false
	}
	if k := strings.IndexByte(charset, '*'); k >= 0 {
		charset = charset[:k]
	}
	text := rest[q+3:]
	end := strings.Index(text, "?=")
	if end < 0 || charset == "" {
		return "", nil, 0, false
	}
	text = text[:end]
	switch enc {
	case 'Q', 'q':
		data = qDecode(text)
	case 'B', 'b':
		data, ok = bDecode(text)
		if !ok {
			return "", nil, 0, false
		}
	default:
		return "", nil, 0, false
	}
	return charset, data, 2 + q + 3 + end + 2, true
}

// qDecode decodes the "Q" encoding of RFC 2047 section 4.2: "_" is a
// space, "=XX" a byte; any other byte stands for itself.
func qDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// bDecode decodes the "B" encoding (base64), with or without padding;
// bytes outside the alphabet are dropped, as base64Only drops them.
func bDecode(s string) ([]byte, bool) {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; base64Value(c) >= 0 {
			clean = append(clean, c)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1] // a sextet that makes no byte
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, err := base64.RawStdEncoding.Decode(out, clean)
	return out[:n], err == nil
}

// base64Alphabet reports whether c is of the base64 alphabet, padding
// included.
func base64Alphabet(c byte) bool { return c == '=' || base64Value(c) >= 0 }

// utf7Decoder decodes UTF-7 (RFC 2152) to UTF-8, leniently: a byte that
// UTF-7 does not allow (8-bit) and a UTF-16 surrogate without its pair
// become U+FFFD; the bits left at the end of a base64 run are dropped.
type utf7Decoder struct {
	inBase64 bool
	empty    bool   // no base64 character yet in this run: "+-" is "+"
	acc      uint32 // bits not yet in a UTF-16 unit
	bits     int
	high     rune // a high surrogate waiting for its pair, or 0
}

func (d *utf7Decoder) Reset() { *d = utf7Decoder{} }

func (d *utf7Decoder) Transform(dst, src []byte, atEOF bool) (nDst, nSrc int, err error) {
	var out [2 * utf8.UTFMax]byte
	for nSrc < len(src) {
		next := *d
		o := next.step(src[nSrc], out[:0])
		if nDst+len(o) > len(dst) {
			return nDst, nSrc, transform.ErrShortDst
		}
		*d = next
		nDst += copy(dst[nDst:], o)
		nSrc++
	}
	if atEOF && d.high != 0 {
		o := utf8.AppendRune(out[:0], utf8.RuneError)
		if nDst+len(o) > len(dst) {
			return nDst, nSrc, transform.ErrShortDst
		}
		d.high = 0
		nDst += copy(dst[nDst:], o)
	}
	return nDst, nSrc, nil
}

// step takes one byte and appends what it decodes to out.
func (d *utf7Decoder) step(c byte, out []byte) []byte {
	if d.inBase64 {
		if v := base64Value(c); v >= 0 {
			d.empty = false
			d.acc = d.acc<<6 | uint32(v)
			d.bits += 6
			if d.bits >= 16 {
				d.bits -= 16
				u := rune(d.acc >> d.bits)
				d.acc &= 1<<d.bits - 1
				out = d.unit(u, out)
			}
			return out
		}
		// The run ends; "-" ends it and is absorbed, "+-" is "+".
		empty := d.empty
		d.inBase64, d.acc, d.bits = false, 0, 0
		if c == '-' {
			if empty {
				out = append(out, '+')
			}
			return out
		}
	}
	if d.high != 0 {
		out = utf8.AppendRune(out, utf8.RuneError)
		d.high = 0
	}
	switch {
	case c == '+':
		d.inBase64, d.empty = true, true
	case c >= 0x80:
		out = utf8.AppendRune(out, utf8.RuneError)
	default:
		out = append(out, c)
	}
	return out
}

// unit appends the character of a UTF-16 unit, pairing surrogates.
func (d *utf7Decoder) unit(u rune, out []byte) []byte {
	switch {
	case utf16.IsSurrogate(u) && u < 0xdc00:
		if d.high != 0 {
			out = utf8.AppendRune(out, utf8.RuneError)
		}
		d.high = u
		return out
	case utf16.IsSurrogate(u):
		if d.high == 0 {
			return utf8.AppendRune(out, utf8.RuneError)
		}
		r := utf16.DecodeRune(d.high, u)
		d.high = 0
		return utf8.AppendRune(out, r)
	}
	if d.high != 0 {
		out = utf8.AppendRune(out, utf8.RuneError)
		d.high = 0
	}
	return utf8.AppendRune(out, u)
}

func base64Value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	}
	return -1
}
