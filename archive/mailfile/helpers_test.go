package mailfile

import (
	"os"
	"path/filepath"
	"testing"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
)

// repoRoot returns the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// testdataMail returns testdata/mail of the repository.
func testdataMail(t *testing.T) string {
	return filepath.Join(repoRoot(t), "testdata", "mail")
}

// corpusDir returns ../shared/corpus/<sub> next to the repository, or skips
// the test when it is absent.
func corpusDir(t *testing.T, sub string) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "..", "shared", "corpus", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus %s not available: %v", sub, err)
	}
	return dir
}

func collect(t *testing.T, src archive.Source) *archivetest.Mailbox {
	t.Helper()
	mb, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatalf("Collect(%s) = %v", src.Describe(), err)
	}
	return mb
}

// export writes mb to sink and closes it.
func export(t *testing.T, mb *archivetest.Mailbox, sink archive.Sink) {
	t.Helper()
	if err := mb.WriteTo(t.Context(), sink); err != nil {
		t.Fatalf("WriteTo = %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
}

// checkPerms fails when a file below dir is readable by others than its
// owner.
func checkPerms(t *testing.T, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		want := os.FileMode(filePerm)
		if fi.IsDir() {
			want = dirPerm
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
