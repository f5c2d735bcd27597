//go:build !amd64

package mailform

const useAVX2 = false

func convertAVX2(dst *byte, dcap int, src *byte, n int) (w, r int) { panic("no AVX2") }

func setAVX2(bool) {}
