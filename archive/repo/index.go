package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

const indexMagic = "PBIX\x01"

// PackInfo is what an index file says about one pack.
type PackInfo struct {
	ID     dedup.ID
	Size   int64
	Header pack.Header
}

func encodeIndex(packs []PackInfo) []byte {
	b := []byte(indexMagic)
	b = binary.AppendUvarint(b, uint64(len(packs)))
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, uint64(p.Size))
		b = p.Header.AppendBinary(b)
	}
	return b
}

func decodeIndex(b []byte) ([]PackInfo, error) {
	if !bytes.HasPrefix(b, []byte(indexMagic)) {
		return nil, errors.New("bad index magic")
	}
	d := pack.NewDecoder(b[len(indexMagic):])
	n := d.Uvarint(1 << 24)
	var out []PackInfo
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		var p PackInfo
		p.ID = d.ID()
		p.Size = int64(d.Uvarint(1 << 32))
		p.Header = d.Header()
		out = append(out, p)
	}
	if d.Err() != nil {
		return nil, d.Err()
	}
	if len(d.Rest()) != 0 {
		return nil, errors.New("trailing bytes in index")
	}
	return out, nil
}

// blobs calls fn with each blob of the pack and its location, Pack
// unset.
func (p *PackInfo) blobs(fn func(id dedup.ID, loc dedup.Location)) {
	for _, f := range p.Header.Frames {
		var off uint32
		for _, bl := range f.Blobs {
			fn(bl.ID, dedup.Location{
				FrameOffset: f.Offset, FrameLength: f.Length, FrameRaw: f.RawLength,
				Offset: off, Length: bl.Length, Flags: f.Flags, Type: uint8(bl.Type),
			})
			off += bl.Length
		}
	}
}

// addToIndex adds a pack's blobs to the in-memory index.
func (r *Repository) addToIndex(p PackInfo) {
	n := r.index.AddPack(p.ID)
	p.blobs(func(id dedup.ID, loc dedup.Location) {
		loc.Pack = n
		r.index.Add(id, loc)
	})
	r.indexMu.Lock()
	r.packSize[p.ID] = p.Size
	r.indexMu.Unlock()
}

// EnsureIndex loads the index files into memory unless they are loaded
// already. It is safe for concurrent use: one caller loads, the others
// wait. A failed load is retried by the next call.
func (r *Repository) EnsureIndex(ctx context.Context) error {
	if r.indexLoaded.Load() {
		return nil
	}
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if r.indexLoaded.Load() {
		return nil
	}
	if r.runDir != "" {
		return r.loadRuns(ctx)
	}
	return r.LoadIndex(ctx)
}

// LoadIndex reads every index file into memory. A damaged index file
// (ErrDamaged) is skipped with a warning naming it, and listed by
// DamagedIndex: the packs it lists then look unindexed (a backup adopts
// them, RepairIndex indexes them again). Any other failure is an error.
// Most callers want EnsureIndex, which loads only once.
func (r *Repository) LoadIndex(ctx context.Context) error {
	names, err := r.indexNames(ctx, true)
	if err != nil {
		return err
	}
	results, err := r.readIndexFiles(ctx, names)
	if err != nil {
		return err
	}
	damaged := r.addIndexFiles(results)
	sort.Strings(damaged)
	r.indexMu.Lock()
	r.damagedIndex = damaged
	r.indexMu.Unlock()
	r.indexLoaded.Store(true)
	return nil
}

