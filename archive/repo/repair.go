package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/dedup"
)

// RepairIndexOptions tune RepairIndex. A nil *RepairIndexOptions means
// defaults.
type RepairIndexOptions struct {
	// ReadData reads every pack whole and authenticates every frame and
	// blob, as check --read-data does. A pack found damaged is salvaged:
	// its intact blobs are copied into new packs, then it is removed.
	// Without ReadData only the headers of packs that no readable index
	// file lists (or lists with another size) are read.
	ReadData bool
}

// PackProblem names a pack and what is wrong with it.
type PackProblem struct {
	Pack string `json:"pack"`
	Err  string `json:"error"`
}

// SalvagedPack says what RepairIndex kept of a damaged pack it removed.
type SalvagedPack struct {
	Pack      string `json:"pack"`
	Err       string `json:"error"`
	BlobsKept int    `json:"blobs_kept"`
	BlobsLost int    `json:"blobs_lost"`
}

// RepairIndexReport says what RepairIndex found and did.
type RepairIndexReport struct {
	// IndexFiles is how many old index files were replaced; DamagedIndex
	// names those that did not open.
	IndexFiles   int      `json:"index_files"`
	DamagedIndex []string `json:"damaged_index"`
	// Packs is how many packs the new index lists; PacksRead how many
	// were read (their header, or with ReadData all of them).
	Packs     int `json:"packs"`
	PacksRead int `json:"packs_read"`
	// Missing names the packs an index file listed that are gone.
	Missing []string `json:"missing"`
	// Unreadable names the packs whose header does not parse and that no
	// readable index file described: their blobs are lost. They stay
	// (unindexed) until prune removes them.
	Unreadable []PackProblem `json:"unreadable"`
	// Salvaged names the damaged packs whose intact blobs were copied.
	Salvaged []SalvagedPack `json:"salvaged"`
}

// RepairIndex rebuilds the index from the packs themselves, under an
// exclusive lock: every readable index file is trusted for the packs it
// lists with their right size (with ReadData, each such pack is checked
// whole); any other pack has its header read from the pack. Packs that are
// gone or unreadable are dropped. It then writes new index files, removes
// the old ones (the damaged ones too) and, with ReadData, the damaged packs
// it salvaged. It never removes a pack it could not salvage. The blobs it
// could not keep are lost: RepairSnapshots then marks the messages and
// pages that needed them.
func (r *Repository) RepairIndex(ctx context.Context, opts *RepairIndexOptions) (*RepairIndexReport, error) {
	if opts == nil {
		opts = &RepairIndexOptions{}
	}
	lock, err := r.Lock(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("repair index: %w", err)
	}
	defer lock.Unlock()
	ctx = lock.Context(ctx)
	fail := func(err error) (*RepairIndexReport, error) { return nil, fmt.Errorf("repair index: %w", err) }
	rep := &RepairIndexReport{DamagedIndex: []string{}, Missing: []string{}, Unreadable: []PackProblem{}, Salvaged: []SalvagedPack{}}

	var oldIndex []string
	if err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		if _, err := dedup.ParseID(fi.Name); err == nil {
			oldIndex = append(oldIndex, fi.Name)
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	sort.Strings(oldIndex)
	rep.IndexFiles = len(oldIndex)
	indexed := make(map[dedup.ID]PackInfo)
	for _, name := range oldIndex {
		packs, err := r.readIndexFile(ctx, name)
		if errors.Is(err, ErrDamaged) {
			rep.DamagedIndex = append(rep.DamagedIndex, name)
			continue
		}
		if err != nil {
			return fail(err)
		}
		for _, p := range packs {
			indexed[p.ID] = p
		}
	}

	onDisk, err := r.packSizes(ctx)
	if err != nil {
		return fail(err)
	}
	for id := range indexed {
		if _, ok := onDisk[id]; !ok {
			rep.Missing = append(rep.Missing, id.String())
		}
	}
	sort.Strings(rep.Missing)

	type damagedPack struct {
		p    PackInfo
		size int64
		err  error
	}
	var keep []PackInfo
	var salvage []damagedPack
	ids := make([]dedup.ID, 0, len(onDisk))
	for id := range onDisk {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b dedup.ID) int { return compareIDs(a, b) })
	for _, id := range ids {
		size := onDisk[id]
		p, listed := indexed[id]
		if !listed || p.Size != size {
			rep.PacksRead++
			hdr, err := r.ReadPackHeader(ctx, id, size)
			switch {
			case err == nil:
				p = PackInfo{ID: id, Size: size, Header: hdr}
			case !errors.Is(err, ErrDamaged):
				return fail(err)
			case listed && opts.ReadData:
				// The index still describes it: save what is left.
				salvage = append(salvage, damagedPack{p, size, err})
				continue
			default:
				rep.Unreadable = append(rep.Unreadable, PackProblem{Pack: id.String(), Err: err.Error()})
				continue
			}
		} else if opts.ReadData {
			rep.PacksRead++
		}
		if opts.ReadData {
			if _, err := r.checkPack(ctx, p); err != nil {
				if !errors.Is(err, ErrDamaged) {
					return fail(fmt.Errorf("pack %s: %w", id.Short(), err))
				}
				salvage = append(salvage, damagedPack{p, size, err})
				continue
			}
		}
		keep = append(keep, p)
	}
	rep.Packs = len(keep)

	// Copy the intact blobs of damaged packs into new packs, which the
	// saver indexes in files of its own.
	if len(salvage) > 0 {
		s := r.newSaver(ctx, true)
		for _, d := range salvage {
			kept, lost, err := r.salvagePack(ctx, s, d.p, d.size)
			if err != nil {
				s.Flush()
				return fail(err)
			}
			rep.Salvaged = append(rep.Salvaged, SalvagedPack{Pack: d.p.ID.String(), Err: d.err.Error(), BlobsKept: kept, BlobsLost: lost})
		}
		st, err := s.Flush()
		if err != nil {
			return fail(fmt.Errorf("salvage: %w", err))
		}
		rep.Packs += int(st.Packs)
	}
	for len(keep) > 0 {
		n := min(len(keep), 512)
		if _, err := r.SaveIndex(ctx, keep[:n]); err != nil {
			return fail(err)
		}
		keep = keep[n:]
	}

	// The new index is complete: the old one and the salvaged packs go.
	if err := lock.Check(ctx); err != nil {
		return fail(err)
	}
	for _, name := range oldIndex {
		if err := lock.Err(); err != nil {
			return fail(err)
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: name}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fail(err)
		}
	}
	for _, d := range salvage {
		if err := lock.Err(); err != nil {
			return fail(err)
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: d.p.ID.String()}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fail(err)
		}
	}
	r.cache = newFrameCache(r.cache.max)
	if err := r.reloadIndex(ctx); err != nil {
		return fail(err)
	}
	return rep, nil
}

