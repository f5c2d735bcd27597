package mailfile

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
)

func TestMboxSample(t *testing.T) {
	src, err := NewMboxSource(filepath.Join(testdataMail(t), "sample.mbox"), nil)
	if err != nil {
		t.Fatal(err)
	}
	folders, err := src.Folders(t.Context())
	if err != nil || len(folders) != 1 || folders[0].Path != "sample" {
		t.Fatalf("Folders() = %+v, %v, want [sample]", folders, err)
	}
	c := &archivetest.Changes{}
	if _, err := src.Sync(t.Context(), folders[0], nil, c); err != nil {
		t.Fatal(err)
	}
	if len(c.Puts) != 10 {
		t.Fatalf("Sync put %d messages, want 10", len(c.Puts))
	}
	day := func(d, h, m int) time.Time { return time.Date(2026, 1, d, h, m, 0, 0, time.UTC) }
	tests := []struct {
		date     time.Time
		flags    []string
		contains string
		suffix   string
	}{
		{day(1, 10, 0), []string{archive.FlagSeen}, "Plain message, seen.\n", "seen.\n"},
		{day(2, 11, 30), nil, "\n\nFrom escaped once.\n>From escaped twice.\n> From not escaped.\n", "escaped.\n"},
		{day(3, 12, 0), []string{archive.FlagSeen, archive.FlagAnswered, archive.FlagFlagged}, "Status: RO\r\n", "CRLF body.\r\n"},
		{day(4, 13, 0), nil, "Sender is a dash.", "dash.\n"},
		{day(5, 13, 0), nil, "Takeout style", "separator.\n"},
		{day(6, 15, 0), nil, "No newline", "at the end."},
		{day(7, 16, 0), nil, "X-Note: K\xf6ln\n", "NUL\x00byte and bare\rCR.\n"},
		{day(8, 17, 0), nil, "Subject: Mbox empty body\n", ">\n\n"},
		{day(9, 18, 0), []string{archive.FlagSeen, archive.FlagFlagged}, "Thunderbird", "Thunderbird.\n"},
		{time.Time{}, nil, "Subject: Mbox no date\n", "no date.\n"},
	}
	for i, tt := range tests {
		p := c.Puts[i]
		if p.SourceID != string(rune('1'+i)) && i < 9 {
			t.Errorf("message %d SourceID = %q", i+1, p.SourceID)
		}
		if !p.InternalDate.Equal(tt.date) {
			t.Errorf("message %d date = %v, want %v", i+1, p.InternalDate, tt.date)
		}
		if !slices.Equal(p.Flags, tt.flags) {
			t.Errorf("message %d flags = %q, want %q", i+1, p.Flags, tt.flags)
		}
		if !bytes.Contains(p.Data, []byte(tt.contains)) || !bytes.HasSuffix(p.Data, []byte(tt.suffix)) {
			t.Errorf("message %d = %q, want it to contain %q and end in %q", i+1, p.Data, tt.contains, tt.suffix)
		}
		if !bytes.HasPrefix(p.Data, []byte("From: ")) {
			t.Errorf("message %d starts %q, want a header", i+1, p.Data[:min(20, len(p.Data))])
		}
	}
}

// readMbox reads an mbox from a string.
func readMbox(s string) ([]*mboxMsg, [][]byte, error) {
	mr := newMboxReader(strings.NewReader(s))
	var ms []*mboxMsg
	var bodies [][]byte
	for {
		m, err := mr.next()
		if err == io.EOF {
			return ms, bodies, nil
		}
		if err != nil {
			return ms, bodies, err
		}
		b, err := io.ReadAll(m.Body)
		if err != nil {
			return ms, bodies, err
		}
		ms = append(ms, m)
		bodies = append(bodies, b)
	}
}

func TestMboxReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"bom", "\xef\xbb\xbfFrom - \nA\n\nFrom - \nB\n", []string{"A\n", "B"}},
		{"blank lines first", "\n\r\nFrom x\nA\n", []string{"A"}},
		{"one", "From a Thu Jan  1 00:00:00 2026\nX: y\n\nbody\n\n", []string{"X: y\n\nbody\n"}},
		{"no trailing newline", "From a\nbody", []string{"body"}},
		{"no blank separator", "From a\nA\nFrom b\nB\n", []string{"A", "B"}},
		{"empty messages", "From a\nFrom b\n\nFrom c", []string{"", "", ""}},
		{"unescape", "From a\n>From x\n>>From y\n>Fromage\n> From z\n>>>\n", []string{"From x\n>From y\n>Fromage\n> From z\n>>>"}},
		{"mid-line From", "From a\nsay From here\n", []string{"say From here"}},
		{"CR before From", "From a\nx\r\nFrom b\n", []string{"x\r", ""}},
		{"gt at end", "From a\n>>", []string{">>"}},
		{"gt From at end", "From a\n>From ", []string{"From "}},
		{"From_ line without newline", "From a", []string{""}},
		{"long From_ line", "From " + strings.Repeat("x", 100000) + "\nbody\n", []string{"body"}},
	}
	for _, tt := range tests {
		_, got, err := readMbox(tt.in)
		if err != nil {
			t.Errorf("%s: read = %v", tt.name, err)
			continue
		}
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if !slices.Equal(gs, tt.want) {
			t.Errorf("%s: read(%q) = %q, want %q", tt.name, tt.in, gs, tt.want)
		}
	}
	if _, _, err := readMbox("Subject: not an mbox\n"); !errors.Is(err, errNotMbox) {
		t.Errorf("read(not an mbox) = %v, want errNotMbox", err)
	}
}

