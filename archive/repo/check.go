package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

// CheckOptions tune Check. A nil *CheckOptions checks structure only.
type CheckOptions struct {
	// ReadData reads every pack and checks every blob.
	ReadData bool
	// ReadDataFraction, when above 0 and ReadData is false, reads that
	// fraction of the packs (rounded up: at least one), chosen at random.
	ReadDataFraction float64
}

// MessageRef names a message of a snapshot.
type MessageRef struct {
	Snapshot dedup.ID `json:"snapshot"`
	Folder   string   `json:"folder"`
	SourceID string   `json:"source_id"`
	Date     string   `json:"date,omitempty"`
	Size     int64    `json:"size"`
}

// CheckError is one problem found by Check.
type CheckError struct {
	File     string       `json:"file"`
	Err      string       `json:"error"`
	Messages []MessageRef `json:"messages,omitempty"`
}

// CheckReport lists what Check found.
type CheckReport struct {
	Errors       []CheckError `json:"errors"`
	Unreferenced []string     `json:"unreferenced,omitempty"` // packs no index lists
	Packs        int          `json:"packs"`
	PacksRead    int          `json:"packs_read"`
	Snapshots    int          `json:"snapshots"`
	Blobs        int          `json:"blobs"`
}

// OK reports whether no error was found (unreferenced packs are not errors:
// a killed run leaves them; prune removes them).
func (c *CheckReport) OK() bool { return len(c.Errors) == 0 }

func (c *CheckReport) add(file string, err error) *CheckError {
	c.Errors = append(c.Errors, CheckError{File: file, Err: err.Error()})
	return &c.Errors[len(c.Errors)-1]
}

// Check verifies the repository: every index and snapshot file opens and
// matches its name, every pack an index lists exists with the right size,
// every blob a snapshot needs is indexed; with ReadData every pack is read,
// hashed and every frame and blob authenticated. Errors name the damaged
// file and the messages that depend on it.
func (r *Repository) Check(ctx context.Context, opts *CheckOptions) (*CheckReport, error) {
	if opts == nil {
		opts = &CheckOptions{}
	}
	rep := &CheckReport{}

	// Snapshots are listed first: a snapshot is written after the index
	// files of its data (by this or a concurrent process), so the index
	// files listed next cover every snapshot listed now.
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}

	// Index files: each must open and decode. Rebuild a fresh view.
	var idxNames []string
	if err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		idxNames = append(idxNames, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	indexed := make(map[dedup.ID]PackInfo)
	for _, name := range idxNames {
		packs, err := r.readIndexFile(ctx, name)
		if err != nil {
			rep.add("index/"+name, err)
			continue
		}
		for _, p := range packs {
			indexed[p.ID] = p
		}
	}
	// The in-memory index, which reads the snapshots' pages below, learns
	// the packs indexed since it was loaded (by concurrent backups).
	if err := r.EnsureIndex(ctx); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	for _, p := range indexed {
		if !r.index.HasPack(p.ID) {
			r.addToIndex(p)
		}
	}

	// Packs on the backend.
	onDisk := make(map[dedup.ID]int64)
	if err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := dedup.ParseID(fi.Name)
		if err != nil {
			rep.add("data/"+fi.Name, errors.New("not a pack name"))
			return nil
		}
		onDisk[id] = fi.Size
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	rep.Packs = len(onDisk)
	badPacks := make(map[dedup.ID]string)
	// Blobs known lost per damaged pack; a pack in badPacks with no entry
	// here lost all its blobs (missing, truncated).
	lost := make(map[dedup.ID][]dedup.ID)
	for id, p := range indexed {
		size, ok := onDisk[id]
		switch {
		case !ok:
			badPacks[id] = "pack is missing"
		case size != p.Size:
			badPacks[id] = fmt.Sprintf("pack has %d bytes, index says %d", size, p.Size)
		}
	}
	for id := range onDisk {
		if _, ok := indexed[id]; !ok {
			rep.Unreferenced = append(rep.Unreferenced, id.String())
		}
	}
	sort.Strings(rep.Unreferenced)

	// Blobs each pack holds, per the index.
	blobPack := make(map[dedup.ID]dedup.ID)
	for id, p := range indexed {
		for _, f := range p.Header.Frames {
			for _, b := range f.Blobs {
				blobPack[b.ID] = id
			}
		}
	}
	rep.Blobs = len(blobPack)

	// Read packs.
	var toRead []dedup.ID
	for id := range indexed {
		if _, bad := badPacks[id]; bad {
			continue
		}
		if opts.ReadData || opts.ReadDataFraction > 0 {
			toRead = append(toRead, id)
		}
	}
	if !opts.ReadData && opts.ReadDataFraction > 0 && opts.ReadDataFraction < 1 {
		// Less a little: 0.05 × 100 is 5.000000000000001.
		n := int(math.Ceil(opts.ReadDataFraction*float64(len(toRead)) - 1e-9))
		rand.Shuffle(len(toRead), func(i, j int) { toRead[i], toRead[j] = toRead[j], toRead[i] })
		toRead = toRead[:n]
	}
	sort.Slice(toRead, func(i, j int) bool { return toRead[i].String() < toRead[j].String() })
	badBlobs := make(map[dedup.ID]dedup.ID) // blob → pack
	for _, id := range toRead {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.PacksRead++
		damaged, err := r.checkPack(ctx, indexed[id])
		if err != nil {
			badPacks[id] = err.Error()
			lost[id] = damaged
		}
	}
	for id := range badPacks {
		blobs, partial := lost[id]
		if !partial {
			for _, f := range indexed[id].Header.Frames {
				for _, b := range f.Blobs {
					blobs = append(blobs, b.ID)
				}
			}
		}
		for _, b := range blobs {
			// A blob also stored intact in another pack is not lost.
			if other, ok := blobPack[b]; ok && other != id {
				if _, bad := badPacks[other]; !bad {
					continue
				}
			}
			badBlobs[b] = id
		}
	}

	// Snapshots: every page and chunk must be indexed and not damaged.
	affected := make(map[dedup.ID][]MessageRef) // pack → messages
	for _, sid := range ids {
		snap, err := r.LoadSnapshot(ctx, sid)
		if errors.Is(err, backend.ErrNotExist) {
			continue // a superseded checkpoint, removed since the listing
		}
		if err != nil {
			rep.add("snapshots/"+sid.String(), err)
			continue
		}
		rep.Snapshots++
		for fi, f := range snap.Folders {
			for _, page := range f.Pages {
				if _, ok := blobPack[page]; !ok {
					rep.add("snapshots/"+sid.String(), fmt.Errorf("folder %q: page %s is not indexed", f.Path, page.Short()))
					continue
				}
				if p, bad := badBlobs[page]; bad {
					affected[p] = append(affected[p], MessageRef{Snapshot: sid, Folder: f.Path, SourceID: "(folder list)"})
					continue
				}
			}
			err := r.Entries(ctx, snap, fi, func(e Entry) error {
				for _, c := range e.ChunkIDs() {
					if _, ok := blobPack[c]; !ok {
						rep.add("snapshots/"+sid.String(), fmt.Errorf("folder %q message %s: chunk %s is not indexed", f.Path, e.SourceID, c.Short()))
						return nil
					}
					if p, bad := badBlobs[c]; bad {
						affected[p] = append(affected[p], MessageRef{Snapshot: sid, Folder: f.Path, SourceID: e.SourceID, Date: e.Date.UTC().Format("2006-01-02 15:04:05"), Size: e.Size})
						return nil
					}
				}
				return nil
			})
			if err != nil {
				var be *BlobError
				if !errors.As(err, &be) {
					return nil, fmt.Errorf("check: %w", err)
				}
				if be.Pack.IsNull() {
					rep.add("snapshots/"+sid.String(), err)
				}
			}
		}
	}
	var bad []dedup.ID
	for id := range badPacks {
		bad = append(bad, id)
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].String() < bad[j].String() })
	for _, id := range bad {
		e := rep.add("data/"+id.String(), errors.New(badPacks[id]))
		e.Messages = affected[id]
	}
	return rep, nil
}

