//go:build !amd64

package pack

const useAVX2 = false

func encodeLinesAVX2(dst, src *byte, lines, in, width, eol int) { panic("no AVX2") }

func setAVX2(bool) {}
