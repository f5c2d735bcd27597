package archivetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive"
)

// Msg is one message held by a Mailbox.
type Msg struct {
	SourceID     string
	Flags        []string
	InternalDate time.Time
	Body         []byte
}

// Fingerprint returns the fingerprint Mailbox reports for m: a digest of its
// bytes.
func (m Msg) Fingerprint() string {
	sum := sha256.Sum256(m.Body)
	return hex.EncodeToString(sum[:8])
}

// Mailbox is an in-memory mailbox: a set of folders, each an ordered list of
// messages. It is an archive.Source and an archive.Sink.
//
// As a Source, Sync with a nil (or foreign) cursor starts with Reset and
// reports every message; with a cursor it returned earlier it reports only
// what changed since (Put for new or changed messages, Delete for removed
// ones). Before putting a message it asks Changes.Have and calls Keep when
// the receiver already holds it. Cursors look like "mem:<n>".
//
// As a Sink, Put reads the whole body and appends the message to the folder
// last named with Folder. It keeps the message's SourceID when the folder
// does not hold it yet, else it assigns a new one.
//
// All methods are safe for concurrent use. The zero Mailbox is not usable:
// call NewMailbox.
type Mailbox struct {
	mu      sync.Mutex
	folders map[string]*memFolder
	seq     uint64 // last change number, shared by all folders
	nextID  uint64
	current string // folder last opened through the Sink interface
	closed  bool
}

type memFolder struct {
	info    archive.Folder
	msgs    []*memMsg
	byID    map[string]*memMsg
	deleted map[string]uint64 // source ID → change number of its deletion
}

type memMsg struct {
	Msg
	fp      string
	changed uint64 // change number of the last change
}

var (
	_ archive.Source = (*Mailbox)(nil)
	_ archive.Sink   = (*Mailbox)(nil)
)

// NewMailbox returns an empty Mailbox.
func NewMailbox() *Mailbox {
	return &Mailbox{folders: make(map[string]*memFolder)}
}

// AddFolder adds a folder, or updates its attributes when it exists.
func (mb *Mailbox) AddFolder(f archive.Folder) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.folder(f)
}

func (mb *Mailbox) folder(f archive.Folder) *memFolder {
	mf := mb.folders[f.Path]
	if mf == nil {
		mf = &memFolder{byID: make(map[string]*memMsg), deleted: make(map[string]uint64)}
		mb.folders[f.Path] = mf
	}
	mf.info = f
	return mf
}

// Add adds m to the folder with that path, creating the folder if needed. An
// empty SourceID gets a fresh one; a message with the same SourceID is
// replaced. Add returns the message's SourceID.
func (mb *Mailbox) Add(folder string, m Msg) string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mf := mb.folders[folder]
	if mf == nil {
		mf = mb.folder(archive.Folder{Path: folder})
	}
	if m.SourceID == "" {
		m.SourceID = mb.newID()
	}
	mb.seq++
	mm := &memMsg{Msg: cloneMsg(m), changed: mb.seq}
	mm.fp = mm.Fingerprint()
	delete(mf.deleted, m.SourceID)
	if old := mf.byID[m.SourceID]; old != nil {
		mf.msgs[mf.index(m.SourceID)] = mm
	} else {
		mf.msgs = append(mf.msgs, mm)
	}
	mf.byID[m.SourceID] = mm
	return m.SourceID
}

func (mb *Mailbox) newID() string {
	mb.nextID++
	return "m" + strconv.FormatUint(mb.nextID, 10)
}

// SetFlags replaces the flags of a message. It reports whether the message
// exists.
func (mb *Mailbox) SetFlags(folder, sourceID string, flags []string) bool {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mf := mb.folders[folder]
	if mf == nil {
		return false
	}
	i := mf.index(sourceID)
	if i < 0 {
		return false
	}
	mb.seq++
	mf.msgs[i].Flags = slices.Clone(flags)
	mf.msgs[i].changed = mb.seq
	mf.byID[sourceID] = mf.msgs[i]
	return true
}