// salvagePack stores through s every blob of p (a pack of size bytes on
// the backend) that still reads back intact, and counts the blobs kept and
// lost. Only a failure to read or to store is an error.
func (r *Repository) salvagePack(ctx context.Context, s *Saver, p PackInfo, size int64) (kept, lost int, err error) {
	h := backend.Handle{Type: backend.PackFile, Name: p.ID.String()}
	for _, f := range p.Header.Frames {
		if int64(f.Offset)+int64(f.Length) > size {
			lost += len(f.Blobs) // cut off
			continue
		}
		rd, err := r.be.Load(ctx, h, int64(f.Offset), int64(f.Length))
		if err != nil {
			return kept, lost, fmt.Errorf("salvage %s: %w", h, err)
		}
		sealed := make([]byte, f.Length)
		_, err = io.ReadFull(rd, sealed)
		rd.Close()
		if err != nil {
			return kept, lost, fmt.Errorf("salvage %s: %w", h, err)
		}
		plain, err := r.codec.Open(sealed, f.Flags, f.RawLength)
		if err != nil {
			lost += len(f.Blobs)
			continue
		}
		var off uint32
		for _, b := range f.Blobs {
			data := plain[off : off+b.Length]
			off += b.Length
			if dedup.Hash(data) != b.ID {
				lost++
				continue
			}
			if _, err := s.Add(b.Type, b.ID, data); err != nil {
				return kept, lost, fmt.Errorf("salvage %s: %w", h, err)
			}
			kept++
		}
	}
	return kept, lost, nil
}

