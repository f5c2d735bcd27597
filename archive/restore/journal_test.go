package restore

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestJournal(t *testing.T) {
	dir := t.TempDir()
	d := func(c byte) string { return strings.Repeat(string(c), 64) }
	j, err := OpenJournal(dir, "imaps://alice@host:993")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := j.Record("INBOX", 7, uint32(i+1), d('a'+byte(i%3))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	j.Record("INBOX", 8, 1, d('z'))
	j.Record("Entwürfe", 7, 1, d('y'))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of a line.
	files, _ := filepath.Glob(filepath.Join(dir, "*.journal"))
	if len(files) != 2 {
		t.Fatalf("%d journal files, want 2", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "INBOX") || strings.Contains(string(b), "Entw") {
			t.Errorf("%s names a mailbox in clear", f)
		}
		fh, _ := os.OpenFile(f, os.O_APPEND|os.O_WRONLY, 0)
		fh.WriteString("7 99 abc")
		fh.Close()
		if st, _ := os.Stat(f); st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	j2, _ := OpenJournal(dir, "imaps://alice@host:993")
	got, err := j2.Load("INBOX", 7)
	if err != nil || len(got) != 50 || got[3] != d('c') || got[99] != "" {
		t.Errorf("Load(INBOX, 7) = %d records (uid 3: %q), %v; want 50", len(got), got[3], err)
	}
	if got, _ := j2.Load("INBOX", 8); len(got) != 1 || got[1] != d('z') {
		t.Errorf("Load(INBOX, 8) = %v", got)
	}
	if got, _ := j2.Load("Entwürfe", 7); len(got) != 1 || got[1] != d('y') {
		t.Errorf("Load(Entwürfe, 7) = %v", got)
	}
	other, _ := OpenJournal(dir, "imaps://bob@host:993")
	if got, _ := other.Load("INBOX", 7); len(got) != 0 {
		t.Errorf("another account's journal holds %d records", len(got))
	}
}
