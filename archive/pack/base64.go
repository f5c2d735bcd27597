package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
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

// appendBase64Lines appends raw in the segment form to dst, with runs of
// minRun bytes or more (b64MinRun but in tests) decoded. ok is false, and
// dst returned as it was, when raw holds too few base64 lines for it to be
// worth it (a quarter of raw, and at least minRun).
func appendBase64Lines(dst, raw []byte, minRun int) (out []byte, ok bool) {
	start := len(dst)
	lit, pos, coded := 0, 0, 0 // lit: where the bytes as they are start
	for pos < len(raw) {
		nl := bytes.IndexByte(raw[pos:], '\n')
		if nl < 0 {
			break
		}
		width, eol := nl, 1
		if width > 0 && raw[pos+width-1] == '\r' {
			width, eol = width-1, 2
		}
		step := width + eol
		if width < b64MinWidth || width > b64MaxWidth || width%4 != 0 {
			pos += step
			continue
		}
		// The lines of the same shape from pos on, by their line ends
		// alone; decoding them checks their characters.
		end := pos + step
		for end+step <= len(raw) && raw[end+step-1] == '\n' && (eol == 1 || raw[end+width] == '\r') {
			end += step
		}
		if end-pos < minRun {
			pos = end
			continue
		}
		lines, in := (end-pos)/step, width/4*3
		mark := len(dst)
		dst = binary.AppendUvarint(dst, uint64(pos-lit))
		dst = append(dst, raw[lit:pos]...)
		count := len(dst)
		dst = binary.AppendUvarint(dst, uint64(lines))
		dst = append(dst, byte(width/4), byte(eol-1))
		data := len(dst)
		// 2 bytes more: decodeLine stores 8 bytes for 6.
		dst = slices.Grow(dst, lines*in+2)[:data+lines*in]
		k := 0
		for ; k < lines; k++ {
			p := pos + k*step
			if !decodeLine(dst[data+k*in:data+k*in+in+2], raw[p:p+width]) {
				break
			}
		}
		if k*step < minRun {
			// Too few before one that is not base64: skip that one too.
			dst = dst[:mark]
			pos += (k + 1) * step
			continue
		}
		if k < lines {
			// The run ends at a line that is not base64: its count
			// changes, and may take fewer bytes.
			var vb [binary.MaxVarintLen64]byte
			n, was := binary.PutUvarint(vb[:], uint64(k)), data-2-count
			copy(dst[count+n:], dst[count+was:data+k*in])
			copy(dst[count:], vb[:n])
			dst = dst[:data-was+n+k*in]
		}
		pos += k * step
		lit = pos
		coded += k * step
	}
	if coded == 0 || coded < minRun || coded < len(raw)/4 {
		return dst[:start], false
	}
	dst = binary.AppendUvarint(dst, uint64(len(raw)-lit))
	dst = append(dst, raw[lit:]...)
	return append(dst, 0), true
}

// decodeLine writes the bytes of the base64 characters s (len(s) a
// multiple of 4) to out, which holds 2 bytes more than they are, and
// reports whether s was base64 through and through.
func decodeLine(out, s []byte) bool {
	var bad byte // an 0xff of b64Value, for a character not base64
	for len(s) >= 8 && len(out) >= 8 {
		a, b, c, d := b64Value[s[0]], b64Value[s[1]], b64Value[s[2]], b64Value[s[3]]
		e, f, g, h := b64Value[s[4]], b64Value[s[5]], b64Value[s[6]], b64Value[s[7]]
		bad |= a | b | c | d | e | f | g | h
		binary.BigEndian.PutUint64(out, uint64(a)<<58|uint64(b)<<52|uint64(c)<<46|uint64(d)<<40|
			uint64(e)<<34|uint64(f)<<28|uint64(g)<<22|uint64(h)<<16)
		s, out = s[8:], out[6:]
	}
	for ; len(s) >= 4 && len(out) >= 3; s, out = s[4:], out[3:] {
		a, b, c, d := b64Value[s[0]], b64Value[s[1]], b64Value[s[2]], b64Value[s[3]]
		bad |= a | b | c | d
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		out[0], out[1], out[2] = byte(v>>16), byte(v>>8), byte(v)
	}
	return bad < 64
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
	dst = slices.Grow(dst, rawLen)
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
		if useAVX2 && in >= 24 {
			// All lines but the last when seg ends less than 4 bytes
			// after it (encodeLinesAVX2 reads that far), in one call.
			n := min(int(lines), (len(seg)-4)/in)
			if n > 0 {
				p := len(dst)
				dst = dst[:p+n*(width+eol)]
				encodeLinesAVX2(&dst[p], &seg[0], n, in, width, eol)
				seg = seg[n*in:]
				lines -= uint64(n)
			}
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
