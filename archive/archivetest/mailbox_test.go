package archivetest

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"codeberg.org/planb/planb/archive"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func TestMailboxSync(t *testing.T) {
	ctx := t.Context()
	mb := NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	a := mb.Add("INBOX", Msg{Body: []byte("a"), Flags: []string{archive.FlagSeen}, InternalDate: t0})
	b := mb.Add("INBOX", Msg{Body: []byte("bb")})
	f := archive.Folder{Path: "INBOX"}

	c := &Changes{}
	cur, err := mb.Sync(ctx, f, nil, c)
	if err != nil {
		t.Fatalf("Sync(nil) = %v", err)
	}
	if want := []string{"reset", "put " + a, "put " + b}; !slices.Equal(c.Log, want) {
		t.Errorf("Sync(nil) log = %q, want %q", c.Log, want)
	}
	if p := c.Find(a); p == nil || string(p.Data) != "a" || !p.InternalDate.Equal(t0) || !slices.Equal(p.Flags, []string{archive.FlagSeen}) {
		t.Errorf("Find(%q) = %+v", a, p)
	}

	// Nothing changed: an incremental sync reports nothing.
	c = &Changes{}
	cur2, err := mb.Sync(ctx, f, cur, c)
	if err != nil || len(c.Log) != 0 {
		t.Errorf("Sync(unchanged) = %q, %v, want no changes", c.Log, err)
	}

	// A flag change, a deletion and a new message.
	mb.SetFlags("INBOX", b, []string{archive.FlagFlagged})
	mb.Remove("INBOX", a)
	d := mb.Add("INBOX", Msg{Body: []byte("ddd")})
	c = &Changes{Known: map[string]string{b: (Msg{Body: []byte("bb")}).Fingerprint()}}
	if _, err := mb.Sync(ctx, f, cur2, c); err != nil {
		t.Fatal(err)
	}
	if want := []string{"keep " + b, "put " + d, "delete " + a}; !slices.Equal(c.Log, want) {
		t.Errorf("Sync(changed) log = %q, want %q", c.Log, want)
	}
	if len(c.Keeps) != 1 || !slices.Equal(c.Keeps[0].Flags, []string{archive.FlagFlagged}) {
		t.Errorf("Keeps = %+v, want %s with [\\Flagged]", c.Keeps, b)
	}

	// A foreign cursor means a full listing.
	c = &Changes{}
	if _, err := mb.Sync(ctx, f, archive.Cursor("imap:1"), c); err != nil || c.Resets != 1 || len(c.Puts) != 2 {
		t.Errorf("Sync(foreign cursor) = %q, %v, want reset and 2 puts", c.Log, err)
	}
	if _, err := mb.Sync(ctx, archive.Folder{Path: "nope"}, nil, &Changes{}); err == nil {
		t.Errorf("Sync(missing folder) = nil error")
	}
}

func TestMailboxConcurrentSync(t *testing.T) {
	mb := NewMailbox()
	for _, p := range []string{"A", "B", "C"} {
		for i := range 50 {
			mb.Add(p, Msg{Body: []byte(strings.Repeat("x", i))})
		}
	}
	folders, _ := mb.Folders(t.Context())
	var wg sync.WaitGroup
	for _, f := range folders {
		wg.Go(func() {
			c := &Changes{}
			if _, err := mb.Sync(t.Context(), f, nil, c); err != nil || len(c.Puts) != 50 {
				t.Errorf("Sync(%q) = %d puts, %v, want 50", f.Path, len(c.Puts), err)
			}
		})
		wg.Go(func() { mb.Add(f.Path+"x", Msg{Body: []byte("y")}) })
	}
	wg.Wait()
}

func TestMailboxSinkAndCompare(t *testing.T) {
	ctx := t.Context()
	src := NewMailbox()
	src.Add("INBOX", Msg{Body: []byte("one\r\n"), Flags: []string{"\\Seen", "$x"}, InternalDate: t0})
	src.Add("INBOX", Msg{Body: []byte("one\r\n"), InternalDate: t0.Add(time.Hour)})
	src.Add("Sent", Msg{Body: []byte{0, 1, 2}})

	got, err := Collect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if d := Compare(src, got, nil); d != nil {
		t.Errorf("Compare(src, Collect(src)) = %q, want none", d)
	}

	sink := NewMailbox()
	if err := src.WriteTo(ctx, sink); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if d := Compare(src, sink, nil); d != nil {
		t.Errorf("Compare(src, sink) = %q, want none", d)
	}
	if err := sink.Folder(ctx, archive.Folder{Path: "X"}); err == nil {
		t.Errorf("Folder after Close = nil error")
	}

	// Differences are found.
	other := NewMailbox()
	other.Add("INBOX", Msg{Body: []byte("one\r\n"), Flags: []string{"$x"}, InternalDate: t0})
	other.Add("INBOX", Msg{Body: []byte("one\r\n"), InternalDate: t0.Add(time.Hour + time.Millisecond)})
	other.Add("Trash", Msg{Body: []byte{0, 1, 2}})
	d := Compare(src, other, nil)
	want := []string{"missing", "unexpected", "flags", "date"}
	for _, w := range want {
		if !slices.ContainsFunc(d, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("Compare(src, other) = %q, want a difference about %q", d, w)
		}
	}
	other.AddFolder(archive.Folder{Path: "Sent"})
	other.Add("Sent", Msg{Body: []byte{0, 1, 2}})
	other.SetFlags("INBOX", other.Messages("INBOX")[0].SourceID, []string{"$x", "\\Seen"})
	other.Remove("Trash", other.Messages("Trash")[0].SourceID)
	if d := Compare(src, other, &CompareOptions{DateUnit: time.Second, IgnoreEmptyFolders: true}); d != nil {
		t.Errorf("Compare(src, other, seconds) = %q, want none", d)
	}
}

func TestMailboxPutChecksSize(t *testing.T) {
	mb := NewMailbox()
	ctx := t.Context()
	if err := mb.Put(ctx, &archive.Message{Body: strings.NewReader("x"), Size: 1}); err == nil {
		t.Errorf("Put before Folder = nil error")
	}
	mb.Folder(ctx, archive.Folder{Path: "A"})
	if err := mb.Put(ctx, &archive.Message{Body: strings.NewReader("xy"), Size: 1}); err == nil {
		t.Errorf("Put(size mismatch) = nil error")
	}
	body := bytes.Repeat([]byte("abc\n"), 1000)
	if err := mb.Put(ctx, &archive.Message{SourceID: "7", Body: iotest.OneByteReader(bytes.NewReader(body)), Size: -1}); err != nil {
		t.Fatal(err)
	}
	if err := mb.Put(ctx, &archive.Message{SourceID: "7", Body: strings.NewReader("y"), Size: 1}); err != nil {
		t.Fatal(err)
	}
	ms := mb.Messages("A")
	if len(ms) != 2 || ms[0].SourceID != "7" || !bytes.Equal(ms[0].Body, body) || ms[1].SourceID == "7" {
		t.Errorf("Messages(A) = %d messages, want 2 with distinct IDs and exact bytes", len(ms))
	}
}
