package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backend"
)

func create(t *testing.T, dir string) *Local {
	t.Helper()
	l, err := Create(t.Context(), dir)
	if err != nil {
		t.Fatalf("Create(%q) = %v", dir, err)
	}
	return l
}

func save(t *testing.T, l *Local, h backend.Handle, data string) {
	t.Helper()
	if err := l.Save(t.Context(), h, strings.NewReader(data)); err != nil {
		t.Fatalf("Save(%v) = %v", h, err)
	}
}

func listNames(t *testing.T, l *Local, ft backend.FileType) []string {
	t.Helper()
	var names []string
	err := l.List(t.Context(), ft, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%v) = %v", ft, err)
	}
	sort.Strings(names)
	return names
}

// tree returns every path under dir with its mode, files with content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[filepath.ToSlash(rel)] = fmt.Sprintf("dir %v", fi.Mode().Perm())
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = fmt.Sprintf("file %v %q", fi.Mode().Perm(), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLayout(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes differ on Windows")
	}
	dir := filepath.Join(t.TempDir(), "repo")
	l := create(t, dir)
	if l.Location() != dir {
		t.Errorf("Location() = %q, want %q", l.Location(), dir)
	}
	save(t, l, backend.Handle{Type: backend.ConfigFile}, "cfg")
	save(t, l, backend.Handle{Type: backend.KeyFile, Name: "k1"}, "key")
	save(t, l, backend.Handle{Type: backend.PackFile, Name: "3fa0"}, "pack")
	save(t, l, backend.Handle{Type: backend.PackFile, Name: "zz99"}, "odd pack")
	save(t, l, backend.Handle{Type: backend.IndexFile, Name: "i1"}, "index")
	save(t, l, backend.Handle{Type: backend.SnapshotFile, Name: "s1"}, "snap")
	save(t, l, backend.Handle{Type: backend.LockFile, Name: "l1"}, "lock")

	got := tree(t, dir)
	want := map[string]string{
		".":            "dir -rwx------",
		"config":       `file -rw------- "cfg"`,
		"keys":         "dir -rwx------",
		"keys/k1":      `file -rw------- "key"`,
		"data":         "dir -rwx------",
		"data/3f/3fa0": `file -rw------- "pack"`,
		"data/zz":      "dir -rwx------",
		"data/zz/zz99": `file -rw------- "odd pack"`,
		"index":        "dir -rwx------",
		"index/i1":     `file -rw------- "index"`,
		"snapshots":    "dir -rwx------",
		"snapshots/s1": `file -rw------- "snap"`,
		"locks":        "dir -rwx------",
		"locks/l1":     `file -rw------- "lock"`,
	}
	for i := range 256 {
		want[fmt.Sprintf("data/%02x", i)] = "dir -rwx------"
	}
	for path, w := range want {
		if got[path] != w {
			t.Errorf("%s: %s, want %s", path, got[path], w)
		}
	}
	for path, g := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected %s: %s", path, g)
		}
	}
	if names := listNames(t, l, backend.PackFile); fmt.Sprint(names) != "[3fa0 zz99]" {
		t.Errorf("List(data) = %v, want [3fa0 zz99]", names)
	}
}

