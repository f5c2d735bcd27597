package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/dedup"
	"codeberg.org/planb/planb/imap/serve"
)

// archiveStore is the repository as planb serve shows it (serve.Store):
// each login reads the sources its patterns match. With one source, the
// newest snapshot is the top level (INBOX and its folders, special-use
// attributes kept) and every older snapshot is under
// "Snapshots/YYYY-MM-DD HH:MM/"; with several, each source is a top-level
// folder laid out that way, next to an empty INBOX. The newest snapshot
// is what "latest" names: a checkpoint (a backup that has not finished)
// only when no backup of the source has finished; other checkpoints are
// under "Snapshots/YYYY-MM-DD HH:MM (checkpoint)/".
//
// UIDVALIDITY and UIDs derive from the snapshots alone, so that they are
// the same after a restart: a folder's messages have UIDs 1..N in the
// snapshot's order, and its UIDVALIDITY is the time of the snapshot where
// the folder's content was last different (one more when two such times
// fall in the same second). A folder that did not change keeps its UIDs
// from one snapshot to the next; a changed one gets a greater UIDVALIDITY
// once its snapshot is the newest, and clients then read it again.
type archiveStore struct {
	r     *repo.Repository
	users map[string]*serveUser
	auth  *verifier
	log   *slog.Logger
	poll  time.Duration // how often to look for new snapshots, at most

	mu      sync.Mutex
	checked time.Time                      // when the snapshot list was last read
	snaps   []*repo.Snapshot               // oldest first
	ids     map[dedup.ID]*repo.Snapshot    // the same, by ID
	bad     map[dedup.ID]bool              // snapshots that did not load
	uidv    map[dedup.ID]map[string]uint32 // snapshot → folder path → UIDVALIDITY
	lists   map[[32]byte]*listing          // folder listings by their pages
	order   [][32]byte                     // lists, least recently used first
}

// cachedListings is how many folder listings the store keeps.
const cachedListings = 32

func newArchiveStore(r *repo.Repository, users map[string]*serveUser, poll time.Duration, log *slog.Logger) *archiveStore {
	return &archiveStore{
		r: r, users: users, auth: newVerifier(), log: log, poll: poll,
		ids: map[dedup.ID]*repo.Snapshot{}, bad: map[dedup.ID]bool{}, uidv: map[dedup.ID]map[string]uint32{}, lists: map[[32]byte]*listing{},
	}
}

func (s *archiveStore) Login(ctx context.Context, name, password string) (serve.User, error) {
	u := s.users[name]
	if !s.auth.check(name, u, password) {
		return nil, serve.ErrLogin
	}
	return &archiveUser{s: s, u: u}, nil
}

// refresh reads the snapshots that appeared (and forgets those removed)
// since the last look, at most every s.poll.
func (s *archiveStore) refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.checked.IsZero() && time.Since(s.checked) < s.poll {
		return nil
	}
	ids, err := s.r.SnapshotIDs(ctx)
	if err != nil {
		return err
	}
	var added []*repo.Snapshot
	present := map[dedup.ID]bool{}
	for _, id := range ids {
		present[id] = true
		if s.ids[id] != nil || s.bad[id] {
			continue
		}
		snap, err := s.r.LoadSnapshot(ctx, id)
		if err != nil {
			s.log.Warn("snapshot not served", "snapshot", id.Short(), "err", err)
			s.bad[id] = true
			continue
		}
		added = append(added, snap)
	}
	removed := false
	for id, snap := range s.ids {
		if !present[id] {
			removed = true
			delete(s.ids, id)
			s.snaps = slices.DeleteFunc(s.snaps, func(x *repo.Snapshot) bool { return x == snap })
		}
	}
	s.checked = time.Now()
	if len(added) == 0 && !removed {
		return nil
	}
	if len(added) > 0 {
		// The new snapshots' data is in index files written since.
		if err := s.r.RefreshIndex(ctx); err != nil {
			return err
		}
	}
	for _, snap := range added {
		s.ids[snap.ID] = snap
		s.snaps = append(s.snaps, snap)
	}
	sort.Slice(s.snaps, func(i, j int) bool {
		if !s.snaps[i].Time.Equal(s.snaps[j].Time) {
			return s.snaps[i].Time.Before(s.snaps[j].Time)
		}
		return s.snaps[i].ID.String() < s.snaps[j].ID.String()
	})
	s.uidv = uidValidities(s.snaps)
	return nil
}

