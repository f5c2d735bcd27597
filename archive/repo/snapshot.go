package repo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/dedup"
)

// Snapshot is the state of one source at one time.
type Snapshot struct {
	ID       dedup.ID      `json:"-"`
	Version  int           `json:"version"`
	Time     time.Time     `json:"time"`
	Host     string        `json:"host"`
	Username string        `json:"username,omitempty"`
	Tags     []string      `json:"tags,omitempty"`
	Source   string        `json:"source"`
	Parent   *dedup.ID     `json:"parent,omitempty"`
	Partial  bool          `json:"partial,omitempty"`
	Skipped  []Skipped     `json:"skipped,omitempty"`
	Folders  []FolderEntry `json:"folders"`
	Summary  Summary       `json:"summary"`
	// Repaired marks a snapshot written by RepairSnapshots in place of a
	// damaged one, and says what it lost.
	Repaired *Repair `json:"repaired,omitempty"`
	// Checkpoint marks the state of a backup that has not finished: the
	// folders it finished, with their cursors, and the messages it stored
	// so far in the others, without a cursor. The next backup of the same
	// source takes it as its parent; "latest" and retention pass it over.
	Checkpoint bool `json:"checkpoint,omitempty"`
}

// Supersedes reports whether s makes the checkpoint c obsolete: s is
// another snapshot of the same source and host, and either newer than c,
// or of the same backup (same time) and complete or written later (a
// longer Summary.Duration). A backup that takes c, or a snapshot as new as
// c, as its parent starts from at least what c holds.
func (s *Snapshot) Supersedes(c *Snapshot) bool {
	if !c.Checkpoint || s.ID == c.ID || s.Source != c.Source || s.Host != c.Host {
		return false
	}
	if !s.Time.Equal(c.Time) {
		return s.Time.After(c.Time)
	}
	return !s.Checkpoint || s.Summary.Duration > c.Summary.Duration
}

// Skipped names a message (or a folder, with SourceID empty) that a run
// could not store or restore.
type Skipped struct {
	Folder   string `json:"folder"`
	SourceID string `json:"source_id,omitempty"`
	Error    string `json:"error"`
}

// FolderEntry is one folder of a snapshot: its description, the source's
// cursor and the pages listing its messages.
type FolderEntry struct {
	archive.Folder
	Cursor   []byte     `json:"cursor,omitempty"`
	Pages    []dedup.ID `json:"pages"`
	Messages int64      `json:"messages"`
	Bytes    int64      `json:"bytes"`
}

// Summary counts what a backup did.
type Summary struct {
	Messages    int64         `json:"messages"`
	Bytes       int64         `json:"bytes"`
	NewMessages int64         `json:"new_messages"`
	NewBytes    int64         `json:"new_bytes"`
	AddedBlobs  int64         `json:"added_blobs"`
	AddedStored int64         `json:"added_stored"`
	Duration    time.Duration `json:"duration"`
}

// Entry is one message of a folder in a snapshot.
type Entry struct {
	ID       dedup.ID  `json:"id"` // SHA-256 of the whole message
	SourceID string    `json:"sid"`
	Flags    []string  `json:"f,omitempty"`
	Date     time.Time `json:"d"`
	Size     int64     `json:"s"`
	// Wire is the message's size with CRLF line ends (mailform's), as
	// IMAP sends it: planb serve answers RFC822.SIZE and starts a
	// literal without reading the message. 0: not recorded (an entry
	// first written before it was, and carried over since), unless Size
	// is 0 too.
	Wire        int64      `json:"w,omitempty"`
	Fingerprint string     `json:"fp,omitempty"`
	Labels      []string   `json:"l,omitempty"` // archive.Message.Labels
	Chunks      []dedup.ID `json:"c,omitempty"` // empty: one chunk equal to ID (or none if Size is 0)
}

// ChunkIDs returns the IDs of the message's chunks in order.
func (e *Entry) ChunkIDs() []dedup.ID {
	if len(e.Chunks) > 0 {
		return e.Chunks
	}
	if e.Size == 0 {
		return nil
	}
	return []dedup.ID{e.ID}
}

