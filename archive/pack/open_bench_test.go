package pack

import (
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/crypto"
)

// BenchmarkOpen measures what reading the archive back costs per byte of
// mail (planb serve, restore, export): opening a sealed frame, that is
// authenticating, decrypting and decompressing it. The frame is mail as
// most of a mailbox's bytes are: a text part and a base64 attachment of
// binary data (a PDF, a photo), in a frame of groupTarget's size.
//
//   - base64: CompressionMax with base64 lines stored decoded, as new
//     repositories made with max write frames: the attachment is encoded
//     again on reading.
//   - entropy: CompressionMax with base64 lines as they are (repositories
//     made before), blocks of literals only (the attachment) entropy-coded
//     too.
//   - raw: CompressionFast, those blocks left as they are (zstd's default
//     at this level).
//   - sealed: not compressed at all, the cost of decryption alone.
//
// It reports the sealed bytes per byte of mail (sealed/raw): the space
// the entropy coding saves, against the time it costs to read.
func BenchmarkOpen(b *testing.B) {
	raw := benchMail(256 << 10)
	for _, bc := range []struct {
		name     string
		comp     Compression
		b64      bool
		compress bool
	}{{"base64", CompressionMax, true, true}, {"entropy", CompressionMax, false, true}, {"raw", CompressionFast, false, true},
		{"sealed", CompressionFast, false, false}} {
		b.Run(bc.name, func(b *testing.B) {
			c := NewCodecWith(crypto.NewRandomKey(), bc.comp).WithBase64Lines(bc.b64)
			sealed, flags := c.Seal(nil, raw)
			if !bc.compress {
				sealed, flags = c.key.Seal(nil, raw), 0
			} else if flags&FlagZstd == 0 || (flags&FlagBase64 != 0) != bc.b64 {
				b.Fatalf("frame flags %d", flags)
			}
			work := make([]byte, len(sealed))
			dst := make([]byte, 0, len(raw))
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				copy(work, sealed) // opened in place
				plain, err := c.OpenInto(dst, work, flags, uint32(len(raw)))
				if err != nil || len(plain) != len(raw) {
					b.Fatalf("open: %d bytes, %v", len(plain), err)
				}
			}
			b.ReportMetric(float64(len(sealed))/float64(len(raw)), "sealed/raw")
		})
	}
}

// benchMail returns about n bytes of a message: headers, a quarter of
// text and a base64 attachment of random bytes, lines ending in LF as in
// a Maildir.
func benchMail(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the report is attached please find below our notes on the meeting of " +
		"tuesday budget review project alpha and beta next steps thanks regards draft final version")
	var sb strings.Builder
	sb.WriteString("From: Alice <alice@example.org>\nTo: Bob <bob@example.org>\nSubject: Quarterly report\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\n")
	for line := 0; sb.Len() < n/4; line++ {
		for k := 0; k < 10; k++ {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		sb.WriteByte('\n')
	}
	sb.WriteString("--b1\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n")
	bin := make([]byte, (n-sb.Len())*3/4)
	for i := range bin {
		bin[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(bin)
	for len(enc) > 76 {
		sb.WriteString(enc[:76])
		sb.WriteByte('\n')
		enc = enc[76:]
	}
	sb.WriteString(enc + "\n--b1--\n")
	return []byte(sb.String())
}
