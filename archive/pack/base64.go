package pack

import (
	"encoding/binary"
	"errors"
)

// Base64 lines (frame flag FlagBase64). Most of a mailbox's bytes are
// attachments in base64: lines of 76 (or 72, 64...) characters of a
// 64-letter alphabet, each 4 of them 3 bytes of a PDF or a photo. zstd
// finds no repeats in them and Huffman coding of their 6 bits a byte
// saves a quarter, at a cost on every read. Stored decoded instead, they
// take the same quarter less room, and reading them back is encoding
// them again, which is several times faster than Huffman decoding.
//
// A frame's plaintext is made of segments, each a run of bytes kept as
// they are, then a run of lines of base64 kept decoded:
//
//	segment = uvarint(n) byte[n]           bytes as they are
//	          uvarint(lines)               0 ends the frame's plaintext
//	          [ byte(width/4) byte(eol)    when lines > 0: the line width
//	            byte[lines*width/4*3] ]    (4..1020), eol 0 LF, 1 CRLF;
//	                                       then the decoded lines
//
// A line of the run is width characters of the standard alphabet (no
// padding) and its line end; the first line of a frame is one too, even if
// the frame begins in the middle of a line of the message. Any 4 such
// characters are 3 bytes that encode back to the same 4 characters: the
// transform keeps every byte as it was, which the blob IDs check anyway.

const (
	b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	// b64MinWidth is the narrowest line taken as base64: a shorter one is
	// as likely to be a word of text, and saves next to nothing.
	b64MinWidth = 40
	b64MaxWidth = 255 * 4
	// b64MinRun is the fewest bytes of lines a run must hold: each costs
	// a few bytes of segment header.
	b64MinRun = 1024
)

// b64Value holds each alphabet byte's 6-bit value, and 0xff for others.
var b64Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(b64Alphabet); i++ {
		t[b64Alphabet[i]] = byte(i)
	}
	return t
}()

// b64Pair holds the two characters of each 12-bit value, the first in the
// low byte: two lookups encode 3 bytes.
var b64Pair = func() (t [4096]uint16) {
	for v := range t {
		t[v] = uint16(b64Alphabet[v>>6]) | uint16(b64Alphabet[v&63])<<8
	}
	return t
}()

// b64Line returns the width of the line of base64 at the start of b and
// the length of its line end (1 LF, 2 CRLF), or width 0 when b does not
// start with one.
func b64Line(b []byte) (width, eol int) {
	for i, c := range b {
		if b64Value[c] != 0xff {
			if i > b64MaxWidth {
				return 0, 0
			}
			continue
		}
		switch {
		case c == '\n':
			eol = 1
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			eol = 2
		default:
			return 0, 0
		}
		if i < b64MinWidth || i%4 != 0 {
			return 0, 0
		}
		return i, eol
	}
	return 0, 0
}

// appendBase64Lines appends raw in the segment form to dst, with runs of
// minRun bytes or more (b64MinRun but in tests) decoded. ok is false, and
// dst returned as it was, when raw holds too few base64 lines for it to be
// worth it (a quarter of raw, and at least minRun).
func appendBase64Lines(dst, raw []byte, minRun int) (out []byte, ok bool) {
	start := len(dst)
	lit, pos, coded := 0, 0, 0 // lit: where the bytes as they are start
	for pos < len(raw) {
		width, eol := b64Line(raw[pos:])
		if width == 0 {
			if nl := indexLF(raw[pos:]); nl >= 0 {
				pos += nl + 1
			} else {
				pos = len(raw)
			}
			continue
		}
		// A run: lines of the same width and line end.
		end, lines := pos, 0
		for end < len(raw) {
			w, e := b64Line(raw[end:])
			if w != width || e != eol {
				break
			}
			end += w + e
			lines++
		}
		if end-pos < minRun {
			pos = end
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(pos-lit))
		dst = append(dst, raw[lit:pos]...)
		dst = binary.AppendUvarint(dst, uint64(lines))
		dst = append(dst, byte(width/4), byte(eol-1))
		for ; pos < end; pos += width + eol {
			dst = decodeB64(dst, raw[pos:pos+width])
		}
		lit = end
		coded += lines * (width + eol)
	}
	if coded == 0 || coded < minRun || coded < len(raw)/4 {
		return dst[:start], false
	}
	dst = binary.AppendUvarint(dst, uint64(len(raw)-lit))
	dst = append(dst, raw[lit:]...)
	return append(dst, 0), true
}

