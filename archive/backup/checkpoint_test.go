package backup_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
)

// resumeMailbox has three folders, read in this order by one worker:
// INBOX (30 messages), Sent (20) and Vertraulich (5).
func resumeMailbox() *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	for _, f := range []struct {
		path string
		n    int
	}{{"INBOX", 30}, {"Sent", 20}, {"Vertraulich", 5}} {
		mb.AddFolder(archive.Folder{Path: f.path})
		for i := range f.n {
			mb.Add(f.path, archivetest.Msg{Flags: []string{archive.FlagSeen}, InternalDate: date(i), Body: message(i, f.path)})
		}
	}
	return mb
}

// watchedSource counts the bodies a backup reads, by folder, and calls
// hook (if set) after each one, in the goroutine that runs Sync.
type watchedSource struct {
	*archivetest.Mailbox
	hook func(folder string, n int)

	mu     sync.Mutex
	bodies map[string]int
}

func (s *watchedSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	return s.Mailbox.Sync(ctx, f, since, &watchedChanges{Changes: c, s: s, folder: f.Path})
}

func (s *watchedSource) count(folder string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodies[folder]
}

type watchedChanges struct {
	archive.Changes
	s      *watchedSource
	folder string
}

func (c *watchedChanges) Put(m *archive.Message) error {
	if err := c.Changes.Put(m); err != nil {
		return err
	}
	c.s.mu.Lock()
	if c.s.bodies == nil {
		c.s.bodies = make(map[string]int)
	}
	c.s.bodies[c.folder]++
	n := c.s.bodies[c.folder]
	c.s.mu.Unlock()
	if c.s.hook != nil {
		c.s.hook(c.folder, n)
	}
	return nil
}

// folderOf returns the folder entry of snap with path p, or nil.
func folderOf(snap *repo.Snapshot, p string) *repo.FolderEntry {
	for i := range snap.Folders {
		if snap.Folders[i].Path == p {
			return &snap.Folders[i]
		}
	}
	return nil
}