func compareIDs(a, b dedup.ID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// Repair marks a snapshot that RepairSnapshots wrote in place of a damaged
// one.
type Repair struct {
	// Original is the damaged snapshot this one replaces.
	Original dedup.ID `json:"original"`
	// Time is when the repair was made.
	Time time.Time `json:"time"`
	// Lost names what the original held and this snapshot lacks: messages
	// whose data is gone (SourceID set), and pages of a folder's message
	// list that could not be read (SourceID empty; the messages they
	// listed are unknown, only counted).
	Lost []Skipped `json:"lost"`
	// LostMessages is how many messages the original held that this
	// snapshot lacks.
	LostMessages int64 `json:"lost_messages"`
}

// RepairSnapshotsOptions tune RepairSnapshots. A nil
// *RepairSnapshotsOptions repairs every snapshot and keeps the originals.
type RepairSnapshotsOptions struct {
	// IDs selects the snapshots to look at; nil means all.
	IDs []dedup.ID
	// Forget removes each damaged original once its repaired snapshot is
	// written, and snapshot files that do not open at all.
	Forget bool
	// DryRun reports what would be done and writes nothing.
	DryRun bool
}

// RepairedSnapshot says what RepairSnapshots did to one snapshot.
type RepairedSnapshot struct {
	Original     dedup.ID  `json:"original"`
	New          dedup.ID  `json:"new"` // zero on a dry run
	Lost         []Skipped `json:"lost"`
	LostMessages int64     `json:"lost_messages"`
	Forgotten    bool      `json:"forgotten"`
}

// UnreadableSnapshot names a snapshot file that does not open; nothing of
// it can be repaired.
type UnreadableSnapshot struct {
	ID      dedup.ID `json:"id"`
	Err     string   `json:"error"`
	Removed bool     `json:"removed"`
}

// RepairSnapshotsReport says what RepairSnapshots found and did.
type RepairSnapshotsReport struct {
	Snapshots  int                  `json:"snapshots"` // looked at
	Repaired   []RepairedSnapshot   `json:"repaired"`
	Unreadable []UnreadableSnapshot `json:"unreadable"`
}

// RepairSnapshots reads every page of the selected snapshots and looks up
// every chunk of their messages in the index, as it is on the backend now
// (packs no index file lists are adopted, packs that are gone dropped). It
// refuses to run while an index file is damaged: what it lists would look
// lost. For each snapshot that lacks
// something (a page that does not read, a message with a chunk no index
// lists) it writes a new snapshot with all that is left, marked by
// Snapshot.Repaired, with the original's time. A folder that lost messages
// loses its cursor, so that the next backup lists it whole and stores
// again what the source still has. The index must be right first: run
// RepairIndex (with ReadData if packs are damaged) before. It takes an
// exclusive lock (a shared one for a dry run).
func (r *Repository) RepairSnapshots(ctx context.Context, opts *RepairSnapshotsOptions) (*RepairSnapshotsReport, error) {
	if opts == nil {
		opts = &RepairSnapshotsOptions{}
	}
	lock, err := r.Lock(ctx, !opts.DryRun)
	if err != nil {
		return nil, fmt.Errorf("repair snapshots: %w", err)
	}
	defer lock.Unlock()
	ctx = lock.Context(ctx)
	fail := func(err error) (*RepairSnapshotsReport, error) { return nil, fmt.Errorf("repair snapshots: %w", err) }
	if err := r.reloadIndex(ctx); err != nil {
		return fail(err)
	}
	if d := r.DamagedIndex(); len(d) > 0 {
		return fail(fmt.Errorf("index file %s: %w; repair the index first", strings.Join(d, ", "), ErrDamaged))
	}
	if _, err := r.adoptPacks(ctx, !opts.DryRun); err != nil {
		return fail(err)
	}
	rep := &RepairSnapshotsReport{Repaired: []RepairedSnapshot{}, Unreadable: []UnreadableSnapshot{}}
	ids := opts.IDs
	if ids == nil {
		if ids, err = r.SnapshotIDs(ctx); err != nil {
			return fail(err)
		}
		slices.SortFunc(ids, compareIDs)
	}
	for _, id := range ids {
		rep.Snapshots++
		snap, err := r.LoadSnapshot(ctx, id)
		if errors.Is(err, ErrDamaged) {
			u := UnreadableSnapshot{ID: id, Err: err.Error()}
			if opts.Forget && !opts.DryRun {
				if err := lock.Check(ctx); err != nil {
					return fail(err)
				}
				if err := r.be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: id.String()}); err != nil {
					return fail(err)
				}
				u.Removed = true
			}
			rep.Unreadable = append(rep.Unreadable, u)
			continue
		}
		if err != nil {
			return fail(err)
		}
		rs, err := r.repairSnapshot(ctx, lock, snap, opts)
		if err != nil {
			return fail(fmt.Errorf("snapshot %s: %w", id.Short(), err))
		}
		if rs != nil {
			rep.Repaired = append(rep.Repaired, *rs)
		}
	}
	return rep, nil
}