// Remove removes a message. It reports whether the message existed.
func (mb *Mailbox) Remove(folder, sourceID string) bool {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mf := mb.folders[folder]
	if mf == nil {
		return false
	}
	i := mf.index(sourceID)
	if i < 0 {
		return false
	}
	mb.seq++
	mf.msgs = slices.Delete(mf.msgs, i, i+1)
	delete(mf.byID, sourceID)
	mf.deleted[sourceID] = mb.seq
	return true
}

// Messages returns copies of the messages of a folder, in order, or nil when
// the folder does not exist.
func (mb *Mailbox) Messages(folder string) []Msg {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mf := mb.folders[folder]
	if mf == nil {
		return nil
	}
	out := make([]Msg, len(mf.msgs))
	for i, m := range mf.msgs {
		out[i] = cloneMsg(m.Msg)
	}
	return out
}

// Count returns the number of messages in all folders.
func (mb *Mailbox) Count() int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	n := 0
	for _, mf := range mb.folders {
		n += len(mf.msgs)
	}
	return n
}

func (mf *memFolder) index(id string) int {
	if mf.byID[id] == nil {
		return -1
	}
	return slices.IndexFunc(mf.msgs, func(m *memMsg) bool { return m.SourceID == id })
}

func cloneMsg(m Msg) Msg {
	m.Flags = slices.Clone(m.Flags)
	m.Body = bytes.Clone(m.Body)
	return m
}

// Describe implements archive.Source.
func (mb *Mailbox) Describe() string { return "mem:" }

// Folders implements archive.Source. It lists the folders sorted by path.
func (mb *Mailbox) Folders(ctx context.Context) ([]archive.Folder, error) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	out := make([]archive.Folder, 0, len(mb.folders))
	for _, mf := range mb.folders {
		out = append(out, mf.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Sync implements archive.Source. The lock is not held while c runs, so c
// may use the Mailbox.
func (mb *Mailbox) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	var after uint64
	full := true
	if s, ok := strings.CutPrefix(string(since), "mem:"); ok && since != nil {
		n, err := strconv.ParseUint(s, 10, 64)
		if err == nil {
			after, full = n, false
		}
	}

	// Take a consistent picture under the lock, then report it without.
	mb.mu.Lock()
	mf := mb.folders[f.Path]
	if mf == nil {
		mb.mu.Unlock()
		return nil, fmt.Errorf("sync %q: no such folder", f.Path)
	}
	seq := mb.seq
	var puts []*memMsg
	for _, m := range mf.msgs {
		if full || m.changed > after {
			cp := *m
			cp.Msg = cloneMsg(m.Msg)
			puts = append(puts, &cp)
		}
	}
	var dels []string
	if !full {
		for id, n := range mf.deleted {
			if n > after {
				dels = append(dels, id)
			}
		}
		sort.Strings(dels)
	}
	mb.mu.Unlock()

	if full {
		if err := c.Reset(); err != nil {
			return nil, fmt.Errorf("sync %q: %w", f.Path, err)
		}
	}
	for _, m := range puts {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sync %q: %w", f.Path, err)
		}
		var err error
		if c.Have(m.SourceID, m.fp) {
			flags := m.Flags
			if flags == nil {
				flags = []string{}
			}
			err = c.Keep(m.SourceID, flags)
		} else {
			err = c.Put(&archive.Message{
				Folder:       f.Path,
				SourceID:     m.SourceID,
				Flags:        m.Flags,
				InternalDate: m.InternalDate,
				Size:         int64(len(m.Body)),
				Body:         bytes.NewReader(m.Body),
				Fingerprint:  m.fp,
			})
		}
		if err != nil {
			return nil, fmt.Errorf("sync %q message %s: %w", f.Path, m.SourceID, err)
		}
	}
	for _, id := range dels {
		if err := c.Delete(id); err != nil {
			return nil, fmt.Errorf("sync %q delete %s: %w", f.Path, id, err)
		}
	}
	return archive.Cursor("mem:" + strconv.FormatUint(seq, 10)), nil
}

