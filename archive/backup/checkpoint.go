package backup

import (
	"context"
	"fmt"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// startCheckpoints saves a checkpoint every interval (none if interval is
// not positive) until the returned function is called; that function
// waits for a checkpoint being written.
func (b *run) startCheckpoints(ctx context.Context, interval time.Duration) func() {
	if interval <= 0 {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-b.srcCtx.Done():
				return // the run's end saves the last one
			case <-t.C:
			}
			if _, err := b.checkpoint(ctx); err != nil {
				// The run goes on: if the repository failed, it fails
				// too; otherwise the next checkpoint may do.
				b.log.Warn("checkpoint failed", "err", err)
			}
		}
	}()
	return func() {
		close(stop)
		wg.Wait()
	}
}

// checkpoint saves a checkpoint snapshot of what the run has stored, or
// nothing (nil) if nothing changed since the last one. Finished folders
// are there with their cursors; a folder being read, with the messages
// stored so far and no cursor, or as the parent has it if none was stored
// yet; a folder not reached (or that failed), as the parent has it, or
// not at all.
func (b *run) checkpoint(ctx context.Context) (*repo.Snapshot, error) {
	b.ckMu.Lock()
	defer b.ckMu.Unlock()
	b.mu.Lock()
	changes := b.changes
	slots := make([]slot, len(b.slots))
	copy(slots, b.slots)
	b.mu.Unlock()
	if changes == b.ckChanges {
		return nil, nil
	}
	var folders []repo.FolderEntry
	for _, sl := range slots {
		switch {
		case sl.done:
			folders = append(folders, sl.entry)
			continue
		case sl.st != nil:
			if entries, ok := sl.st.view(); ok {
				e, err := b.writePages(sl.f, entries)
				if err != nil {
					return nil, fmt.Errorf("checkpoint: %w", err)
				}
				folders = append(folders, e)
				continue
			}
		}
		if sl.prev != nil {
			folders = append(folders, *sl.prev)
		}
	}
	// Every chunk and page the checkpoint names must be indexed before it
	// is saved.
	if err := b.saver.Sync(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if folders == nil {
		folders = []repo.FolderEntry{}
	}
	snap := b.snapshot(folders, b.saver.Stats())
	snap.Checkpoint = true
	if err := b.lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := b.r.SaveSnapshot(ctx, snap); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	b.log.Info("checkpoint saved", "snapshot", snap.ID.Short(), "messages", snap.Summary.Messages, "new_messages", snap.Summary.NewMessages)
	b.ckChanges = changes
	if b.lastCheckpoint != nil {
		b.checkpoints = append(b.checkpoints, b.lastCheckpoint)
	}
	b.lastCheckpoint = snap
	b.removeSuperseded(ctx, snap)
	return snap, nil
}

// removeSuperseded removes the checkpoints that snap supersedes: this
// run's earlier ones and those of earlier runs of the same source and
// host. It only logs a failure, and removes nothing from an append-only
// repository.
func (b *run) removeSuperseded(ctx context.Context, snap *repo.Snapshot) {
	if b.r.AppendOnly() {
		return
	}
	var ids []dedup.ID
	var kept []*repo.Snapshot
	all := b.checkpoints
	if b.lastCheckpoint != nil && b.lastCheckpoint != snap {
		all = append(all, b.lastCheckpoint)
		b.lastCheckpoint = nil
	}
	for _, c := range all {
		if snap.Supersedes(c) {
			ids = append(ids, c.ID)
		} else {
			kept = append(kept, c)
		}
	}
	b.checkpoints = kept
	if len(ids) == 0 {
		return
	}
	if err := b.r.RemoveCheckpoints(ctx, ids); err != nil {
		b.log.Warn("could not remove superseded checkpoints", "err", err)
		return
	}
	b.log.Info("removed superseded checkpoints", "snapshots", len(ids))
}

// Promote saves the checkpoint ck of a complete run (Options.AsCheckpoint)
// as a snapshot and removes ck, unless the repository is append-only. The
// snapshot has ck's time, parent and folders; summary, when not nil,
// replaces its summary (a watch adds up its runs since its last snapshot).
// It takes a shared lock of its own.
func Promote(ctx context.Context, r *repo.Repository, ck *repo.Snapshot, summary *repo.Summary) (*repo.Snapshot, error) {
	if !ck.Checkpoint {
		return nil, fmt.Errorf("promote %s: not a checkpoint", ck.ID.Short())
	}
	lock, err := r.Lock(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("promote %s: %w", ck.ID.Short(), err)
	}
	defer lock.Unlock()
	snap := *ck
	snap.ID = dedup.ID{}
	snap.Checkpoint = false
	if summary != nil {
		snap.Summary = *summary
	}
	if err := lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("promote %s: %w", ck.ID.Short(), err)
	}
	if err := r.SaveSnapshot(ctx, &snap); err != nil {
		return nil, fmt.Errorf("promote %s: %w", ck.ID.Short(), err)
	}
	if !r.AppendOnly() {
		// Left behind, the checkpoint is superseded: retention removes it.
		if err := r.RemoveCheckpoints(ctx, []dedup.ID{ck.ID}); err != nil {
			return &snap, fmt.Errorf("promote %s: snapshot %s saved, but %w", ck.ID.Short(), snap.ID.Short(), err)
		}
	}
	return &snap, nil
}