// repairSnapshot repairs one snapshot; it returns nil if nothing is
// missing.
func (r *Repository) repairSnapshot(ctx context.Context, lock *Lock, snap *Snapshot, opts *RepairSnapshotsOptions) (*RepairedSnapshot, error) {
	folders := slices.Clone(snap.Folders)
	var lost []Skipped
	var lostMessages int64
	var s *Saver
	defer func() {
		if s != nil {
			s.Flush()
		}
	}()
	for fi, f := range snap.Folders {
		// One folder's entries are kept in memory, to be written only if
		// something is missing.
		var kept []Entry
		var folderLost []Skipped
		for pi, page := range f.Pages {
			err := r.pageEntries(ctx, page, func(e Entry) error {
				for _, c := range e.ChunkIDs() {
					if !r.index.Has(c) {
						folderLost = append(folderLost, Skipped{Folder: f.Path, SourceID: e.SourceID, Error: fmt.Sprintf("chunk %s of the message is lost", c.Short())})
						return nil
					}
				}
				kept = append(kept, e)
				return nil
			})
			if err != nil {
				if !BlobLost(err) {
					return nil, fmt.Errorf("folder %q: %w", f.Path, err)
				}
				folderLost = append(folderLost, Skipped{Folder: f.Path, Error: fmt.Sprintf("page %d of %d (%s) of the message list is lost: %v", pi+1, len(f.Pages), page.Short(), err)})
			}
		}
		if len(folderLost) == 0 {
			continue
		}
		lost = append(lost, folderLost...)
		lostMessages += max(f.Messages-int64(len(kept)), 0)
		nf := f
		nf.Cursor = nil // the next backup lists the folder whole
		nf.Messages, nf.Bytes = int64(len(kept)), 0
		for _, e := range kept {
			nf.Bytes += e.Size
		}
		if !opts.DryRun {
			if s == nil {
				s = r.NewSaver(ctx)
			}
			pw := NewPageWriter(s)
			for i := range kept {
				if err := pw.Add(&kept[i]); err != nil {
					return nil, fmt.Errorf("folder %q: %w", f.Path, err)
				}
			}
			pages, _, _, err := pw.Finish()
			if err != nil {
				return nil, fmt.Errorf("folder %q: %w", f.Path, err)
			}
			nf.Pages = pages
		}
		folders[fi] = nf
	}
	if len(lost) == 0 {
		return nil, nil
	}
	rs := &RepairedSnapshot{Original: snap.ID, Lost: lost, LostMessages: lostMessages}
	if opts.DryRun {
		return rs, nil
	}
	_, err := s.Flush()
	s = nil
	if err != nil {
		return nil, err
	}
	fixed := *snap
	fixed.Folders = folders
	fixed.Summary.Messages, fixed.Summary.Bytes = 0, 0
	for _, f := range folders {
		fixed.Summary.Messages += f.Messages
		fixed.Summary.Bytes += f.Bytes
	}
	fixed.Repaired = &Repair{Original: snap.ID, Time: time.Now().UTC(), Lost: lost, LostMessages: lostMessages}
	if snap.Repaired != nil {
		// Repaired again: what was lost before is still lost.
		fixed.Repaired.Lost = append(slices.Clone(snap.Repaired.Lost), lost...)
		fixed.Repaired.LostMessages += snap.Repaired.LostMessages
	}
	// The new snapshot commits the repair: only under a lock that holds.
	if err := lock.Check(ctx); err != nil {
		return nil, err
	}
	if err := r.SaveSnapshot(ctx, &fixed); err != nil {
		return nil, err
	}
	rs.New = fixed.ID
	if opts.Forget {
		if err := lock.Check(ctx); err != nil {
			return nil, err
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: snap.ID.String()}); err != nil {
			return nil, err
		}
		rs.Forgotten = true
	}
	return rs, nil
}

// BlobLost reports whether err says that a blob is gone for good (damaged,
// not indexed, its pack missing), as opposed to a failure to reach it.
func BlobLost(err error) bool {
	return errors.Is(err, ErrDamaged) || errors.Is(err, errNotIndexed) || errors.Is(err, backend.ErrNotExist)
}