// TestCheckpointOnCancel stops a first backup in the middle of its second
// folder: Run saves a checkpoint (the first folder whole, with its cursor;
// the messages of the second stored so far, without; not the third) and
// returns it with the context's error. The next run takes it as its
// parent, reads only the bodies the checkpoint lacks, and its snapshot
// replaces the checkpoint.
func TestCheckpointOnCancel(t *testing.T) {
	r, _ := newRepo(t)
	mb := resumeMailbox()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src := &watchedSource{Mailbox: mb, hook: func(folder string, n int) {
		if folder == "Sent" && n == 10 {
			cancel()
		}
	}}
	opts := &backup.Options{Workers: 1, Checkpoint: time.Hour}
	ck, err := backup.Run(ctx, r, src, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled = %v, want context.Canceled", err)
	}
	if ck == nil || !ck.Checkpoint {
		t.Fatalf("Run cancelled returned snapshot %+v, want a checkpoint", ck)
	}
	if ck.Partial || len(ck.Skipped) != 0 {
		t.Errorf("checkpoint partial=%v skipped=%+v, want nothing skipped (the messages cut short are not)", ck.Partial, ck.Skipped)
	}
	inbox, sent := folderOf(ck, "INBOX"), folderOf(ck, "Sent")
	if inbox == nil || inbox.Messages != 30 || inbox.Cursor == nil {
		t.Errorf("checkpoint INBOX = %+v, want 30 messages and a cursor", inbox)
	}
	if sent == nil || sent.Messages != 10 || sent.Cursor != nil {
		t.Errorf("checkpoint Sent = %+v, want 10 messages and no cursor", sent)
	}
	if v := folderOf(ck, "Vertraulich"); v != nil {
		t.Errorf("checkpoint has the folder not reached: %+v", v)
	}
	if got, err := r.FindSnapshot(t.Context(), "latest"); !errors.Is(err, repo.ErrNoSnapshot) {
		t.Errorf("latest after a checkpoint only = %v, %v; want none", got, err)
	}
	// What it holds reads back.
	part := repotest.Restore(t, r, ck)
	if n := part.Count(); n != 40 {
		t.Errorf("checkpoint reads back %d messages, want 40", n)
	}

	again := &watchedSource{Mailbox: mb}
	snap, err := backup.Run(t.Context(), r, again, &backup.Options{Workers: 1, Checkpoint: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Checkpoint || snap.Parent == nil || *snap.Parent != ck.ID {
		t.Errorf("resumed snapshot: checkpoint=%v parent=%v, want a complete snapshot whose parent is %s", snap.Checkpoint, snap.Parent, ck.ID.Short())
	}
	for folder, want := range map[string]int{"INBOX": 0, "Sent": 10, "Vertraulich": 5} {
		if got := again.count(folder); got != want {
			t.Errorf("resumed run read %d bodies of %s, want %d", got, folder, want)
		}
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, snap))
	snaps, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 1 || snaps[0].ID != snap.ID {
		t.Errorf("snapshots after the resumed run: %d, %v; want only %s (the checkpoint removed)", len(snaps), err, snap.ID.Short())
	}
}

// TestCheckpointPeriodic pauses a backup in its second folder until a
// periodic checkpoint is saved. The checkpoint holds the first folder with
// its cursor; once the run ends, only its snapshot is left.
func TestCheckpointPeriodic(t *testing.T) {
	r, _ := newRepo(t)
	mb := resumeMailbox()
	var ck *repo.Snapshot
	src := &watchedSource{Mailbox: mb, hook: func(folder string, n int) {
		if folder != "Sent" || n != 10 {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for ck == nil && time.Now().Before(deadline) {
			snaps, _ := r.Snapshots(t.Context())
			for _, s := range snaps {
				if s.Checkpoint && folderOf(s, "INBOX") != nil {
					ck = s
				}
			}
			time.Sleep(5 * time.Millisecond) // polling the repository with a deadline
		}
	}}
	snap, err := backup.Run(t.Context(), r, src, &backup.Options{Workers: 1, Checkpoint: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if ck == nil {
		t.Fatal("no checkpoint with INBOX saved while the run waited in Sent")
	}
	if inbox := folderOf(ck, "INBOX"); inbox.Messages != 30 || inbox.Cursor == nil {
		t.Errorf("checkpoint INBOX = %+v, want 30 messages and a cursor", inbox)
	}
	if sent := folderOf(ck, "Sent"); sent != nil && (sent.Cursor != nil || sent.Messages > 10) {
		t.Errorf("checkpoint Sent = %+v, want at most 10 messages and no cursor", sent)
	}
	if !ck.Time.Equal(snap.Time) {
		t.Errorf("checkpoint time %v, want the run's %v", ck.Time, snap.Time)
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, snap))
	snaps, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 1 || snaps[0].ID != snap.ID {
		t.Errorf("snapshots after the run: %d, %v; want only %s", len(snaps), err, snap.ID.Short())
	}
}

// TestCheckpointAppendOnly: an append-only repository keeps checkpoints
// (nothing may be removed), and the next backup still takes the final
// snapshot as its parent, not a checkpoint of the same run (same time).
func TestCheckpointAppendOnly(t *testing.T) {
	r, err := repo.Init(t.Context(), mem.New(), password, &repo.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	mb := resumeMailbox()
	at := date(100)
	// The first run is cancelled in Sent; the second waits in Vertraulich
	// for a periodic checkpoint; the third has nothing to read.
	var snaps []*repo.Snapshot
	for i := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		when := at.Add(time.Duration(i) * time.Hour)
		src := &watchedSource{Mailbox: mb, hook: func(folder string, n int) {
			switch {
			case i == 0 && folder == "Sent" && n == 5:
				cancel()
			case i == 1 && folder == "Vertraulich" && n == 1:
				deadline := time.Now().Add(10 * time.Second)
				for time.Now().Before(deadline) {
					all, _ := r.Snapshots(t.Context())
					if s := all[len(all)-1]; s.Checkpoint && s.Time.Equal(when) {
						return
					}
					time.Sleep(5 * time.Millisecond) // polling the repository with a deadline
				}
			}
		}}
		interval := time.Hour
		if i == 1 {
			interval = 20 * time.Millisecond
		}
		snap, err := backup.Run(ctx, r, src, &backup.Options{Workers: 1, Checkpoint: interval, Time: when})
		cancel()
		switch {
		case i == 0 && (snap == nil || !snap.Checkpoint || !errors.Is(err, context.Canceled)):
			t.Fatalf("run %d: %+v, %v; want a checkpoint", i, snap, err)
		case i > 0 && err != nil:
			t.Fatal(err)
		}
		if got := src.count("INBOX") + src.count("Sent") + src.count("Vertraulich"); i == 2 && got != 0 {
			t.Errorf("third run read %d bodies, want 0", got)
		}
		snaps = append(snaps, snap)
	}
	all, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkpoints := 0
	for _, s := range all {
		if s.Checkpoint {
			checkpoints++
		}
	}
	if checkpoints < 2 || len(all) != checkpoints+2 {
		t.Errorf("%d snapshots, %d of them checkpoints; want every checkpoint kept (at least 2) and 2 complete snapshots", len(all), checkpoints)
	}
	if p := snaps[2].Parent; p == nil || *p != snaps[1].ID {
		t.Errorf("third snapshot's parent = %v, want the second run's final snapshot %s", p, snaps[1].ID.Short())
	}
	if got, err := r.FindSnapshot(t.Context(), "latest"); err != nil || got.ID != snaps[2].ID {
		t.Errorf("latest = %v, %v; want %s", got, err, snaps[2].ID.Short())
	}
}

// TestCheckpointOff: without Options.Checkpoint a cancelled run saves
// nothing, as before checkpoints existed.
func TestCheckpointOff(t *testing.T) {
	r, _ := newRepo(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src := &watchedSource{Mailbox: resumeMailbox(), hook: func(folder string, n int) {
		if folder == "Sent" && n == 10 {
			cancel()
		}
	}}
	snap, err := backup.Run(ctx, r, src, &backup.Options{Workers: 1})
	if snap != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled without checkpoints = %+v, %v; want nil, context.Canceled", snap, err)
	}
	if ids, err := r.SnapshotIDs(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("%d snapshots, %v; want none", len(ids), err)
	}
}

// limitedSource is a watchedSource whose download cap (archive.ErrLimit)
// is reached once after bodies of Sent are read: that Sync and every
// later one fail with it.
type limitedSource struct {
	*watchedSource
	after int

	mu  sync.Mutex
	hit bool
}

var errCap = errors.New("cap reached")

func (s *limitedSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	s.mu.Lock()
	hit := s.hit
	s.mu.Unlock()
	if hit {
		return nil, fmt.Errorf("sync %q: %w", f.Path, archive.ErrLimit)
	}
	lc := &limitChanges{Changes: c, s: s, folder: f.Path}
	cur, err := s.Mailbox.Sync(ctx, f, since, &watchedChanges{Changes: lc, s: s.watchedSource, folder: f.Path})
	if errors.Is(err, errCap) {
		return nil, fmt.Errorf("sync %q: %w: [OVERQUOTA]", f.Path, archive.ErrLimit)
	}
	return cur, err
}

type limitChanges struct {
	archive.Changes
	s      *limitedSource
	folder string
}

func (c *limitChanges) Put(m *archive.Message) error {
	if c.folder == "Sent" && c.s.count("Sent") >= c.s.after {
		c.s.mu.Lock()
		c.s.hit = true
		c.s.mu.Unlock()
		return errCap
	}
	return c.Changes.Put(m)
}

// TestCheckpointOnLimit: a source's download cap (archive.ErrLimit)
// reached in the second folder ends the run in a checkpoint, even with
// periodic checkpoints off, and an error wrapping ErrLimit; the next run
// reads only the bodies the checkpoint lacks.
func TestCheckpointOnLimit(t *testing.T) {
	r, _ := newRepo(t)
	mb := resumeMailbox()
	src := &limitedSource{watchedSource: &watchedSource{Mailbox: mb}, after: 10}
	ck, err := backup.Run(t.Context(), r, src, &backup.Options{Workers: 1})
	if !errors.Is(err, archive.ErrLimit) {
		t.Fatalf("Run = %v, want archive.ErrLimit", err)
	}
	if ck == nil || !ck.Checkpoint {
		t.Fatalf("Run returned snapshot %+v, want a checkpoint", ck)
	}
	if ck.Partial || len(ck.Skipped) != 0 {
		t.Errorf("checkpoint partial=%v skipped=%+v, want nothing skipped", ck.Partial, ck.Skipped)
	}
	inbox, sent := folderOf(ck, "INBOX"), folderOf(ck, "Sent")
	if inbox == nil || inbox.Messages != 30 || inbox.Cursor == nil {
		t.Errorf("checkpoint INBOX = %+v, want 30 messages and a cursor", inbox)
	}
	if sent == nil || sent.Messages != 10 || sent.Cursor != nil {
		t.Errorf("checkpoint Sent = %+v, want 10 messages and no cursor", sent)
	}
	if v := folderOf(ck, "Vertraulich"); v != nil {
		t.Errorf("checkpoint has the folder not reached: %+v", v)
	}

	again := &watchedSource{Mailbox: mb}
	snap, err := backup.Run(t.Context(), r, again, &backup.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Checkpoint || snap.Parent == nil || *snap.Parent != ck.ID {
		t.Errorf("resumed snapshot: checkpoint=%v parent=%v, want a complete snapshot whose parent is %s", snap.Checkpoint, snap.Parent, ck.ID.Short())
	}
	for folder, want := range map[string]int{"INBOX": 0, "Sent": 10, "Vertraulich": 5} {
		if got := again.count(folder); got != want {
			t.Errorf("resumed run read %d bodies of %s, want %d", got, folder, want)
		}
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, snap))
}