// uidValidities computes the UIDVALIDITY of every folder of every
// snapshot (sorted oldest first): a folder whose pages are those of the
// same folder in the source's previous snapshot keeps its value; any
// other gets the snapshot's time, at least one more than the folder's
// previous value. Checkpoints are compared with the previous snapshot
// but are no previous snapshot themselves: a superseded checkpoint is
// removed, and the values of the others must not change with it.
func uidValidities(snaps []*repo.Snapshot) map[dedup.ID]map[string]uint32 {
	out := map[dedup.ID]map[string]uint32{}
	type state struct {
		pages []dedup.ID
		uidv  uint32
	}
	last := map[string]map[string]state{} // source → path → state
	for _, snap := range snaps {
		prev := last[snap.Source]
		next := map[string]state{}
		m := map[string]uint32{}
		t := uint32(max(1, min(snap.Time.Unix(), 1<<32-1)))
		for _, f := range snap.Folders {
			p, ok := prev[f.Path]
			v := p.uidv
			if !ok || !slices.Equal(p.pages, f.Pages) {
				v = max(t, p.uidv+1)
			}
			next[f.Path] = state{f.Pages, v}
			m[f.Path] = v
		}
		// A folder missing from a snapshot keeps its last value, so that
		// it goes on growing if the folder comes back.
		for path, p := range prev {
			if _, ok := next[path]; !ok {
				next[path] = state{nil, p.uidv}
			}
		}
		if !snap.Checkpoint {
			last[snap.Source] = next
		}
		out[snap.ID] = m
	}
	return out
}

// target is what a mailbox name of a login shows: folder i of a
// snapshot, or (snap nil) an empty mailbox.
type target struct {
	info   serve.MailboxInfo
	snap   *repo.Snapshot
	folder int
}

// layout returns the mailboxes of a login, by name.
func (s *archiveStore) layout(u *serveUser) map[string]target {
	s.mu.Lock()
	defer s.mu.Unlock()
	bySource := map[string][]*repo.Snapshot{}
	var sources []string
	for _, snap := range s.snaps {
		if !u.reads(snap.Source) {
			continue
		}
		if bySource[snap.Source] == nil {
			sources = append(sources, snap.Source)
		}
		bySource[snap.Source] = append(bySource[snap.Source], snap)
	}
	sort.Strings(sources)
	out := map[string]target{}
	if len(sources) != 1 {
		out["INBOX"] = target{info: serve.MailboxInfo{Name: "INBOX"}}
	}
	labels := sourceLabels(sources)
	for _, src := range sources {
		prefix := ""
		if len(sources) > 1 {
			prefix = labels[src] + "/"
		}
		snaps := bySource[src]
		// The top level is what "latest" names; a checkpoint only when
		// no backup of the source has finished yet.
		newest := latest(finished(snaps))
		if newest == nil {
			newest = latest(snaps)
		}
		stamps := snapshotStamps(snaps)
		for _, snap := range snaps {
			base := prefix + "Snapshots/" + stamps[snap.ID] + "/"
			if snap.Checkpoint {
				base = prefix + "Snapshots/" + stamps[snap.ID] + " (checkpoint)/"
			}
			top := snap == newest
			if top {
				base = prefix
			}
			for i, f := range snap.Folders {
				info := serve.MailboxInfo{Name: base + f.Path}
				if top {
					info.SpecialUse = f.SpecialUse
				}
				out[info.Name] = target{info: info, snap: snap, folder: i}
			}
		}
	}
	return out
}

// sourceLabels names the top-level folder of each source of a login with
// several: the mailbox's address, or with the kind of source when two
// sources have the same address.
func sourceLabels(sources []string) map[string]string {
	out := map[string]string{}
	count := map[string]int{}
	for _, src := range sources {
		_, _, addr := sourceAddress(src)
		if addr == "" {
			addr = src
		}
		out[src] = strings.ReplaceAll(addr, "/", "_")
		count[out[src]]++
	}
	for _, src := range sources {
		if count[out[src]] > 1 {
			kind, _, _ := strings.Cut(src, ":")
			if u, err := url.Parse(src); err == nil && u.Host != "" && kind != "graph" {
				kind += " " + u.Host
			}
			out[src] += " (" + strings.ReplaceAll(kind, "/", "_") + ")"
		}
	}
	return out
}

// snapshotStamps names the snapshots of one source by their local time to
// the minute, to the second where two share a minute, and with their ID
// where two share a second.
func snapshotStamps(snaps []*repo.Snapshot) map[dedup.ID]string {
	out := map[dedup.ID]string{}
	for _, snap := range snaps {
		out[snap.ID] = snap.Time.Local().Format("2006-01-02 15:04")
	}
	for _, more := range []func(*repo.Snapshot) string{
		func(snap *repo.Snapshot) string { return snap.Time.Local().Format("2006-01-02 15:04:05") },
		func(snap *repo.Snapshot) string { return out[snap.ID] + " " + snap.ID.Short() },
	} {
		count := map[string]int{}
		for _, st := range out {
			count[st]++
		}
		for _, snap := range snaps {
			if count[out[snap.ID]] > 1 {
				out[snap.ID] = more(snap)
			}
		}
	}
	return out
}

// archiveUser is one login's view (serve.User).
type archiveUser struct {
	s *archiveStore
	u *serveUser
}

