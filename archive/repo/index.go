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

// addToIndex adds a pack's blobs to the in-memory index.
func (r *Repository) addToIndex(p PackInfo) {
	n := r.index.AddPack(p.ID)
	for _, f := range p.Header.Frames {
		var off uint32
		for _, bl := range f.Blobs {
			r.index.Add(bl.ID, dedup.Location{
				Pack: n, FrameOffset: f.Offset, FrameLength: f.Length, FrameRaw: f.RawLength,
				Offset: off, Length: bl.Length, Flags: f.Flags, Type: uint8(bl.Type),
			})
			off += bl.Length
		}
	}
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
	return r.LoadIndex(ctx)
}

// LoadIndex reads every index file into memory. A damaged index file
// (ErrDamaged) is skipped with a warning naming it, and listed by
// DamagedIndex: the packs it lists then look unindexed (a backup adopts
// them, RepairIndex indexes them again). Any other failure is an error.
// Most callers want EnsureIndex, which loads only once.
func (r *Repository) LoadIndex(ctx context.Context) error {
	_, err := r.loadIndex(ctx, false)
	return err
}

// RefreshIndex reads the index files written since the index was loaded
// (by a backup that ran meanwhile) and returns how many it read. It does
// not notice index files that were removed: a process that keeps a
// repository open while others write holds a lock, which keeps prune away.
// Before the index is loaded it reads nothing (the load, on first need,
// reads every file).
func (r *Repository) RefreshIndex(ctx context.Context) (int, error) {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if !r.indexLoaded.Load() {
		return 0, nil
	}
	return r.loadIndex(ctx, true)
}

// loadIndex reads the index files, or with onlyNew those not read yet.
func (r *Repository) loadIndex(ctx context.Context, onlyNew bool) (int, error) {
	var names []string
	err := r.be.List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		if _, err := dedup.ParseID(fi.Name); err != nil {
			if !onlyNew {
				r.log.Warn("ignoring a stray file in index/", "file", fi.Name)
			}
			return nil
		}
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("load index: %w", err)
	}
	if onlyNew {
		r.indexMu.Lock()
		names = slices.DeleteFunc(names, func(name string) bool {
			_, ok := r.indexFile[name]
			return ok || slices.Contains(r.damagedIndex, name)
		})
		r.indexMu.Unlock()
	}
	type result struct {
		name  string
		packs []PackInfo
		err   error
	}
	results := make([]result, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, name := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			packs, err := r.readIndexFile(ctx, name)
			results[i] = result{name, packs, err}
		}()
	}
	wg.Wait()
	var damaged []string
	for _, res := range results {
		if errors.Is(res.err, ErrDamaged) {
			r.log.Warn("damaged index file skipped; repairing the index rebuilds it from the packs", "file", "index/"+res.name, "err", res.err)
			damaged = append(damaged, res.name)
			if r.onDamagedIndex != nil {
				r.onDamagedIndex(res.name)
			}
			continue
		}
		if res.err != nil {
			return 0, fmt.Errorf("load index: %w", res.err)
		}
		ids := make([]dedup.ID, len(res.packs))
		for i, p := range res.packs {
			r.addToIndex(p)
			ids[i] = p.ID
		}
		r.indexMu.Lock()
		r.indexFile[res.name] = ids
		r.indexMu.Unlock()
	}
	r.indexMu.Lock()
	if onlyNew {
		damaged = append(damaged, r.damagedIndex...)
	}
	sort.Strings(damaged)
	r.damagedIndex = damaged
	r.indexMu.Unlock()
	r.indexLoaded.Store(true)
	return len(names), nil
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
	for _, id := range r.index.Packs() {
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
