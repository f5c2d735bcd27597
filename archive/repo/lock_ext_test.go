package repo_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
)

// lockThief removes every lock file once, when the operation it wraps
// lists files of type at: as another host's `planb unlock --remove-all`
// (or a prune that judged the lock stale) would while the operation runs.
type lockThief struct {
	backend.Backend
	at    backend.FileType
	mu    sync.Mutex
	armed bool
	stole int
}

func (b *lockThief) arm() { b.mu.Lock(); b.armed = true; b.mu.Unlock() }

func (b *lockThief) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := b.Backend.List(ctx, t, fn); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.armed || t != b.at {
		return nil
	}
	b.armed = false
	var names []string
	b.Backend.List(ctx, backend.LockFile, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil })
	for _, n := range names {
		if err := b.Backend.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: n}); err == nil {
			b.stole++
		}
	}
	return nil
}

func names(t *testing.T, be backend.Backend, ft backend.FileType) []string {
	t.Helper()
	var out []string
	for _, fi := range list(t, be, ft) {
		out = append(out, fi.Name)
	}
	slices.Sort(out)
	return out
}

// prunable returns a repository with two snapshots, the first of which is
// forgotten, so that a prune has packs and index files to remove.
func prunable(t *testing.T) (*repo.Repository, *lockThief) {
	t.Helper()
	ctx := t.Context()
	be := &lockThief{Backend: mem.New()}
	r := repotest.New(t, be)
	first, err := backup.Run(ctx, r, smallMailbox(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mb := smallMailbox()
	mb.Add("INBOX", archivetest.Msg{InternalDate: date(7), Body: message(7)})
	if _, err := backup.Run(ctx, r, mb, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, []dedup.ID{first.ID}); err != nil {
		t.Fatal(err)
	}
	return r, be
}

// TestPruneLockRemoved: a prune whose lock file disappears while it works
// (removed by another host) deletes nothing.
func TestPruneLockRemoved(t *testing.T) {
	ctx := t.Context()
	r, be := prunable(t)
	if rep, err := r.Prune(ctx, &repo.PruneOptions{DryRun: true}); err != nil || rep.RemovedPacks+rep.RepackedPacks == 0 {
		t.Fatalf("Prune(dry run) = %+v, %v; want packs to remove", rep, err)
	}
	packs, index := names(t, be, backend.PackFile), names(t, be, backend.IndexFile)
	be.at = backend.PackFile
	be.arm()
	_, err := r.Prune(ctx, nil)
	if be.stole == 0 {
		t.Fatal("the prune's lock file was never removed: the test is broken")
	}
	if !errors.Is(err, repo.ErrLockLost) {
		t.Errorf("Prune with its lock removed meanwhile = %v, want ErrLockLost", err)
	}
	for _, ft := range []backend.FileType{backend.PackFile, backend.IndexFile} {
		before := packs
		if ft == backend.IndexFile {
			before = index
		}
		after := names(t, be, ft)
		for _, n := range before {
			if !slices.Contains(after, n) {
				t.Errorf("%s/%s removed by a prune that lost its lock", ft, n[:8])
			}
		}
	}
}

// TestForgetLockRemoved: a forget whose lock file disappears right after
// it was taken removes no snapshot.
func TestForgetLockRemoved(t *testing.T) {
	ctx := t.Context()
	be := &lockThief{Backend: mem.New(), at: backend.LockFile}
	r := repotest.New(t, be)
	snap, err := backup.Run(ctx, r, smallMailbox(), nil)
	if err != nil {
		t.Fatal(err)
	}
	be.arm()
	err = r.Forget(ctx, []dedup.ID{snap.ID})
	if be.stole == 0 {
		t.Fatal("the forget's lock file was never removed: the test is broken")
	}
	if !errors.Is(err, repo.ErrLockLost) {
		t.Errorf("Forget with its lock removed meanwhile = %v, want ErrLockLost", err)
	}
	if got := names(t, be, backend.SnapshotFile); len(got) != 1 {
		t.Errorf("snapshots after the failed forget: %v, want the one", got)
	}
}
