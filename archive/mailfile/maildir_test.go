package mailfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
)

func TestMaildirSourceTestdata(t *testing.T) {
	ctx := t.Context()
	src, err := NewMaildirSource(filepath.Join(testdataMail(t), "maildir"), nil)
	if err != nil {
		t.Fatal(err)
	}
	folders, err := src.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []archive.Folder{
		{Path: "Archive", Name: "Archive", Delimiter: ".", SpecialUse: archive.Archive},
		{Path: "Drafts", Name: "Drafts", Delimiter: ".", SpecialUse: archive.Drafts},
		{Path: "Entwürfe", Name: "Entw&APw-rfe", Delimiter: "."},
		{Path: "INBOX", Name: "INBOX", Delimiter: "."},
		{Path: "Junk", Name: "Junk", Delimiter: ".", SpecialUse: archive.Junk},
		{Path: "Old Mail", Name: "Old Mail", Delimiter: "."},
		{Path: "Projects", Name: "Projects", Delimiter: "."},
		{Path: "Projects/2026", Name: "Projects.2026", Delimiter: "."},
		{Path: "Projects/2026/Q1", Name: "Projects.2026.Q1", Delimiter: "."},
		{Path: "R&D", Name: "R&-D", Delimiter: "."},
		{Path: "Sent", Name: "Sent", Delimiter: ".", SpecialUse: archive.Sent},
		{Path: "Trash", Name: "Trash", Delimiter: ".", SpecialUse: archive.Trash},
		{Path: "v1.2", Name: "v1%2E2", Delimiter: "."},
		{Path: "日本語", Name: "&ZeVnLIqe-", Delimiter: "."},
	}
	if !slices.Equal(folders, want) {
		t.Errorf("Folders() =\n%+v\nwant\n%+v", folders, want)
	}

	counts := map[string]int{
		"Archive": 1, "Drafts": 2, "Entwürfe": 2, "INBOX": 17, "Junk": 2, "Old Mail": 2, "Projects": 1,
		"Projects/2026": 1, "Projects/2026/Q1": 3, "R&D": 2, "Sent": 3, "Trash": 2, "v1.2": 1, "日本語": 2,
	}
	total := 0
	byID := map[string]archivetest.Recorded{}
	for _, f := range folders {
		c := &archivetest.Changes{}
		cur, err := src.Sync(ctx, f, nil, c)
		if err != nil {
			t.Fatalf("Sync(%q) = %v", f.Path, err)
		}
		if string(cur) != "maildir:1" || c.Resets != 1 || c.Log[0] != "reset" {
			t.Errorf("Sync(%q) = cursor %q, %d resets, want maildir:1 and a leading reset", f.Path, cur, c.Resets)
		}
		if len(c.Puts) != counts[f.Path] {
			t.Errorf("Sync(%q) put %d messages, want %d", f.Path, len(c.Puts), counts[f.Path])
		}
		total += len(c.Puts)
		var ids []string
		for _, p := range c.Puts {
			ids = append(ids, p.SourceID)
			byID[p.SourceID] = p
			if p.Size != int64(len(p.Data)) || p.Fingerprint == "" || p.Folder != f.Path {
				t.Errorf("message %s: size %d, %d bytes, fingerprint %q, folder %q", p.SourceID, p.Size, len(p.Data), p.Fingerprint, p.Folder)
			}
		}
		if !slices.IsSortedFunc(ids, func(a, b string) int { return naturalCompare(a, b) }) {
			t.Errorf("Sync(%q) order = %q, want sorted numerically", f.Path, ids)
		}
	}
	if total != 41 {
		t.Errorf("total messages = %d, want 41", total)
	}

	flagTests := []struct {
		n     int
		flags []string
	}{
		{1, []string{archive.FlagSeen}},
		{2, []string{archive.FlagAnswered, archive.FlagSeen}},
		{5, []string{archive.FlagSeen, "$Label1"}},
		{6, []string{archive.FlagSeen, "$Label1", "work"}},
		{7, []string{archive.FlagForwarded, archive.FlagSeen}},
		{9, []string{archive.FlagSeen, "Important"}},
		{14, nil},
		{15, []string{archive.FlagDeleted}},
		{16, nil}, // new/
		{21, []string{archive.FlagDraft, archive.FlagSeen}},
		{32, []string{archive.FlagSeen, "review"}},
	}
	for _, tt := range flagTests {
		id := unique(tt.n)
		p, ok := byID[id]
		if !ok {
			t.Errorf("message %s not found", id)
			continue
		}
		if !slices.Equal(p.Flags, tt.flags) {
			t.Errorf("message %s flags = %q, want %q", id, p.Flags, tt.flags)
		}
	}
	if p := byID[unique(4)]; !bytes.Contains(p.Data, []byte("before\x00after\n")) {
		t.Errorf("NUL message = %q, want its NUL byte", p.Data)
	}
	if p := byID[unique(24)]; len(p.Data) != 0 {
		t.Errorf("zero-byte message = %q, want empty", p.Data)
	}
}

// unique is the unique name gentestdata gives its n-th message.
func unique(n int) string { return fmt.Sprintf("1767225600.M%dP4242Q%d.testhost", n, n) }

