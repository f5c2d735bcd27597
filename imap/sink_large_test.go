package imap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap/imaptest"
)

// bigMessage generates a message of exactly size bytes without holding
// it: a header, then lines ending in a bare LF, one of them with a NUL,
// so that what Dovecot stores (CRLF, NUL made 0x80) differs from the raw
// bytes and their sizes differ. It can be rewound (Seek to the start), as
// restore.Reader can.
type bigMessage struct {
	size, pos int64
	head      []byte
	noNUL     bool // for a server without BINARY
}

func newBigMessage(id string, size int64) *bigMessage {
	head := fmt.Appendf(nil, "Message-ID: <%s@planb.test>\nSubject: a large message\nFrom: a@planb.test\n\n", id)
	return &bigMessage{size: size, head: head}
}

// byteAt is the message's byte at offset i.
func (b *bigMessage) byteAt(i int64) byte {
	if i < int64(len(b.head)) {
		return b.head[i]
	}
	j := i - int64(len(b.head))
	switch {
	case j == 1000 && !b.noNUL:
		return 0
	case j%77 == 76:
		return '\n'
	}
	return 'a' + byte(j%26)
}

func (b *bigMessage) Read(p []byte) (int, error) {
	if b.pos >= b.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), b.size-b.pos))
	for i := range n {
		p[i] = b.byteAt(b.pos + int64(i))
	}
	b.pos += int64(n)
	return n, nil
}

func (b *bigMessage) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return b.pos, errors.New("bigMessage: only rewinds")
	}
	b.pos = 0
	return 0, nil
}

// sums returns the SHA-256 of the raw bytes and the normalized Hash and
// size of a fresh copy of b.
func (b *bigMessage) sums() (raw [32]byte, norm mailform.Sum, normSize int64) {
	c := &bigMessage{size: b.size, head: b.head, noNUL: b.noNUL}
	h := mailform.NewFingerprinter()
	s := sha256.New()
	if _, err := io.Copy(io.MultiWriter(h, s), c); err != nil {
		panic(err)
	}
	copy(raw[:], s.Sum(nil))
	p, err := h.Print()
	if err != nil {
		panic(err)
	}
	return raw, p.Exact, p.Size
}

// bigSource is a Source of one folder "Big" holding msgs, streamed.
type bigSource struct {
	msgs []*bigMessage
	date time.Time
}

func (s *bigSource) Describe() string { return "big:test" }

func (s *bigSource) Folders(context.Context) ([]archive.Folder, error) {
	return []archive.Folder{{Path: "Big"}}, nil
}

func (s *bigSource) Sync(ctx context.Context, f archive.Folder, _ archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	if err := c.Reset(); err != nil {
		return nil, err
	}
	for i, m := range s.msgs {
		body := &bigMessage{size: m.size, head: m.head, noNUL: m.noNUL}
		err := c.Put(&archive.Message{Folder: f.Path, SourceID: fmt.Sprint(i + 1), Flags: []string{`\Seen`, "$Big"}, InternalDate: s.date, Size: m.size, Body: body})
		if err != nil {
			return nil, err
		}
	}
	return archive.Cursor("x"), nil
}

// heapPeak samples the live heap every 2 ms until stop is called and
// returns the peak.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var (
		peak atomic.Uint64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func liveHeap() uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// fetchSums fetches every message of mailbox, streaming, and returns per
// message the SHA-256 of the bytes returned, their normalized Hash and
// the RFC822.SIZE the server announces.
type fetched struct {
	raw   [32]byte
	norm  mailform.Sum
	size  int64
	flags []string
	date  time.Time
}

