package mailform

import "golang.org/x/sys/cpu"

// useAVX2 says whether convert goes 32 bytes at a time with AVX2.
var useAVX2 = cpu.X86.HasAVX2

// convertAVX2 converts src[:r] to dst[:w], every bare LF and bare CR made
// CRLF, and returns where it stopped: short of the last 64 bytes of src,
// or of dst's last 96. dst has room for dcap bytes, src holds n. src[0]
// must not be the LF of a CR before it.
//
//go:noescape
func convertAVX2(dst *byte, dcap int, src *byte, n int) (w, r int)

// setAVX2 turns the AVX2 converter on or off, for tests.
func setAVX2(on bool) { useAVX2 = on && cpu.X86.HasAVX2 }
