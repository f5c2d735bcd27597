package restore_test

import (
	"bytes"
	"net/mail"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
)

func TestMain(m *testing.M) {
	crypto.SetTestKDF()
	os.Exit(m.Run())
}

// root returns the repository's top folder.
func root(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// datasets returns our own corpus and, when present, the shared one.
func datasets(t *testing.T) map[string]string {
	sets := map[string]string{"testdata": filepath.Join(root(t), "testdata", "mail", "maildir")}
	corpus := filepath.Join(root(t), "..", "shared", "corpus")
	for _, sub := range []string{"enron-dev", "lists-linux-man", "mime-edge"} {
		if _, err := os.Stat(filepath.Join(corpus, sub)); err == nil {
			sets[sub] = filepath.Join(corpus, sub)
		}
	}
	if len(sets) == 1 {
		t.Log("shared corpus absent: testing testdata only")
	}
	return sets
}

func repoSize(t *testing.T, be backend.Backend) int64 {
	var n int64
	for _, ft := range backend.Types() {
		be.List(t.Context(), ft, func(fi backend.FileInfo) error { n += fi.Size; return nil })
	}
	return n
}

// TestRepositoryRoundTrip backs up each dataset as a Maildir, exports the
// snapshot as .eml, Maildir and mbox, reads each export back and requires
// every message byte-identical to its source file, with the flags and dates
// the format carries. Then a second backup must grow the repository by less
// than 1%.
func TestRepositoryRoundTrip(t *testing.T) {
	for name, dir := range datasets(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			src, err := mailfile.NewMaildirSource(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := archivetest.Collect(ctx, src)
			if err != nil {
				t.Fatal(err)
			}
			if want.Count() == 0 {
				t.Fatal("no message in the dataset")
			}
			be, err := local.Create(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			r, err := repo.Init(ctx, be, "pw", nil)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := backup.Run(ctx, r, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Partial || snap.Summary.Messages != int64(want.Count()) {
				t.Fatalf("snapshot: partial=%v messages=%d skipped=%v; want %d", snap.Partial, snap.Summary.Messages, snap.Skipped, want.Count())
			}

			assertNothingInClear(t, be, want)

			formats := []struct {
				name string
				sink func(dir string) (archive.Sink, error)
				read func(dir string) (archive.Source, error)
				cmp  *archivetest.CompareOptions
			}{
				{"maildir",
					func(d string) (archive.Sink, error) { return mailfile.NewMaildirSink(d, nil) },
					func(d string) (archive.Source, error) { return mailfile.NewMaildirSource(d, nil) },
					&archivetest.CompareOptions{DateUnit: time.Second}},
				{"mbox",
					func(d string) (archive.Sink, error) { return mailfile.NewMboxSink(d, nil) },
					func(d string) (archive.Source, error) { return mailfile.NewMboxSource(d, nil) },
					&archivetest.CompareOptions{IgnoreFlags: true, DateUnit: time.Second, IgnoreEmptyFolders: true}},
				{"eml",
					func(d string) (archive.Sink, error) { return mailfile.NewEMLSink(d, nil) },
					func(d string) (archive.Source, error) { return mailfile.NewMaildirSource(d, nil) },
					&archivetest.CompareOptions{IgnoreFlags: true, DateUnit: time.Second, IgnoreEmptyFolders: true}},
			}
			for _, f := range formats {
				t.Run(f.name, func(t *testing.T) {
					out := filepath.Join(t.TempDir(), "out")
					sink, err := f.sink(out)
					if err != nil {
						t.Fatal(err)
					}
					rep, err := restore.Run(ctx, r, snap, sink, nil)
					if err != nil {
						t.Fatalf("restore.Run: %v", err)
					}
					if rep.Messages != int64(want.Count()) || len(rep.Skipped) != 0 {
						t.Fatalf("exported %d messages, skipped %v; want %d", rep.Messages, rep.Skipped, want.Count())
					}
					back, err := f.read(out)
					if err != nil {
						t.Fatal(err)
					}
					got, err := archivetest.Collect(ctx, back)
					if err != nil {
						t.Fatal(err)
					}
					// mbox and .eml carry no flags: bytes and dates only.
					archivetest.EqualOpts(t, want, got, f.cmp)
				})
			}

			// Dedup: the same Maildir again grows the repository by < 1%.
			before := repoSize(t, be)
			again, err := backup.Run(ctx, r, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			grown := repoSize(t, be) - before
			// Nothing but the new snapshot file is written...
			fi, err := be.Stat(ctx, backend.Handle{Type: backend.SnapshotFile, Name: again.ID.String()})
			if err != nil {
				t.Fatal(err)
			}
			if again.Summary.AddedBlobs != 0 || grown != fi.Size {
				t.Errorf("second backup added %d blobs and %d bytes, want 0 blobs and only its %d-byte snapshot file", again.Summary.AddedBlobs, grown, fi.Size)
			}
			// ...which is under 1% of any dataset of a real size (our own
			// 11 KB testdata is smaller than a snapshot of its 12 folders).
			if before > 1<<20 && grown*100 >= before {
				t.Errorf("second backup grew the repository by %d of %d bytes, want < 1%%", grown, before)
			}
			t.Logf("%d messages: raw %d bytes, repository %d bytes (%.3f), second run +%d bytes, %d new blobs",
				want.Count(), snap.Summary.Bytes, before, float64(before)/float64(snap.Summary.Bytes), grown, again.Summary.AddedBlobs)
		})
	}
}

// assertNothingInClear greps every file of the repository for the dataset's
// folder names and for subjects and addresses of its messages.
func assertNothingInClear(t *testing.T, be backend.Backend, mb *archivetest.Mailbox) {
	t.Helper()
	var secrets []string
	folders, _ := mb.Folders(t.Context())
	for _, f := range folders {
		for _, part := range strings.Split(f.Path, "/") {
			if len(part) >= 5 {
				secrets = append(secrets, part)
			}
		}
		for i, m := range mb.Messages(f.Path) {
			if i >= 20 {
				break
			}
			hdr, err := mail.ReadMessage(bytes.NewReader(m.Body))
			if err != nil {
				continue
			}
			if subj := hdr.Header.Get("Subject"); len(subj) >= 8 {
				secrets = append(secrets, subj)
			}
			if addr, err := mail.ParseAddress(hdr.Header.Get("From")); err == nil && len(addr.Address) >= 6 {
				secrets = append(secrets, addr.Address)
			}
		}
	}
	if len(secrets) < 5 {
		t.Fatalf("only %d strings to look for", len(secrets))
	}
	for _, ft := range backend.Types() {
		be.List(t.Context(), ft, func(fi backend.FileInfo) error {
			h := backend.Handle{Type: ft, Name: fi.Name}
			data, err := backend.ReadAll(t.Context(), be, h)
			if err != nil {
				t.Fatal(err)
			}
			for _, sec := range secrets {
				if bytes.Contains(data, []byte(sec)) {
					t.Errorf("%s contains %q in clear", h, sec)
				}
			}
			return nil
		})
	}
}