func fetchSums(t *testing.T, c *imapclient.Client, mailbox string) []fetched {
	t.Helper()
	sel, err := c.Select(mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("SELECT %q: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var set goimap.SeqSet
	set.AddRange(1, 0)
	cmd := c.Fetch(set, &goimap.FetchOptions{Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*goimap.FetchItemBodySection{{Peek: true}}})
	var out []fetched
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var f fetched
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataRFC822Size:
				f.size = it.Size
			case imapclient.FetchItemDataInternalDate:
				f.date = it.Time
			case imapclient.FetchItemDataFlags:
				f.flags = imaptest.SortFlags(it.Flags)
			case imapclient.FetchItemDataBodySection:
				h := mailform.NewFingerprinter()
				s := sha256.New()
				if _, err := io.Copy(io.MultiWriter(h, s), it.Literal); err != nil {
					t.Fatalf("FETCH %q: %v", mailbox, err)
				}
				copy(f.raw[:], s.Sum(nil))
				p, err := h.Print()
				if err != nil {
					t.Fatalf("FETCH %q: %v", mailbox, err)
				}
				f.norm = p.Exact
			}
		}
		out = append(out, f)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("FETCH %q: %v", mailbox, err)
	}
	return out
}

// TestDovecotRestoreHugeMessage: a 100 MB message (bare LF line ends, a
// NUL) is backed up and restored into Dovecot with the default budgets;
// the live heap stays within 40 MB of what it was before the restore; the
// message comes back whole (same normalized hash and size, flags, date);
// verify finds no difference; a second restore appends nothing.
func TestDovecotRestoreHugeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB restore: not in -short")
	}
	d := imaptest.Shared(t)
	date := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	big := newBigMessage("huge", 100<<20)
	small := newBigMessage("small", 300<<10)
	r := newRepo(t)
	snap := runBackup(t, r, &bigSource{msgs: []*bigMessage{big, small}, date: date})

	user, pw := d.NewUser(t)
	o := targetOptions(d, user, pw)
	// With the default GOGC the heap may grow to twice its live size before
	// a collection: collect more often, so that the peak measures what the
	// restore holds rather than the garbage collector's pacing.
	defer debug.SetGCPercent(debug.SetGCPercent(20))
	base := liveHeap()
	stop := heapPeak()
	rep := restoreTo(t, r, snap, o, nil)
	peak := stop()
	t.Logf("live heap: %.1f MB before the restore, peak %.1f MB during it", float64(base)/1e6, float64(peak)/1e6)
	if peak > base+40<<20 {
		t.Errorf("restore of a 100 MB message: heap peaked %.1f MB above its level before, want at most 40 MiB", float64(peak-base)/1e6)
	}
	if rep.Appended != 2 || rep.Bytes != big.size+small.size || rep.Present != 0 || len(rep.Refused) != 0 {
		t.Errorf("restore report %+v, want 2 appended, %d bytes", rep, big.size+small.size)
	}

	c := d.Dial(t, user, pw)
	got := fetchSums(t, c, "Big")
	if len(got) != 2 {
		t.Fatalf("target holds %d messages, want 2", len(got))
	}
	// The huge message streams on a connection of its own, and the server
	// may finish saving the small one (sent after it) first: compare the
	// larger first.
	if got[0].size < got[1].size {
		got[0], got[1] = got[1], got[0]
	}
	for i, m := range []*bigMessage{big, small} {
		_, norm, size := m.sums()
		if size == m.size {
			t.Fatalf("message %d: normalized size = raw size %d: the test message should change", i, size)
		}
		if got[i].norm != norm || got[i].size != size {
			t.Errorf("message %d: fetched hash %x size %d, want %x size %d", i, got[i].norm[:6], got[i].size, norm[:6], size)
		}
		if want := []string{"$Big", `\Seen`}; fmt.Sprint(got[i].flags) != fmt.Sprint(want) {
			t.Errorf("message %d: flags %v, want %v", i, got[i].flags, want)
		}
		if !got[i].date.Equal(date) {
			t.Errorf("message %d: date %v, want %v", i, got[i].date, date)
		}
	}
	if diffs := verifyAgainst(t, r, snap, o); len(diffs) != 0 {
		t.Errorf("verify: %+v, want no difference", diffs)
	}

	rep = restoreTo(t, r, snap, o, nil)
	if rep.Appended != 0 || rep.Present != 2 {
		t.Errorf("second restore report %+v, want 0 appended, 2 present", rep)
	}
	if n := len(fetchSums(t, c, "Big")); n != 2 {
		t.Errorf("after a second restore the target holds %d messages, want 2", n)
	}

	// The huge message gone from a folder that still holds the small one
	// (same date): the resume check hashes it in a first pass, the
	// restore.Reader rewinds and streams it again. Memory stays bounded.
	if _, err := c.Select("Big", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	found, err := c.UIDSearch(&goimap.SearchCriteria{Larger: 50 << 20}, nil).Wait()
	if err != nil || len(found.AllUIDs()) != 1 {
		t.Fatalf("UID SEARCH LARGER = %v, %v; want the huge message", found, err)
	}
	imaptest.Expunge(t, c, "Big", found.AllUIDs())
	base = liveHeap()
	stop = heapPeak()
	rep = restoreTo(t, r, snap, o, nil)
	peak = stop()
	t.Logf("restore in two passes: live heap %.1f MB before, peak %.1f MB", float64(base)/1e6, float64(peak)/1e6)
	if peak > base+40<<20 {
		t.Errorf("restore of a 100 MB message in two passes: heap peaked %.1f MB above its level before, want at most 40 MiB", float64(peak-base)/1e6)
	}
	if rep.Appended != 1 || rep.Present != 1 || rep.Bytes != big.size {
		t.Errorf("third restore report %+v, want 1 appended (%d bytes), 1 present", rep, big.size)
	}
	if diffs := verifyAgainst(t, r, snap, o); len(diffs) != 0 {
		t.Errorf("verify after the third restore: %+v, want no difference", diffs)
	}
}

