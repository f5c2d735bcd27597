package mailfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
)

// TestCorpus reads the shared corpus (skipped when absent) as folders of
// one-message files, checks every message against its file, then writes it
// with each sink and reads it back byte-identical.
func TestCorpus(t *testing.T) {
	for _, sub := range []string{"enron-dev", "lists-linux-man", "mime-edge"} {
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			dir := corpusDir(t, sub)
			src, err := NewMaildirSource(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := collect(t, src)

			// Every file but the notes (*.md) is a message with its bytes.
			bodies := make(map[string][]byte)
			folders, _ := want.Folders(t.Context())
			for _, f := range folders {
				for _, m := range want.Messages(f.Path) {
					bodies[f.Path+"/"+m.SourceID] = m.Body
				}
			}
			n := 0
			err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || strings.HasSuffix(p, ".md") {
					return err
				}
				n++
				rel, _ := filepath.Rel(dir, filepath.Dir(p))
				folder := filepath.ToSlash(rel)
				if folder == "." {
					folder = "INBOX"
				}
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				body, ok := bodies[folder+"/"+d.Name()]
				if !ok {
					t.Errorf("file %s: no message %s in folder %q", p, d.Name(), folder)
				} else if !bytes.Equal(body, data) {
					t.Errorf("message %s/%s differs from its file", folder, d.Name())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if want.Count() != n || n == 0 {
				t.Fatalf("read %d messages, want %d (one per file)", want.Count(), n)
			}

			sinks := []struct {
				name string
				sink func(string) (archive.Sink, error)
				src  func(string) (archive.Source, error)
				opts *archivetest.CompareOptions
			}{
				{"maildir",
					func(d string) (archive.Sink, error) { return NewMaildirSink(d, nil) },
					func(d string) (archive.Source, error) { return NewMaildirSource(d, nil) }, nil},
				{"mbox",
					func(d string) (archive.Sink, error) { return NewMboxSink(d, nil) },
					func(d string) (archive.Source, error) { return NewMboxSource(d, nil) },
					&archivetest.CompareOptions{IgnoreFlags: true, DateUnit: time.Second}},
				{"eml",
					func(d string) (archive.Sink, error) { return NewEMLSink(d, nil) },
					func(d string) (archive.Source, error) { return NewMaildirSource(d, nil) }, nil},
			}
			for _, s := range sinks {
				out := t.TempDir()
				sink, err := s.sink(out)
				if err != nil {
					t.Fatal(err)
				}
				export(t, want, sink)
				back, err := s.src(out)
				if err != nil {
					t.Fatal(err)
				}
				got := collect(t, back)
				if d := archivetest.Compare(want, got, s.opts); d != nil {
					t.Errorf("%s round trip: %d differences, first: %s", s.name, len(d), d[0])
				}
			}
		})
	}
}

// TestCorpusMbox reads the corpus's mbox variants as mboxrd.
func TestCorpusMbox(t *testing.T) {
	dir := filepath.Join(corpusDir(t, "mime-edge"), "mimekit", "mbox")
	tests := []struct {
		file  string
		count int
		dated int // messages whose From_ line has a date
	}{
		{"simple.mbox.txt", 3, 0},           // "From -" separators
		{"issue1189.mbox.txt", 4, 0},        // Takeout "From 123@xxx" without date
		{"content-length.mbox.txt", 29, 25}, // "From - [date]" (mboxcl, Content-Length ignored)
		// A BOM, then 2 messages whose unescaped body lines "From Russia..."
		// (mboxo) split each of them in two when read as mboxrd.
		{"unmunged.mbox.txt", 4, 0},
	}
	for _, tt := range tests {
		src, err := NewMboxSource(filepath.Join(dir, tt.file), nil)
		if err != nil {
			t.Fatal(err)
		}
		c := &archivetest.Changes{}
		if _, err := src.Sync(t.Context(), archive.Folder{Path: strings.TrimSuffix(tt.file, ".txt")}, nil, c); err != nil {
			t.Errorf("Sync(%s) = %v", tt.file, err)
			continue
		}
		dated := 0
		for _, p := range c.Puts {
			if !p.InternalDate.IsZero() {
				dated++
			}
			if len(p.Data) == 0 {
				t.Errorf("%s message %s is empty", tt.file, p.SourceID)
			}
		}
		if len(c.Puts) != tt.count || dated != tt.dated {
			t.Errorf("Sync(%s) = %d messages, %d dated, want %d and %d", tt.file, len(c.Puts), dated, tt.count, tt.dated)
		}
	}
}
