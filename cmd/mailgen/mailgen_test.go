package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// messageFiles returns the message files under root, keyed by path
// relative to root, with their contents.
func messageFiles(t *testing.T, root string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "maildirfolder" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatalf("walk %q: %v", root, err)
	}
	return files
}

var sizeInName = regexp.MustCompile(`,S=(\d+),W=(\d+)`)

func TestGenerateMaildir(t *testing.T) {
	const (
		messages = 200
		target   = 6 << 20
	)
	out := filepath.Join(t.TempDir(), "maildir")
	st, err := generate(options{out: out, messages: messages, size: target, seed: 1})
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	files := messageFiles(t, out)
	if len(files) != messages || st.messages != messages {
		t.Fatalf("generate wrote %d files (stats %d), want %d", len(files), st.messages, messages)
	}

	var total int64
	folders := make(map[string]int)
	blocks := make(map[string]map[string]bool) // first attachment lines -> files
	for name, data := range files {
		total += int64(len(data))
		dir, base := filepath.Split(name)
		sub := filepath.Base(dir)
		folders[filepath.Dir(filepath.Clean(dir))]++
		if sub != "cur" && sub != "new" {
			t.Errorf("message %q is in %q, want cur or new", name, sub)
		}
		if sub == "cur" && !strings.Contains(base, ":2,") {
			t.Errorf("message %q in cur has no :2, info", name)
		}
		m := sizeInName.FindStringSubmatch(base)
		if m == nil {
			t.Errorf("message %q has no S= and W= in its name", name)
		} else {
			s, _ := strconv.Atoi(m[1])
			w, _ := strconv.Atoi(m[2])
			if lines := bytes.Count(data, []byte{'\n'}); s != len(data) || w != len(data)+lines {
				t.Errorf("message %q: S=%d W=%d, want S=%d W=%d", name, s, w, len(data), len(data)+lines)
			}
		}

		msg, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Errorf("mail.ReadMessage(%q) = %v", name, err)
			continue
		}
		if _, err := msg.Header.Date(); err != nil {
			t.Errorf("message %q: Date: %v", name, err)
		}
		if _, err := msg.Header.AddressList("From"); err != nil {
			t.Errorf("message %q: From: %v", name, err)
		}
		if msg.Header.Get("Message-Id") == "" || msg.Header.Get("Subject") == "" {
			t.Errorf("message %q lacks Message-ID or Subject", name)
		}
		body, err := io.ReadAll(msg.Body)
		if err != nil || len(body) == 0 {
			t.Errorf("message %q: body of %d bytes, %v", name, len(body), err)
		}

		// Key each attachment by its first three base64 lines.
		for _, part := range bytes.Split(body, []byte("Content-Disposition: attachment"))[1:] {
			_, rest, ok := bytes.Cut(part, []byte("\n\n"))
			lines := bytes.SplitN(rest, []byte("\n"), 4)
			if !ok || len(lines) < 4 || len(lines[0]) != 76 {
				t.Errorf("message %q: attachment does not start with 76-character base64 lines", name)
				continue
			}
			key := string(bytes.Join(lines[:3], []byte("\n")))
			if blocks[key] == nil {
				blocks[key] = make(map[string]bool)
			}
			blocks[key][name] = true
		}
	}

	if lo, hi := int64(target*85/100), int64(target*115/100); total < lo || total > hi {
		t.Errorf("total size = %d, want %d ± 15%%", total, target)
	}
	if total != st.bytes {
		t.Errorf("stats.bytes = %d, files add up to %d", st.bytes, total)
	}
	for _, f := range []string{".", ".Sent", ".Archive", ".Projects.Alpha"} {
		if folders[f] == 0 {
			t.Errorf("folder %q has no messages; folders: %v", f, folders)
		}
	}
	repeated := 0
	for _, names := range blocks {
		if len(names) >= 2 {
			repeated++
		}
	}
	if len(blocks) == 0 || repeated == 0 {
		t.Errorf("found %d distinct attachments, %d of them in 2 or more files; want some repeated", len(blocks), repeated)
	}
}

