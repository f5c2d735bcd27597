package repo_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
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

// damage flips the byte at off of a stored file (off < 0 counts from the
// end).
func damage(t *testing.T, be backend.Backend, h backend.Handle, off int64) {
	t.Helper()
	b, err := backend.ReadAll(t.Context(), be, h)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case off < 0:
		b[int64(len(b))+off] ^= 0x55
	default:
		b[off] ^= 0x55
	}
	if err := be.Save(t.Context(), h, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

// bulkyMailbox has two folders of messages of 30 KiB: their chunks fill
// several frames of several packs (of 1 MiB).
func bulkyMailbox() *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	mb.AddFolder(archive.Folder{Path: "Archive"})
	for i := range 90 {
		folder := "INBOX"
		if i%3 == 0 {
			folder = "Archive"
		}
		mb.Add(folder, archivetest.Msg{InternalDate: date(i), Body: append(message(i), randomBytes(uint64(i), 30<<10)...)})
	}
	return mb
}

// pagedMailbox has a folder of 3000 tiny messages (a dozen pages) and a
// small one.
func pagedMailbox() *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "Big"})
	mb.AddFolder(archive.Folder{Path: "Small"})
	for i := range 3000 {
		mb.Add("Big", archivetest.Msg{InternalDate: date(i), Body: message(i)})
	}
	for i := range 5 {
		mb.Add("Small", archivetest.Msg{InternalDate: date(i), Body: message(10000 + i)})
	}
	return mb
}