func TestCreateOpen(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(t.Context(), dir); !errors.Is(err, backend.ErrNotExist) || !strings.Contains(err.Error(), "no config file") {
		t.Errorf("Open(empty dir) = %v, want ErrNotExist mentioning the config file", err)
	}
	if _, err := Open(t.Context(), filepath.Join(dir, "missing")); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Open(missing dir) = %v, want ErrNotExist", err)
	}
	l := create(t, dir)
	// Creating again before the config exists is fine (an interrupted init).
	create(t, dir)
	if _, err := Open(t.Context(), dir); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Open(dir without config) = %v, want ErrNotExist", err)
	}
	save(t, l, backend.Handle{Type: backend.ConfigFile}, "cfg")
	save(t, l, backend.Handle{Type: backend.IndexFile, Name: "abc"}, "index")
	if _, err := Create(t.Context(), dir); !errors.Is(err, os.ErrExist) {
		t.Errorf("Create(existing repository) = %v, want os.ErrExist", err)
	}
	l2, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("Open(%q) = %v", dir, err)
	}
	data, err := backend.ReadAll(t.Context(), l2, backend.Handle{Type: backend.IndexFile, Name: "abc"})
	if err != nil || string(data) != "index" {
		t.Errorf("ReadAll(index/abc) after Open = %q, %v; want %q", data, err, "index")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Open(ctx, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("Open(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := Create(ctx, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Errorf("Create(cancelled) = %v, want context.Canceled", err)
	}
}

// TestMissingFolders: a repository copied without its empty folders (as
// git copies testdata/repo-v1) takes new files in every one of them; a
// repository whose folder is gone gets no new one.
func TestMissingFolders(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	l := create(t, dir)
	handles := []backend.Handle{
		{Type: backend.LockFile, Name: "lock1"}, {Type: backend.SnapshotFile, Name: "snap1"},
		{Type: backend.IndexFile, Name: "index1"}, {Type: backend.KeyFile, Name: "key1"},
		{Type: backend.PackFile, Name: "ab12"},
	}
	for _, h := range handles {
		if err := os.RemoveAll(filepath.Dir(l.path(h))); err != nil {
			t.Fatal(err)
		}
		save(t, l, h, "x "+h.Name)
		data, err := backend.ReadAll(t.Context(), l, h)
		if err != nil || string(data) != "x "+h.Name {
			t.Errorf("ReadAll(%v) = %q, %v", h, data, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for _, h := range []backend.Handle{{Type: backend.LockFile, Name: "lock2"}, {Type: backend.PackFile, Name: "cd34"}} {
		if err := l.Save(t.Context(), h, strings.NewReader("x")); err == nil {
			t.Errorf("Save(%v) into a removed repository succeeded", h)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the removed repository's folder is back: %v", err)
	}
}

// fullDisk is a writer that accepts limit bytes and then fails like a full
// disk.
type fullDisk struct {
	w     io.Writer
	limit int
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if len(p) > d.limit {
		n, _ := d.w.Write(p[:d.limit])
		d.limit = 0
		return n, &fs.PathError{Op: "write", Path: "injected", Err: syscall.ENOSPC}
	}
	d.limit -= len(p)
	return d.w.Write(p)
}

func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	l := create(t, dir)
	h := backend.Handle{Type: backend.PackFile, Name: "abcdef"}
	save(t, l, h, "old content")

	l.wrapFile = func(w io.Writer) io.Writer { return &fullDisk{w: w, limit: 100000} }
	err := l.Save(t.Context(), h, bytes.NewReader(make([]byte, 1<<20)))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Save on a full disk = %v, want ENOSPC", err)
	}
	l.wrapFile = nil

	data, err := backend.ReadAll(t.Context(), l, h)
	if err != nil || string(data) != "old content" {
		t.Errorf("ReadAll(%v) after a failed Save = %q, %v; want %q", h, data, err, "old content")
	}
	entries, err := os.ReadDir(filepath.Join(dir, "data", "ab"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "abcdef" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("data/ab after a failed Save holds %v, want [abcdef]", names)
	}
}

func TestTempFiles(t *testing.T) {
	dir := t.TempDir()
	l := create(t, dir)
	save(t, l, backend.Handle{Type: backend.PackFile, Name: "ab01"}, "pack")
	save(t, l, backend.Handle{Type: backend.KeyFile, Name: "k1"}, "key")

	old := time.Now().Add(-2 * time.Hour)
	stale := []string{
		".tmp-1", "keys/.tmp-2", "data/ab/.tmp-3", "index/.tmp-4", "snapshots/.tmp-5", "locks/.tmp-6",
	}
	fresh := []string{"data/ab/.tmp-7", "keys/.tmp-8"}
	other := []string{"keys/.other"} // hidden but not ours: never removed
	for _, name := range append(append(append([]string{}, stale...), fresh...), other...) {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.WriteFile(path, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(fresh, name) {
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := listNames(t, l, backend.PackFile); fmt.Sprint(got) != "[ab01]" {
		t.Errorf("List(data) = %v, want [ab01]", got)
	}
	if got := listNames(t, l, backend.KeyFile); fmt.Sprint(got) != "[k1]" {
		t.Errorf("List(keys) = %v, want [k1]", got)
	}
	n, err := l.CleanTemp(t.Context(), time.Hour)
	if err != nil || n != len(stale) {
		t.Errorf("CleanTemp(1h) = %d, %v; want %d, nil", n, err, len(stale))
	}
	for _, name := range stale {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %s after CleanTemp: %v, want removed", name, err)
		}
	}
	for _, name := range append(append([]string{}, fresh...), other...) {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s after CleanTemp: %v, want kept", name, err)
		}
	}
	for _, h := range []backend.Handle{{Type: backend.PackFile, Name: "ab01"}, {Type: backend.KeyFile, Name: "k1"}} {
		if _, err := l.Stat(t.Context(), h); err != nil {
			t.Errorf("Stat(%v) after CleanTemp = %v", h, err)
		}
	}
	if n, err := l.CleanTemp(t.Context(), 0); err != nil || n != len(fresh) {
		t.Errorf("CleanTemp(0) = %d, %v; want %d, nil", n, err, len(fresh))
	}
}

func TestListMany(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 100,000 files")
	}
	const n = 100000
	dir := t.TempDir()
	l := create(t, dir)
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("%064x", i)
		path := filepath.Join(dir, "index", name)
		if err := os.WriteFile(path, []byte(name[:i%7]), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("created %d files in %v", n, time.Since(start))
	start = time.Now()
	count, total := 0, int64(0)
	err := l.List(t.Context(), backend.IndexFile, func(fi backend.FileInfo) error {
		count++
		total += fi.Size
		return nil
	})
	elapsed := time.Since(start)
	t.Logf("listed %d files in %v", count, elapsed)
	wantTotal := int64(0)
	for i := range n {
		wantTotal += int64(i % 7)
	}
	if err != nil || count != n || total != wantTotal {
		t.Errorf("List(index) = %v with %d files of %d bytes, want nil with %d files of %d bytes", err, count, total, n, wantTotal)
	}
	if elapsed > 10*time.Second {
		t.Errorf("List(index) of %d files took %v, want well under 10s", n, elapsed)
	}
}
