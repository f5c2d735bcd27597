package restore_test

import (
	"os"
	"path/filepath"
	"testing"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
)

// frozenPassword opens testdata/repo-v1.
const frozenPassword = "planb-frozen-v1"

// TestFrozenRepository opens the repository written by the first release of
// the format (testdata/repo-v1, a backup of testdata/mail/maildir): every
// later version must read it, check it clean and restore it byte-exact.
// PLANB_WRITE_FROZEN=1 writes it anew (only when the format version
// changes: then add testdata/repo-vN beside it, never replace a frozen one).
func TestFrozenRepository(t *testing.T) {
	dir := filepath.Join(root(t), "testdata", "repo-v1")
	mail := filepath.Join(root(t), "testdata", "mail", "maildir")
	if os.Getenv("PLANB_WRITE_FROZEN") == "1" {
		writeFrozen(t, dir, mail)
	}
	be, err := local.Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("open frozen repository: %v", err)
	}
	r, err := repo.Open(t.Context(), be, frozenPassword, nil)
	if err != nil {
		t.Fatalf("open frozen repository: %v", err)
	}
	if v := r.Config().Version; v != 1 {
		t.Errorf("frozen repository version = %d, want 1", v)
	}
	rep, err := r.Check(t.Context(), &repo.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || len(rep.Unreferenced) != 0 {
		t.Fatalf("check of the frozen repository = %+v, %v", rep, err)
	}
	snap, err := r.FindSnapshot(t.Context(), "latest")
	if err != nil {
		t.Fatal(err)
	}
	src, err := mailfile.NewMaildirSource(mail, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	got := repotest.Restore(t, r, snap)
	// Git keeps no mtimes, so the Maildir's dates are not those frozen.
	archivetest.EqualOpts(t, want, got, &archivetest.CompareOptions{IgnoreDates: true})
}

func writeFrozen(t *testing.T, dir, mail string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	be, err := local.Create(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(t.Context(), be, frozenPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := mailfile.NewMaildirSource(mail, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(t.Context(), r, src, &backup.Options{Host: "frozen"}); err != nil {
		t.Fatal(err)
	}
	// Git keeps no empty folders; the local backend makes data/xx on save.
	entries, _ := os.ReadDir(filepath.Join(dir, "data"))
	for _, e := range entries {
		os.Remove(filepath.Join(dir, "data", e.Name()))
	}
	for _, sub := range []string{"locks"} {
		os.Remove(filepath.Join(dir, sub))
	}
}