// indexLF is bytes.IndexByte(b, '\n'), without the import for one call.
func indexLF(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

// decodeB64 appends the bytes of s, characters of the alphabet, len(s) a
// multiple of 4, to dst.
func decodeB64(dst, s []byte) []byte {
	for ; len(s) >= 4; s = s[4:] {
		v := uint32(b64Value[s[0]])<<18 | uint32(b64Value[s[1]])<<12 | uint32(b64Value[s[2]])<<6 | uint32(b64Value[s[3]])
		dst = append(dst, byte(v>>16), byte(v>>8), byte(v))
	}
	return dst
}

// encodeB64 writes the base64 of src (len(src) a multiple of 3) to dst,
// which holds len(src)/3*4 bytes.
func encodeB64(dst, src []byte) {
	// 6 bytes at a time from an 8-byte load, into an 8-byte store.
	for len(src) >= 8 && len(dst) >= 8 {
		v := binary.BigEndian.Uint64(src)
		binary.LittleEndian.PutUint64(dst, uint64(b64Pair[v>>52])|uint64(b64Pair[v>>40&0xfff])<<16|
			uint64(b64Pair[v>>28&0xfff])<<32|uint64(b64Pair[v>>16&0xfff])<<48)
		src, dst = src[6:], dst[8:]
	}
	for ; len(src) >= 3; src, dst = src[3:], dst[4:] {
		v := uint32(src[0])<<16 | uint32(src[1])<<8 | uint32(src[2])
		binary.LittleEndian.PutUint16(dst, b64Pair[v>>12])
		binary.LittleEndian.PutUint16(dst[2:], b64Pair[v&0xfff])
	}
}

var errBase64Frame = errors.New("malformed base64 frame")

// appendRawFromBase64Lines reverses appendBase64Lines: it appends the
// frame's plaintext, which must be rawLen bytes, to dst.
func appendRawFromBase64Lines(dst, seg []byte, rawLen int) ([]byte, error) {
	limit := len(dst) + rawLen
	if cap(dst) < limit {
		grown := make([]byte, len(dst), limit)
		copy(grown, dst)
		dst = grown
	}
	for {
		n, k := binary.Uvarint(seg)
		if k <= 0 || n > uint64(len(seg)-k) || n > uint64(limit-len(dst)) {
			return nil, errBase64Frame
		}
		dst = append(dst, seg[k:k+int(n)]...)
		seg = seg[k+int(n):]
		lines, k := binary.Uvarint(seg)
		if k <= 0 {
			return nil, errBase64Frame
		}
		seg = seg[k:]
		if lines == 0 {
			break
		}
		if len(seg) < 2 || seg[0] == 0 || seg[1] > 1 {
			return nil, errBase64Frame
		}
		width, eol := int(seg[0])*4, int(seg[1])+1
		in := width / 4 * 3
		seg = seg[2:]
		if lines > uint64(len(seg)/in) || lines > uint64((limit-len(dst))/(width+eol)) {
			return nil, errBase64Frame
		}
		for range lines {
			p := len(dst)
			dst = dst[:p+width+eol]
			encodeB64(dst[p:p+width], seg[:in])
			if eol == 2 {
				dst[p+width] = '\r'
			}
			dst[p+width+eol-1] = '\n'
			seg = seg[in:]
		}
	}
	if len(seg) != 0 || len(dst) != limit {
		return nil, errBase64Frame
	}
	return dst, nil
}
