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

// func encodeAVX2(dst, src *byte, n int)
TEXT ·encodeAVX2(SB), NOSPLIT, $0-24
	MOVQ  dst+0(FP), DI
	MOVQ  src+8(FP), SI
	MOVQ  n+16(FP), CX
	TESTQ CX, CX
	JZ    done
	LOADCONSTS

loop:
	ENCODE24(SI, DI)
	ADDQ $24, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  loop
	VZEROUPPER

done:
	RET

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