// RefreshIndex brings the in-memory index up to date with the index
// files that other processes wrote or removed since it was loaded: it
// reads the new ones, and forgets the packs that only removed ones listed
// (a prune elsewhere deleted or rewrote them), so that their blobs count
// as not stored. A Repository kept open across backups (planb watch)
// calls it before each, under the backup's lock; Open's index is current.
// It is safe to call concurrently with backups of the same Repository.
// Before the index is loaded it reads nothing (the load, on first need,
// reads every file).
func (r *Repository) RefreshIndex(ctx context.Context) error {
	if !r.indexLoaded.Load() {
		return nil
	}
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	// Only a file known before the listing started can be gone from it:
	// one that a backup of this Repository writes meanwhile is missing
	// from the listing because it is new.
	r.indexMu.Lock()
	before := make(map[string]bool, len(r.indexFile))
	for n := range r.indexFile {
		before[n] = true
	}
	r.indexMu.Unlock()
	names, err := r.indexNames(ctx, false)
	if err != nil {
		return err
	}
	r.indexMu.Lock()
	present := make(map[string]bool, len(names))
	var fresh []string
	for _, n := range names {
		present[n] = true
		if _, known := r.indexFile[n]; !known && !slices.Contains(r.damagedIndex, n) {
			fresh = append(fresh, n)
		}
	}
	var gone []string
	for n := range r.indexFile {
		if !present[n] && before[n] {
			gone = append(gone, n)
		}
	}
	r.indexMu.Unlock()
	if len(fresh) == 0 && len(gone) == 0 {
		return nil
	}
	results, err := r.readIndexFiles(ctx, fresh)
	if err != nil {
		return err
	}
	// The packs still listed somewhere: by a known file that is still
	// there, by one written since the listing, or by a new one.
	listed := make(map[dedup.ID]bool)
	r.indexMu.Lock()
	for n, ids := range r.indexFile {
		if present[n] || !before[n] {
			for _, id := range ids {
				listed[id] = true
			}
		}
	}
	var drop []dedup.ID
	for _, n := range gone {
		drop = append(drop, r.indexFile[n]...)
		delete(r.indexFile, n)
	}
	r.indexMu.Unlock()
	for _, res := range results {
		for _, p := range res.packs {
			listed[p.ID] = true
		}
	}
	dropped := 0
	for _, id := range drop {
		if !listed[id] && r.index.HasPack(id) {
			r.index.RemovePack(id)
			r.indexMu.Lock()
			delete(r.packSize, id)
			r.indexMu.Unlock()
			dropped++
		}
	}
	a := r.newIndexAdder()
	a.add(results)
	damaged := a.finish()
	r.indexMu.Lock()
	r.damagedIndex = append(r.damagedIndex, damaged...)
	sort.Strings(r.damagedIndex)
	r.indexMu.Unlock()
	r.log.Debug("index refreshed", "new_files", len(fresh), "removed_files", len(gone), "packs_dropped", dropped)
	return nil
}

// indexNames lists the index files; with warn, a warning names each
// stray file of index/.
func (r *Repository) indexNames(ctx context.Context, warn bool) ([]string, error) {
	var names []string
	if err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		if _, err := dedup.ParseID(fi.Name); err != nil {
			if warn {
				r.log.Warn("ignoring a stray file in index/", "file", fi.Name)
			}
			return nil
		}
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load index: %w", err)
	}
	return names, nil
}

// indexResult is one index file read.
type indexResult struct {
	name  string
	packs []PackInfo
	err   error
}

// readIndexFiles reads the index files names, four at a time. A damaged
// one is in the results with its error; any other failure is returned.
func (r *Repository) readIndexFiles(ctx context.Context, names []string) ([]indexResult, error) {
	results := make([]indexResult, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			packs, err := r.readIndexFile(ctx, name)
			results[i] = indexResult{name, packs, err}
		}()
	}
	wg.Wait()
	for _, res := range results {
		if res.err != nil && !errors.Is(res.err, ErrDamaged) {
			return nil, fmt.Errorf("load index: %w", res.err)
		}
	}
	return results, nil
}

// addIndexFiles adds what the index files read list to the in-memory
// index and returns the names of the damaged ones, each named in a
// warning.
func (r *Repository) addIndexFiles(results []indexResult) []string {
	var damaged []string
	for _, res := range results {
		if res.err != nil {
			damaged = append(damaged, r.warnDamaged(res))
			continue
		}
		r.addIndexFile(res)
	}
	return damaged
}

// warnDamaged warns of a damaged index file and returns its name.
func (r *Repository) warnDamaged(res indexResult) string {
	r.log.Warn("damaged index file skipped; repairing the index rebuilds it from the packs", "file", "index/"+res.name, "err", res.err)
	if r.onDamagedIndex != nil {
		r.onDamagedIndex(res.name)
	}
	return res.name
}

// addIndexFile adds the packs of one index file read to the map.
func (r *Repository) addIndexFile(res indexResult) {
	ids := make([]dedup.ID, len(res.packs))
	for i, p := range res.packs {
		r.addToIndex(p)
		ids[i] = p.ID
	}
	r.indexMu.Lock()
	r.indexFile[res.name] = ids
	r.indexMu.Unlock()
}

// DamagedIndex returns the names of the index files the last load of the
// index skipped as damaged, sorted; none before the index is loaded.
func (r *Repository) DamagedIndex() []string {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	return slices.Clone(r.damagedIndex)
}