// checkPack reads a whole pack, checks its hash against its name, its header
// against the index, and authenticates every frame and blob. On error it
// returns the blobs of the frames found damaged (none when only the header
// or the pack's hash is wrong). Damage is an error wrapping ErrDamaged; a
// failure to read is not.
func (r *Repository) checkPack(ctx context.Context, p PackInfo) ([]dedup.ID, error) {
	h := backend.Handle{Type: backend.PackFile, Name: p.ID.String()}
	rd, err := r.be.Load(ctx, h, 0, 0)
	if err != nil {
		return allBlobs(p), err
	}
	defer rd.Close()
	hash := sha256.New()
	tr := io.TeeReader(rd, hash)
	var damaged []dedup.ID
	var firstErr error
	var off int64
	for _, f := range p.Header.Frames {
		if int64(f.Offset) != off {
			return allBlobs(p), asDamaged(errors.New("index frames do not tile the pack"))
		}
		sealed := make([]byte, f.Length)
		if _, err := io.ReadFull(tr, sealed); err != nil {
			return allBlobs(p), fmt.Errorf("read: %w", err)
		}
		off += int64(f.Length)
		plain, err := r.codec.Open(sealed, f.Flags, f.RawLength)
		var bo uint32
		for _, b := range f.Blobs {
			if err == nil && dedup.Hash(plain[bo:bo+b.Length]) != b.ID {
				err = asDamaged(fmt.Errorf("blob %s: content does not match its id", b.ID.Short()))
			}
			bo += b.Length
		}
		if err != nil {
			for _, b := range f.Blobs {
				damaged = append(damaged, b.ID)
			}
			if firstErr == nil {
				firstErr = asDamaged(fmt.Errorf("frame at offset %d: %w", f.Offset, err))
			}
		}
	}
	tail, err := io.ReadAll(tr)
	if err != nil {
		return allBlobs(p), fmt.Errorf("read: %w", err)
	}
	if firstErr != nil {
		return damaged, firstErr
	}
	if dedup.ID(hash.Sum(nil)) != p.ID {
		return nil, asDamaged(errors.New("pack content does not match its name (damaged)"))
	}
	hdr, _, err := pack.ParseHeader(r.key, tail, off+int64(len(tail)))
	if err != nil {
		return nil, asDamaged(err)
	}
	if len(hdr.Frames) != len(p.Header.Frames) {
		return nil, asDamaged(errors.New("pack header disagrees with the index"))
	}
	return nil, nil
}

func allBlobs(p PackInfo) []dedup.ID {
	var out []dedup.ID
	for _, f := range p.Header.Frames {
		for _, b := range f.Blobs {
			out = append(out, b.ID)
		}
	}
	return out
}
