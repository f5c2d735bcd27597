package backup_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/faulty"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
)

// lockThiefSource removes every lock file of be before it syncs its first
// folder: as another host's `planb unlock --remove-all`, or a prune that
// judged the backup's lock stale, would while the backup runs.
type lockThiefSource struct {
	archive.Source
	be    backend.Backend
	stole int
}

func (s *lockThiefSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	var names []string
	if err := s.be.List(ctx, backend.LockFile, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
		return nil, err
	}
	for _, n := range names {
		if err := s.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: n}); err == nil {
			s.stole++
		}
	}
	return s.Source.Sync(ctx, f, since, c)
}

// TestBackupLockRemoved: a backup whose lock file was removed while it ran
// does not write its snapshot.
func TestBackupLockRemoved(t *testing.T) {
	r, be := newRepo(t)
	src := &lockThiefSource{Source: sampleMailbox(), be: be}
	snap, err := backup.Run(t.Context(), r, src, &backup.Options{Workers: 1})
	if src.stole == 0 {
		t.Fatal("no lock file was removed: the test is broken")
	}
	if !errors.Is(err, repo.ErrLockLost) {
		t.Errorf("backup.Run with its lock removed = %v, %v; want ErrLockLost", snap, err)
	}
	if ids, _ := r.SnapshotIDs(t.Context()); len(ids) != 0 {
		t.Errorf("snapshots after the backup lost its lock: %v, want none", ids)
	}
}

// stallingSource makes lock refreshes fail, then waits in its first Sync
// until the backup's context ends (as a slow source does while the
// network to the repository is down).
type stallingSource struct {
	archive.Source
	fb *faulty.Faulty
}

func (s *stallingSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	s.fb.SetRate(1)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		return s.Source.Sync(ctx, f, since, c)
	}
}

// TestBackupLockRefreshFails: a backup whose lock cannot be refreshed
// stops with ErrLockLost and writes no snapshot.
func TestBackupLockRefreshFails(t *testing.T) {
	defer repo.SetTestLockTiming(20 * time.Millisecond)()
	fb := faulty.New(mem.New(), faulty.Options{Seed: 1, Types: []backend.FileType{backend.LockFile}})
	r := repotest.New(t, fb)
	start := time.Now()
	snap, err := backup.Run(t.Context(), r, &stallingSource{Source: sampleMailbox(), fb: fb}, &backup.Options{Workers: 1})
	if !errors.Is(err, repo.ErrLockLost) {
		t.Errorf("backup.Run with failing lock refreshes = %v, %v; want ErrLockLost", snap, err)
	}
	if time.Since(start) > 9*time.Second {
		t.Errorf("backup.Run took %v: the lost lock did not stop it", time.Since(start))
	}
	fb.SetRate(0)
	if ids, _ := r.SnapshotIDs(t.Context()); len(ids) != 0 {
		t.Errorf("snapshots after the backup lost its lock: %v, want none", ids)
	}
	// Its lock files may stay: removing them failed as well. They are
	// this process's, dead once it exits, and the next run removes them.
}