func (a *archiveUser) Mailboxes(ctx context.Context) ([]serve.MailboxInfo, error) {
	if err := a.s.refresh(ctx); err != nil {
		return nil, err
	}
	var out []serve.MailboxInfo
	for _, t := range a.s.layout(a.u) {
		out = append(out, t.info)
	}
	return out, nil
}

func (a *archiveUser) Mailbox(ctx context.Context, name string) (serve.Mailbox, error) {
	if err := a.s.refresh(ctx); err != nil {
		return nil, err
	}
	t, ok := a.s.layout(a.u)[name]
	if !ok {
		return nil, fmt.Errorf("%q: %w", name, serve.ErrNoMailbox)
	}
	mb := &archiveMailbox{r: a.s.r, info: t.info, uidValidity: 1, list: &listing{}}
	if t.snap == nil {
		return mb, nil
	}
	a.s.mu.Lock()
	mb.uidValidity = a.s.uidv[t.snap.ID][t.snap.Folders[t.folder].Path]
	a.s.mu.Unlock()
	l, err := a.s.listing(ctx, t.snap, t.folder)
	if err != nil {
		return nil, err
	}
	mb.list = l
	return mb, nil
}

// listing is a folder's messages with their chunks.
type listing struct {
	msgs   []serve.Message
	chunks [][]dedup.ID
}

// listing returns the messages of folder i of snap. Listings are kept by
// their pages: a folder that did not change between snapshots is listed
// once.
func (s *archiveStore) listing(ctx context.Context, snap *repo.Snapshot, i int) (*listing, error) {
	h := sha256.New()
	for _, p := range snap.Folders[i].Pages {
		h.Write(p[:])
	}
	var key [32]byte
	h.Sum(key[:0])
	s.mu.Lock()
	l := s.lists[key]
	if l != nil {
		s.order = slices.DeleteFunc(s.order, func(k [32]byte) bool { return k == key })
		s.order = append(s.order, key)
	}
	s.mu.Unlock()
	if l != nil {
		return l, nil
	}
	l = &listing{}
	flags := map[string]string{} // one copy of each flag
	err := s.r.Entries(ctx, snap, i, func(e repo.Entry) error {
		fl := make([]string, len(e.Flags))
		for k, f := range e.Flags {
			if g, ok := flags[f]; ok {
				fl[k] = g
			} else {
				flags[f], fl[k] = f, f
			}
		}
		l.msgs = append(l.msgs, serve.Message{UID: uint32(len(l.msgs) + 1), Flags: fl, Date: e.Date, Size: e.Size, Wire: e.Wire, ID: e.ID})
		l.chunks = append(l.chunks, slices.Clip(e.Chunks))
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.lists[key] = l
	s.order = append(s.order, key)
	for len(s.order) > cachedListings {
		delete(s.lists, s.order[0])
		s.order = s.order[1:]
	}
	s.mu.Unlock()
	return l, nil
}

// archiveMailbox is one folder of one snapshot (serve.Mailbox).
type archiveMailbox struct {
	r           *repo.Repository
	info        serve.MailboxInfo
	uidValidity uint32
	list        *listing
}

func (m *archiveMailbox) Info() serve.MailboxInfo   { return m.info }
func (m *archiveMailbox) UIDValidity() uint32       { return m.uidValidity }
func (m *archiveMailbox) Messages() []serve.Message { return m.list.msgs }

func (m *archiveMailbox) Open(ctx context.Context, i int) (io.ReadSeekCloser, error) {
	msg := m.list.msgs[i]
	e := &repo.Entry{ID: msg.ID, Size: msg.Size, Chunks: m.list.chunks[i]}
	return damageReader{restore.NewReader(ctx, m.r, e)}, nil
}

// damageReader is a message's reader whose errors wrap serve.ErrDamaged
// where the message cannot be read however often it is tried
// (repo.BlobLost: a frame or blob that failed its checks, a pack that is
// gone, a blob the index does not list, as the server shows a snapshot
// only once the index files written with it are read). planb serve then
// refuses the message with NO from then on, instead of cutting a client
// off at it at every sync. Other errors (a network error of an S3
// repository, a closed connection) are left as they are.
type damageReader struct{ *restore.Reader }

func (d damageReader) Read(p []byte) (int, error) {
	n, err := d.Reader.Read(p)
	return n, markDamaged(err)
}

func (d damageReader) WriteTo(w io.Writer) (int64, error) {
	n, err := d.Reader.WriteTo(w)
	return n, markDamaged(err)
}

func (d damageReader) Seek(offset int64, whence int) (int64, error) {
	n, err := d.Reader.Seek(offset, whence)
	return n, markDamaged(err)
}

func markDamaged(err error) error {
	if err != nil && repo.BlobLost(err) {
		return fmt.Errorf("%w: %w", serve.ErrDamaged, err)
	}
	return err
}
