#include "textflag.h"

// The vector base64 encoding of Muła and Lemire: each 128-bit lane takes
// 12 bytes, which a byte shuffle spreads to 4 bytes per 3 (b1 b0 b2 b1);
// two multiplications move each 6-bit index to a byte of its own; the
// index's range picks what to add to it from a 16-byte table.

// LOADCONSTS loads the constants of ENCODE24 into Y7-Y15.
#define LOADCONSTS \
	VMOVDQU b64spread<>(SB), Y8 \
	VMOVDQU b64maskAC<>(SB), Y9 \
	VMOVDQU b64mulAC<>(SB), Y10 \
	VMOVDQU b64maskBD<>(SB), Y11 \
	VMOVDQU b64mulBD<>(SB), Y12 \
	VMOVDQU b64c51<>(SB), Y13 \
	VMOVDQU b64c26<>(SB), Y14 \
	VMOVDQU b64c13<>(SB), Y15 \
	VMOVDQU b64shift<>(SB), Y7

// ENCODE24 writes the 32 characters of the 24 bytes at rs to rd, reading
// 28 bytes; it uses Y0-Y2. The shuffle gives b1 b0 b2 b1 for each 3
// bytes; VPMULHUW puts indices a and c in bytes 0 and 2, VPMULLW b and d
// in bytes 1 and 3; VPSUBUSB makes 52..63 1..12 and the others 0;
// VPCMPGTB and VPAND make 0..25 13; the table gives what to add.
#define ENCODE24(rs, rd) \
	VMOVDQU     (rs), X0 \
	VINSERTI128 $1, 12(rs), Y0, Y0 \
	VPSHUFB     Y8, Y0, Y0 \
	VPAND       Y9, Y0, Y1 \
	VPMULHUW    Y10, Y1, Y1 \
	VPAND       Y11, Y0, Y2 \
	VPMULLW     Y12, Y2, Y2 \
	VPOR        Y1, Y2, Y0 \
	VPSUBUSB    Y13, Y0, Y1 \
	VPCMPGTB    Y0, Y14, Y2 \
	VPAND       Y15, Y2, Y2 \
	VPOR        Y2, Y1, Y1 \
	VPSHUFB     Y1, Y7, Y1 \
	VPADDB      Y1, Y0, Y0 \
	VMOVDQU     Y0, (rd)

// func encodeLinesAVX2(dst, src *byte, lines, in, width, eol int)
//
// Each line: in bytes of src (a multiple of 3, at least 24) as width =
// in/3*4 characters, then the line end (eol 1: LF, 2: CRLF). The last 24 bytes
// of a line whose length is not a multiple of 24 are encoded again, over
// characters already written: the same ones.
TEXT ·encodeLinesAVX2(SB), NOSPLIT, $0-48
	MOVQ  dst+0(FP), DI
	MOVQ  src+8(FP), SI
	MOVQ  lines+16(FP), CX
	MOVQ  in+24(FP), DX
	MOVQ  width+32(FP), R11
	MOVQ  eol+40(FP), BX
	TESTQ CX, CX
	JZ    ldone
	LOADCONSTS
	LEAQ  -32(R11), R12 // where the characters of a line's last 24 bytes go

line:
	MOVQ SI, R8  // src of the group
	MOVQ DI, R9  // dst of the group
	MOVQ DX, R10 // bytes of the line left

group:
	CMPQ R10, $24
	JB   tail
	ENCODE24(R8, R9)
	ADDQ $24, R8
	ADDQ $32, R9
	SUBQ $24, R10
	JMP  group

tail:
	TESTQ R10, R10
	JZ    eolchar
	LEAQ  -24(SI)(DX*1), R13
	LEAQ  (DI)(R12*1), R14
	ENCODE24(R13, R14)

eolchar:
	CMPQ BX, $2
	JNE  lf
	MOVB $0x0d, (DI)(R11*1)
	MOVB $0x0a, 1(DI)(R11*1)
	JMP  next

lf:
	MOVB $0x0a, (DI)(R11*1)

next:
	ADDQ DX, SI
	ADDQ R11, DI
	ADDQ BX, DI
	DECQ CX
	JNZ  line
	VZEROUPPER

ldone:
	RET

// CONST32 defines sym, 32 bytes: the 8 bytes v0 then v1, twice (one
// 16-byte value for each lane).
#define CONST32(sym, v0, v1) \
	DATA sym<>+0(SB)/8, v0 \
	DATA sym<>+8(SB)/8, v1 \
	DATA sym<>+16(SB)/8, v0 \
	DATA sym<>+24(SB)/8, v1 \
	GLOBL sym<>(SB), RODATA|NOPTR, $32

// The shuffle: b1 b0 b2 b1 of each 3 bytes.
CONST32(b64spread, $0x0405030401020001, $0x0a0b090a07080607)
// Masks and multipliers of the 6-bit indices, and the bounds of their
// classes (52..63, 0..25).
CONST32(b64maskAC, $0x0fc0fc000fc0fc00, $0x0fc0fc000fc0fc00)
CONST32(b64mulAC, $0x0400004004000040, $0x0400004004000040)
CONST32(b64maskBD, $0x003f03f0003f03f0, $0x003f03f0003f03f0)
CONST32(b64mulBD, $0x0100001001000010, $0x0100001001000010)
CONST32(b64c51, $0x3333333333333333, $0x3333333333333333)
CONST32(b64c26, $0x1a1a1a1a1a1a1a1a, $0x1a1a1a1a1a1a1a1a)
CONST32(b64c13, $0x0d0d0d0d0d0d0d0d, $0x0d0d0d0d0d0d0d0d)
// What to add to an index, by its class: 0 for 26..51 ('a'-26), 1..10 for
// 52..61 ('0'-52), 11 for 62 ('+'-62), 12 for 63 ('/'-63), 13 for 0..25
// ('A').
CONST32(b64shift, $0xfcfcfcfcfcfcfc47, $0x000041f0edfcfcfc)
