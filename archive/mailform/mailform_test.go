package mailform

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestCRLF(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a", "a"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\rb", "a\r\nb"},
		{"a\r", "a\r\n"},
		{"\n\r\n\r", "\r\n\r\n\r\n"},
		{"\r\r\n\n", "\r\n\r\n\r\n"},
	} {
		if got := string(CRLF([]byte(tc.in))); got != tc.want {
			t.Errorf("CRLF(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got, want := BareLineEnds([]byte(tc.in)), len(tc.want)-len(tc.in); got != want {
			t.Errorf("BareLineEnds(%q) = %d, want %d", tc.in, got, want)
		}
	}
	b := []byte("no bare\r\nline ends\r\n")
	if got := CRLF(b); &got[0] != &b[0] {
		t.Errorf("CRLF of a CRLF message copied it")
	}
}

// naiveCRLF is CRLF byte by byte: the reference of the fast one.
func naiveCRLF(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case b[i] == '\r' || b[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// TestCRLFAgreesWithNaive: CRLF, BareLineEnds, CRLFWriter, CRLFAppender and
// LineEndCounter agree with a byte-by-byte conversion on random messages,
// written whole and in random pieces, short and long, with few or many
// CRs.
func TestCRLFAgreesWithNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 3000; i++ {
		var b []byte
		if i%2 == 0 {
			b = randomMessage(r, r.IntN(300))
		} else {
			b = bytes.Repeat([]byte("text\n"), r.IntN(2000))
			for range r.IntN(4) {
				if len(b) > 0 {
					b[r.IntN(len(b))] = '\r'
				}
			}
		}
		want := naiveCRLF(b)
		if got := CRLF(b); !bytes.Equal(got, want) {
			t.Fatalf("CRLF(%q) = %q, want %q", b, got, want)
		}
		if got := AppendCRLF([]byte("x"), b); !bytes.Equal(got, append([]byte("x"), want...)) {
			t.Fatalf("AppendCRLF(x, %q) = %q, want x%q", b, got, want)
		}
		if got := BareLineEnds(b); got != len(want)-len(b) {
			t.Fatalf("BareLineEnds(%q) = %d, want %d", b, got, len(want)-len(b))
		}
		var out bytes.Buffer
		w := NewCRLFWriter(&out)
		var c LineEndCounter
		app := CRLFAppender{B: []byte("x")}
		chunked(r, io.MultiWriter(w, &c, &app), b)
		w.Close()
		app.Close()
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("CRLFWriter(%q) = %q, want %q", b, out.Bytes(), want)
		}
		if !bytes.Equal(app.B, append([]byte("x"), want...)) {
			t.Fatalf("CRLFAppender(x, %q) = %q, want x%q", b, app.B, want)
		}
		if c.Added() != int64(len(want)-len(b)) {
			t.Fatalf("LineEndCounter(%q).Added() = %d, want %d", b, c.Added(), len(want)-len(b))
		}
	}
}

// randomMessage returns bytes rich in line ends, NUL and 8-bit bytes.
func randomMessage(r *rand.Rand, n int) []byte {
	alphabet := []byte("ab \r\n\r\n\x00\xe9:")
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	if r.IntN(4) == 0 && n > 40 {
		copy(b[r.IntN(n-40):], "Content-Transfer-Encoding: BINARY")
	}
	return b
}

func TestBinaryPart(t *testing.T) {
	for s, want := range map[string]bool{
		good:                                     false,
		"Content-Transfer-Encoding: binary\n\nx": true,
		"a\n--b\ncontent-transfer-encoding:BINARY\n":    true,
		"Content-Transfer-Encoding: base64\n\nbinary":   false,
		"X-Encoding: binary":                            false,
		"CONTENT-TRANSFER-ENCODING: \t Binary":          true,
		"Content-Transfer-Encoding : binary":            false, // no space before the colon, as before
		"Content-Transfer-Encoding: 8bit\n\nbinary: no": false,
		"X-Content-Transfer-Encoding: binary":           true, // a cheap scan: a false binary only sends bytes as they are
		":binary":                                       false,
	} {
		if got := Scan([]byte(s)).BinaryPart; got != want {
			t.Errorf("Scan(%q).BinaryPart = %v, want %v", s, got, want)
		}
	}
}