// treeDigest hashes the names, mtimes and contents of the files under root.
func treeDigest(t *testing.T, root string) [32]byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		h.Write([]byte(rel + "\x00" + info.ModTime().UTC().String() + "\x00"))
		h.Write(data)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %q: %v", root, err)
	}
	return [32]byte(h.Sum(nil))
}

func TestGenerateDeterministic(t *testing.T) {
	tests := []struct {
		name string
		opts options
	}{
		{"maildir", options{messages: 60, size: 1 << 20, seed: 7}},
		{"one message", options{oneMessageSize: 300 << 10, seed: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var digests [][32]byte
			for _, seed := range []uint64{tt.opts.seed, tt.opts.seed, tt.opts.seed + 1} {
				opts := tt.opts
				opts.seed = seed
				opts.out = t.TempDir()
				if _, err := generate(opts); err != nil {
					t.Fatalf("generate(seed %d): %v", seed, err)
				}
				digests = append(digests, treeDigest(t, opts.out))
			}
			if digests[0] != digests[1] {
				t.Errorf("two runs with seed %d wrote different trees", tt.opts.seed)
			}
			if digests[0] == digests[2] {
				t.Errorf("seeds %d and %d wrote the same tree", tt.opts.seed, tt.opts.seed+1)
			}
		})
	}
}

func TestGenerateOneMessage(t *testing.T) {
	const size = 3 << 20
	out := t.TempDir()
	if _, err := generate(options{out: out, oneMessageSize: size, seed: 1}); err != nil {
		t.Fatalf("generate: %v", err)
	}
	files := messageFiles(t, out)
	if len(files) != 1 {
		t.Fatalf("generate wrote %d files, want 1", len(files))
	}
	for name, data := range files {
		if d := len(data) - size; d < -100 || d > 100 {
			t.Errorf("message %q has %d bytes, want %d ± 100", name, len(data), size)
		}
		if _, err := mail.ReadMessage(bytes.NewReader(data)); err != nil {
			t.Errorf("mail.ReadMessage(%q) = %v", name, err)
		}
	}
}

func TestGenerateRefusesNonEmptyDir(t *testing.T) {
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := generate(options{out: out, messages: 1, size: 10000, seed: 1})
	if err == nil || !strings.Contains(err.Error(), "directory is not empty") {
		t.Errorf("generate into a non-empty directory = %v, want error about a non-empty directory", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1500", 1500, true},
		{"512K", 512 << 10, true},
		{"300M", 300 << 20, true},
		{"1G", 1 << 30, true},
		{"1.5G", 3 << 29, true},
		{"200MiB", 200 << 20, true},
		{"2gb", 2 << 30, true},
		{"", 0, false},
		{"-1M", 0, false},
		{"tenM", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestImportTree(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"top.eml":            "Subject: top\n\nbody\n",
		"a/one.eml":          "Subject: one\n\nbody\n",
		"a/b.c/two":          "Subject: two\n\nbody\n",
		"a/b.c/MANIFEST.txt": "not a message",
		"README.md":          "not a message",
	}
	for name, data := range files {
		path := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "maildir")
	st, err := importTree(src, out, []string{"*.md", "MANIFEST*"})
	if err != nil {
		t.Fatalf("importTree: %v", err)
	}
	got := make(map[string]string) // folder -> content
	for name, data := range messageFiles(t, out) {
		dir, base := filepath.Split(name)
		if filepath.Base(dir) != "cur" || !strings.HasSuffix(base, ":2,S") {
			t.Errorf("imported file %q is not in cur/ with the S flag", name)
		}
		got[filepath.Dir(filepath.Clean(dir))] = string(data)
	}
	want := map[string]string{
		".":      files["top.eml"],
		".a":     files["a/one.eml"],
		".a.b_c": files["a/b.c/two"],
	}
	if len(got) != len(want) || st.messages != 3 {
		t.Errorf("importTree wrote %v (%d messages), want %v", got, st.messages, want)
	}
	for folder, data := range want {
		if got[folder] != data {
			t.Errorf("folder %q holds %q, want %q", folder, got[folder], data)
		}
	}
	for _, folder := range []string{".a", ".a.b_c"} {
		if _, err := os.Stat(filepath.Join(out, folder, "maildirfolder")); err != nil {
			t.Errorf("folder %q: %v", folder, err)
		}
	}
}