func TestParseFromDate(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	tests := []struct {
		line string
		want time.Time
	}{
		{"MAILER-DAEMON Thu Jan  1 10:00:00 2026", utc(2026, 1, 1, 10, 0, 0)},
		{"alice@example.org Fri Jan 02 11:30:05 2026", utc(2026, 1, 2, 11, 30, 5)},
		{"1844347792267117879@xxx Mon Jan 05 14:00:00 +0100 2026", utc(2026, 1, 5, 13, 0, 0)},
		{"bob Sat Mar 15 10:00:00 2025 -0500", utc(2025, 3, 15, 15, 0, 0)},
		{"bob Sat Mar 15 10:00 2025", utc(2025, 3, 15, 10, 0, 0)},
		{"bob Sat Mar 15 10:00:00 2025 remote from uucp", utc(2025, 3, 15, 10, 0, 0)},
		{"  Sat Mar 15 10:00:00 2025", utc(2025, 3, 15, 10, 0, 0)},
		{"bob Sat, 15 Mar 2025 10:00:00 +0000", utc(2025, 3, 15, 10, 0, 0)},
		{"-", time.Time{}},
		{"nobody", time.Time{}},
		{"x Mon Jan  1 00:00:00 0001", time.Time{}},
	}
	for _, tt := range tests {
		if got := parseFromDate(tt.line); !got.Equal(tt.want) {
			t.Errorf("parseFromDate(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}

func mboxRoundTrip(t testing.TB, bodies [][]byte, date time.Time) {
	var buf bytes.Buffer
	w := newMboxWriter(&buf)
	for _, b := range bodies {
		if err := w.write(date, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	ms, got, err := readMbox(buf.String())
	if err != nil {
		t.Fatalf("read back = %v", err)
	}
	if len(got) != len(bodies) {
		t.Fatalf("read back %d messages, want %d from %q", len(got), len(bodies), buf.String())
	}
	for i := range bodies {
		if !bytes.Equal(got[i], bodies[i]) {
			t.Errorf("message %d = %q, want %q (mbox %q)", i, got[i], bodies[i], buf.String())
		}
		if !ms[i].Date.Equal(date.Truncate(time.Second)) {
			t.Errorf("message %d date = %v, want %v", i, ms[i].Date, date)
		}
	}
}

var mboxEdgeBodies = [][]byte{
	[]byte("From: a\n\nbody\n"),
	[]byte("From: a\r\n\r\nCRLF\r\n"),
	[]byte("no final newline"),
	{},
	[]byte("\n"),
	[]byte("\n\n"),
	[]byte("From "),
	[]byte("From x\nFrom y\n"),
	[]byte(">From x\n>>From y\n>>>From z"),
	[]byte(">>>>\n>"),
	[]byte("a\x00b\rc\r\nFrom d\r\n"),
	[]byte("\r"),
	[]byte("x\n\nFrom \n\n"),
}

func TestMboxWriteRead(t *testing.T) {
	mboxRoundTrip(t, mboxEdgeBodies, time.Date(2026, 2, 3, 4, 5, 6, 7, time.FixedZone("X", 3600)))
	mboxRoundTrip(t, mboxEdgeBodies, time.Time{})
	var buf bytes.Buffer
	w := newMboxWriter(&buf)
	w.write(time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC), strings.NewReader("From x\n>From y\nz"))
	w.flush()
	if want := "From MAILER-DAEMON Tue Feb  3 04:05:06 2026\n>From x\n>>From y\nz\n"; buf.String() != want {
		t.Errorf("write = %q, want %q", buf.String(), want)
	}
}

func FuzzMboxRoundTrip(f *testing.F) {
	for _, b := range mboxEdgeBodies {
		f.Add(b, []byte("From: x\n\nFrom y\n"))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		mboxRoundTrip(t, [][]byte{a, b, a}, time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC))
	})
}

// bigMessage yields a large message without holding it: a header, one
// line of n bytes without a newline in the middle, then many "From " lines.
func bigMessage(n int) io.Reader {
	return io.MultiReader(
		strings.NewReader("Subject: big\n\n"),
		io.LimitReader(repeatReader('x'), int64(n)),
		strings.NewReader("\n"),
		io.LimitReader(&linesReader{line: []byte(">From line\n")}, int64(n)),
	)
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

type linesReader struct {
	line []byte
	off  int
}

func (r *linesReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.line[r.off]
		r.off = (r.off + 1) % len(r.line)
	}
	return len(p), nil
}

// hashChanges hashes the messages it receives without keeping them.
type hashChanges struct {
	archivetest.Changes
	sums [][32]byte
	buf  []byte
}

func (h *hashChanges) Put(m *archive.Message) error {
	s := sha256.New()
	if _, err := io.CopyBuffer(s, m.Body, h.buf); err != nil {
		return err
	}
	h.sums = append(h.sums, [32]byte(s.Sum(nil)))
	return nil
}

// TestMboxStreaming writes and reads a message far larger than the
// reader's buffers and checks that reading it does not allocate its size.
func TestMboxStreaming(t *testing.T) {
	const n = 24 << 20
	dir := t.TempDir()
	sink, err := NewMboxSink(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sink.Folder(ctx, archive.Folder{Path: "big"})
	if err := sink.Put(ctx, &archive.Message{Body: bigMessage(n), Size: -1}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(ctx, &archive.Message{Body: strings.NewReader("small\n"), Size: -1}); err != nil {
		t.Fatal(err)
	}
	sink.Close()
	want := sha256.New()
	io.Copy(want, bigMessage(n))

	src, err := NewMboxSource(filepath.Join(dir, "big.mbox"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &hashChanges{buf: make([]byte, 32<<10)}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := src.Sync(ctx, archive.Folder{Path: "big"}, nil, c); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if len(c.sums) != 2 || c.sums[0] != [32]byte(want.Sum(nil)) || c.sums[1] != sha256.Sum256([]byte("small\n")) {
		t.Errorf("read back %d messages, want the big and the small one byte-exact", len(c.sums))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("reading a %d-byte message allocated %d bytes, want < 4 MiB", 2*n, alloc)
	}
	if fi, err := os.Stat(filepath.Join(dir, "big.mbox")); err != nil || fi.Size() < 2*n {
		t.Errorf("Stat(big.mbox) = %v, want > %d bytes", err, 2*n)
	}
}