func TestMaildirSourceHaveKeep(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "cur", "a:2,S"), "A")
	mustWrite(t, filepath.Join(dir, "cur", "b:2,"), "BB")
	mustWrite(t, filepath.Join(dir, "new", "c"), "CCC")
	src, err := NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	inbox := archive.Folder{Path: "INBOX"}
	first := &archivetest.Changes{}
	cur, err := src.Sync(ctx, inbox, nil, first)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]string{}
	for _, p := range first.Puts {
		known[p.SourceID] = p.Fingerprint
	}

	// Change b's flags and content size, remove c: a keeps, b is put again.
	if err := os.Rename(filepath.Join(dir, "cur", "b:2,"), filepath.Join(dir, "cur", "b:2,FS")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "cur", "b:2,FS"), "BBBB")
	os.Remove(filepath.Join(dir, "new", "c"))
	os.Chtimes(filepath.Join(dir, "cur", "a:2,S"), time.Time{}, time.Time{})
	second := &archivetest.Changes{Known: known}
	if _, err := src.Sync(ctx, inbox, cur, second); err != nil {
		t.Fatal(err)
	}
	if want := []string{"reset", "keep a", "put b"}; !slices.Equal(second.Log, want) {
		t.Errorf("second Sync log = %q, want %q", second.Log, want)
	}
	if len(second.Keeps) != 1 || !slices.Equal(second.Keeps[0].Flags, []string{archive.FlagSeen}) {
		t.Errorf("Keeps = %+v, want a with [\\Seen]", second.Keeps)
	}
	if p := second.Find("b"); p == nil || string(p.Data) != "BBBB" || !slices.Equal(p.Flags, []string{archive.FlagFlagged, archive.FlagSeen}) {
		t.Errorf("Find(b) = %+v, want BBBB with \\Flagged \\Seen", p)
	}
}

// movingChanges renames or removes files of the maildir while the source
// runs, as a mail program would.
type movingChanges struct {
	archivetest.Changes
	onFirstPut func()
}

func (m *movingChanges) Put(msg *archive.Message) error {
	if m.onFirstPut != nil {
		m.onFirstPut()
		m.onFirstPut = nil
	}
	return m.Changes.Put(msg)
}

func TestMaildirSourceVanishing(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "cur", "1:2,S"), "one")
	mustWrite(t, filepath.Join(dir, "new", "2"), "two")
	mustWrite(t, filepath.Join(dir, "cur", "3:2,"), "three")
	src, err := NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &movingChanges{onFirstPut: func() {
		// 2 is read by a mail program (new → cur, seen); 3 is expunged.
		os.Rename(filepath.Join(dir, "new", "2"), filepath.Join(dir, "cur", "2:2,RS"))
		os.Remove(filepath.Join(dir, "cur", "3:2,"))
	}}
	if _, err := src.Sync(t.Context(), archive.Folder{Path: "INBOX"}, nil, c); err != nil {
		t.Fatalf("Sync = %v", err)
	}
	if want := []string{"reset", "put 1", "put 2"}; !slices.Equal(c.Log, want) {
		t.Errorf("Sync log = %q, want %q", c.Log, want)
	}
	if p := c.Find("2"); p == nil || string(p.Data) != "two" || !slices.Equal(p.Flags, []string{archive.FlagAnswered, archive.FlagSeen}) {
		t.Errorf("moved message = %+v, want its new flags", p)
	}
}

func TestMaildirSourcePlainFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"user/inbox/1", "user/inbox/10", "user/inbox/2", "user/inbox/.hidden", "user/inbox/dovecot-uidlist",
		"user/inbox/genie/1", "user/sent_items/1", "top.eml", "README.md", "x%2Ey/1",
		"box/cur/m1:2,S", "box/maildirfolder", "box/sub/1",
	} {
		mustWrite(t, filepath.Join(dir, name), "Subject: "+name+"\n\nbody\n")
	}
	src, err := NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mb := collect(t, src)
	folders, _ := mb.Folders(t.Context())
	var paths []string
	for _, f := range folders {
		paths = append(paths, f.Path)
	}
	want := []string{"INBOX", "box", "box/sub", "user/inbox", "user/inbox/genie", "user/sent_items", "x.y"}
	if !slices.Equal(paths, want) {
		t.Errorf("folders = %q, want %q", paths, want)
	}
	var ids []string
	for _, m := range mb.Messages("user/inbox") {
		ids = append(ids, m.SourceID)
	}
	if want := []string{"1", "2", "10"}; !slices.Equal(ids, want) {
		t.Errorf("user/inbox messages = %q, want %q", ids, want)
	}
	if ms := mb.Messages("INBOX"); len(ms) != 1 || ms[0].SourceID != "top.eml" {
		t.Errorf("INBOX messages = %+v, want top.eml only", ms)
	}
	if ms := mb.Messages("box"); len(ms) != 1 || ms[0].SourceID != "m1" || !slices.Equal(ms[0].Flags, []string{archive.FlagSeen}) {
		t.Errorf("box messages = %+v, want m1 seen", ms)
	}
}

func TestNewMaildirSourceErrors(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "file"), "x")
	for _, p := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "file")} {
		if _, err := NewMaildirSource(p, nil); err == nil || !strings.Contains(err.Error(), "open maildir") {
			t.Errorf("NewMaildirSource(%q) = %v, want an open maildir error", p, err)
		}
	}
}

func mustWrite(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