// Pages: a folder's entries are cut into pages at content-defined points
// (after an entry whose ID starts with a zero byte, or after maxPage
// entries), so that adding, removing or changing a few messages rewrites
// only the pages around them. A page is also cut before an entry that
// would take it over maxPageBytes, so that it stays far below the frame
// limit readers enforce (pack.MaxFrameRaw) even for a folder of huge
// messages of thousands of chunks each.
const (
	maxPage      = 1024
	maxPageBytes = 4 << 20
)

func pageBreak(e *Entry, n int) bool { return e.ID[0] == 0 || n >= maxPage }

// PageWriter turns a folder's entries into stored pages.
type PageWriter struct {
	s     *Saver
	buf   bytes.Buffer
	n     int
	pages []dedup.ID
	count int64
	bytes int64
}

// NewPageWriter returns a writer storing pages through s.
func NewPageWriter(s *Saver) *PageWriter { return &PageWriter{s: s} }

// Add appends one entry. An entry too large for any page (a message of
// hundreds of thousands of chunks) is an error.
func (w *PageWriter) Add(e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if len(b)+1 > pack.MaxFrameRaw {
		return fmt.Errorf("message %s: %d chunks are too many for a page", e.SourceID, len(e.Chunks))
	}
	if w.n > 0 && w.buf.Len()+len(b)+1 > maxPageBytes {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.buf.Write(b)
	w.buf.WriteByte('\n')
	w.n++
	w.count++
	w.bytes += e.Size
	if pageBreak(e, w.n) {
		return w.flush()
	}
	return nil
}

func (w *PageWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	data := w.buf.Bytes()
	id := dedup.Hash(data)
	if _, err := w.s.Add(pack.TreeBlob, id, data); err != nil {
		return err
	}
	w.pages = append(w.pages, id)
	w.buf.Reset()
	w.n = 0
	return nil
}

// Finish stores the last page and returns the page IDs, message count and
// byte total.
func (w *PageWriter) Finish() ([]dedup.ID, int64, int64, error) {
	err := w.flush()
	return w.pages, w.count, w.bytes, err
}

// Entries calls fn for every message of folder number folder of snap, in
// order.
func (r *Repository) Entries(ctx context.Context, snap *Snapshot, folder int, fn func(Entry) error) error {
	if folder < 0 || folder >= len(snap.Folders) {
		return fmt.Errorf("snapshot %s has no folder %d", snap.ID.Short(), folder)
	}
	for _, p := range snap.Folders[folder].Pages {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.pageEntries(ctx, p, fn); err != nil {
			return fmt.Errorf("folder %q: %w", snap.Folders[folder].Path, err)
		}
	}
	return nil
}

func (r *Repository) pageEntries(ctx context.Context, page dedup.ID, fn func(Entry) error) error {
	data, err := r.LoadBlob(ctx, page)
	if err != nil {
		return err
	}
	fnFailed := false
	err = decodePage(data, func(e Entry) error {
		err := fn(e)
		fnFailed = err != nil
		return err
	})
	if err != nil && !fnFailed {
		return &BlobError{ID: page, Err: asDamaged(err)}
	}
	return err
}

// decodePage calls fn for every entry of a page's plaintext (one JSON
// object a line), in order, and stops at the first error, fn's or a line
// that is not an entry.
func decodePage(data []byte, fn func(Entry) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for sc.Scan() {
		var e Entry
		if !decodeLine(sc.Bytes(), &e) {
			e = Entry{}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				return fmt.Errorf("page: %w", err)
			}
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return sc.Err()
}

// SnapshotVersion is the version of the snapshots this code writes: 2,
// whose page entries may carry labels (Entry.Labels). Version 1 snapshots
// (the same without labels) read the same way.
const SnapshotVersion = 2

// SaveSnapshot stores snap and sets its ID.
func (r *Repository) SaveSnapshot(ctx context.Context, snap *Snapshot) error {
	snap.Version = SnapshotVersion
	b, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	id, err := r.saveSealedNamed(ctx, backend.SnapshotFile, b)
	if err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	snap.ID = id
	return nil
}

// LoadSnapshot loads one snapshot by its full ID.
func (r *Repository) LoadSnapshot(ctx context.Context, id dedup.ID) (*Snapshot, error) {
	b, err := r.loadSealed(ctx, backend.Handle{Type: backend.SnapshotFile, Name: id.String()})
	if err != nil {
		return nil, err
	}
	s, err := decodeSnapshot(b)
	if err != nil {
		return nil, asDamaged(fmt.Errorf("snapshot %s: %w", id.Short(), err))
	}
	s.ID = id
	return s, nil
}

// decodeSnapshot decodes a snapshot file's plaintext.
func decodeSnapshot(b []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// SnapshotIDs lists the IDs of all snapshots.
func (r *Repository) SnapshotIDs(ctx context.Context) ([]dedup.ID, error) {
	var ids []dedup.ID
	err := r.be.List(ctx, backend.SnapshotFile, func(fi backend.FileInfo) error {
		if id, err := dedup.ParseID(fi.Name); err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	return ids, err
}

// Snapshots loads every snapshot, oldest first; one removed between the
// listing and its loading is left out. If some cannot be loaded,
// it returns the others along with an error naming those (wrapping
// ErrDamaged if they are damaged): callers that need every snapshot, as
// prune does, stop on the error; listings may show the rest.
func (r *Repository) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	out := make([]*Snapshot, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s, err := r.LoadSnapshot(ctx, id)
			if errors.Is(err, backend.ErrNotExist) {
				return // forgotten since it was listed (by a watch's retention, say)
			}
			out[i], errs[i] = s, err
		}()
	}
	wg.Wait()
	var failed []error
	out = slices.DeleteFunc(out, func(s *Snapshot) bool { return s == nil })
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	if len(failed) > 0 {
		return out, fmt.Errorf("load snapshots: %w", errors.Join(failed...))
	}
	return out, nil
}

// FindSnapshot resolves "latest" or an ID prefix. "latest" is the newest
// snapshot that is not a checkpoint; a prefix may name a checkpoint.
func (r *Repository) FindSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	if ref == "latest" {
		snaps, err := r.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		for i := len(snaps) - 1; i >= 0; i-- {
			if !snaps[i].Checkpoint {
				return snaps[i], nil
			}
		}
		if len(snaps) > 0 {
			return nil, fmt.Errorf("latest: %w, only %d checkpoints of unfinished backups (name one by its ID)", ErrNoSnapshot, len(snaps))
		}
		return nil, fmt.Errorf("latest: %w", ErrNoSnapshot)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var match []dedup.ID
	for _, id := range ids {
		if ref != "" && strings.HasPrefix(id.String(), strings.ToLower(ref)) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("snapshot %q: %w", ref, ErrNoSnapshot)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot %q: prefix matches %d snapshots", ref, len(match))
}

// Forget removes snapshots under an exclusive lock. Their data stays until
// prune. It stops with ErrLockLost, before it removes any further
// snapshot, once that lock is lost.
func (r *Repository) Forget(ctx context.Context, ids []dedup.ID) error {
	lock, err := r.Lock(ctx, true)
	if err != nil {
		return fmt.Errorf("forget: %w", err)
	}
	defer lock.Unlock()
	if err := lock.Check(ctx); err != nil {
		return fmt.Errorf("forget: %w", err)
	}
	for _, id := range ids {
		if err := lock.Err(); err != nil {
			return fmt.Errorf("forget: %w", err)
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: id.String()}); err != nil {
			return fmt.Errorf("forget %s: %w", id.Short(), err)
		}
	}
	return nil
}

// RemoveCheckpoints removes checkpoint snapshots that a backup has
// superseded. Unlike Forget it takes no lock of its own: the caller, a
// backup, holds a shared lock. Removing a snapshot file frees no data
// (only prune does, under an exclusive lock), and the backup of the same
// source that could take a checkpoint as its parent has already loaded it.
// It removes only snapshots that load and are checkpoints, and refuses to
// remove anything from an append-only repository.
func (r *Repository) RemoveCheckpoints(ctx context.Context, ids []dedup.ID) error {
	if r.AppendOnly() {
		return errors.New("remove checkpoints: append-only repository")
	}
	for _, id := range ids {
		s, err := r.LoadSnapshot(ctx, id)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("remove checkpoint %s: %w", id.Short(), err)
		}
		if !s.Checkpoint {
			return fmt.Errorf("remove checkpoint %s: not a checkpoint", id.Short())
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.SnapshotFile, Name: id.String()}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("remove checkpoint %s: %w", id.Short(), err)
		}
	}
	return nil
}