// Folder implements archive.Sink.
func (mb *Mailbox) Folder(ctx context.Context, f archive.Folder) error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.closed {
		return fmt.Errorf("folder %q: mailbox sink closed", f.Path)
	}
	mb.folder(f)
	mb.current = f.Path
	return nil
}

// Put implements archive.Sink. It fails when the body does not yield Size
// bytes (Size -1 is not checked), so it also checks sources.
func (mb *Mailbox) Put(ctx context.Context, m *archive.Message) error {
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return fmt.Errorf("put %q message %s: %w", m.Folder, m.SourceID, err)
	}
	if m.Size >= 0 && int64(len(body)) != m.Size {
		return fmt.Errorf("put %q message %s: body has %d bytes, size says %d", m.Folder, m.SourceID, len(body), m.Size)
	}
	mb.mu.Lock()
	if mb.closed || mb.current == "" {
		mb.mu.Unlock()
		return fmt.Errorf("put message %s: no folder open", m.SourceID)
	}
	folder := mb.current
	id := m.SourceID
	if id == "" || mb.folders[folder].byID[id] != nil {
		id = mb.newID()
	}
	mb.mu.Unlock()
	mb.Add(folder, Msg{SourceID: id, Flags: m.Flags, InternalDate: m.InternalDate, Body: body})
	return nil
}

// Close implements archive.Sink. Later Folder and Put calls fail; the
// Source side keeps working.
func (mb *Mailbox) Close() error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.closed = true
	return nil
}

// WriteTo writes every folder (sorted by path) and its messages (in order)
// to sink. It does not close the sink.
func (mb *Mailbox) WriteTo(ctx context.Context, sink archive.Sink) error {
	folders, _ := mb.Folders(ctx)
	for _, f := range folders {
		if err := sink.Folder(ctx, f); err != nil {
			return err
		}
		for _, m := range mb.Messages(f.Path) {
			err := sink.Put(ctx, &archive.Message{
				Folder:       f.Path,
				SourceID:     m.SourceID,
				Flags:        m.Flags,
				InternalDate: m.InternalDate,
				Size:         int64(len(m.Body)),
				Body:         bytes.NewReader(m.Body),
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// Collect reads every folder of src from scratch (nil cursor) into a new
// Mailbox, keeping the source's folder attributes, source IDs, flags, dates
// and bytes. It fails when a message's body does not yield its Size.
func Collect(ctx context.Context, src archive.Source) (*Mailbox, error) {
	folders, err := src.Folders(ctx)
	if err != nil {
		return nil, err
	}
	mb := NewMailbox()
	for _, f := range folders {
		mb.AddFolder(f)
		c := &applier{mb: mb, folder: f.Path}
		if _, err := src.Sync(ctx, f, nil, c); err != nil {
			return nil, err
		}
	}
	return mb, nil
}

// applier applies a source's changes to one folder of a Mailbox.
type applier struct {
	mb     *Mailbox
	folder string
}

func (a *applier) Reset() error {
	a.mb.mu.Lock()
	defer a.mb.mu.Unlock()
	mf := a.mb.folders[a.folder]
	mf.msgs = nil
	clear(mf.byID)
	return nil
}

func (a *applier) Have(string, string) bool { return false }

func (a *applier) Keep(id string, flags []string) error {
	return fmt.Errorf("keep %s: not expected after Have returned false", id)
}

func (a *applier) Put(m *archive.Message) error {
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return err
	}
	if m.Size >= 0 && int64(len(body)) != m.Size {
		return fmt.Errorf("put %s: body has %d bytes, size says %d", m.SourceID, len(body), m.Size)
	}
	a.mb.Add(a.folder, Msg{SourceID: m.SourceID, Flags: m.Flags, InternalDate: m.InternalDate, Body: body})
	return nil
}

func (a *applier) Delete(id string) error {
	a.mb.Remove(a.folder, id)
	return nil
}

// Skip fails the collection: a test source must not skip.
func (a *applier) Skip(id string, err error) error {
	return fmt.Errorf("source skipped %s: %w", id, err)
}
