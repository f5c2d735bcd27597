package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"runtime"
	"slices"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// Options tune a backup. A nil *Options means defaults.
type Options struct {
	Tags []string
	// Host names the machine in the snapshot (os.Hostname if empty).
	Host string
	// Workers is how many folders are read at once (default 2).
	Workers  int
	Progress archive.Progress
	Logger   *slog.Logger
	// Parent forces the parent snapshot; nil picks the newest snapshot of
	// the same source and host (a checkpoint too).
	Parent *repo.Snapshot
	// Time is the snapshot's time; zero means now. Tests and scheduled
	// runs with a clock of their own set it.
	Time time.Time
	// Checkpoint, when positive, saves a checkpoint snapshot (what is
	// stored so far) every Checkpoint, and once more when ctx is
	// cancelled: the next run takes it as its parent and does not read
	// again what it holds. Zero turns checkpoints off.
	Checkpoint time.Duration

	// Snapshots, when not nil, are the repository's snapshots as the
	// caller knows them (a watch keeps them from one run to the next):
	// Run does not load them, and takes from them the parent (unless
	// Parent is set) and the checkpoints its snapshot may supersede.
	Snapshots []*repo.Snapshot
	// Dirty, when set, says which folders may have changed since the
	// parent: a folder the parent has and Dirty leaves out keeps the
	// parent's entry and cursor without being read. Folders the parent
	// lacks are always read.
	Dirty func(path string) bool
	// SkipUnchanged saves no snapshot when the run finds what the parent
	// holds: the same folders, messages, flags and cursors, the same tags,
	// nothing skipped. Run then returns a nil snapshot and a nil error.
	SkipUnchanged bool
	// AsCheckpoint saves the snapshot of a complete run as a checkpoint:
	// the next run takes it as its parent and supersedes it, and neither
	// "latest" nor retention counts it. A watch saves the runs between two
	// snapshots so; Promote turns such a checkpoint into a snapshot.
	AsCheckpoint bool
}

