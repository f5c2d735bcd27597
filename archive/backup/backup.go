package backup

import (
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
	// the same source and host.
	Parent *repo.Snapshot
	// Time is the snapshot's time; zero means now. Tests and scheduled
	// runs with a clock of their own set it.
	Time time.Time
}

// Run backs src up into r and returns the new snapshot.
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
	// stops the run: another process may be pruning.
	ctx = lock.Context(ctx)

	if n, err := r.AdoptPacks(ctx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	} else if n > 0 {
		log.Info("indexed packs left by an earlier run", "packs", n)
	}

	parent := opts.Parent
	if parent == nil {
		if parent, err = findParent(ctx, r, src.Describe(), host); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	folders, err := src.Folders(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: list folders: %w", err)
	}

	total := archive.Counts{Messages: -1, Bytes: -1}
	prog.Start(total)

	saver := r.NewSaver(ctx)
	b := &run{r: r, src: src, saver: saver, prog: prog, log: log, params: r.Config().Chunker}
	stopWorkers := b.startWorkers(runtime.GOMAXPROCS(0))
	entries := make([]repo.FolderEntry, len(folders))
	errs := make([]error, len(folders))

	workers := opts.Workers
	if workers <= 0 {
		workers = 2
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, f := range folders {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var prev *repo.FolderEntry
			if parent != nil {
				for j := range parent.Folders {
					if parent.Folders[j].Path == f.Path {
						prev = &parent.Folders[j]
						break
					}
				}
			}
			entries[i], errs[i] = b.folder(ctx, f, parent, prev)
		}()
	}
	wg.Wait()
	stopWorkers()
	stats, flushErr := saver.Flush()
	if err := lock.Err(); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		if ctx.Err() != nil || errors.Is(err, errFatal) {
			return nil, fmt.Errorf("backup: folder %q: %w", folders[i].Path, err)
		}
		// The folder could not be read: keep its previous state, name it.
		b.skip(folders[i].Path, "", err)
		if parentEntry := findFolder(parent, folders[i].Path); parentEntry != nil {
			entries[i] = *parentEntry
		} else {
			entries[i] = repo.FolderEntry{Folder: folders[i]}
		}
	}
	if flushErr != nil {
		return nil, fmt.Errorf("backup: %w", flushErr)
	}

	snapTime := start
	if !opts.Time.IsZero() {
		snapTime = opts.Time
	}
	snap := &repo.Snapshot{
		Time:    snapTime.UTC(),
		Host:    host,
		Tags:    opts.Tags,
		Source:  src.Describe(),
		Folders: entries,
		Skipped: b.skipped,
		Partial: len(b.skipped) > 0,
	}
	if u, err := user.Current(); err == nil {
		snap.Username = u.Username
	}
	if parent != nil {
		id := parent.ID
		snap.Parent = &id
	}
	for _, e := range entries {
		snap.Summary.Messages += e.Messages
		snap.Summary.Bytes += e.Bytes
	}
	snap.Summary.NewMessages = b.newMessages
	snap.Summary.NewBytes = b.newBytes
	snap.Summary.AddedBlobs = stats.Blobs
	snap.Summary.AddedStored = stats.StoredBytes
	snap.Summary.Duration = time.Since(start)
	// The snapshot commits the run: only under a lock that still holds.
	if err := lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := r.SaveSnapshot(ctx, snap); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return snap, nil
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
// damaged snapshots that a repaired one replaces.
func findParent(ctx context.Context, r *repo.Repository, source, host string) (*repo.Snapshot, error) {
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	replaced := make(map[dedup.ID]bool)
	for _, s := range snaps {
		if s.Repaired != nil {
			replaced[s.Repaired.Original] = true
		}
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		if snaps[i].Source == source && snaps[i].Host == host && !replaced[snaps[i].ID] {
			return snaps[i], nil
		}
	}
	return nil, nil
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

	jobs chan job // messages read whole, stored by the workers

	mu          sync.Mutex
	skipped     []repo.Skipped
	newMessages int64
	newBytes    int64
}

func (b *run) skip(folder, sourceID string, err error) {
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

// folder syncs one folder and returns its new entry.
func (b *run) folder(ctx context.Context, f archive.Folder, parent *repo.Snapshot, prev *repo.FolderEntry) (repo.FolderEntry, error) {
	st := newState(b, f.Path)
	var cursor archive.Cursor
	if prev != nil {
		cursor = prev.Cursor
		idx := 0
		for i := range parent.Folders {
			if &parent.Folders[i] == prev {
				idx = i
			}
		}
		lost := 0
		err := b.r.Entries(ctx, parent, idx, func(e repo.Entry) error {
			for _, c := range e.ChunkIDs() {
				if !b.r.Index().Has(c) { // its pack is gone
					lost++
					return nil
				}
			}
			st.add(e)
			return nil
		})
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
	newCursor, err := b.src.Sync(ctx, f, cursor, st)
	// Wait for the messages still being stored, even after an error.
	if ferr := st.flush(); ferr != nil {
		return repo.FolderEntry{}, ferr
	}
	if err != nil {
		return repo.FolderEntry{}, err
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
	pw := repo.NewPageWriter(b.saver)
	for i := range st.entries {
		if st.entries[i].SourceID == "" {
			continue // deleted
		}
		if err := pw.Add(&st.entries[i]); err != nil {
			return repo.FolderEntry{}, fmt.Errorf("%w: %w", errFatal, err)
		}
	}
	pages, count, size, err := pw.Finish()
	if err != nil {
		return repo.FolderEntry{}, fmt.Errorf("%w: %w", errFatal, err)
	}
	b.prog.Event(archive.Event{Kind: "folder", Folder: f.Path, Message: fmt.Sprintf("%d messages", count)})
	return repo.FolderEntry{Folder: f, Cursor: newCursor, Pages: pages, Messages: count, Bytes: size}, nil
}
