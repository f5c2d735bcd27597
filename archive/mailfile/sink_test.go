package mailfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
)

// testdataMailbox reads testdata/mail/maildir into memory and gives its
// messages distinct fixed dates (git does not keep mtimes).
func testdataMailbox(t *testing.T) *archivetest.Mailbox {
	t.Helper()
	src, err := NewMaildirSource(filepath.Join(testdataMail(t), "maildir"), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := collect(t, src)
	out := archivetest.NewMailbox()
	folders, _ := in.Folders(t.Context())
	base := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for i, f := range folders {
		out.AddFolder(f)
		for j, m := range in.Messages(f.Path) {
			m.InternalDate = base.Add(time.Duration(i)*time.Hour + time.Duration(j)*time.Minute)
			out.Add(f.Path, m)
		}
	}
	if out.Count() != 41 {
		t.Fatalf("testdata holds %d messages, want 41", out.Count())
	}
	return out
}

func TestMaildirRoundTrip(t *testing.T) {
	want := testdataMailbox(t)
	dir := t.TempDir()
	sink, err := NewMaildirSink(dir, &Options{Hostname: "host/x:y"})
	if err != nil {
		t.Fatal(err)
	}
	export(t, want, sink)
	checkPerms(t, dir)
	src, err := NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, src)
	archivetest.Equal(t, want, got)

	// Special-use folders are recognised again from their names, and the
	// directories carry the expected names.
	folders, _ := got.Folders(t.Context())
	if i := slices.IndexFunc(folders, func(f archive.Folder) bool { return f.Path == "Sent" }); i < 0 || folders[i].SpecialUse != archive.Sent {
		t.Errorf("Folders() = %+v, want Sent with \\Sent", folders)
	}
	for _, name := range []string{".Entw&APw-rfe", ".&ZeVnLIqe-", ".R&-D", ".v1%2E2", ".Projects.2026.Q1", "cur"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("sink did not write %q: %v", name, err)
		}
	}
	kw, err := os.ReadFile(filepath.Join(dir, "dovecot-keywords"))
	if err != nil || len(strings.Fields(string(kw))) != 6 {
		t.Errorf("dovecot-keywords = %q, %v, want 3 keywords", kw, err)
	}
	des, _ := os.ReadDir(filepath.Join(dir, "cur"))
	for _, de := range des {
		if !strings.Contains(de.Name(), `.host\057x\072y:2,`) {
			t.Errorf("file name %q lacks the escaped host and info", de.Name())
		}
	}

	// A second export into the same directory adds, never overwrites.
	sink2, err := NewMaildirSink(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	export(t, want, sink2)
	if got := collect(t, src); got.Count() != 2*want.Count() {
		t.Errorf("after two exports: %d messages, want %d", got.Count(), 2*want.Count())
	}
}

func TestMboxRoundTrip(t *testing.T) {
	want := testdataMailbox(t)
	dir := t.TempDir()
	sink, err := NewMboxSink(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	export(t, want, sink)
	checkPerms(t, dir)
	for _, name := range []string{"INBOX.mbox", "Projects.mbox", "Projects/2026/Q1.mbox", "Entwürfe.mbox", "v1.2.mbox", "R&D.mbox"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("sink did not write %q: %v", name, err)
		}
	}
	src, err := NewMboxSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, src)
	archivetest.EqualOpts(t, want, got, &archivetest.CompareOptions{IgnoreFlags: true, DateUnit: time.Second})
}

func TestEMLSink(t *testing.T) {
	want := testdataMailbox(t)
	dir := t.TempDir()
	sink, err := NewEMLSink(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	export(t, want, sink)
	checkPerms(t, dir)
	// Byte-exact files with the internal date as mtime.
	for i, m := range want.Messages("Projects/2026/Q1") {
		name := filepath.Join(dir, "Projects", "2026", "Q1", []string{"000001.eml", "000002.eml", "000003.eml"}[i])
		data, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(data, m.Body) {
			t.Errorf("ReadFile(%q) = %q, %v, want %q", name, data, err, m.Body)
		}
		if fi, err := os.Stat(name); err != nil || !fi.ModTime().Equal(m.InternalDate) {
			t.Errorf("Stat(%q) mtime = %v, want %v", name, fi.ModTime(), m.InternalDate)
		}
	}
	src, err := NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	archivetest.EqualOpts(t, want, collect(t, src), &archivetest.CompareOptions{IgnoreFlags: true})
}

// TestSinkFolderNames checks that folder names that are hard for file
// systems stay inside the sink's directory and read back unchanged.
func TestSinkFolderNames(t *testing.T) {
	names := []string{"..", ".", "../../etc", "a/../../b", ".hidden", "%2E", "100%", "nul\x00byte", "v1.2", "R&D", "INBOX/Sub", "Entwürfe/日本語", "back\\slash", "-x"}
	sinks := []struct {
		name string
		new  func(dir string) (archive.Sink, error)
		read func(dir string) (archive.Source, error)
	}{
		{"maildir", func(d string) (archive.Sink, error) { return NewMaildirSink(d, nil) }, func(d string) (archive.Source, error) { return NewMaildirSource(d, nil) }},
		{"mbox", func(d string) (archive.Sink, error) { return NewMboxSink(d, nil) }, func(d string) (archive.Source, error) { return NewMboxSource(d, nil) }},
		{"eml", func(d string) (archive.Sink, error) { return NewEMLSink(d, nil) }, func(d string) (archive.Source, error) { return NewMaildirSource(d, nil) }},
	}
	want := archivetest.NewMailbox()
	for i, n := range names {
		want.Add(n, archivetest.Msg{Body: []byte("Subject: " + n + "\n\nbody " + string(rune('a'+i)) + "\n")})
	}
	for _, s := range sinks {
		t.Run(s.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "out")
			sink, err := s.new(dir)
			if err != nil {
				t.Fatal(err)
			}
			export(t, want, sink)
			if des, _ := os.ReadDir(parent); len(des) != 1 {
				t.Errorf("sink wrote outside its directory: %d entries in the parent", len(des))
			}
			src, err := s.read(dir)
			if err != nil {
				t.Fatal(err)
			}
			archivetest.EqualOpts(t, want, collect(t, src), &archivetest.CompareOptions{IgnoreDates: true, IgnoreFlags: true})

			sink, _ = s.new(dir)
			for _, bad := range []string{"", "/abs", "a//b", "trailing/"} {
				if err := sink.Folder(t.Context(), archive.Folder{Path: bad}); err == nil || !strings.Contains(err.Error(), "empty name element") {
					t.Errorf("Folder(%q) = %v, want an empty name element error", bad, err)
				}
			}
			if err := sink.Put(t.Context(), &archive.Message{Body: strings.NewReader("x")}); err == nil {
				t.Errorf("Put without folder = nil error")
			}
			sink.Close()
		})
	}
}