// memSinkOptions connects to the in-memory server.
func memSinkOptions(t *testing.T, ms *memServer) *Options {
	host, port, _ := strings.Cut(ms.addr, ":")
	return &Options{Host: host, Port: atoiPort(t, port), User: "alice", Password: "secret", TLS: TLSNone, Connections: 2}
}

// TestMemServerRestoreHugeMessage: a message like it (96 MiB: that server
// takes literals of at most 100 MiB, and the CRLF line ends add 1.3%;
// without its NUL: it offers no BINARY) restored into go-imap's in-memory
// server comes back whole, with CRLF line ends; with a resumed restore it
// is not appended twice.
func TestMemServerRestoreHugeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB restore: not in -short")
	}
	ms := startMem(t)
	date := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	big := newBigMessage("huge", 96<<20)
	big.noNUL = true
	r := newRepo(t)
	snap := runBackup(t, r, &bigSource{msgs: []*bigMessage{big}, date: date})
	o := memSinkOptions(t, ms)
	rep := restoreTo(t, r, snap, o, nil)
	if rep.Appended != 1 || rep.Bytes != big.size {
		t.Errorf("restore report %+v, want 1 appended, %d bytes", rep, big.size)
	}
	_, norm, normSize := big.sums()
	got := fetchSums(t, ms.dial(t), "Big")
	if len(got) != 1 || got[0].norm != norm || got[0].size != normSize {
		t.Fatalf("fetched %d messages (%+v), want one of %d bytes, hash %x", len(got), got, normSize, norm[:6])
	}
	rep = restoreTo(t, r, snap, o, nil)
	if rep.Appended != 0 || rep.Present != 1 {
		t.Errorf("second restore report %+v, want 0 appended, 1 present", rep)
	}
	if n := len(fetchSums(t, ms.dial(t), "Big")); n != 1 {
		t.Errorf("after a second restore the target holds %d messages, want 1", n)
	}
}

// failingReader yields n bytes of 'x', then fails.
// rereadFails reads r once whole; read again (after a Seek), it fails
// with err after n bytes: a message whose body fails while it is sent.
type rereadFails struct {
	r      *bytes.Reader
	n      int
	err    error
	reread bool
}

