#include "textflag.h"

// func encodeAVX2(dst, src *byte, n int)
//
// The vector base64 encoding of Muła and Lemire: each 128-bit lane takes
// 12 bytes, which a byte shuffle spreads to 4 bytes per 3 (b1 b0 b2 b1);
// two multiplications move each 6-bit index to a byte of its own; the
// index's range picks what to add to it from a 16-byte table.
TEXT ·encodeAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	TESTQ CX, CX
	JZ   done
	VMOVDQU b64spread<>(SB), Y8
	VMOVDQU b64maskAC<>(SB), Y9
	VMOVDQU b64mulAC<>(SB), Y10
	VMOVDQU b64maskBD<>(SB), Y11
	VMOVDQU b64mulBD<>(SB), Y12
	VMOVDQU b64c51<>(SB), Y13
	VMOVDQU b64c26<>(SB), Y14
	VMOVDQU b64c13<>(SB), Y15
	VMOVDQU b64shift<>(SB), Y7

loop:
	VMOVDQU    (SI), X0
	VINSERTI128 $1, 12(SI), Y0, Y0
	VPSHUFB    Y8, Y0, Y0      // b1 b0 b2 b1 for each 3 bytes
	VPAND      Y9, Y0, Y1
	VPMULHUW   Y10, Y1, Y1     // indices a and c in bytes 0 and 2
	VPAND      Y11, Y0, Y2
	VPMULLW    Y12, Y2, Y2     // indices b and d in bytes 1 and 3
	VPOR       Y1, Y2, Y0      // the 6-bit indices
	VPSUBUSB   Y13, Y0, Y1     // 52..63 -> 1..12, others 0
	VPCMPGTB   Y0, Y14, Y2     // 0..25 -> 0xff
	VPAND      Y15, Y2, Y2
	VPOR       Y2, Y1, Y1      // 0..25 -> 13
	VPSHUFB    Y1, Y7, Y1
	VPADDB     Y1, Y0, Y0
	VMOVDQU    Y0, (DI)
	ADDQ $24, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  loop
	VZEROUPPER

done:
	RET

// The shuffle, the same in both lanes: b1 b0 b2 b1 of each 3 bytes.
DATA b64spread<>+0(SB)/8, $0x0405030401020001
DATA b64spread<>+8(SB)/8, $0x0a0b090a07080607
DATA b64spread<>+16(SB)/8, $0x0405030401020001
DATA b64spread<>+24(SB)/8, $0x0a0b090a07080607
GLOBL b64spread<>(SB), RODATA|NOPTR, $32

DATA b64maskAC<>+0(SB)/8, $0x0fc0fc000fc0fc00
DATA b64maskAC<>+8(SB)/8, $0x0fc0fc000fc0fc00
DATA b64maskAC<>+16(SB)/8, $0x0fc0fc000fc0fc00
DATA b64maskAC<>+24(SB)/8, $0x0fc0fc000fc0fc00
GLOBL b64maskAC<>(SB), RODATA|NOPTR, $32

DATA b64mulAC<>+0(SB)/8, $0x0400004004000040
DATA b64mulAC<>+8(SB)/8, $0x0400004004000040
DATA b64mulAC<>+16(SB)/8, $0x0400004004000040
DATA b64mulAC<>+24(SB)/8, $0x0400004004000040
GLOBL b64mulAC<>(SB), RODATA|NOPTR, $32

DATA b64maskBD<>+0(SB)/8, $0x003f03f0003f03f0
DATA b64maskBD<>+8(SB)/8, $0x003f03f0003f03f0
DATA b64maskBD<>+16(SB)/8, $0x003f03f0003f03f0
DATA b64maskBD<>+24(SB)/8, $0x003f03f0003f03f0
GLOBL b64maskBD<>(SB), RODATA|NOPTR, $32

DATA b64mulBD<>+0(SB)/8, $0x0100001001000010
DATA b64mulBD<>+8(SB)/8, $0x0100001001000010
DATA b64mulBD<>+16(SB)/8, $0x0100001001000010
DATA b64mulBD<>+24(SB)/8, $0x0100001001000010
GLOBL b64mulBD<>(SB), RODATA|NOPTR, $32

DATA b64c51<>+0(SB)/8, $0x3333333333333333
DATA b64c51<>+8(SB)/8, $0x3333333333333333
DATA b64c51<>+16(SB)/8, $0x3333333333333333
DATA b64c51<>+24(SB)/8, $0x3333333333333333
GLOBL b64c51<>(SB), RODATA|NOPTR, $32

DATA b64c26<>+0(SB)/8, $0x1a1a1a1a1a1a1a1a
DATA b64c26<>+8(SB)/8, $0x1a1a1a1a1a1a1a1a
DATA b64c26<>+16(SB)/8, $0x1a1a1a1a1a1a1a1a
DATA b64c26<>+24(SB)/8, $0x1a1a1a1a1a1a1a1a
GLOBL b64c26<>(SB), RODATA|NOPTR, $32

DATA b64c13<>+0(SB)/8, $0x0d0d0d0d0d0d0d0d
DATA b64c13<>+8(SB)/8, $0x0d0d0d0d0d0d0d0d
DATA b64c13<>+16(SB)/8, $0x0d0d0d0d0d0d0d0d
DATA b64c13<>+24(SB)/8, $0x0d0d0d0d0d0d0d0d
GLOBL b64c13<>(SB), RODATA|NOPTR, $32

// What to add to an index, by its class: 0 for 26..51 ('a'-26), 1..10 for
// 52..61 ('0'-52), 11 for 62 ('+'-62), 12 for 63 ('/'-63), 13 for 0..25
// ('A'); the same in both lanes.
DATA b64shift<>+0(SB)/8, $0xfcfcfcfcfcfcfc47
DATA b64shift<>+8(SB)/8, $0x000041f0edfcfcfc
DATA b64shift<>+16(SB)/8, $0xfcfcfcfcfcfcfc47
DATA b64shift<>+24(SB)/8, $0x000041f0edfcfcfc
GLOBL b64shift<>(SB), RODATA|NOPTR, $32
