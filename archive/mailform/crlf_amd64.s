#include "textflag.h"

// func convertAVX2(dst *byte, dcap int, src *byte, n int) (w, r int)
//
// Converts src 32 bytes at a time, each block stored to dst whole first.
// In a block with LFs and no CR, each LF gets a CR before it: the rest
// of the block, loaded again from the LF on, is stored one byte further
// on than before (the loads depend on the block's mask only, not on one
// another). A block with a CR goes on to its first bare LF or bare CR
// (or a CR as its last byte, whose LF may come next), writes CRLF there
// and starts the next block after it: CRLF text goes on 32 bytes at a
// time. It stops before a block could read past src[n-2] or write past
// dst[dcap-1].
TEXT ·convertAVX2(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ dcap+8(FP), R8
	MOVQ src+16(FP), SI
	MOVQ n+24(FP), R9
	XORQ BX, BX // r: bytes of src read
	XORQ DX, DX // w: bytes of dst written
	SUBQ $64, R9 // a block starts at r <= n-64 (its LFs' loads end at r+62)
	SUBQ $96, R8 // and at w <= dcap-96 (their stores end at w+94)
	MOVQ $0x0a, AX
	MOVQ AX, X1
	VPBROADCASTB X1, Y1 // LF
	MOVQ $0x0d, AX
	MOVQ AX, X2
	VPBROADCASTB X2, Y2 // CR

loop:
	CMPQ BX, R9
	JGT  done
	CMPQ DX, R8
	JGT  done
	VMOVDQU   (SI)(BX*1), Y0
	VPCMPEQB  Y0, Y1, Y3
	VPCMPEQB  Y0, Y2, Y4
	VPMOVMSKB Y3, AX // LFs
	VPMOVMSKB Y4, CX // CRs
	VMOVDQU   Y0, (DI)(DX*1)
	TESTL     CX, CX
	JNZ       withcr
	TESTL     AX, AX
	JNZ       lfs
	ADDQ      $32, BX
	ADDQ      $32, DX
	JMP       loop

lfs:
	LEAQ (DI)(DX*1), R12 // the block's copy
	LEAQ (SI)(BX*1), R13 // the block
	XORQ R14, R14        // CRs added so far

lf:
	BSFL    AX, R10              // the next LF, at k
	LEAQ    (R12)(R14*1), R15
	MOVB    $0x0d, (R15)(R10*1)  // copy[k+j] = CR
	VMOVDQU (R13)(R10*1), Y5
	VMOVDQU Y5, 1(R15)(R10*1)    // copy[k+j+1:] = block[k:]
	INCQ    R14
	LEAL    -1(AX), R11
	ANDL    R11, AX
	JNZ     lf
	ADDQ    $32, BX
	LEAQ    32(DX)(R14*1), DX
	JMP     loop

withcr:
	MOVL CX, R10
	SHLL $1, R10
	NOTL R10
	ANDL AX, R10 // LFs after no CR
	MOVL AX, R11
	SHRL $1, R11
	NOTL R11
	ANDL CX, R11 // CRs before no LF in this block
	ORL  R11, R10
	JNZ  lineend
	ADDQ $32, BX
	ADDQ $32, DX
	JMP  loop

lineend:
	BSFL R10, R10
	ADDQ R10, DX
	MOVW $0x0a0d, (DI)(DX*1)
	ADDQ $2, DX
	LEAQ 1(BX)(R10*1), BX
	CMPB -1(SI)(BX*1), $0x0d
	JNE  loop
	CMPB (SI)(BX*1), $0x0a // a CR's own LF
	JNE  loop
	INCQ BX
	JMP  loop

done:
	VZEROUPPER
	MOVQ DX, w+32(FP)
	MOVQ BX, r+40(FP)
	RET