// chunked writes b to w in pieces of random sizes.
func chunked(r *rand.Rand, w io.Writer, b []byte) {
	for len(b) > 0 {
		k := min(len(b), 1+r.IntN(7))
		w.Write(b[:k])
		b = b[k:]
	}
}

func TestStreamingAgreesWithMemory(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		b := randomMessage(r, r.IntN(200))
		var out bytes.Buffer
		w := NewCRLFWriter(&out)
		chunked(r, w, b)
		w.Close()
		if want := CRLF(b); !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("CRLFWriter(%q) = %q, want %q", b, out.Bytes(), want)
		}
		var s Scanner
		chunked(r, &s, b)
		got, want := s.Info(), Scan(b)
		if got.Size != want.Size || got.NUL != want.NUL || !bytes.Equal(got.Header, want.Header) || got.Header8Bit != want.Header8Bit || got.BinaryPart != want.BinaryPart {
			t.Fatalf("Scanner(%q) = %+v, Scan = %+v", b, got, want)
		}
		if want.Size != int64(len(CRLF(b))) {
			t.Fatalf("Scan(%q).Size = %d, want %d", b, want.Size, len(CRLF(b)))
		}
	}
}

const good = "Date: Mon, 02 Jan 2006 15:04:05 -0700\nFrom: Alice <alice@example.org>\nTo: bob@example.org\nSubject: hello\nMessage-ID: <1@example.org>\n\nBody.\n"

