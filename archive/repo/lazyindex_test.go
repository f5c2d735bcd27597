package repo_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
)

// indexReads counts the loads of index files through it.
type indexReads struct {
	backend.Backend
	n atomic.Int64
}

func (b *indexReads) Load(ctx context.Context, h backend.Handle, off, length int64) (io.ReadCloser, error) {
	if h.Type == backend.IndexFile {
		b.n.Add(1)
	}
	return b.Backend.Load(ctx, h, off, length)
}

// TestCommandsWithoutIndex: opening a repository, listing its snapshots
// and locks, finding a snapshot and its folders and forgetting one read no
// index file; the first blob read loads the index, once.
func TestCommandsWithoutIndex(t *testing.T) {
	ctx := t.Context()
	mb := mem.New()
	r := repotest.New(t, mb)
	first, err := backup.Run(ctx, r, smallMailbox(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(ctx, r, smallMailbox(), &backup.Options{Parent: first}); err != nil {
		t.Fatal(err)
	}
	if len(names(t, mb, backend.IndexFile)) == 0 {
		t.Fatal("no index file written")
	}

	be := &indexReads{Backend: mb}
	r, err = repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("Snapshots() = %d, %v; want 2", len(snaps), err)
	}
	latest, err := r.FindSnapshot(ctx, "latest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.FindSnapshot(ctx, first.ID.String()[:8]); err != nil {
		t.Fatal(err)
	}
	if len(latest.Folders) != 2 {
		t.Errorf("latest has %d folders, want 2", len(latest.Folders))
	}
	if _, err := r.Locks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Forget(ctx, []dedup.ID{first.ID}); err != nil {
		t.Fatal(err)
	}
	if n := be.n.Load(); n != 0 {
		t.Fatalf("open, snapshots, find, locks, forget read %d index files, want 0", n)
	}

	// Listing a folder's messages reads its pages: now the index loads.
	var msgs int
	if err := r.Entries(ctx, latest, 0, func(repo.Entry) error { msgs++; return nil }); err != nil {
		t.Fatal(err)
	}
	if msgs == 0 {
		t.Errorf("Entries listed no message")
	}
	loaded := be.n.Load()
	if want := int64(len(names(t, mb, backend.IndexFile))); loaded != want {
		t.Errorf("listing a folder read %d index files, want each of the %d once", loaded, want)
	}
	if err := r.Entries(ctx, latest, 1, func(repo.Entry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := repotest.Restore(t, r, latest); got == nil {
		t.Fatal("restore returned nothing")
	}
	if n := be.n.Load(); n != loaded {
		t.Errorf("index files read %d times after the first load, want %d (loaded once)", n, loaded)
	}
	// A backup on a freshly opened repository loads the index and dedups.
	r, err = repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := backup.Run(ctx, r, smallMailbox(), &backup.Options{Parent: latest})
	if err != nil {
		t.Fatal(err)
	}
	if again.Summary.AddedBlobs != 0 {
		t.Errorf("unchanged backup after a lazy open added %d blobs, want 0", again.Summary.AddedBlobs)
	}
}

// TestCheckBesideAnotherWriter: a repository opened (its index loaded)
// before another process backed up checks clean afterwards: Check reads
// the snapshots the other process wrote through the index files it wrote.
func TestCheckBesideAnotherWriter(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r := repotest.New(t, be)
	if _, err := backup.Run(ctx, r, smallMailbox(), &backup.Options{Host: "a"}); err != nil {
		t.Fatal(err)
	}
	checker, err := repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := checker.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(ctx, other, bulkyMailbox(), &backup.Options{Host: "b"}); err != nil {
		t.Fatal(err)
	}
	rep, err := checker.Check(ctx, &repo.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || rep.Snapshots != 2 {
		t.Errorf("Check() after another writer = %+v, %v; want clean, 2 snapshots", rep, err)
	}
}
