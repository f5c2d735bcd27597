package restore

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// digest is a digest made of one character.
func digest(c byte) string { return strings.Repeat(string(c), 64) }

// openJournal opens the journal of alice's account in dir.
func openJournal(t *testing.T, dir string) *Journal {
	t.Helper()
	j, err := OpenJournal(dir, "imaps://alice@host:993")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJournal(t *testing.T) {
	dir := t.TempDir()
	d := digest
	j := openJournal(t, dir)
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

// TestJournalFlush: what Flush wrote is on disk for another process (a
// later run, after this one was killed) before Close, in every mailbox
// with records pending; records after it wait for the next.
func TestJournalFlush(t *testing.T) {
	dir := t.TempDir()
	d := digest
	j := openJournal(t, dir)
	defer j.Close()
	j.Record("INBOX", 7, 1, d('a'))
	j.Record("INBOX", 7, 2, d('b'))
	j.Record("Sent", 9, 5, d('c'))
	later := openJournal(t, dir)
	if got, _ := later.Load("INBOX", 7); len(got) != 0 {
		t.Fatalf("before Flush another journal reads %d records, want 0 (buffered)", len(got))
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	j.Record("INBOX", 7, 3, d('d'))
	if got, _ := later.Load("INBOX", 7); len(got) != 2 || got[1] != d('a') || got[2] != d('b') {
		t.Errorf("after Flush another journal reads INBOX %v, want UIDs 1 and 2", got)
	}
	if got, _ := later.Load("Sent", 9); len(got) != 1 || got[5] != d('c') {
		t.Errorf("after Flush another journal reads Sent %v, want UID 5", got)
	}
}

// TestJournalBegin: Begin reports a run that never reached Close (killed)
// as interrupted, and only that; the marker names no account in clear.
func TestJournalBegin(t *testing.T) {
	dir := t.TempDir()
	open := func() *Journal { return openJournal(t, dir) }
	j := open()
	if interrupted, err := j.Begin(); err != nil || interrupted {
		t.Fatalf("first Begin = %v, %v; want not interrupted", interrupted, err)
	}
	// Killed: no Close.
	j2 := open()
	if interrupted, err := j2.Begin(); err != nil || !interrupted {
		t.Fatalf("Begin after a run without Close = %v, %v; want interrupted", interrupted, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		if strings.Contains(f, "alice") {
			t.Errorf("%s names the account in clear", f)
		}
	}
	if err := j2.Close(); err != nil {
		t.Fatal(err)
	}
	other, _ := OpenJournal(dir, "imaps://bob@host:993")
	if interrupted, _ := other.Begin(); interrupted {
		t.Errorf("another account's first run is interrupted")
	}
	j3 := open()
	if interrupted, err := j3.Begin(); err != nil || interrupted {
		t.Errorf("Begin after a run that closed = %v, %v; want not interrupted", interrupted, err)
	}
	j3.Close()
	// A journal that never began leaves another run's marker alone.
	j4 := open()
	j4.Begin()
	open().Close()
	if interrupted, _ := open().Begin(); !interrupted {
		t.Errorf("Close without Begin removed the marker of a run still going")
	}
}