// Run backs src up into r and returns the new snapshot.
//
// With Options.Checkpoint set, a cancelled ctx (SIGTERM) does not lose the
// run's work: Run stops reading the source, saves a checkpoint of what it
// stored and returns it along with an error wrapping ctx's error. (The
// repository writes of that last checkpoint are not cut short by ctx; a
// lost lock still stops them.) Whether it ends in a checkpoint or a
// complete snapshot, Run removes the checkpoints of the same source and
// host that its snapshot supersedes, unless the repository is append-only.
//
// A source that stops with archive.ErrLimit (a download cap) ends the run
// the same way, checkpoints on or not: Run returns a checkpoint of what
// was stored and an error wrapping archive.ErrLimit.
func Run(ctx context.Context, r *repo.Repository, src archive.Source, opts *Options) (*repo.Snapshot, error) {
	if opts == nil {
		opts = &Options{}
	}
	start := time.Now()
	prog := opts.Progress
	if prog == nil {
		prog = archive.NoProgress
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host := opts.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	lock, err := r.Lock(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer lock.Unlock()
	// A lost lock (not refreshed in time, or removed by someone else)
	// stops the run: another process may be pruning. The source stops
	// on ctx's end too; with checkpoints, the repository writes go on
	// after it, to save the last checkpoint.
	srcCtx := lock.Context(ctx)
	repoCtx := srcCtx
	if opts.Checkpoint > 0 {
		repoCtx = lock.Context(context.WithoutCancel(ctx))
	}

	// A Repository kept open (a watch) may have missed the index files
	// of other processes, or a prune.
	if err := r.RefreshIndex(srcCtx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if n, err := r.AdoptPacks(srcCtx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	} else if n > 0 {
		log.Info("indexed packs left by an earlier run", "packs", n)
	}

	snaps := opts.Snapshots
	if snaps == nil {
		snaps, err = r.Snapshots(srcCtx)
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	parent := opts.Parent
	if parent == nil {
		parent = findParent(snaps, src.Describe(), host)
	}
	folders, err := src.Folders(srcCtx)
	if err != nil {
		return nil, fmt.Errorf("backup: list folders: %w", err)
	}

	total := archive.Counts{Messages: -1, Bytes: -1}
	prog.Start(total)

	snapTime := start
	if !opts.Time.IsZero() {
		snapTime = opts.Time
	}
	saver := r.NewSaver(repoCtx)
	b := &run{
		r: r, src: src, saver: saver, prog: prog, log: log, params: r.Config().Chunker,
		srcCtx: srcCtx, lock: lock, parent: parent, start: start,
		proto: repo.Snapshot{Time: snapTime.UTC(), Host: host, Tags: opts.Tags, Source: src.Describe()},
		slots: make([]slot, len(folders)),
	}
	if u, err := user.Current(); err == nil {
		b.proto.Username = u.Username
	}
	if parent != nil {
		id := parent.ID
		b.proto.Parent = &id
	}
	for _, s := range snaps {
		if s.Checkpoint {
			b.checkpoints = append(b.checkpoints, s)
		}
	}
	for i, f := range folders {
		sl := slot{f: f, prev: findFolder(parent, f.Path)}
		if opts.Dirty != nil && sl.prev != nil && !opts.Dirty(f.Path) {
			sl.entry, sl.done = *sl.prev, true
			sl.entry.Folder = f
		}
		b.slots[i] = sl
	}
	stopWorkers := b.startWorkers(runtime.GOMAXPROCS(0))
	stopCheckpoints := b.startCheckpoints(repoCtx, opts.Checkpoint)

	workers := opts.Workers
	if workers <= 0 {
		workers = 2
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i := range folders {
		if b.slots[i].done {
			continue // clean: the parent's entry
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b.folder(srcCtx, i)
		}()
	}
	wg.Wait()
	stopWorkers()
	stopCheckpoints()
	if err := lock.Err(); err != nil {
		saver.Flush()
		return nil, fmt.Errorf("backup: %w", err)
	}
	entries := make([]repo.FolderEntry, len(folders))
	// Interrupted: stopped before every folder was read. (A signal that
	// comes once they all are still gets the complete snapshot, with
	// checkpoints on.)
	interrupted := false
	// limit: the source's limit (archive.ErrLimit) stopped a folder; the
	// run ends in a checkpoint, checkpoints on or not.
	var limit error
	for i := range b.slots {
		interrupted = interrupted || (!b.slots[i].done && ctx.Err() != nil)
		if err := b.slots[i].err; limit == nil && errors.Is(err, archive.ErrLimit) {
			limit = fmt.Errorf("folder %q: %w", folders[i].Path, err)
		}
	}
	stopped := interrupted || limit != nil
	for i := range b.slots {
		sl := &b.slots[i]
		if sl.done {
			entries[i] = sl.entry
			continue
		}
		if errors.Is(sl.err, errFatal) || (interrupted && opts.Checkpoint <= 0) {
			saver.Flush()
			return nil, fmt.Errorf("backup: folder %q: %w", folders[i].Path, sl.err)
		}
		if stopped {
			continue // the checkpoint keeps what was stored
		}
		// The folder could not be read: keep its previous state, name it.
		b.skip(folders[i].Path, "", sl.err)
		if sl.prev != nil {
			entries[i] = *sl.prev
		} else {
			entries[i] = repo.FolderEntry{Folder: folders[i]}
		}
	}
	if limit != nil && !interrupted {
		ck, err := b.checkpoint(repoCtx)
		if _, ferr := saver.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return nil, fmt.Errorf("backup: %w, and the checkpoint failed: %w", limit, err)
		}
		if ck == nil {
			ck = b.lastCheckpoint // nothing stored since
		}
		if ck == nil {
			return nil, fmt.Errorf("backup: %w (nothing new stored)", limit)
		}
		return ck, fmt.Errorf("backup: %w (checkpoint %s saved)", limit, ck.ID.Short())
	}
	if interrupted {
		ck, err := b.checkpoint(repoCtx)
		if _, ferr := saver.Flush(); err == nil {
			err = ferr
		}
		if err != nil {
			return nil, fmt.Errorf("backup: interrupted (%w), and the checkpoint failed: %w", ctx.Err(), err)
		}
		if ck == nil {
			ck = b.lastCheckpoint // nothing stored since
		}
		if ck == nil {
			return nil, fmt.Errorf("backup: %w", ctx.Err())
		}
		return ck, fmt.Errorf("backup: %w (checkpoint %s saved)", ctx.Err(), ck.ID.Short())
	}
	stats, flushErr := saver.Flush()
	if err := lock.Err(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if flushErr != nil {
		return nil, fmt.Errorf("backup: %w", flushErr)
	}

	snap := b.snapshot(entries, stats)
	if opts.SkipUnchanged && sameContent(snap, parent) {
		log.Debug("nothing changed, no snapshot saved", "source", snap.Source)
		return nil, nil
	}
	snap.Checkpoint = opts.AsCheckpoint
	// The snapshot commits the run: only under a lock that still holds.
	if err := lock.Check(repoCtx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := r.SaveSnapshot(repoCtx, snap); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	b.removeSuperseded(repoCtx, snap)
	return snap, nil
}

// snapshot returns the run's snapshot of entries (folders without pages
// left out).
func (b *run) snapshot(entries []repo.FolderEntry, stats repo.SaverStats) *repo.Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	snap := b.proto
	snap.Tags = slices.Clone(b.proto.Tags)
	snap.Folders = entries
	snap.Skipped = slices.Clone(b.skipped)
	snap.Partial = len(b.skipped) > 0
	for _, e := range entries {
		snap.Summary.Messages += e.Messages
		snap.Summary.Bytes += e.Bytes
	}
	snap.Summary.NewMessages = b.newMessages
	snap.Summary.NewBytes = b.newBytes
	snap.Summary.AddedBlobs = stats.Blobs
	snap.Summary.AddedStored = stats.StoredBytes
	snap.Summary.Duration = time.Since(b.start)
	return &snap
}

// sameContent reports whether snap holds what parent holds: the same
// tags, folders, messages, flags and cursors, and nothing skipped.
func sameContent(snap, parent *repo.Snapshot) bool {
	if parent == nil || len(snap.Skipped) > 0 || len(parent.Skipped) > 0 ||
		!slices.Equal(snap.Tags, parent.Tags) || len(snap.Folders) != len(parent.Folders) {
		return false
	}
	for i, e := range snap.Folders {
		p := parent.Folders[i]
		if e.Folder != p.Folder || e.Messages != p.Messages || e.Bytes != p.Bytes ||
			!slices.Equal(e.Pages, p.Pages) || !bytes.Equal(e.Cursor, p.Cursor) {
			return false
		}
	}
	return true
}

func findFolder(s *repo.Snapshot, path string) *repo.FolderEntry {
	if s == nil {
		return nil
	}
	for i := range s.Folders {
		if s.Folders[i].Path == path {
			return &s.Folders[i]
		}
	}
	return nil
}

// findParent returns the newest snapshot of source and host, passing over
// damaged snapshots that a repaired one replaces. A checkpoint is a parent
// like any other snapshot, unless a snapshot of the same time supersedes
// it (the final snapshot of its run, kept in an append-only repository).
func findParent(snaps []*repo.Snapshot, source, host string) *repo.Snapshot {
	replaced := make(map[dedup.ID]bool)
	for _, s := range snaps {
		if s.Repaired != nil {
			replaced[s.Repaired.Original] = true
		}
	}
	var best *repo.Snapshot
	for _, s := range snaps {
		if s.Source != source || s.Host != host || replaced[s.ID] {
			continue
		}
		if best == nil || s.Time.After(best.Time) || s.Supersedes(best) {
			best = s
		}
	}
	return best
}

// errFatal marks errors that end the whole run (the repository failed),
// as opposed to a folder the source could not read.
var errFatal = errors.New("repository write failed")

type run struct {
	r      *repo.Repository
	src    archive.Source
	saver  *repo.Saver
	prog   archive.Progress
	log    *slog.Logger
	params dedup.Params
	srcCtx context.Context // the source's: ends on a signal or a lost lock
	lock   *repo.Lock
	parent *repo.Snapshot
	start  time.Time
	// proto is the snapshot without folders, summary and skipped list.
	proto repo.Snapshot

	jobs chan job // messages read whole, stored by the workers

	mu          sync.Mutex
	slots       []slot // one per folder, in the source's order
	skipped     []repo.Skipped
	newMessages int64
	newBytes    int64
	// changes counts what a checkpoint would show differently: messages
	// stored, folders finished.
	changes int64

	// Checkpoints, written one at a time.
	ckMu           sync.Mutex
	ckChanges      int64            // changes at the last checkpoint
	lastCheckpoint *repo.Snapshot   // this run's newest
	checkpoints    []*repo.Snapshot // of the repository, perhaps superseded
}

// slot is the state of one folder during a run.
type slot struct {
	f    archive.Folder
	prev *repo.FolderEntry // the parent's entry, or nil
	st   *state            // set while (and after) its source reports changes
	done bool              // entry is final
	// entry is the folder's new entry, once done; err why it is not.
	entry repo.FolderEntry
	err   error
}

func (b *run) skip(folder, sourceID string, err error) {
	if b.srcCtx.Err() != nil {
		// Cut short by the end of the run (a signal, a lost lock): not
		// skipped, only not reached.
		b.log.Debug("message cut short", "folder", folder, "source_id", sourceID, "err", err)
		return
	}
	b.mu.Lock()
	b.skipped = append(b.skipped, repo.Skipped{Folder: folder, SourceID: sourceID, Error: err.Error()})
	b.mu.Unlock()
	b.log.Warn("skipped", "folder", folder, "source_id", sourceID, "err", err)
	b.prog.Event(archive.Event{Kind: "skip", Folder: folder, SourceID: sourceID, Err: err, Message: err.Error()})
}

// unskip forgets the messages of folder skipped so far.
func (b *run) unskip(folder string) {
	b.mu.Lock()
	b.skipped = slices.DeleteFunc(b.skipped, func(s repo.Skipped) bool { return s.Folder == folder && s.SourceID != "" })
	b.mu.Unlock()
}

// folder syncs folder number i and records its new entry, or why there
// is none, in its slot.
func (b *run) folder(ctx context.Context, i int) {
	b.mu.Lock()
	f, prev := b.slots[i].f, b.slots[i].prev
	b.mu.Unlock()
	st, entry, err := b.syncFolder(ctx, i, f, prev)
	b.mu.Lock()
	defer b.mu.Unlock()
	sl := &b.slots[i]
	sl.entry, sl.err, sl.done = entry, err, err == nil
	if err == nil {
		b.changes++
	}
	switch {
	case sl.done:
		// Its pages are written: the entry is all a checkpoint needs, and
		// the folder's list (a million messages, perhaps) can go.
		sl.st = nil
	case ctx.Err() == nil && !errors.Is(err, archive.ErrLimit):
		// Failed, not interrupted nor stopped by the source's limit: a
		// checkpoint keeps the parent's entry as the final snapshot does.
		sl.st = nil
	case st != nil:
		sl.st = st
	}
}

// storedBatch is how many chunks of a parent folder are checked at once:
// each batch reads the index's runs once (a million blobs: 60 MB), and
// holds 36 bytes a chunk.
const storedBatch = 1 << 17

// syncFolder syncs one folder and returns its state and new entry. Its
// state is put in the folder's slot before the source reports changes, for
// checkpoints.
func (b *run) syncFolder(ctx context.Context, slotIdx int, f archive.Folder, prev *repo.FolderEntry) (*state, repo.FolderEntry, error) {
	parent := b.parent
	st := newState(b, f.Path)
	var cursor archive.Cursor
	parentRead := false // every entry of prev read, none lost
	if prev != nil {
		cursor = prev.Cursor
		idx := 0
		for i := range parent.Folders {
			if &parent.Folders[i] == prev {
				idx = i
			}
		}
		// The entries whose data is gone (its pack) are dropped. Their
		// chunks are checked many at once (Repository.Stored), in
		// batches that bound the memory this takes.
		var chunks []dedup.ID
		var owner []int32
		lost := 0
		check := func() {
			for j, ok := range b.r.Stored(chunks) {
				if i := int(owner[j]); !ok && st.entries.record(i) != nil {
					st.entries.remove(i)
					lost++
				}
			}
			chunks, owner = chunks[:0], owner[:0]
		}
		err := b.r.Entries(ctx, parent, idx, func(e repo.Entry) error {
			i := st.entries.add(&e)
			for _, c := range e.ChunkIDs() {
				chunks = append(chunks, c)
				owner = append(owner, int32(i))
			}
			if len(chunks) >= storedBatch {
				check()
			}
			return nil
		})
		if err == nil {
			check()
		}
		parentRead = err == nil && lost == 0
		if err == nil && lost > 0 {
			// Keeping the others, list the folder whole so that the
			// source sends again the messages whose data is gone.
			b.log.Warn("parent folder lacks the data of some messages, full listing", "folder", f.Path, "messages", lost)
			cursor = nil
		}
		if err != nil {
			// A damaged parent only costs speed: start from scratch.
			b.log.Warn("parent folder unreadable, full backup", "folder", f.Path, "err", err)
			st = newState(b, f.Path)
			cursor = nil
		}
	}
	// The parent's pages list the folder as long as its entries stay as
	// they were read, all of them.
	parentPages := prev != nil && parentRead
	readChanges := st.entries.changes
	b.mu.Lock()
	b.slots[slotIdx].st = st
	b.mu.Unlock()
	newCursor, err := b.src.Sync(ctx, f, cursor, st)
	// Wait for the messages still being stored, even after an error.
	if ferr := st.flush(); ferr != nil {
		return st, repo.FolderEntry{}, ferr
	}
	if err != nil {
		return st, repo.FolderEntry{}, err
	}
	if st.reset {
		st.dropUnseen()
	}
	if st.skips > 0 {
		// The source's cursor has moved past the skipped messages: without
		// a cursor the next run lists the folder whole and retries them
		// (dedup makes the rest cheap).
		newCursor = nil
	}
	var entry repo.FolderEntry
	if parentPages && st.entries.changes == readChanges {
		entry = repo.FolderEntry{Folder: f, Pages: prev.Pages, Messages: prev.Messages, Bytes: prev.Bytes}
	} else if entry, err = b.writePages(f, st.entries); err != nil {
		return st, entry, err
	}
	entry.Cursor = newCursor
	b.prog.Event(archive.Event{Kind: "folder", Folder: f.Path, Message: fmt.Sprintf("%d messages", entry.Messages)})
	return st, entry, nil
}

// writePages stores the pages listing a folder's entries and returns the
// folder's entry, without a cursor.
func (b *run) writePages(f archive.Folder, entries *entryList) (repo.FolderEntry, error) {
	pw := repo.NewPageWriter(b.saver)
	if err := entries.each(pw.Add); err != nil {
		return repo.FolderEntry{}, fmt.Errorf("%w: %w", errFatal, err)
	}
	pages, count, size, err := pw.Finish()
	if err != nil {
		return repo.FolderEntry{}, fmt.Errorf("%w: %w", errFatal, err)
	}
	return repo.FolderEntry{Folder: f, Pages: pages, Messages: count, Bytes: size}, nil
}
