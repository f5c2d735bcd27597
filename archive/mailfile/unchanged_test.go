package mailfile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
)

// TestMain makes key derivation cheap for the tests that back up into a
// repository.
func TestMain(m *testing.M) {
	crypto.SetTestKDF()
	os.Exit(m.Run())
}

// countOpens makes open count the files it opens.
func countOpens(open *func(string) (*os.File, error)) *atomic.Int64 {
	var n atomic.Int64
	*open = func(name string) (*os.File, error) {
		n.Add(1)
		return os.Open(name)
	}
	return &n
}

// sameFolders reports whether two snapshots list the same folders with the
// same pages, counts and cursors: the same messages, flags and dates.
func sameFolders(t *testing.T, a, b *repo.Snapshot) {
	t.Helper()
	if len(a.Folders) != len(b.Folders) {
		t.Fatalf("%d folders, then %d", len(a.Folders), len(b.Folders))
	}
	for i := range a.Folders {
		fa, fb := a.Folders[i], b.Folders[i]
		if fa.Path != fb.Path || !slices.Equal(fa.Pages, fb.Pages) || fa.Messages != fb.Messages ||
			fa.Bytes != fb.Bytes || string(fa.Cursor) != string(fb.Cursor) {
			t.Errorf("folder %q: %d messages, pages %v, cursor %q; then %q: %d, %v, %q",
				fa.Path, fa.Messages, fa.Pages, fa.Cursor, fb.Path, fb.Messages, fb.Pages, fb.Cursor)
		}
	}
}

