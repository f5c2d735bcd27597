package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"io"
	"regexp"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
)

// The reference search's reading of text, written apart from the
// server's (imap/serve's charset.go) to the same rules, those of the
// mail readers and of Dovecot: encoded words decoded leniently (raw 8-bit
// bytes in a "Q" word, a "B" word without padding), UTF-7 (RFC 2152),
// which go-message's charset package does not know, and a part in an
// unknown transfer encoding read as no text (RFC 2045 section 6.4).

// refWord is an RFC 2047 encoded word: charset (maybe with "*language"),
// encoding, text.
var refWord = regexp.MustCompile(`=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=`)

// refBetweenWords is the white space between two encoded words, which
// RFC 2047 section 6.2 drops.
var refBetweenWords = regexp.MustCompile(`(\?=)[ \t\r\n]+(=\?)`)

// refDecode returns a header field's value with its encoded words
// decoded; a word that does not decode stays as written.
func refDecode(v string) string {
	v = refBetweenWords.ReplaceAllString(v, "$1$2")
	return refWord.ReplaceAllStringFunc(v, func(w string) string {
		m := refWord.FindStringSubmatch(w)
		cs, _, _ := strings.Cut(m[1], "*")
		var raw []byte
		if m[2] == "Q" || m[2] == "q" {
			for i := 0; i < len(m[3]); i++ {
				c := m[3][i]
				if c == '=' && i+2 < len(m[3]) {
					if b, err := hex.DecodeString(m[3][i+1 : i+3]); err == nil {
						raw = append(raw, b[0])
						i += 2
						continue
					}
				}
				if c == '_' {
					c = ' '
				}
				raw = append(raw, c)
			}
		} else {
			s := strings.TrimRight(m[3], "=")
			if len(s)%4 == 1 {
				s = s[:len(s)-1]
			}
			b, err := base64.RawStdEncoding.DecodeString(s)
			if err != nil {
				return w
			}
			raw = b
		}
		if refIsUTF7(cs) {
			return refUTF7(raw)
		}
		r, err := charset.Reader(cs, bytes.NewReader(raw))
		if err != nil {
			return w
		}
		d, err := io.ReadAll(r)
		if err != nil {
			return w
		}
		return strings.ToValidUTF8(string(d), "\uFFFD")
	})
}

func refIsUTF7(cs string) bool {
	cs = strings.ToLower(cs)
	return cs == "utf-7" || cs == "utf7" || cs == "unicode-1-1-utf-7" || cs == "csunicode11utf7"
}

// refUTF7 decodes UTF-7: "+" opens a run of base64 of UTF-16 (big
// endian) that the first byte outside base64 ends, a "-" ending it
// dropped; "+-" is "+".
func refUTF7(b []byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var out strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] != '+' {
			if b[i] < utf8.RuneSelf {
				out.WriteByte(b[i])
			} else {
				out.WriteRune(utf8.RuneError)
			}
			continue
		}
		j := i + 1
		for j < len(b) && strings.IndexByte(alphabet, b[j]) >= 0 {
			j++
		}
		run := string(b[i+1 : j])
		if run == "" && j < len(b) && b[j] == '-' {
			out.WriteByte('+')
			i = j
			continue
		}
		if len(run)%4 == 1 {
			run = run[:len(run)-1]
		}
		octets, _ := base64.RawStdEncoding.DecodeString(run)
		units := make([]uint16, len(octets)/2)
		for k := range units {
			units[k] = binary.BigEndian.Uint16(octets[2*k:])
		}
		out.WriteString(string(utf16.Decode(units)))
		i = j - 1
		if j < len(b) && b[j] == '-' {
			i = j
		}
	}
	return out.String()
}

// refHeaderHas reports whether a line of a header, as "Name: value" with
// the value's encoded words decoded, holds s (in lower case).
func refHeaderHas(h message.Header, s string) bool {
	for fs := h.Fields(); fs.Next(); {
		if strings.Contains(strings.ToLower(fs.Key()+": "+refDecode(fs.Value())), s) {
			return true
		}
	}
	return false
}

// refKnownEncoding reports whether a part's transfer encoding is one
// that RFC 2045 defines.
func refKnownEncoding(h message.Header) bool {
	switch refCTE(h) {
	case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
		return true
	}
	return false
}

// refCTE returns a part's transfer encoding in lower case; a value that
// is no token ("8 bit") is none (RFC 2045 section 6.1), as Dovecot reads
// it.
func refCTE(h message.Header) string {
	v := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if strings.ContainsAny(v, " \t()<>@,;:\\\"/[]?=") {
		return ""
	}
	return v
}

// refEncoded reports whether a part is in base64 or quoted-printable:
// an attached message so encoded (which RFC 2046 forbids) is read as
// text.
func refEncoded(h message.Header) bool {
	switch refCTE(h) {
	case "base64", "quoted-printable":
		return true
	}
	return false
}
