package backup_test

import (
	"testing"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
)

// TestWatchRuns runs backups as planb watch does: with the snapshots it
// keeps, only the folders it was told changed, nothing saved when nothing
// changed, and checkpoints between two snapshots, promoted later.
func TestWatchRuns(t *testing.T) {
	ctx := t.Context()
	r := repotest.New(t, mem.New())
	mb := resumeMailbox()
	src := &watchedSource{Mailbox: mb}
	first, err := backup.Run(ctx, r, src, &backup.Options{Host: "h", Snapshots: []*repo.Snapshot{}})
	if err != nil {
		t.Fatal(err)
	}
	known := []*repo.Snapshot{first}

	// Nothing changed: no snapshot.
	snap, err := backup.Run(ctx, r, src, &backup.Options{Host: "h", Snapshots: known, SkipUnchanged: true})
	if err != nil || snap != nil {
		t.Fatalf("unchanged run = %v, %v; want no snapshot", snap, err)
	}

	// A message in Sent, and one in INBOX the watch was not told of: only
	// Sent is read, INBOX keeps the parent's entry (and cursor).
	mb.Add("Sent", archivetest.Msg{Flags: []string{}, InternalDate: date(99), Body: message(99, "Sent")})
	mb.Add("INBOX", archivetest.Msg{Flags: []string{}, InternalDate: date(98), Body: message(98, "INBOX")})
	before := src.count("INBOX")
	ck, err := backup.Run(ctx, r, src, &backup.Options{
		Host: "h", Snapshots: known, SkipUnchanged: true, AsCheckpoint: true,
		Dirty: func(p string) bool { return p == "Sent" },
	})
	if err != nil || ck == nil {
		t.Fatalf("run of Sent = %v, %v", ck, err)
	}
	if !ck.Checkpoint {
		t.Errorf("run with AsCheckpoint saved a snapshot, want a checkpoint")
	}
	if got := src.count("INBOX"); got != before {
		t.Errorf("INBOX read %d bodies though not dirty", got-before)
	}
	if got, want := folderOf(ck, "Sent").Messages, int64(21); got != want {
		t.Errorf("Sent holds %d messages, want %d", got, want)
	}
	if got, want := folderOf(ck, "INBOX"), folderOf(first, "INBOX"); got.Messages != want.Messages || string(got.Cursor) != string(want.Cursor) {
		t.Errorf("clean INBOX = %d messages, cursor %q; want the parent's %d, %q", got.Messages, got.Cursor, want.Messages, want.Cursor)
	}
	if latest, err := r.FindSnapshot(ctx, "latest"); err != nil || latest.ID != first.ID {
		t.Errorf("latest = %v, %v; want the first snapshot (a checkpoint is not latest)", latest, err)
	}

	// The next run takes the checkpoint as its parent, reads INBOX and
	// supersedes the checkpoint, which it removes.
	ck2, err := backup.Run(ctx, r, src, &backup.Options{
		Host: "h", Snapshots: []*repo.Snapshot{first, ck}, SkipUnchanged: true, AsCheckpoint: true,
		Dirty: func(p string) bool { return p == "INBOX" },
	})
	if err != nil || ck2 == nil {
		t.Fatalf("run of INBOX = %v, %v", ck2, err)
	}
	if got := src.count("INBOX") - before; got != 1 {
		t.Errorf("INBOX read %d bodies, want the new one only", got)
	}
	if ck2.Parent == nil || *ck2.Parent != ck.ID {
		t.Errorf("parent = %v, want the checkpoint %s", ck2.Parent, ck.ID.Short())
	}
	if _, err := r.LoadSnapshot(ctx, ck.ID); err == nil {
		t.Errorf("superseded checkpoint %s still there", ck.ID.Short())
	}

	// Promoted, it becomes the latest snapshot with the summary given.
	sum := ck2.Summary
	sum.NewMessages = 2
	snap, err = backup.Promote(ctx, r, ck2, &sum)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := r.FindSnapshot(ctx, "latest")
	if err != nil || latest.ID != snap.ID || latest.Checkpoint || latest.Summary.NewMessages != 2 {
		t.Fatalf("latest = %+v, %v; want the promoted snapshot %s", latest, err, snap.ID.Short())
	}
	if _, err := r.LoadSnapshot(ctx, ck2.ID); err == nil {
		t.Errorf("promoted checkpoint %s still there", ck2.ID.Short())
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, snap))
	if rep, err := r.Check(ctx, &repo.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("Check = %+v, %v", rep, err)
	}

	if _, err := backup.Promote(ctx, r, snap, nil); err == nil {
		t.Errorf("Promote of a snapshot: no error")
	}
}