func writeMessage(t *testing.T, name string, i int, mtime time.Time) {
	t.Helper()
	msg := fmt.Appendf(nil, "From: a@example.org\r\nSubject: message %d\r\nMessage-ID: <%d@example.org>\r\n\r\nbody %d\r\n", i, i, i)
	if err := os.WriteFile(name, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestUnchangedMaildirNotRead: a second backup of an unchanged Maildir
// opens no message file and writes a snapshot of the same folders, pages
// and cursors; a changed and a new message are the only files opened next.
func TestUnchangedMaildirNotRead(t *testing.T) {
	ctx := t.Context()
	root := filepath.Join(t.TempDir(), "Maildir")
	mtime := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var files []string
	for _, folder := range []string{"", ".Archive", ".Sent"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, folder, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 30 {
			name := filepath.Join(root, folder, "cur", fmt.Sprintf("%d.m%d.host:2,S", 1700000000+i, i))
			writeMessage(t, name, len(files), mtime)
			files = append(files, name)
		}
	}
	src, err := NewMaildirSource(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	opens := countOpens(&src.open)
	r := repotest.New(t, nil)
	first, err := backup.Run(ctx, r, src, &backup.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != int64(len(files)) {
		t.Fatalf("first backup opened %d files, want %d", n, len(files))
	}

	opens.Store(0)
	second, err := backup.Run(ctx, r, src, &backup.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 0 {
		t.Errorf("backup of an unchanged Maildir opened %d files, want 0", n)
	}
	if second.Parent == nil || *second.Parent != first.ID {
		t.Errorf("second backup's parent = %v, want %s", second.Parent, first.ID.Short())
	}
	sameFolders(t, first, second)
	if second.Summary.AddedBlobs != 0 || second.Summary.NewMessages != 0 {
		t.Errorf("unchanged backup added %d blobs, %d messages; want 0", second.Summary.AddedBlobs, second.Summary.NewMessages)
	}
	archivetest.Equal(t, repotest.Restore(t, r, first), repotest.Restore(t, r, second))

	// One message rewritten (same size, new time), one new: two opens.
	writeMessage(t, files[5], 5, mtime.Add(time.Hour))
	writeMessage(t, filepath.Join(root, ".Sent", "new", "1800000000.new.host"), 999, mtime)
	opens.Store(0)
	third, err := backup.Run(ctx, r, src, &backup.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 2 {
		t.Errorf("backup after one change and one new message opened %d files, want 2", n)
	}
	if third.Summary.Messages != second.Summary.Messages+1 {
		t.Errorf("third backup has %d messages, want %d", third.Summary.Messages, second.Summary.Messages+1)
	}
}

// TestUnchangedMboxNotRead: a second backup of an unchanged mbox file does
// not open it and writes the same folder; an appended message makes the
// next backup read the file again.
func TestUnchangedMboxNotRead(t *testing.T) {
	ctx := t.Context()
	name := filepath.Join(t.TempDir(), "Archive.mbox")
	var mbox []byte
	for i := range 20 {
		mbox = fmt.Appendf(mbox, "From a@example.org Sat Jun  1 12:00:00 2025\nSubject: m %d\nMessage-ID: <%d@example.org>\n\nbody %d\n\n", i, i, i)
	}
	if err := os.WriteFile(name, mbox, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := NewMboxSource(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	opens := countOpens(&src.open)
	r := repotest.New(t, nil)
	first, err := backup.Run(ctx, r, src, &backup.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 1 || first.Summary.Messages != 20 {
		t.Fatalf("first backup opened the file %d times, stored %d messages; want 1, 20", n, first.Summary.Messages)
	}
	opens.Store(0)
	second, err := backup.Run(ctx, r, src, &backup.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 0 {
		t.Errorf("backup of an unchanged mbox opened it %d times, want 0", n)
	}
	sameFolders(t, first, second)

	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "From a@example.org Sun Jun  2 12:00:00 2025\nSubject: m 20\n\nbody 20\n\n")
	f.Close()
	opens.Store(0)
	third, err := backup.Run(ctx, r, src, &backup.Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if n := opens.Load(); n != 1 || third.Summary.Messages != 21 {
		t.Errorf("backup after an append opened the file %d times, stored %d messages; want 1, 21", n, third.Summary.Messages)
	}
}

// TestDirStat: files stat by name in their directory as os.Stat does it:
// a regular file with its size, modification time and fingerprint, a
// link followed to its file, a directory not regular, a missing file or
// a dangling link not there (fs.ErrNotExist).
func TestDirStat(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "1700000000.M1P1.host,S=5:2,S")
	if err := os.WriteFile(file, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	if err := os.Chtimes(file, when, when); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		os.Symlink(filepath.Base(file), filepath.Join(dir, "link")),
		os.Symlink("nowhere", filepath.Join(dir, "dangling")),
		os.Mkdir(filepath.Join(dir, "sub"), 0o700),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	ds, err := openDirStat(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.close()
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{filepath.Base(file), "link"} {
		st, err := ds.stat(name)
		if err != nil || !st.regular || st.size != 5 || st.mtime != when.UnixNano() || st.fingerprint() != fileFingerprint(fi) {
			t.Errorf("stat(%q) = %+v, %v; want a regular file of 5 bytes, %d, fingerprint %s", name, st, err, when.UnixNano(), fileFingerprint(fi))
		}
	}
	if st, err := ds.stat("sub"); err != nil || st.regular {
		t.Errorf("stat(sub) = %+v, %v; want a directory, not regular", st, err)
	}
	for _, name := range []string{"missing", "dangling"} {
		if _, err := ds.stat(name); !isNotExist(err) || !strings.Contains(err.Error(), filepath.Join(dir, name)) {
			t.Errorf("stat(%q) = %v; want not-exist naming the path", name, err)
		}
	}
	if fp := (fileStat{size: 5, mtime: -1}).fingerprint(); fp != "5.-1" {
		t.Errorf("fingerprint of a date before 1970 = %q", fp)
	}
}

// TestKeepMaildir: listing a Maildir keeps at once the messages the parent
// holds unchanged and returns only the others, in natural order; a unique
// name in both new/ and cur/ (a move under way) is reported once, from
// cur/, whichever of its files the parent holds.
func TestKeepMaildir(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mtime := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	fp := func(name string) string {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fileFingerprint(fi)
	}
	write := func(name string, i int) { writeMessage(t, filepath.Join(dir, name), i, mtime) }
	known := map[string]string{}
	for i := range 50 { // the parent's messages, unchanged
		name := fmt.Sprintf("cur/%d.m%d.host:2,S", 1700000000+i, i)
		write(name, i)
		known[fmt.Sprintf("%d.m%d.host", 1700000000+i, i)] = fp(name)
	}
	write("cur/1700000100.m100.host:2,", 100) // new, in cur/
	write("new/1700000009.m9.host", 9)        // held in cur/ too
	write("new/1700000200.m200.host", 200)    // new in new/ and cur/
	write("cur/1700000200.m200.host:2,F", 200)
	write("new/1700000300.m300.host", 300) // held, from new/, now also in cur/
	known["1700000300.m300.host"] = fp("new/1700000300.m300.host")
	write("cur/1700000300.m300.host:2,R", 3000) // another size: changed
	write("new/1700000050.m50.host", 50)        // new, sorts before 100 naturally
	write("cur/.hidden", 1)

	c := &archivetest.Changes{Known: known}
	var stats [len(subs)]*dirStat
	names, err := keepMaildir(t.Context(), dir, nil, c, &stats)
	for _, ds := range stats {
		if ds != nil {
			ds.close()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range names {
		got = append(got, subs[n.sub]+"/"+n.name)
	}
	want := []string{"new/1700000050.m50.host", "cur/1700000100.m100.host:2,", "cur/1700000200.m200.host:2,F", "cur/1700000300.m300.host:2,R"}
	if !slices.Equal(got, want) {
		t.Errorf("to read: %q, want %q", got, want)
	}
	kept := map[string][]string{}
	for _, k := range c.Keeps {
		kept[k.SourceID] = k.Flags
	}
	// 1700000009 kept from new/ (no flags), then again from cur/ (\Seen):
	// the cur/ call comes last.
	if len(kept) != 51 || !slices.Equal(kept["1700000009.m9.host"], []string{archive.FlagSeen}) || !slices.Equal(kept["1700000042.m42.host"], []string{archive.FlagSeen}) {
		t.Errorf("%d messages kept, 1700000009 with %q; want the 50 of the parent and 1700000300 (from new/), 1700000009 with \\Seen", len(kept), kept["1700000009.m9.host"])
	}
}
