package repo

import (
	"context"
	"fmt"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/dedup"
)

// Stats describes the repository, or a set of snapshots in it.
type Stats struct {
	Snapshots int   `json:"snapshots"`
	Messages  int64 `json:"messages"`  // distinct messages (by content)
	RawBytes  int64 `json:"raw_bytes"` // their total size
	Blobs     int64 `json:"blobs"`     // distinct chunks they need
	BlobBytes int64 `json:"blob_bytes"`
	// StoredBytes is the size of every file of the repository (packs,
	// indexes, snapshots, keys, config).
	StoredBytes int64   `json:"stored_bytes"`
	Ratio       float64 `json:"ratio"` // StoredBytes / RawBytes
}

// Stats computes statistics over snaps (every snapshot if nil).
func (r *Repository) Stats(ctx context.Context, snaps []*Snapshot) (Stats, error) {
	var st Stats
	if err := r.EnsureIndex(ctx); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	if snaps == nil {
		var err error
		if snaps, err = r.Snapshots(ctx); err != nil {
			return st, err
		}
	}
	st.Snapshots = len(snaps)
	msgs := make(map[dedup.ID]struct{})
	blobs := make(map[dedup.ID]struct{})
	for _, s := range snaps {
		for fi := range s.Folders {
			err := r.Entries(ctx, s, fi, func(e Entry) error {
				if _, ok := msgs[e.ID]; ok {
					return nil
				}
				msgs[e.ID] = struct{}{}
				st.Messages++
				st.RawBytes += e.Size
				for _, c := range e.ChunkIDs() {
					if _, ok := blobs[c]; ok {
						continue
					}
					blobs[c] = struct{}{}
					st.Blobs++
					if loc, ok := r.index.Lookup(c); ok {
						st.BlobBytes += int64(loc.Length)
					}
				}
				return nil
			})
			if err != nil {
				return st, fmt.Errorf("stats: snapshot %s: %w", s.ID.Short(), err)
			}
		}
	}
	for _, t := range []backend.FileType{backend.KeyFile, backend.PackFile, backend.IndexFile, backend.SnapshotFile} {
		err := r.be.List(ctx, t, func(fi backend.FileInfo) error {
			st.StoredBytes += fi.Size
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("stats: %w", err)
		}
	}
	if fi, err := r.be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err == nil {
		st.StoredBytes += fi.Size
	}
	if st.RawBytes > 0 {
		st.Ratio = float64(st.StoredBytes) / float64(st.RawBytes)
	}
	return st, nil
}
