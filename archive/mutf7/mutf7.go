// Package mutf7 converts IMAP mailbox names between UTF-8 and the modified
// UTF-7 of RFC 3501 §5.1.3, which IMAP servers and Maildir++ folder names
// use. It needs only the standard library, so every connector can use it.
package mutf7

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The modified BASE64 alphabet of RFC 3501 §5.1.3: "," replaces "/".
const mutf7Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

var mutf7Index = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := range len(mutf7Alphabet) {
		t[mutf7Alphabet[i]] = int8(i)
	}
	return t
}()

// Encode encodes a UTF-8 mailbox name in IMAP modified UTF-7 (RFC 3501
// §5.1.3): printable US-ASCII stands for itself, "&" becomes "&-", and every
// other run of characters becomes "&" + modified BASE64 of its UTF-16 + "-".
// Invalid UTF-8 bytes are encoded as U+FFFD.
func Encode(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		b.WriteByte('&')
		u := utf16.Encode(run)
		var acc uint32
		bits := 0
		for _, c := range u {
			acc = acc<<16 | uint32(c)
			bits += 16
			for bits >= 6 {
				bits -= 6
				b.WriteByte(mutf7Alphabet[(acc>>bits)&0x3f])
			}
		}
		if bits > 0 {
			b.WriteByte(mutf7Alphabet[(acc<<(6-bits))&0x3f])
		}
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			b.WriteRune(r)
			if r == '&' {
				b.WriteByte('-')
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}

// errMUTF7 is wrapped by every DecodeMUTF7 error.
var errMUTF7 = errors.New("invalid modified UTF-7")

// Decode decodes an IMAP modified UTF-7 mailbox name (RFC 3501 §5.1.3)
// to UTF-8. It fails on bytes outside printable US-ASCII, an unterminated or
// malformed BASE64 run, non-zero padding bits, unpaired UTF-16 surrogates and
// printable US-ASCII characters that were encoded although they stand for
// themselves.
func Decode(s string) (string, error) {
	if !strings.Contains(s, "&") {
		for i := range len(s) {
			if s[i] < 0x20 || s[i] > 0x7e {
				return "", fmt.Errorf("decode %q: %w: byte %#x at %d", s, errMUTF7, s[i], i)
			}
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", fmt.Errorf("decode %q: %w: byte %#x at %d", s, errMUTF7, c, i)
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", fmt.Errorf("decode %q: %w: unterminated \"&\" at %d", s, errMUTF7, i)
		}
		enc := s[i+1 : i+1+end]
		if enc == "" {
			b.WriteByte('&')
			i++
			continue
		}
		r, err := decodeMUTF7Run(enc)
		if err != nil {
			return "", fmt.Errorf("decode %q: %w at %d", s, err, i)
		}
		b.WriteString(r)
		i += 1 + end
	}
	return b.String(), nil
}

func decodeMUTF7Run(enc string) (string, error) {
	var u []uint16
	var acc uint32
	bits := 0
	for i := range len(enc) {
		v := mutf7Index[enc[i]]
		if v < 0 {
			return "", fmt.Errorf("%w: %q in BASE64", errMUTF7, enc[i])
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 16 {
			bits -= 16
			u = append(u, uint16(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	// At most 4 bits of padding may remain, and they must be zero.
	if bits >= 6 || acc != 0 {
		return "", fmt.Errorf("%w: bad BASE64 padding", errMUTF7)
	}
	var b strings.Builder
	for i := 0; i < len(u); i++ {
		c := rune(u[i])
		switch {
		case utf16.IsSurrogate(c):
			if c >= 0xdc00 || i+1 == len(u) {
				return "", fmt.Errorf("%w: unpaired surrogate", errMUTF7)
			}
			c = utf16.DecodeRune(c, rune(u[i+1]))
			if c == utf8.RuneError {
				return "", fmt.Errorf("%w: unpaired surrogate", errMUTF7)
			}
			i++
		case c >= 0x20 && c <= 0x7e:
			return "", fmt.Errorf("%w: encoded printable character %q", errMUTF7, c)
		}
		b.WriteRune(c)
	}
	return b.String(), nil
}