func newSmallPackRepo(t *testing.T) (*repo.Repository, *mem.Mem) {
	t.Helper()
	be := mem.New()
	r, err := repo.Init(t.Context(), be, password, &repo.Options{PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r, be
}

// msgRef names a message of a folder.
type msgRef struct{ folder, sid string }

// affected returns the messages of snap with a chunk in pack packID at a
// location gone says is lost.
func affected(t *testing.T, r *repo.Repository, snap *repo.Snapshot, packID dedup.ID, gone func(dedup.Location) bool) []msgRef {
	t.Helper()
	var out []msgRef
	for fi, f := range snap.Folders {
		err := r.Entries(t.Context(), snap, fi, func(e repo.Entry) error {
			for _, c := range e.ChunkIDs() {
				loc, ok := r.Index().Lookup(c)
				if ok && r.Index().Pack(loc.Pack) == packID && gone(loc) {
					out = append(out, msgRef{f.Path, e.SourceID})
					break
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// without returns a copy of mb without the messages refs names.
func without(mb *archivetest.Mailbox, refs []msgRef) *archivetest.Mailbox {
	out := archivetest.NewMailbox()
	folders, _ := mb.Folders(context.Background())
	for _, f := range folders {
		out.AddFolder(f)
		for _, m := range mb.Messages(f.Path) {
			if !slices.Contains(refs, msgRef{f.Path, m.SourceID}) {
				out.Add(f.Path, m)
			}
		}
	}
	return out
}

// checkClean runs check --read-data and fails the test on any error or
// unreferenced pack.
func checkClean(t *testing.T, r *repo.Repository) {
	t.Helper()
	rep, err := r.Check(t.Context(), &repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !rep.OK() || len(rep.Unreferenced) > 0 {
		t.Errorf("Check(read data) after repair: errors %+v, unreferenced %v; want none", rep.Errors, rep.Unreferenced)
	}
}

// lostRefs returns the messages a repair report names, sorted.
func lostRefs(lost []repo.Skipped) []msgRef {
	var out []msgRef
	for _, l := range lost {
		if l.SourceID != "" {
			out = append(out, msgRef{l.Folder, l.SourceID})
		}
	}
	slices.SortFunc(out, func(a, b msgRef) int { return strings.Compare(a.folder+"\x00"+a.sid, b.folder+"\x00"+b.sid) })
	return out
}

func sortRefs(refs []msgRef) []msgRef {
	refs = slices.Clone(refs)
	slices.SortFunc(refs, func(a, b msgRef) int { return strings.Compare(a.folder+"\x00"+a.sid, b.folder+"\x00"+b.sid) })
	return refs
}

// TestOpenSkipsDamagedIndex: a damaged index file does not stop loading
// the index: it is named in a warning and by DamagedIndex, check reports it, prune
// refuses to run, repair index rebuilds the index from the packs, and
// then check is clean and the snapshot restores whole.
func TestOpenSkipsDamagedIndex(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r := repotest.New(t, be)
	src := smallMailbox()
	snap, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	idx := names(t, be, backend.IndexFile)
	damage(t, be, backend.Handle{Type: backend.IndexFile, Name: idx[0]}, 50)

	var logs bytes.Buffer
	var called []string
	r, err = repo.Open(ctx, be, password, &repo.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		OnDamagedIndex: func(name string) { called = append(called, name) }})
	if err != nil {
		t.Fatalf("Open with a damaged index file = %v, want it to go on", err)
	}
	if len(called) != 0 {
		t.Errorf("Open reported damaged index files %v before loading the index", called)
	}
	if err := r.EnsureIndex(ctx); err != nil {
		t.Fatalf("EnsureIndex with a damaged index file = %v, want it to go on", err)
	}
	if !slices.Equal(called, idx[:1]) {
		t.Errorf("OnDamagedIndex called with %v, want %v", called, idx[:1])
	}
	if !strings.Contains(logs.String(), "index/"+idx[0]) || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("Open logged %q, want a warning naming index/%s", logs.String(), idx[0])
	}
	if got := r.DamagedIndex(); !slices.Equal(got, idx[:1]) {
		t.Errorf("DamagedIndex() = %v, want %v", got, idx[:1])
	}
	rep, err := r.Check(ctx, nil)
	if err != nil || rep.OK() || !slices.ContainsFunc(rep.Errors, func(e repo.CheckError) bool { return e.File == "index/"+idx[0] }) {
		t.Errorf("Check() = %+v, %v; want an error naming index/%s", rep, err, idx[0])
	}
	if _, err := r.Prune(ctx, nil); err == nil || !strings.Contains(err.Error(), idx[0]) {
		t.Errorf("Prune() with a damaged index file = %v, want an error naming it", err)
	}

	rr, err := r.RepairIndex(ctx, nil)
	if err != nil {
		t.Fatalf("RepairIndex: %v", err)
	}
	if !slices.Equal(rr.DamagedIndex, idx[:1]) || rr.Packs != len(names(t, be, backend.PackFile)) {
		t.Errorf("RepairIndex() = %+v, want the damaged file named and every pack indexed", rr)
	}
	if slices.Contains(names(t, be, backend.IndexFile), idx[0]) {
		t.Errorf("the damaged index file is still there after repair")
	}
	if got := r.DamagedIndex(); len(got) != 0 {
		t.Errorf("DamagedIndex() after repair = %v, want none", got)
	}
	checkClean(t, r)
	r, err = repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	archivetest.Equal(t, src, repotest.Restore(t, r, snap))
}

// TestRepairDamagedPack damages a pack three ways. Check names the pack
// and the messages it holds; repair index drops what is gone (salvaging
// the intact blobs of a pack with a damaged frame); repair snapshots
// writes a snapshot marked repaired that names the lost messages and
// restores all the others; check is then clean. A messages whose only copy
// was in the pack is lost from the repository, but the next backup reads
// it again from the source, which still has it.
func TestRepairDamagedPack(t *testing.T) {
	// Each damage returns which chunks of the pack are lost, by location.
	// truncate cuts the pack in the middle of loc's frame, which is not
	// its first: the frames before it stay whole.
	truncate := func(t *testing.T, be backend.Backend, pack dedup.ID, loc dedup.Location) func(dedup.Location) bool {
		h := backend.Handle{Type: backend.PackFile, Name: pack.String()}
		b, err := backend.ReadAll(t.Context(), be, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Save(t.Context(), h, bytes.NewReader(b[:loc.FrameOffset+loc.FrameLength/2])); err != nil {
			t.Fatal(err)
		}
		return func(l dedup.Location) bool { return l.FrameOffset >= loc.FrameOffset }
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, be backend.Backend, pack dedup.ID, loc dedup.Location) func(dedup.Location) bool
	}{
		{"frame damaged", func(t *testing.T, be backend.Backend, pack dedup.ID, loc dedup.Location) func(dedup.Location) bool {
			damage(t, be, backend.Handle{Type: backend.PackFile, Name: pack.String()}, int64(loc.FrameOffset+loc.FrameLength/2))
			return func(l dedup.Location) bool { return l.FrameOffset == loc.FrameOffset }
		}},
		{"pack truncated", func(t *testing.T, be backend.Backend, pack dedup.ID, loc dedup.Location) func(dedup.Location) bool {
			return truncate(t, be, pack, loc)
		}},
		{"pack truncated, no index", func(t *testing.T, be backend.Backend, pack dedup.ID, loc dedup.Location) func(dedup.Location) bool {
			truncate(t, be, pack, loc)
			for _, name := range names(t, be, backend.IndexFile) {
				damage(t, be, backend.Handle{Type: backend.IndexFile, Name: name}, 60)
			}
			return func(dedup.Location) bool { return true }
		}},
		{"pack removed", func(t *testing.T, be backend.Backend, pack dedup.ID, loc dedup.Location) func(dedup.Location) bool {
			if err := be.Remove(t.Context(), backend.Handle{Type: backend.PackFile, Name: pack.String()}); err != nil {
				t.Fatal(err)
			}
			return func(dedup.Location) bool { return true }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			r, be := newSmallPackRepo(t)
			src := bulkyMailbox()
			snap, err := backup.Run(ctx, r, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(names(t, be, backend.PackFile)); n < 3 {
				t.Fatalf("%d packs, want several data packs", n)
			}
			// Damage the pack of a message of INBOX (from the fifth on)
			// whose first chunk is not in its pack's first frame, so that
			// a pack cut in that frame keeps some frames whole.
			var (
				loc dedup.Location
				ok  bool
			)
			r.Entries(ctx, snap, slices.IndexFunc(snap.Folders, func(f repo.FolderEntry) bool { return f.Path == "INBOX" }), func(e repo.Entry) error {
				if l, found := r.Index().Lookup(e.ChunkIDs()[0]); !ok && found && l.FrameOffset > 0 && slices.IndexFunc(src.Messages("INBOX"), func(m archivetest.Msg) bool { return m.SourceID == e.SourceID }) >= 4 {
					loc, ok = l, true
				}
				return nil
			})
			if !ok {
				t.Fatal("no message of INBOX has its first chunk indexed beyond its pack's first frame")
			}
			packID := r.Index().Pack(loc.Pack)
			gone := tt.damage(t, be, packID, loc)
			lost := affected(t, r, snap, packID, gone)
			if len(lost) == 0 || len(lost) == src.Count() {
				t.Fatalf("%d of %d messages affected, want some", len(lost), src.Count())
			}

			// check --read-data names the pack and the messages it holds
			// (all of them when the pack is cut short: it cannot tell which
			// frames are gone), unless no index file describes it.
			rep, err := r.Check(ctx, &repo.CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatal("Check() after the damage is OK")
			}
			if i := slices.IndexFunc(rep.Errors, func(e repo.CheckError) bool { return e.File == "data/"+packID.String() }); i >= 0 {
				var named []msgRef
				for _, mr := range rep.Errors[i].Messages {
					named = append(named, msgRef{mr.Folder, mr.SourceID})
				}
				for _, l := range lost {
					if !slices.Contains(named, l) {
						t.Errorf("Check does not name message %v of the damaged pack", l)
					}
				}
				if tt.name == "frame damaged" && len(named) != len(lost) {
					t.Errorf("Check names %d messages of the damaged frame, want %d", len(named), len(lost))
				}
			} else if tt.name != "pack truncated, no index" {
				t.Fatalf("Check errors %+v, want the pack named", rep.Errors)
			}

			// repair index drops what is gone.
			rr, err := r.RepairIndex(ctx, &repo.RepairIndexOptions{ReadData: true})
			if err != nil {
				t.Fatalf("RepairIndex: %v", err)
			}
			switch tt.name {
			case "frame damaged", "pack truncated":
				if len(rr.Salvaged) != 1 || rr.Salvaged[0].Pack != packID.String() || rr.Salvaged[0].BlobsLost == 0 || rr.Salvaged[0].BlobsKept == 0 {
					t.Errorf("RepairIndex() salvaged %+v, want the pack, with blobs kept and lost", rr.Salvaged)
				}
			case "pack truncated, no index":
				if len(rr.Unreadable) != 1 || rr.Unreadable[0].Pack != packID.String() || len(rr.DamagedIndex) == 0 {
					t.Errorf("RepairIndex() unreadable %+v, damaged index %v; want the pack, the index files", rr.Unreadable, rr.DamagedIndex)
				}
			case "pack removed":
				if !slices.Equal(rr.Missing, []string{packID.String()}) {
					t.Errorf("RepairIndex() missing %v, want the pack", rr.Missing)
				}
			}

			// repair snapshots marks what is lost.
			rs, err := r.RepairSnapshots(ctx, &repo.RepairSnapshotsOptions{Forget: true})
			if err != nil {
				t.Fatalf("RepairSnapshots: %v", err)
			}
			if len(rs.Repaired) != 1 || rs.Repaired[0].Original != snap.ID || !rs.Repaired[0].Forgotten {
				t.Fatalf("RepairSnapshots() = %+v, want the snapshot repaired and the original forgotten", rs)
			}
			if got := lostRefs(rs.Repaired[0].Lost); !slices.Equal(got, sortRefs(lost)) || rs.Repaired[0].LostMessages != int64(len(lost)) {
				t.Errorf("RepairSnapshots() lost %v (%d), want %v", got, rs.Repaired[0].LostMessages, sortRefs(lost))
			}
			fixed, err := r.LoadSnapshot(ctx, rs.Repaired[0].New)
			if err != nil {
				t.Fatal(err)
			}
			if fixed.Repaired == nil || fixed.Repaired.Original != snap.ID || fixed.Repaired.LostMessages != int64(len(lost)) || !fixed.Time.Equal(snap.Time) {
				t.Errorf("repaired snapshot: %+v, time %v; want marked repaired from %s with %d lost, the original's time", fixed.Repaired, fixed.Time, snap.ID.Short(), len(lost))
			}
			if ids, _ := r.SnapshotIDs(ctx); len(ids) != 1 {
				t.Errorf("snapshots after repair --forget: %v, want only the repaired one", ids)
			}
			if _, err := r.Prune(ctx, nil); err != nil {
				t.Fatalf("Prune after repair: %v", err)
			}
			checkClean(t, r)
			archivetest.Equal(t, without(src, lost), repotest.Restore(t, r, fixed))

			// The source still has the lost messages: the next backup
			// stores them again.
			again, err := backup.Run(ctx, r, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again.Parent == nil || *again.Parent != fixed.ID || again.Summary.NewMessages != int64(len(lost)) {
				t.Errorf("backup after repair: parent %v, %d new messages; want parent %s, %d new", again.Parent, again.Summary.NewMessages, fixed.ID.Short(), len(lost))
			}
			archivetest.Equal(t, src, repotest.Restore(t, r, again))
			checkClean(t, r)
		})
	}
}

// TestRepairDamagedPage damages the frame holding a page of a folder's
// message list: repair snapshots keeps the original (no --forget) and
// writes a repaired snapshot with every readable page, naming the lost
// page and counting its messages; after repair index salvages the tree
// pack and the original is forgotten, check is clean.
func TestRepairDamagedPage(t *testing.T) {
	ctx := t.Context()
	r, be := newSmallPackRepo(t)
	src := pagedMailbox()
	snap, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	big := slices.IndexFunc(snap.Folders, func(f repo.FolderEntry) bool { return f.Path == "Big" })
	if n := len(snap.Folders[big].Pages); n < 4 {
		t.Fatalf("folder Big has %d pages, want several", n)
	}
	page := snap.Folders[big].Pages[1]
	loc, _ := r.Index().Lookup(page)
	packID := r.Index().Pack(loc.Pack)
	// Every page in the same frame is lost with it.
	var lost []msgRef
	lostPages := 0
	for _, f := range snap.Folders {
		for _, p := range f.Pages {
			if l, _ := r.Index().Lookup(p); l.Pack == loc.Pack && l.FrameOffset == loc.FrameOffset {
				lostPages++
				one := &repo.Snapshot{Folders: []repo.FolderEntry{{Folder: f.Folder, Pages: []dedup.ID{p}}}}
				r.Entries(ctx, one, 0, func(e repo.Entry) error { lost = append(lost, msgRef{f.Path, e.SourceID}); return nil })
			}
		}
	}
	if len(lost) == 0 || len(lost) >= 3000 {
		t.Fatalf("%d messages on the damaged pages, want some", len(lost))
	}
	damage(t, be, backend.Handle{Type: backend.PackFile, Name: packID.String()}, int64(loc.FrameOffset+loc.FrameLength/2))
	r, err = repo.Open(ctx, be, password, nil) // no cached frame
	if err != nil {
		t.Fatal(err)
	}

	rs, err := r.RepairSnapshots(ctx, nil)
	if err != nil {
		t.Fatalf("RepairSnapshots: %v", err)
	}
	if len(rs.Repaired) != 1 || rs.Repaired[0].Forgotten || rs.Repaired[0].LostMessages != int64(len(lost)) {
		t.Fatalf("RepairSnapshots() = %+v, want one repaired, %d messages lost, original kept", rs, len(lost))
	}
	pagesNamed := 0
	for _, l := range rs.Repaired[0].Lost {
		if l.SourceID == "" && strings.Contains(l.Error, "page") {
			pagesNamed++
		}
	}
	if pagesNamed != lostPages {
		t.Errorf("repair names %d lost pages, want %d: %+v", pagesNamed, lostPages, rs.Repaired[0].Lost)
	}
	fixed, err := r.LoadSnapshot(ctx, rs.Repaired[0].New)
	if err != nil {
		t.Fatal(err)
	}
	archivetest.Equal(t, without(src, lost), repotest.Restore(t, r, fixed))
	snaps, err := r.Snapshots(ctx)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("Snapshots() = %d, %v; want the original and the repaired one", len(snaps), err)
	}
	// Repairing again changes nothing: the repaired snapshot is whole.
	if again, err := r.RepairSnapshots(ctx, &repo.RepairSnapshotsOptions{IDs: []dedup.ID{fixed.ID}}); err != nil || len(again.Repaired) != 0 {
		t.Errorf("RepairSnapshots(repaired one) = %+v, %v; want nothing to repair", again, err)
	}

	if err := r.Forget(ctx, []dedup.ID{snap.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RepairIndex(ctx, &repo.RepairIndexOptions{ReadData: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkClean(t, r)
	archivetest.Equal(t, without(src, lost), repotest.Restore(t, r, fixed))
}

// TestRepairDamagedSnapshotFile: a snapshot file that does not open cannot
// be repaired (its folder list is gone); repair snapshots names it and,
// with Forget, removes it; the other snapshots are untouched.
func TestRepairDamagedSnapshotFile(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r := repotest.New(t, be)
	src := smallMailbox()
	first, err := backup.Run(ctx, r, src, &backup.Options{Host: "one"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := backup.Run(ctx, r, src, &backup.Options{Host: "two"})
	if err != nil {
		t.Fatal(err)
	}
	damage(t, be, backend.Handle{Type: backend.SnapshotFile, Name: first.ID.String()}, -3)

	snaps, err := r.Snapshots(ctx)
	if err == nil || len(snaps) != 1 || snaps[0].ID != second.ID || !strings.Contains(err.Error(), first.ID.Short()) {
		t.Errorf("Snapshots() = %d snapshots, %v; want the readable one and an error naming %s", len(snaps), err, first.ID.Short())
	}
	rs, err := r.RepairSnapshots(ctx, &repo.RepairSnapshotsOptions{DryRun: true, Forget: true})
	if err != nil || len(rs.Unreadable) != 1 || rs.Unreadable[0].ID != first.ID || rs.Unreadable[0].Removed || len(rs.Repaired) != 0 {
		t.Errorf("RepairSnapshots(dry run) = %+v, %v; want the damaged file named, not removed", rs, err)
	}
	rs, err = r.RepairSnapshots(ctx, &repo.RepairSnapshotsOptions{Forget: true})
	if err != nil || len(rs.Unreadable) != 1 || !rs.Unreadable[0].Removed {
		t.Errorf("RepairSnapshots(forget) = %+v, %v; want the damaged file removed", rs, err)
	}
	if ids, _ := r.SnapshotIDs(ctx); len(ids) != 1 || ids[0] != second.ID {
		t.Errorf("snapshots after repair: %v, want %s", ids, second.ID.Short())
	}
	checkClean(t, r)
	archivetest.Equal(t, src, repotest.Restore(t, r, second))
}

// TestRepairSnapshotsNothingToDo: an undamaged repository is left alone.
func TestRepairSnapshotsNothingToDo(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r := repotest.New(t, be)
	if _, err := backup.Run(ctx, r, smallMailbox(), nil); err != nil {
		t.Fatal(err)
	}
	snaps, packs := names(t, be, backend.SnapshotFile), names(t, be, backend.PackFile)
	rs, err := r.RepairSnapshots(ctx, nil)
	if err != nil || rs.Snapshots != 1 || len(rs.Repaired)+len(rs.Unreadable) != 0 {
		t.Errorf("RepairSnapshots() = %+v, %v; want 1 snapshot checked, nothing repaired", rs, err)
	}
	rr, err := r.RepairIndex(ctx, nil)
	if err != nil || len(rr.DamagedIndex)+len(rr.Missing)+len(rr.Unreadable)+len(rr.Salvaged) != 0 {
		t.Errorf("RepairIndex() = %+v, %v; want nothing found", rr, err)
	}
	if got := names(t, be, backend.SnapshotFile); !slices.Equal(got, snaps) {
		t.Errorf("snapshots %v after repairs of nothing, want %v", got, snaps)
	}
	if got := names(t, be, backend.PackFile); !slices.Equal(got, packs) {
		t.Errorf("packs %v after repairs of nothing, want %v", got, packs)
	}
	checkClean(t, r)
}

// TestRepairSnapshotsNeedsIndex: with a damaged index file, repair
// snapshots refuses (the data that file lists would look lost); with a
// pack gone but the index not repaired yet, it still sees what is lost.
func TestRepairSnapshotsNeedsIndex(t *testing.T) {
	ctx := t.Context()
	r, be := newSmallPackRepo(t)
	src := bulkyMailbox()
	snap, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	idx := names(t, be, backend.IndexFile)
	h := backend.Handle{Type: backend.IndexFile, Name: idx[0]}
	good, err := backend.ReadAll(ctx, be, h)
	if err != nil {
		t.Fatal(err)
	}
	damage(t, be, h, 40)
	if _, err := r.RepairSnapshots(ctx, &repo.RepairSnapshotsOptions{Forget: true}); !errors.Is(err, repo.ErrDamaged) || !strings.Contains(err.Error(), idx[0]) {
		t.Errorf("RepairSnapshots with a damaged index file = %v, want ErrDamaged naming it", err)
	}
	if got := names(t, be, backend.SnapshotFile); !slices.Equal(got, []string{snap.ID.String()}) {
		t.Errorf("snapshots after the refused repair: %v, want the original", got)
	}
	if err := be.Save(ctx, h, bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	if r, err = repo.Open(ctx, be, password, nil); err != nil {
		t.Fatal(err)
	}

	packs := names(t, be, backend.PackFile)
	var gone dedup.ID
	for _, p := range packs {
		id, _ := dedup.ParseID(p)
		if len(affected(t, r, snap, id, func(dedup.Location) bool { return true })) > 0 {
			gone = id
			break
		}
	}
	lost := affected(t, r, snap, gone, func(dedup.Location) bool { return true })
	if err := be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: gone.String()}); err != nil {
		t.Fatal(err)
	}
	rs, err := r.RepairSnapshots(ctx, &repo.RepairSnapshotsOptions{DryRun: true})
	if err != nil || len(rs.Repaired) != 1 || !slices.Equal(lostRefs(rs.Repaired[0].Lost), sortRefs(lost)) {
		t.Errorf("RepairSnapshots(dry run) with a pack gone = %+v, %v; want the %d messages of the pack lost", rs, err, len(lost))
	}
}
