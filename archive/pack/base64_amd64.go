package pack

import "golang.org/x/sys/cpu"

// useAVX2 says whether encodeB64 encodes 24 bytes at a time with AVX2.
var useAVX2 = cpu.X86.HasAVX2

// encodeLinesAVX2 writes lines of base64 to dst, each the in bytes next
// in src (in a multiple of 3, at least 24) as width = in/3*4 characters,
// then its line end: eol 1 LF, 2 CRLF. It reads 4 bytes past the last
// line: the caller makes sure that len(src) >= lines*in+4 and len(dst) >=
// lines*(width+eol).
//
//go:noescape
func encodeLinesAVX2(dst, src *byte, lines, in, width, eol int)

// setAVX2 turns the AVX2 encoder on or off, for tests.
func setAVX2(on bool) { useAVX2 = on && cpu.X86.HasAVX2 }