func (f *rereadFails) Read(p []byte) (int, error) {
	if f.reread {
		if f.n == 0 {
			return 0, f.err
		}
		p = p[:min(len(p), f.n)]
	}
	k, err := f.r.Read(p)
	if f.reread {
		f.n -= k
	}
	return k, err
}

func (f *rereadFails) Seek(off int64, whence int) (int64, error) {
	f.reread = true
	return f.r.Seek(off, whence)
}

type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	k := min(len(p), f.n)
	for i := range k {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// TestSinkStreamPaths drives Sink.Put directly with a 64 KiB
// StreamAbove: messages of unknown size or that cannot seek are spilled
// to a temporary file that is gone afterwards; a body that fails, or is
// shorter or longer than its Size, costs that message only (Put returns
// the error, the server stores nothing of it: the connection is reset)
// and the next message still lands. Against go-imap's in-memory server
// (no MULTIAPPEND: go-imap's APPEND) and Dovecot (planb's appender).
func TestSinkStreamPaths(t *testing.T) {
	t.Run("memserver", func(t *testing.T) {
		ms := startMem(t)
		o := memSinkOptions(t, ms)
		streamPaths(t, o, func() *imapclient.Client { return ms.dial(t) }, true, false)
	})
	t.Run("dovecot", func(t *testing.T) {
		d := imaptest.Shared(t)
		user, pw := d.NewUser(t)
		o := targetOptions(d, user, pw)
		streamPaths(t, o, func() *imapclient.Client { return d.Dial(t, user, pw) }, false, true)
	})
}

// streamPaths is TestSinkStreamPaths against o; noNUL leaves the NUL out
// of the messages (for a server without BINARY). With strict
// false the server may keep the part of a message it received before the
// connection was reset (go-imap's server sometimes sees the reset as the
// end of the literal): such partial messages are left out of the
// comparison.
func streamPaths(t *testing.T, o *Options, dial func() *imapclient.Client, noNUL, strict bool) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	o.Connections = 1
	sink, err := NewSink(t.Context(), o, &SinkOptions{StreamAbove: 64 << 10, Pipeline: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Folder(t.Context(), archive.Folder{Path: "S"}); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	msg := func(id string, n int64) []byte {
		var b bytes.Buffer
		m := newBigMessage(id, n)
		m.noNUL = noNUL
		io.Copy(&b, m)
		return b.Bytes()
	}
	boom := errors.New("boom")
	type put struct {
		name    string
		body    io.Reader
		size    int64
		want    []byte // nil: not appended
		wantErr string
	}
	m1, m2, m3, m4 := msg("m1", 200<<10), msg("m2", 100<<10), msg("m3", 1000), msg("m4", 300<<10)
	puts := []put{
		{"seekable, size known", bytes.NewReader(m1), int64(len(m1)), m1, ""},
		{"not seekable, size unknown", io.MultiReader(bytes.NewReader(m2)), -1, m2, ""},
		{"small, size unknown", io.MultiReader(bytes.NewReader(m3)), -1, m3, ""},
		{"read error", &failingReader{n: 100 << 10, err: boom}, 200 << 10, nil, "boom"},
		{"read error while sent", &rereadFails{r: bytes.NewReader(m1), n: 100 << 10, err: boom}, int64(len(m1)), nil, "boom"},
		{"shorter than its size", bytes.NewReader(m1[:150<<10]), 200 << 10, m1[:150<<10], ""},
		{"longer than its size", bytes.NewReader(m2), 90 << 10, m2, ""},
		{"small, longer than its size", bytes.NewReader(m4), 1000, m4, ""},
		{"after the errors", bytes.NewReader(m4[:70<<10]), 70 << 10, m4[:70<<10], ""},
	}
	var want [][]byte
	for i, p := range puts {
		err := sink.Put(t.Context(), &archive.Message{SourceID: fmt.Sprint(i), InternalDate: date, Size: p.size, Body: p.body})
		switch {
		case p.wantErr == "" && err != nil:
			t.Errorf("%s: Put = %v, want nil", p.name, err)
		case p.wantErr != "" && (err == nil || !strings.Contains(err.Error(), p.wantErr)):
			t.Errorf("%s: Put = %v, want an error with %q", p.name, err, p.wantErr)
		}
		if p.wantErr == "boom" && !errors.Is(err, boom) {
			t.Errorf("%s: Put = %v, want it to wrap the reader's error", p.name, err)
		}
		if p.want != nil {
			want = append(want, p.want)
		}
	}
	// The read error cut a literal short: the connection was dropped,
	// the one the target shares with the appender too (shareAppender).
	// The next folder is made and filled all the same.
	if err := sink.Folder(t.Context(), archive.Folder{Path: "S2"}); err != nil {
		t.Fatalf("Folder after the read error: %v", err)
	}
	if err := sink.Put(t.Context(), &archive.Message{SourceID: "s2", InternalDate: date, Size: int64(len(m1)), Body: bytes.NewReader(m1)}); err != nil {
		t.Errorf("Put into the next folder = %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	rep := sink.Report()
	if p1, err := mailform.Fingerprint(bytes.NewReader(m1)); err != nil {
		t.Fatal(err)
	} else if got := fetchSums(t, dial(), "S2"); len(got) != 1 || got[0].norm != p1.Exact {
		t.Errorf("next folder holds %d messages, want m1 alone", len(got))
	}
	if rep.Appended != int64(len(want))+1 || len(rep.Refused) != 0 {
		t.Errorf("report %+v, want %d appended", rep, len(want)+1)
	}
	got := fetchSums(t, dial(), "S")
	if !strict {
		var keep []fetched
		for _, g := range got {
			for _, w := range want {
				if normHash(t, w) == g.norm {
					keep = append(keep, g)
					break
				}
			}
		}
		got = keep
	}
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("found a message of %d bytes", g.size)
		}
		t.Fatalf("target holds %d messages, want %d", len(got), len(want))
	}
	for i, w := range want {
		p, err := mailform.Fingerprint(bytes.NewReader(w))
		if err != nil {
			t.Fatal(err)
		}
		h, size := p.Exact, p.Size
		if got[i].norm != h || got[i].size != size {
			t.Errorf("message %d: %d bytes, hash %x; want %d bytes, %x", i, got[i].size, got[i].norm[:6], size, h[:6])
		}
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// TestSinkBudgetAnswersCollected: messages that each take most of the
// memory budget, on one connection that may keep several APPENDs in
// flight. A worker that has sent a message and finds no next one must
// collect its answer (which frees the budget) before it waits: it used to
// wait for the next message while the restore waited for budget, for
// ever (found by a restore into Dovecot with a larger StreamAbove).
func TestSinkBudgetAnswersCollected(t *testing.T) {
	ms := startMem(t)
	var msgs []*bigMessage
	for i := range 5 {
		m := newBigMessage(fmt.Sprintf("budget%d", i), 2<<20)
		m.noNUL = true
		msgs = append(msgs, m)
	}
	r := newRepo(t)
	snap := runBackup(t, r, &bigSource{msgs: msgs, date: time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)})
	o := memSinkOptions(t, ms)
	o.Connections = 1
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sink, err := NewSink(ctx, o, &SinkOptions{MaxBuffered: 3 << 20, Pipeline: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Run(ctx, r, snap, sink, nil); err != nil {
		t.Fatalf("restore: %v (a minute for 10 MiB: the sink waited for budget that its worker held)", err)
	}
	if rep := sink.Report(); rep.Appended != int64(len(msgs)) {
		t.Errorf("report %+v, want %d appended", rep, len(msgs))
	}
	if got := fetchSums(t, ms.dial(t), "Big"); len(got) != len(msgs) {
		t.Errorf("the server holds %d messages, want %d", len(got), len(msgs))
	}
}
