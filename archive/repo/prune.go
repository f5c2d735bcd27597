package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/dedup"
)

// PruneOptions tune Prune. A nil *PruneOptions means defaults.
type PruneOptions struct {
	// DryRun computes the report without changing anything.
	DryRun bool
}

// PruneReport says what Prune did (or would do).
type PruneReport struct {
	Packs         int   `json:"packs"`
	RemovedPacks  int   `json:"removed_packs"`
	RepackedPacks int   `json:"repacked_packs"`
	UnusedBlobs   int   `json:"unused_blobs"`
	RepackedBlobs int   `json:"repacked_blobs"`
	FreedBytes    int64 `json:"freed_bytes"`
}

// usedBlobs collects every blob that a snapshot needs. Any unreadable
// snapshot or page is an error: pruning on partial knowledge loses data.
func (r *Repository) usedBlobs(ctx context.Context) (map[dedup.ID]struct{}, error) {
	used := make(map[dedup.ID]struct{})
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		for fi, f := range s.Folders {
			for _, p := range f.Pages {
				used[p] = struct{}{}
			}
			err := r.Entries(ctx, s, fi, func(e Entry) error {
				for _, c := range e.ChunkIDs() {
					used[c] = struct{}{}
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
			}
		}
	}
	return used, nil
}

// reloadIndex replaces the in-memory index by what the index files say now.
func (r *Repository) reloadIndex(ctx context.Context) error {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	r.indexLoaded.Store(false)
	r.index = dedup.NewIndex()
	r.indexMu.Lock()
	// Prune keeps the whole index in memory: the runs of the old one are
	// closed (they are rebuilt from the index files prune leaves, on the
	// next load).
	for _, rf := range r.runs {
		rf.Close()
	}
	r.runs = nil
	r.indexFile = make(map[string][]dedup.ID)
	r.packSize = make(map[dedup.ID]int64)
	r.damagedIndex = nil
	r.indexMu.Unlock()
	return r.LoadIndex(ctx)
}

// Prune removes the data no snapshot needs: packs with no used blob are
// deleted, packs mixing used and unused blobs are rewritten, and packs no
// index lists (left by killed runs) are deleted. It takes an exclusive
// lock, and stops with ErrLockLost, before it removes any further file,
// once that lock is lost.
//
// Order keeps the repository valid at every step: new packs and their index
// first, then a new index of the packs kept, then the old index files, then
// the packs.
func (r *Repository) Prune(ctx context.Context, opts *PruneOptions) (*PruneReport, error) {
	if opts == nil {
		opts = &PruneOptions{}
	}
	lock, err := r.Lock(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer lock.Unlock()
	ctx = lock.Context(ctx)
	if err := r.reloadIndex(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	// The packs a damaged index file lists look unindexed: pruning now
	// would delete them.
	if d := r.DamagedIndex(); len(d) > 0 {
		return nil, fmt.Errorf("prune: index file %s: %w; repair the index first", strings.Join(d, ", "), ErrDamaged)
	}
	used, err := r.usedBlobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	// Every used blob must be indexed, or a snapshot is already damaged.
	for id := range used {
		if !r.index.Has(id) {
			return nil, fmt.Errorf("prune: blob %s is used but not indexed; run check", id.Short())
		}
	}

	rep := &PruneReport{}
	oldIndex := make([]string, 0, len(r.indexFile))
	packInfo := make(map[dedup.ID]PackInfo)
	for name := range r.indexFile {
		oldIndex = append(oldIndex, name)
		packs, err := r.readIndexFile(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		for _, p := range packs {
			packInfo[p.ID] = p
		}
	}
	onDisk, err := r.packSizes(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	rep.Packs = len(onDisk)

	var keep []PackInfo
	var remove []dedup.ID
	var repack []PackInfo
	seen := make(map[dedup.ID]bool) // a blob kept once is enough
	for id, p := range packInfo {
		if _, ok := onDisk[id]; !ok {
			continue // already gone (check reports it)
		}
		usedN, total := 0, 0
		for _, f := range p.Header.Frames {
			for _, b := range f.Blobs {
				total++
				if _, ok := used[b.ID]; ok && !seen[b.ID] {
					usedN++
				}
			}
		}
		switch {
		case usedN == 0:
			remove = append(remove, id)
			rep.UnusedBlobs += total
		case usedN == total:
			keep = append(keep, p)
			for _, f := range p.Header.Frames {
				for _, b := range f.Blobs {
					seen[b.ID] = true
				}
			}
		default:
			repack = append(repack, p)
			rep.UnusedBlobs += total - usedN
		}
		// Mark this pack's used blobs so duplicates elsewhere count unused.
		if usedN > 0 && usedN < total {
			for _, f := range p.Header.Frames {
				for _, b := range f.Blobs {
					if _, ok := used[b.ID]; ok {
						seen[b.ID] = true
					}
				}
			}
		}
	}
	for id := range onDisk {
		if _, ok := packInfo[id]; !ok {
			remove = append(remove, id)
		}
	}
	for _, id := range remove {
		rep.FreedBytes += onDisk[id]
	}
	rep.RemovedPacks = len(remove)
	rep.RepackedPacks = len(repack)
	if opts.DryRun {
		return rep, nil
	}
	// From here on files are removed: only under a lock that still holds.
	if err := lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}

	// 1. Rewrite the used blobs of mixed packs into new packs (indexed by
	// the saver).
	if len(repack) > 0 {
		keptWhole := make(map[dedup.ID]bool) // blobs a kept pack holds
		for _, p := range keep {
			for _, f := range p.Header.Frames {
				for _, b := range f.Blobs {
					keptWhole[b.ID] = true
				}
			}
		}
		s := r.newSaver(ctx, true)
		done := make(map[dedup.ID]bool)
		for _, p := range repack {
			for _, f := range p.Header.Frames {
				for _, b := range f.Blobs {
					if _, ok := used[b.ID]; !ok || done[b.ID] || keptWhole[b.ID] {
						continue
					}
					data, err := r.LoadBlob(ctx, b.ID)
					if err != nil {
						s.Flush()
						return nil, fmt.Errorf("prune: repack: %w", err)
					}
					if _, err := s.Add(b.Type, b.ID, data); err != nil {
						s.Flush()
						return nil, fmt.Errorf("prune: repack: %w", err)
					}
					done[b.ID] = true
					rep.RepackedBlobs++
				}
			}
		}
		st, err := s.Flush()
		if err != nil {
			return nil, fmt.Errorf("prune: repack: %w", err)
		}
		for _, p := range repack {
			rep.FreedBytes += onDisk[p.ID]
		}
		rep.FreedBytes -= st.StoredBytes
	}
	// 2. A new index of the packs kept.
	for len(keep) > 0 {
		n := min(len(keep), 512)
		if _, err := r.SaveIndex(ctx, keep[:n]); err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		keep = keep[n:]
	}
	// 3. The old index files.
	if err := lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	for _, name := range oldIndex {
		if err := lock.Err(); err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: name}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("prune: %w", err)
		}
	}
	// 4. The packs no index lists any more.
	for _, p := range repack {
		remove = append(remove, p.ID)
	}
	for _, id := range remove {
		if err := lock.Err(); err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: id.String()}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("prune: %w", err)
		}
	}
	if err := r.reloadIndex(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	r.cache = newFrameCache(r.cache.max)
	return rep, nil
}

// packSizes lists the pack files on the backend: their sizes by ID.
func (r *Repository) packSizes(ctx context.Context) (map[dedup.ID]int64, error) {
	onDisk := make(map[dedup.ID]int64)
	err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if id, err := dedup.ParseID(fi.Name); err == nil {
			onDisk[id] = fi.Size
		}
		return nil
	})
	return onDisk, err
}
