package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"os/user"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/pack"
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
	stats, flushErr := saver.Flush()
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

	snap := &repo.Snapshot{
		Time:    start.UTC(),
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

func findParent(ctx context.Context, r *repo.Repository, source, host string) (*repo.Snapshot, error) {
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		if snaps[i].Source == source && snaps[i].Host == host {
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

// folder syncs one folder and returns its new entry.
func (b *run) folder(ctx context.Context, f archive.Folder, parent *repo.Snapshot, prev *repo.FolderEntry) (repo.FolderEntry, error) {
	st := &state{run: b, folder: f.Path, byID: make(map[string]int)}
	var cursor archive.Cursor
	if prev != nil {
		cursor = prev.Cursor
		idx := 0
		for i := range parent.Folders {
			if &parent.Folders[i] == prev {
				idx = i
			}
		}
		err := b.r.Entries(ctx, parent, idx, func(e repo.Entry) error {
			st.add(e)
			return nil
		})
		if err != nil {
			// A damaged parent only costs speed: start from scratch.
			b.log.Warn("parent folder unreadable, full backup", "folder", f.Path, "err", err)
			st = &state{run: b, folder: f.Path, byID: make(map[string]int)}
			cursor = nil
		}
	}
	st.chunker = dedup.NewChunker(b.params, nil)
	newCursor, err := b.src.Sync(ctx, f, cursor, st)
	if err != nil {
		return repo.FolderEntry{}, err
	}
	if st.fatal != nil {
		return repo.FolderEntry{}, st.fatal
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

// state is one folder's message list while its source reports changes. It
// implements archive.Changes. Deleted entries keep their slot with an empty
// SourceID so that order is stable.
type state struct {
	run     *run
	folder  string
	entries []repo.Entry
	byID    map[string]int
	seen    map[string]bool // during a Reset listing
	reset   bool
	chunker *dedup.Chunker
	buf     []byte
	fatal   error
	skips   int
}

var _ archive.Changes = (*state)(nil)

func (s *state) add(e repo.Entry) {
	if i, ok := s.byID[e.SourceID]; ok {
		s.entries[i] = e
		return
	}
	s.byID[e.SourceID] = len(s.entries)
	s.entries = append(s.entries, e)
}

func (s *state) Reset() error {
	s.reset = true
	s.seen = make(map[string]bool)
	return nil
}

func (s *state) mark(id string) {
	if s.seen != nil {
		s.seen[id] = true
	}
}

func (s *state) dropUnseen() {
	for i := range s.entries {
		if id := s.entries[i].SourceID; id != "" && !s.seen[id] {
			delete(s.byID, id)
			s.entries[i].SourceID = ""
		}
	}
}

func (s *state) Have(sourceID, fingerprint string) bool {
	i, ok := s.byID[sourceID]
	return ok && fingerprint != "" && s.entries[i].Fingerprint == fingerprint
}

func (s *state) Keep(sourceID string, flags []string) error {
	i, ok := s.byID[sourceID]
	if !ok {
		return fmt.Errorf("keep %q: unknown message", sourceID)
	}
	if flags != nil {
		s.entries[i].Flags = flags
	}
	s.mark(sourceID)
	return nil
}

func (s *state) Delete(sourceID string) error {
	if i, ok := s.byID[sourceID]; ok {
		s.entries[i].SourceID = ""
		delete(s.byID, sourceID)
	}
	return nil
}

// Skip names a message the source could not read; the folder keeps the
// parent's version of it, if any.
func (s *state) Skip(sourceID string, err error) error {
	s.mark(sourceID)
	s.skips++
	s.run.skip(s.folder, sourceID, err)
	return nil
}

// Put stores a message. A body that cannot be read costs that message only
// (it is named and the folder keeps its previous version, if any); a
// repository failure ends the run.
func (s *state) Put(m *archive.Message) error {
	if s.fatal != nil {
		return s.fatal
	}
	s.mark(m.SourceID)
	e, err := s.store(m)
	if err != nil {
		if errors.Is(err, errFatal) {
			s.fatal = err
			return err
		}
		s.skips++
		s.run.skip(s.folder, m.SourceID, err)
		return nil
	}
	s.add(e)
	s.run.mu.Lock()
	s.run.newMessages++
	s.run.newBytes += e.Size
	s.run.mu.Unlock()
	s.run.prog.Add(archive.Counts{Messages: 1})
	return nil
}

// readErr marks an error of the message body (as opposed to the repository).
type readErr struct{ err error }

func (e readErr) Error() string { return "read message: " + e.err.Error() }
func (e readErr) Unwrap() error { return e.err }

type errReader struct {
	r io.Reader
	n int64
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}

func (s *state) store(m *archive.Message) (repo.Entry, error) {
	e := repo.Entry{SourceID: m.SourceID, Flags: m.Flags, Date: m.InternalDate, Fingerprint: m.Fingerprint}
	body := &errReader{r: m.Body}
	var whole hash.Hash
	var chunks []dedup.ID
	var err error
	if m.Size >= 0 && m.Size < int64(s.run.params.MinSize) {
		// A small message is one chunk: no need for the chunker.
		if cap(s.buf) < int(m.Size)+1 {
			s.buf = make([]byte, 0, s.run.params.MinSize)
		}
		data, rerr := readSmall(body, s.buf[:0], int(s.run.params.MinSize))
		if rerr != nil {
			return e, rerr
		}
		if len(data) < int(s.run.params.MinSize) {
			e.ID = dedup.Hash(data)
			if len(data) > 0 {
				if err := s.addChunk(data, e.ID); err != nil {
					return e, err
				}
			}
			e.Size = int64(len(data))
			s.report(int64(len(data)))
			return e, nil
		}
		// The size was wrong: fall back to chunking what we read and the rest.
		body = &errReader{r: io.MultiReader(bytes.NewReader(append([]byte(nil), data...)), body)}
	}
	whole = sha256.New()
	s.chunker.Reset(io.TeeReader(body, whole))
	for {
		if cap(s.buf) < int(s.run.params.MaxSize) {
			s.buf = make([]byte, 0, s.run.params.MaxSize)
		}
		data, cerr := s.chunker.Next(s.buf[:0])
		if cerr == io.EOF {
			break
		}
		if cerr != nil {
			return e, cerr
		}
		id := dedup.Hash(data)
		if err = s.addChunk(data, id); err != nil {
			return e, err
		}
		chunks = append(chunks, id)
		e.Size += int64(len(data))
		s.report(int64(len(data)))
	}
	copy(e.ID[:], whole.Sum(nil))
	if len(chunks) > 1 || (len(chunks) == 1 && chunks[0] != e.ID) {
		e.Chunks = chunks
	}
	return e, nil
}

func (s *state) report(n int64) { s.run.prog.Add(archive.Counts{Bytes: n}) }

func (s *state) addChunk(data []byte, id dedup.ID) error {
	if _, err := s.run.saver.Add(pack.DataBlob, id, data); err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	return nil
}

// readSmall reads up to limit bytes into buf.
func readSmall(r io.Reader, buf []byte, limit int) ([]byte, error) {
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}