func TestCheck(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for _, tc := range []struct {
		name, msg string
		want      []Problem
	}{
		{"good", good, nil},
		{"good CRLF", string(CRLF([]byte(good))), nil},
		{"no date", strings.Replace(good, "Date: Mon, 02 Jan 2006 15:04:05 -0700\n", "", 1), []Problem{NoDate}},
		{"bad date", strings.Replace(good, "Mon, 02 Jan 2006 15:04:05 -0700", "yesterday", 1), []Problem{BadDate}},
		{"bad from", strings.Replace(good, "Alice <alice@example.org>", "not an address", 1), []Problem{BadFrom}},
		{"no from", strings.Replace(good, "From: Alice <alice@example.org>\n", "", 1), []Problem{NoFrom}},
		{"bad sender", strings.Replace(good, "To:", "Sender: @@\nTo:", 1), []Problem{BadSender}},
		{"bad name", strings.Replace(good, "To:", "Bad Header: x\nTo:", 1), []Problem{BadHeaderName}},
		{"8-bit", strings.Replace(good, "hello", "caf\xe9", 1), []Problem{Header8Bit}},
		{"body NUL", good + "a\x00b\n", []Problem{BodyNUL}},
		{"header NUL", strings.Replace(good, "hello", "a\x00b", 1), []Problem{HeaderNUL}},
		{"long body line", good + long + "\n", []Problem{LongLine}},
		{"long body line at end", good + long, []Problem{LongLine}},
		{"998 is fine", good + strings.Repeat("x", 998) + "\r\n", nil},
		{"long header", strings.Replace(good, "hello", long, 1), []Problem{LongHeader}},
		{"bad to", strings.Replace(good, "bob@example.org", "k..allen@enron.com, Allen, Phillip </O=ENRON/CN=Pallen>", 1), []Problem{BadTo}},
		{"empty to is fine", strings.Replace(good, "bob@example.org", "", 1), nil},
		{"group to is fine", strings.Replace(good, "bob@example.org", "undisclosed-recipients:;", 1), nil},
		{"bad cc", strings.Replace(good, "Subject:", "Cc: a@@b\nSubject:", 1), []Problem{BadCc}},
		{"unclosed multipart", strings.Replace(good, "Subject:", "Content-Type: multipart/mixed; boundary=b\nSubject:", 1) + "--b\n\ntext\n", []Problem{BadMIME}},
		{"bad base64", strings.Replace(good, "Subject:", "Content-Transfer-Encoding: base64\nSubject:", 1) + "#!?\n", []Problem{BadMIME}},
		{"uuencode", strings.Replace(good, "Subject:", "Content-Transfer-Encoding: x-uuencode\nSubject:", 1), []Problem{BadMIME}},
		{"sound multipart", strings.Replace(good, "Subject:", "Content-Type: multipart/mixed; boundary=b\nSubject:", 1) + "--b\nContent-Transfer-Encoding: base64\n\nYWJj\n--b--\n", nil},
		{"no header", "just a body\nof two lines\n", []Problem{NoHeader}},
		{"empty header", "\nbody\n", []Problem{NoHeader}},
	} {
		got, err := Check(iotest.OneByteReader(strings.NewReader(tc.msg)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Check(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// repairAndCheck repairs msg and checks the copy: the size announced, CRLF
// line ends, no problem left, marked, and the original recoverable.
func repairAndCheck(t *testing.T, name string, msg []byte, why string) []byte {
	t.Helper()
	ps, err := Check(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	date := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	r, size, note, err := Repair(Original{R: bytes.NewReader(msg), RawSize: int64(len(msg)), Size: Scan(msg).Size, Date: date}, ps, why)
	if err != nil {
		t.Fatalf("%s: Repair: %v", name, err)
	}
	cp, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: read the copy: %v", name, err)
	}
	if int64(len(cp)) != size {
		t.Errorf("%s: copy has %d bytes, Repair announced %d", name, len(cp), size)
	}
	if BareLineEnds(cp) != 0 {
		t.Errorf("%s: copy has bare line ends", name)
	}
	if left, _ := Check(bytes.NewReader(cp)); len(left) != 0 {
		t.Errorf("%s: copy still has %q (problems %q):\n%s", name, left, ps, cp)
	}
	if note == "" || !bytes.HasPrefix(cp, []byte(RepairedField+": ")) {
		t.Errorf("%s: copy not marked (note %q)", name, note)
	}
	orig, err := Recover(cp)
	if err != nil {
		t.Fatalf("%s: Recover: %v", name, err)
	}
	if !bytes.Equal(CRLF(orig), CRLF(msg)) {
		t.Errorf("%s: Recover = %q, want %q", name, orig, msg)
	}
	p, err := Fingerprint(bytes.NewReader(cp))
	if err != nil {
		t.Fatal(err)
	}
	o, _ := Fingerprint(bytes.NewReader(msg))
	if p.Repaired != note || p.Original == nil || p.Original.Exact != o.Exact {
		t.Errorf("%s: Fingerprint of the copy: repaired %q original %v, want %q and the original's", name, p.Repaired, p.Original, note)
	}
	return cp
}

func TestRepair(t *testing.T) {
	long := strings.Repeat("y", 1200)
	for _, tc := range []struct {
		name, msg string
		inPlace   bool // the body stays
	}{
		{"no date", strings.Replace(good, "Date: Mon, 02 Jan 2006 15:04:05 -0700\n", "", 1), true},
		{"bad date", strings.Replace(good, "Mon, 02 Jan 2006 15:04:05 -0700", "32 Foo 99", 1), true},
		{"bad from", strings.Replace(good, "Alice <alice@example.org>", "Alice alice@example.org (work", 1), true},
		{"from without address", strings.Replace(good, "Alice <alice@example.org>", "Mailer Daemon", 1), true},
		{"no from", strings.Replace(good, "From: Alice <alice@example.org>\n", "", 1), true},
		{"bad name", strings.Replace(good, "To:", "Bad Header: x\n>From nowhere\nTo:", 1), true},
		{"8-bit latin1", strings.Replace(good, "hello", "caf\xe9 cr\xe8me", 1), true},
		{"8-bit utf-8 from", strings.Replace(good, "Alice", "Al\xc3\xafce", 1), true},
		{"8-bit address", strings.Replace(good, "alice@example.org", "alice@example.org\x94", 1), true},
		{"long header", strings.Replace(good, "hello", long, 1), true},
		{"no header", "just a body\r\nof two lines\r\n", true},
		{"bad to", strings.Replace(good, "bob@example.org", "k..allen@enron.com, Allen, Phillip </O=ENRON/CN=Pallen>", 1), true},
		{"to without address", strings.Replace(good, "bob@example.org", "Allen, Phillip </O=ENRON/CN=Pallen>", 1), true},
		{"unclosed multipart", strings.Replace(good, "Subject:", "Content-Type: multipart/mixed; boundary=b\nSubject:", 1) + "--b\n\ntext\n", false},
		{"body NUL", good + "a\x00b\n", false},
		{"long body line", good + long + "\n", false},
		{"everything", "Bad Header: x\nFrom: \xe9\x00\nSubject: " + long + "\n\n" + long + "\x00\r", false},
	} {
		cp := repairAndCheck(t, tc.name, []byte(tc.msg), "")
		if inPlace := !bytes.Contains(cp, []byte(OriginalName)); inPlace != tc.inPlace {
			t.Errorf("%s: kept the body = %v, want %v:\n%s", tc.name, inPlace, tc.inPlace, cp)
		}
	}
	// A refusal with no known reason is wrapped and names the server.
	cp := repairAndCheck(t, "unknown refusal", []byte(good), "NO [PARSE] what is this")
	if p, _ := Fingerprint(bytes.NewReader(cp)); !strings.Contains(p.Repaired, "refused by the server: NO [PARSE] what is this") {
		t.Errorf("wrapped copy does not name the refusal:\n%s", cp)
	}
}

// TestRepairNote: the note of a repaired copy names every change, and
// only those (the empty line that ends the header is no invalid line).
func TestRepairNote(t *testing.T) {
	for _, tc := range []struct{ name, msg, want string }{
		{"no date", strings.Replace(good, "Date: Mon, 02 Jan 2006 15:04:05 -0700\n", "", 1), "added Date"},
		{"8-bit byte in date", strings.Replace(good, "-0700", "-07\x8000", 1), "encoded 8-bit text (Date)"},
		{"NUL in subject", strings.Replace(good, "hello", "hel\x00lo", 1), "removed NUL bytes (Subject)"},
		{"no body", "DAte:1 JAn 00 0:00 +\x8000\nFrom:<0@0>", "encoded 8-bit text (DAte)"},
		{"invalid line", strings.Replace(good, "To:", "Bad Header: x\nTo:", 1), "dropped 1 invalid header line"},
	} {
		ps, err := Check(strings.NewReader(tc.msg))
		if err != nil {
			t.Fatal(err)
		}
		_, _, note, err := Repair(Original{R: strings.NewReader(tc.msg), RawSize: int64(len(tc.msg)), Size: Scan([]byte(tc.msg)).Size}, ps, "")
		if err != nil || note != tc.want {
			t.Errorf("%s: Repair note = %q, %v; want %q", tc.name, note, err, tc.want)
		}
	}
}

func FuzzRepair(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("x\x00\n\n\xff"))
	f.Add([]byte("From: \xe9\nBad: \x00\n\n" + strings.Repeat("z", 1100)))
	f.Fuzz(func(t *testing.T, msg []byte) {
		repairAndCheck(t, "fuzz", msg, "NO refused")
	})
}

func TestFingerprint(t *testing.T) {
	fp := func(s string) *Print {
		t.Helper()
		p, err := Fingerprint(iotest.HalfReader(strings.NewReader(s)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	orig := fp(good)
	crlf := fp(string(CRLF([]byte(good))))
	if crlf.Exact != orig.Exact || crlf.Size != int64(len(CRLF([]byte(good)))) || orig.Size != crlf.Size {
		t.Errorf("LF and CRLF differ: %x/%d vs %x/%d", orig.Exact, orig.Size, crlf.Exact, crlf.Size)
	}
	if orig.MessageID != "<1@example.org>" {
		t.Errorf("MessageID = %q", orig.MessageID)
	}
	gluon := fp("X-Pm-Gluon-Id: 1234\r\n" + string(CRLF([]byte(good))))
	if gluon.Exact == orig.Exact || gluon.Stripped != orig.Stripped || !slices.Equal(gluon.Added, []string{"X-Pm-Gluon-Id"}) {
		t.Errorf("gluon's header: exact equal %v, stripped equal %v, added %q", gluon.Exact == orig.Exact, gluon.Stripped == orig.Stripped, gluon.Added)
	}
	if gluon.Semantic != orig.Semantic {
		t.Errorf("gluon's header changed the semantic print")
	}

	// A server that rebuilds the MIME structure: other boundaries, base64
	// for quoted-printable, fields reordered and re-encoded, a charset
	// converted.
	mime1 := "From: =?utf-8?q?Jos=C3=A9?= <jose@example.org>\nDate: Tue, 3 Mar 2020 10:00:00 +0100\nSubject: =?iso-8859-1?q?caf=E9?=\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=AAA\n\n--AAA\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nCaf=E9 cr=E8me.  \n\n--AAA\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--AAA--\n"
	mime2 := "X-Pm-Internal-Id: abc\r\nSubject: =?UTF-8?B?Y2Fmw6k=?=\r\nDate: Tue, 03 Mar 2020 09:00:00 +0000\r\nFrom: \"José\" <JOSE@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"other-boundary\"\r\n\r\nThis is a multi-part message.\r\n--other-boundary\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nQ2Fmw6kgY3LDqG1lLgo=\r\n--other-boundary\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBE\r\nRi0xLjQK\r\n--other-boundary--\r\n"
	a, b := fp(mime1), fp(mime2)
	if a.Semantic != b.Semantic {
		t.Errorf("rebuilt MIME: semantic prints differ")
	}
	if a.Stripped == b.Stripped {
		t.Errorf("rebuilt MIME: stripped prints equal")
	}
	changed := fp(strings.Replace(mime2, "Q2Fmw6kgY3LDqG1lLgo=", "Q2Fmw6kgY3LDqG1lIQo=", 1))
	if changed.Semantic == b.Semantic {
		t.Errorf("a changed body kept the semantic print")
	}
	other := fp(strings.Replace(good, "hello", "hello again", 1))
	if other.Semantic == orig.Semantic || other.Stripped == orig.Stripped {
		t.Errorf("another subject kept a print")
	}
}

// corpus returns the messages of ../shared/corpus, or skips.
func corpus(t *testing.T) []string {
	dir := filepath.Join("..", "..", "..", "shared", "corpus")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no corpus at %s", dir)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(p, ".md") && !strings.HasSuffix(p, ".txt") {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func TestCorpusRepair(t *testing.T) {
	files := corpus(t)
	counts := map[Problem]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ps, _ := Check(bytes.NewReader(b))
		for _, p := range ps {
			counts[p]++
		}
		if len(ps) > 0 {
			repairAndCheck(t, f, b, "")
		}
		if _, err := Fingerprint(bytes.NewReader(b)); err != nil {
			t.Errorf("Fingerprint(%s): %v", f, err)
		}
	}
	t.Logf("%d messages; problems: %v", len(files), counts)
}

// BenchmarkCRLFWriter converts 1 MiB of mail: text with LF line ends,
// base64 lines with LF, and text already CRLF; with AVX2 where the CPU
// has it, and without.
func BenchmarkCRLFWriter(b *testing.B) {
	for _, in := range []struct{ name, line string }{
		{"text", "A line of mail text of about sixty bytes, as most are.\n"},
		{"base64", strings.Repeat("QUJD", 19) + "\n"},
		{"crlf", "A line of mail text of about sixty bytes, as most are.\r\n"},
	} {
		text := bytes.Repeat([]byte(in.line), 1<<20/len(in.line))
		for _, avx2 := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/avx2=%v", in.name, avx2), func(b *testing.B) {
				setAVX2(avx2)
				defer setAVX2(true)
				w := NewCRLFWriter(io.Discard)
				b.SetBytes(int64(len(text)))
				for b.Loop() {
					w.Write(text)
				}
			})
		}
	}
}

// BenchmarkScan scans the messages of testdata/mail (or of the Maildir
// folder $PLANB_BENCH_MAILDIR, such as cmd/mailgen's), as a restore does
// before it sends each.
func BenchmarkScan(b *testing.B) {
	dir := cmp.Or(os.Getenv("PLANB_BENCH_MAILDIR"), "../../testdata/mail/maildir")
	files, err := filepath.Glob(filepath.Join(dir, "*/*/*"))
	more, _ := filepath.Glob(filepath.Join(dir, "*/*"))
	files = append(files, more...)
	files = files[:min(len(files), 2000)]
	if err != nil || len(files) == 0 {
		b.Skip("no testdata/mail")
	}
	var msgs [][]byte
	var n int64
	for _, f := range files {
		if m, err := os.ReadFile(f); err == nil {
			msgs = append(msgs, m)
			n += int64(len(m))
		}
	}
	b.SetBytes(n)
	for b.Loop() {
		for _, m := range msgs {
			Scan(m)
		}
	}
}