func (r *Repository) readIndexFile(ctx context.Context, name string) ([]PackInfo, error) {
	b, err := r.loadSealed(ctx, backend.Handle{Type: backend.IndexFile, Name: name})
	if err != nil {
		return nil, err
	}
	packs, err := decodeIndex(b)
	if err != nil {
		return nil, asDamaged(fmt.Errorf("index/%s: %w", name, err))
	}
	return packs, nil
}

// SaveIndex writes one index file listing packs and returns its name.
func (r *Repository) SaveIndex(ctx context.Context, packs []PackInfo) (string, error) {
	id, err := r.saveSealedNamed(ctx, backend.IndexFile, encodeIndex(packs))
	if err != nil {
		return "", fmt.Errorf("save index: %w", err)
	}
	ids := make([]dedup.ID, len(packs))
	for i, p := range packs {
		ids[i] = p.ID
	}
	r.indexMu.Lock()
	r.indexFile[id.String()] = ids
	r.indexMu.Unlock()
	return id.String(), nil
}

// ReadPackHeader reads a pack's header from the pack itself. A header that
// does not parse is an error wrapping ErrDamaged.
func (r *Repository) ReadPackHeader(ctx context.Context, id dedup.ID, size int64) (pack.Header, error) {
	h := backend.Handle{Type: backend.PackFile, Name: id.String()}
	tailLen := min(size, 64<<10)
	for range 2 {
		rd, err := r.be.Load(ctx, h, size-tailLen, tailLen)
		if err != nil {
			return pack.Header{}, err
		}
		tail := make([]byte, tailLen)
		_, err = io.ReadFull(rd, tail)
		rd.Close()
		if err != nil {
			return pack.Header{}, fmt.Errorf("%s: %w", h, err)
		}
		hdr, need, err := pack.ParseHeader(r.key, tail, size)
		if err != nil {
			return hdr, asDamaged(fmt.Errorf("%s: %w", h, err))
		}
		if need == 0 {
			return hdr, nil
		}
		tailLen = int64(need)
	}
	return pack.Header{}, asDamaged(fmt.Errorf("%s: header not found", h))
}

// AdoptPacks indexes packs that exist but no index file lists (left by a
// killed backup, or being written by a concurrent one) so that their blobs
// are reused. It returns how many packs it adopted. Indexed packs that are
// gone it drops from the in-memory index (with a warning), so that their
// blobs count as not stored: a backup stores them again.
func (r *Repository) AdoptPacks(ctx context.Context) (int, error) { return r.adoptPacks(ctx, true) }

// adoptPacks is AdoptPacks; without save it only indexes the orphan packs
// in memory.
func (r *Repository) adoptPacks(ctx context.Context, save bool) (int, error) {
	if err := r.EnsureIndex(ctx); err != nil {
		return 0, fmt.Errorf("adopt packs: %w", err)
	}
	// Only a pack indexed before the listing started can be missing from
	// it: one that a backup of this Repository saves meanwhile is absent
	// because it is new.
	indexed := r.index.Packs()
	var orphans []backend.FileInfo
	onDisk := make(map[dedup.ID]bool)
	err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := dedup.ParseID(fi.Name)
		if err != nil {
			return nil
		}
		onDisk[id] = true
		if !r.index.HasPack(id) {
			orphans = append(orphans, fi)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("adopt packs: %w", err)
	}
	for _, id := range indexed {
		if !onDisk[id] {
			r.log.Warn("indexed pack is missing; repairing the index drops it", "pack", id.String())
			r.index.RemovePack(id)
			r.indexMu.Lock()
			delete(r.packSize, id)
			r.indexMu.Unlock()
		}
	}
	var infos []PackInfo
	for _, fi := range orphans {
		id, _ := dedup.ParseID(fi.Name)
		hdr, err := r.ReadPackHeader(ctx, id, fi.Size)
		if err != nil {
			r.log.Warn("unreadable pack left unindexed", "pack", fi.Name, "err", err)
			continue
		}
		p := PackInfo{ID: id, Size: fi.Size, Header: hdr}
		r.addToIndex(p)
		infos = append(infos, p)
	}
	if len(infos) > 0 && save {
		if _, err := r.SaveIndex(ctx, infos); err != nil {
			return 0, err
		}
	}
	return len(infos), nil
}
