package repo_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
)

// TestCheckpointSnapshots: "latest" passes checkpoints over (and says so
// when there is nothing else), a prefix still finds one, and
// RemoveCheckpoints removes checkpoints only.
func TestCheckpointSnapshots(t *testing.T) {
	ctx := t.Context()
	r := repotest.New(t, mem.New())
	save := func(i int, checkpoint bool) *repo.Snapshot {
		t.Helper()
		s := &repo.Snapshot{Time: date(i), Host: "h", Source: "mem:", Folders: []repo.FolderEntry{}, Checkpoint: checkpoint}
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := save(1, true)
	if _, err := r.FindSnapshot(ctx, "latest"); !errors.Is(err, repo.ErrNoSnapshot) || !strings.Contains(err.Error(), "only 1 checkpoints") {
		t.Errorf("FindSnapshot(latest) with only a checkpoint = %v, want ErrNoSnapshot naming the checkpoint", err)
	}
	done := save(2, false)
	second := save(3, true)
	if got, err := r.FindSnapshot(ctx, "latest"); err != nil || got.ID != done.ID {
		t.Errorf("FindSnapshot(latest) = %v, %v; want %s, the newest that is not a checkpoint", got, err, done.ID.Short())
	}
	if got, err := r.FindSnapshot(ctx, second.ID.Short()); err != nil || !got.Checkpoint {
		t.Errorf("FindSnapshot(%s) = %+v, %v; want the checkpoint", second.ID.Short(), got, err)
	}
	if !done.Supersedes(first) || done.Supersedes(second) || second.Supersedes(second) || first.Supersedes(done) {
		t.Errorf("Supersedes: want only the complete snapshot of time 2 to supersede the checkpoint of time 1")
	}

	if err := r.RemoveCheckpoints(ctx, []dedup.ID{done.ID}); err == nil || !strings.Contains(err.Error(), "not a checkpoint") {
		t.Errorf("RemoveCheckpoints(a complete snapshot) = %v, want a refusal", err)
	}
	// Twice: a checkpoint already gone is no error.
	if err := r.RemoveCheckpoints(ctx, []dedup.ID{first.ID, first.ID}); err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil || len(snaps) != 2 || snaps[0].ID != done.ID || snaps[1].ID != second.ID {
		t.Errorf("Snapshots() after RemoveCheckpoints = %d snapshots, %v; want %s and %s", len(snaps), err, done.ID.Short(), second.ID.Short())
	}
}

// TestSnapshotWithoutCheckpointMark: a snapshot written before checkpoints
// existed (no "checkpoint" key) reads as complete, and a complete snapshot
// is still written without the key.
func TestSnapshotWithoutCheckpointMark(t *testing.T) {
	var s repo.Snapshot
	if err := json.Unmarshal([]byte(`{"version":1,"time":"2026-01-02T03:04:05Z","host":"vm","source":"maildir:/m","folders":[],"summary":{}}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.Checkpoint {
		t.Error("a snapshot without the key reads as a checkpoint")
	}
	b, err := json.Marshal(&repo.Snapshot{Source: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "checkpoint") {
		t.Errorf("complete snapshot JSON %s has a checkpoint key", b)
	}
}

// TestSaverSync: what was added before Sync is indexed and readable by
// another process (a fresh Open of the backend) while the saver goes on,
// even with Adds running during the Sync.
func TestSaverSync(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r := repotest.New(t, be)
	s := r.NewSaver(ctx)
	blob := func(i int) []byte { return fmt.Appendf(nil, "blob %d %s", i, strings.Repeat("x", i%500)) }
	for i := range 300 {
		if _, err := s.Add(pack.DataBlob, dedup.Hash(blob(i)), blob(i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 300; i < 600; i++ {
			if _, err := s.Add(pack.DataBlob, dedup.Hash(blob(i)), blob(i)); err != nil {
				errs <- err
				return
			}
		}
	}()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	other, err := repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		got, err := other.LoadBlob(ctx, dedup.Hash(blob(i)))
		if err != nil || string(got) != string(blob(i)) {
			t.Fatalf("blob %d after Sync, from a fresh Open: %q, %v", i, got, err)
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if err := s.Sync(); err != nil { // again, with nothing new
		t.Fatal(err)
	}
	// One more blob, for Flush to write an index file of its own whatever
	// the Adds above managed to put into the first Sync's.
	if _, err := s.Add(pack.DataBlob, dedup.Hash(blob(600)), blob(600)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	other, err = repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 601 {
		if !other.Index().Has(dedup.Hash(blob(i))) {
			t.Fatalf("blob %d not indexed after Flush", i)
		}
	}
	if n := len(list(t, be, backend.IndexFile)); n < 2 {
		t.Errorf("%d index files, want at least 2 (Sync and Flush)", n)
	}
}