// TestSinksSlowReaders writes bodies through readers that return few bytes
// at a time.
func TestSinksSlowReaders(t *testing.T) {
	bodies := [][]byte{
		[]byte("From: a\r\n\r\nFrom the start\r\n>From\r\n>>>From x\r\nend"),
		bytes.Repeat([]byte(">>From \n"), 3000),
		append(bytes.Repeat([]byte{'x'}, 200000), '\n', '\n'),
		[]byte(">"),
		{},
	}
	wrap := []struct {
		name string
		fn   func(io.Reader) io.Reader
	}{
		{"OneByte", iotest.OneByteReader},
		{"Half", iotest.HalfReader},
		{"DataErr", iotest.DataErrReader},
	}
	date := time.Date(2025, 12, 31, 23, 59, 58, 0, time.UTC)
	for _, w := range wrap {
		t.Run(w.name, func(t *testing.T) {
			want := archivetest.NewMailbox()
			for _, b := range bodies {
				want.Add("F", archivetest.Msg{Body: b, InternalDate: date, Flags: []string{archive.FlagSeen}})
			}
			check := func(kind string, sink archive.Sink, read func() (archive.Source, error), opts *archivetest.CompareOptions) {
				ctx := t.Context()
				sink.Folder(ctx, archive.Folder{Path: "F"})
				for _, m := range want.Messages("F") {
					if err := sink.Put(ctx, &archive.Message{Body: w.fn(bytes.NewReader(m.Body)), Size: -1, InternalDate: m.InternalDate, Flags: m.Flags}); err != nil {
						t.Fatalf("%s Put = %v", kind, err)
					}
				}
				if err := sink.Close(); err != nil {
					t.Fatal(err)
				}
				src, err := read()
				if err != nil {
					t.Fatal(err)
				}
				archivetest.EqualOpts(t, want, collect(t, src), opts)
			}
			d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
			md, _ := NewMaildirSink(d1, nil)
			check("maildir", md, func() (archive.Source, error) { return NewMaildirSource(d1, nil) }, nil)
			mb, _ := NewMboxSink(d2, nil)
			check("mbox", mb, func() (archive.Source, error) { return NewMboxSource(d2, nil) }, &archivetest.CompareOptions{IgnoreFlags: true})
			es, _ := NewEMLSink(d3, nil)
			check("eml", es, func() (archive.Source, error) { return NewMaildirSource(d3, nil) }, &archivetest.CompareOptions{IgnoreFlags: true})
		})
	}
}

func TestMaildirSinkKeywords(t *testing.T) {
	dir := t.TempDir()
	sink, err := NewMaildirSink(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sink.Folder(ctx, archive.Folder{Path: "K"})
	var flags []string
	for i := range 30 {
		flags = append(flags, "kw"+string(rune('A'+i)))
	}
	flags = append(flags, `\seen`, `\Recent`, "bad keyword", archive.FlagForwarded)
	if err := sink.Put(ctx, &archive.Message{Body: strings.NewReader("x"), Flags: flags}); err != nil {
		t.Fatal(err)
	}
	sink.Close()
	des, _ := os.ReadDir(filepath.Join(dir, ".K", "cur"))
	if len(des) != 1 || !strings.HasSuffix(des[0].Name(), ":2,PSabcdefghijklmnopqrstuvwxyz") {
		t.Fatalf("cur = %v, want one file ending in :2,PSa…z", des)
	}
	src, _ := NewMaildirSource(dir, nil)
	got := collect(t, src).Messages("K")
	if len(got) != 1 || len(got[0].Flags) != 28 || !slices.Contains(got[0].Flags, "kwZ") || slices.Contains(got[0].Flags, "kw[") {
		t.Errorf("flags read back = %q, want \\Seen, $Forwarded and the first 26 keywords", got[0].Flags)
	}
}
