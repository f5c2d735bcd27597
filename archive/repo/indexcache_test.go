package repo_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
)

// runFiles returns the run files of the cache folder.
func runFiles(t *testing.T, cache string) []string {
	t.Helper()
	runs, err := filepath.Glob(filepath.Join(cache, "*", "index", "*.run"))
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// TestIndexCache: with an index cache, a backup's blobs go to runs on disk
// (the in-memory map ends empty); a repository opened again reads no index
// file, restores every message and stores nothing twice; runs built from
// index files a prune removed are thrown away and the index is rebuilt
// from the files left; a cache folder that cannot be made leaves the index
// in memory, with a warning.
func TestIndexCache(t *testing.T) {
	ctx := t.Context()
	mb := mem.New()
	cache := t.TempDir()
	opts := &repo.Options{IndexCache: cache}
	r, err := repo.Init(ctx, mb, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	src := smallMailbox()
	first, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Index().Len(); n != 0 {
		t.Errorf("after the backup, %d blobs in memory, want 0 (all in runs)", n)
	}
	if len(runFiles(t, cache)) == 0 {
		t.Fatal("the backup wrote no run")
	}
	if _, err := os.Stat(filepath.Join(cache, "CACHEDIR.TAG")); err != nil {
		t.Error(err)
	}
	r.Close()

	be := &indexReads{Backend: mb}
	r, err = repo.Open(ctx, be, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	archivetest.Equal(t, src, repotest.Restore(t, r, first))
	if n := be.n.Load(); n != 0 {
		t.Errorf("a repository opened with its cache read %d index files, want 0", n)
	}
	again, err := backup.Run(ctx, r, smallMailbox(), &backup.Options{Host: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Summary.AddedBlobs != 0 {
		t.Errorf("the same mail backed up again added %d blobs, want 0", again.Summary.AddedBlobs)
	}
	bulky, err := backup.Run(ctx, r, bulkyMailbox(), &backup.Options{Host: "bulky"})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()

	// Prune rewrites the index files: the runs of the old ones go.
	r, err = repo.Open(ctx, mb, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, []dedup.ID{first.ID, again.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, nil); err != nil {
		t.Fatal(err)
	}
	r.Close()
	var logs bytes.Buffer
	r, err = repo.Open(ctx, mb, password, &repo.Options{IndexCache: cache, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	archivetest.Equal(t, bulkyMailbox(), repotest.Restore(t, r, bulky))
	if rep, err := r.Check(ctx, &repo.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Errorf("Check after prune = %+v, %v", rep, err)
	}
	present := make(map[string]bool)
	for _, n := range names(t, mb, backend.IndexFile) {
		present[n] = true
	}
	for _, path := range runFiles(t, cache) {
		files, err := repo.RunIndexFiles(r, path)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range files {
			if !present[n] {
				t.Errorf("run %s holds index file %s, which prune removed", filepath.Base(path), n[:8])
			}
		}
	}
	r.Close()

	// A cache folder that cannot be made.
	logs.Reset()
	blocked := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocked, nil, 0o600)
	r, err = repo.Open(ctx, mb, password, &repo.Options{IndexCache: blocked, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	archivetest.Equal(t, bulkyMailbox(), repotest.Restore(t, r, bulky))
	if !strings.Contains(logs.String(), "index cache unavailable; the index is kept in memory") {
		t.Errorf("log = %q, want a warning that the cache is unavailable", logs.String())
	}
	if r.Index().Len() == 0 {
		t.Error("without a cache, the index is not in memory")
	}
}

// numberedMailbox has 20 messages of its own, of about 2 KiB, the kth
// such mailbox.
func numberedMailbox(k int) *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	for i := range 20 {
		mb.Add("INBOX", archivetest.Msg{InternalDate: date(i), Body: append(message(1000*k+i), randomBytes(uint64(1000*k+i), 2<<10)...)})
	}
	return mb
}

// TestIndexCacheShared: two processes (Repositories) sharing one cache
// folder back up at the same time, each into runs of its own; a third
// opens the repository, merges the runs into one, restores every snapshot
// and finds the repository clean; the next backup of mail already stored
// stores nothing.
func TestIndexCacheShared(t *testing.T) {
	ctx := t.Context()
	mb := mem.New()
	cache := t.TempDir()
	opts := &repo.Options{IndexCache: cache}
	if _, err := repo.Init(ctx, mb, password, opts); err != nil {
		t.Fatal(err)
	}
	snaps := make(map[int]*repo.Snapshot)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 2 {
		r, err := repo.Open(ctx, mb, password, opts)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for i := range 6 {
				k := 10*w + i
				snap, err := backup.Run(ctx, r, numberedMailbox(k), &backup.Options{Host: fmt.Sprint("host", k)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				snaps[k] = snap
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n := len(runFiles(t, cache)); n <= 8 {
		t.Fatalf("12 backups left %d runs, want more than 8 (one an index file)", n)
	}

	r, err := repo.Open(ctx, mb, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if runs := runFiles(t, cache); len(runs) != 1 {
		t.Errorf("after opening, %d runs, want them merged into 1", len(runs))
	}
	for k, snap := range snaps {
		archivetest.Equal(t, numberedMailbox(k), repotest.Restore(t, r, snap))
	}
	if rep, err := r.Check(ctx, &repo.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Errorf("Check = %+v, %v; want clean", rep, err)
	}
	again, err := backup.Run(ctx, r, numberedMailbox(3), &backup.Options{Host: "again"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Summary.AddedBlobs != 0 {
		t.Errorf("mail stored already added %d blobs, want 0", again.Summary.AddedBlobs)
	}
}
