package imap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backoff"
	"codeberg.org/planb/planb/archive/mutf7"
)

// Source reads an IMAP account. It implements archive.Source; Sync may be
// called concurrently for different folders. Close it when done.
type Source struct {
	opts Options
	log  *slog.Logger
	pool *pool

	mu        sync.Mutex
	mailboxes map[string]string // Folder.Path → mailbox name (UTF-8) for Select
	// allMail is the path of the folder read in label mode (Gmail's All
	// Mail), or "" (see gmail.go).
	allMail string
	// names are the names (UTF-8) of every mailbox listed last, wanted
	// or not: the labels' folders (gmail.go).
	names map[string]bool
	// limit, once set, is the error of the server's download limit:
	// later syncs stop at once.
	limit      error
	idler      *conn     // Idle's connection, outside the pool
	idleFolder string    // the folder it EXAMINEs
	notifier   *notifier // Notify's connection, outside the pool

	bodies    atomic.Int64
	bodyBytes atomic.Int64
}

var _ archive.Source = (*Source)(nil)

// New returns a Source for the account in opts. It does not connect: the
// first call to Folders does. opts is copied.
func New(opts *Options) (*Source, error) {
	if opts == nil || opts.Host == "" || opts.User == "" {
		return nil, errors.New("imap source: host and user are required")
	}
	o := *opts
	if o.Connections <= 0 {
		o.Connections = 4
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	for _, g := range append(slices.Clone(o.Folders), o.Exclude...) {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("imap source: bad folder glob %q: %w", g, err)
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{opts: o, log: log, mailboxes: make(map[string]string)}
	s.pool = &pool{opts: &s.opts, sem: make(chan struct{}, o.Connections)}
	return s, nil
}

// Describe returns "imaps://user@host" (or imap://, and a port that is not
// the default one).
func (s *Source) Describe() string { return s.opts.describe() }

// Close logs out every idle connection.
func (s *Source) Close() error {
	s.mu.Lock()
	idler, n := s.idler, s.notifier
	s.idler, s.idleFolder, s.notifier = nil, "", nil
	s.mu.Unlock()
	if idler != nil {
		idler.logout()
	}
	if n != nil {
		n.close()
	}
	s.pool.closeAll()
	return nil
}

// Stats are counters of what a Source fetched.
type Stats struct {
	Bodies    int64 // message bodies fetched (BODY.PEEK[])
	BodyBytes int64 // their bytes
}

// Stats returns what the source has fetched so far.
func (s *Source) Stats() Stats {
	return Stats{Bodies: s.bodies.Load(), BodyBytes: s.bodyBytes.Load()}
}

// Folders lists every selectable folder that the Folders and Exclude
// globs let through, sorted by path. On a server with Gmail's extensions
// (X-GM-EXT-1), when All Mail (\All) is among them, it lists only All
// Mail, Spam (\Junk) and Trash (\Trash): the other folders are views of
// All Mail's messages, whose labels Sync reads (label mode, gmail.go).
func (s *Source) Folders(ctx context.Context) ([]archive.Folder, error) {
	var folders []archive.Folder
	err := s.withConn(ctx, "", func(c *conn) error {
		var err error
		folders, err = s.list(c)
		return err
	})
	if err != nil {
		return nil, err
	}
	return folders, nil
}

func (s *Source) list(c *conn) ([]archive.Folder, error) {
	var opts *goimap.ListOptions
	caps := c.c.Caps()
	if caps.Has(goimap.CapSpecialUse) && (caps.Has(goimap.CapListExtended) || caps.Has(goimap.CapIMAP4rev2)) {
		opts = &goimap.ListOptions{ReturnSpecialUse: true}
	}
	list, err := c.c.List("", "*", opts).Collect()
	if err != nil {
		return nil, fmt.Errorf("list folders: %w", err)
	}
	var folders []archive.Folder
	mailboxes := make(map[string]string)
	names := make(map[string]bool, len(list))
	for _, l := range list {
		names[l.Mailbox] = true
		f, ok := folderOf(l)
		if !ok || !s.wanted(f.Path) {
			continue
		}
		if _, dup := mailboxes[f.Path]; dup {
			s.log.Warn("two folders map to one path; keeping the first", "folder", f.Path, "mailbox", l.Mailbox)
			continue
		}
		mailboxes[f.Path] = l.Mailbox
		folders = append(folders, f)
	}
	slices.SortFunc(folders, func(a, b archive.Folder) int { return cmp.Compare(a.Path, b.Path) })
	allMail := ""
	if caps.Has(capGmail) {
		folders, allMail = labelFolders(folders)
		if allMail == "" {
			s.log.Info("the server offers X-GM-EXT-1, but no All Mail folder is to be backed up: reading every folder")
		} else {
			s.log.Debug("label mode: All Mail read with labels", "folder", allMail)
		}
	}
	s.mu.Lock()
	for p, m := range mailboxes {
		s.mailboxes[p] = m
	}
	s.allMail = allMail
	s.names = names
	s.mu.Unlock()
	return folders, nil
}

var specialUses = []string{archive.All, archive.Archive, archive.Drafts, archive.Flagged, archive.Junk, archive.Sent, archive.Trash}

// folderOf maps a LIST answer to a folder; false for folders that cannot
// be selected.
func folderOf(l *goimap.ListData) (archive.Folder, bool) {
	f := archive.Folder{Name: mutf7.Encode(l.Mailbox)}
	if strings.EqualFold(l.Mailbox, "INBOX") {
		f.Name = "INBOX"
	}
	for _, a := range l.Attrs {
		if strings.EqualFold(string(a), string(goimap.MailboxAttrNoSelect)) ||
			strings.EqualFold(string(a), string(goimap.MailboxAttrNonExistent)) {
			return f, false
		}
		for _, su := range specialUses {
			if strings.EqualFold(string(a), su) && f.SpecialUse == "" {
				f.SpecialUse = su
			}
		}
	}
	f.Path = l.Mailbox
	if l.Delim != 0 {
		f.Delimiter = string(l.Delim)
		if l.Delim != '/' {
			f.Path = strings.ReplaceAll(l.Mailbox, string(l.Delim), "/")
		}
	}
	if strings.EqualFold(f.Path, "INBOX") || strings.HasPrefix(strings.ToUpper(f.Path), "INBOX/") {
		f.Path = "INBOX" + f.Path[len("INBOX"):]
	}
	return f, true
}

// wanted applies the include and exclude globs to a folder and its parents.
func (s *Source) wanted(p string) bool {
	match := func(globs []string) bool {
		for q := p; ; {
			for _, g := range globs {
				if ok, _ := path.Match(g, q); ok {
					return true
				}
			}
			i := strings.LastIndexByte(q, '/')
			if i < 0 {
				return false
			}
			q = q[:i]
		}
	}
	if len(s.opts.Folders) > 0 && !match(s.opts.Folders) {
		return false
	}
	return !match(s.opts.Exclude)
}

// mailbox returns the name to SELECT for f.
func (s *Source) mailbox(f archive.Folder) string {
	s.mu.Lock()
	m, ok := s.mailboxes[f.Path]
	s.mu.Unlock()
	if ok {
		return m
	}
	if f.Name != "" {
		if m, err := mutf7.Decode(f.Name); err == nil {
			return m
		}
	}
	if f.Delimiter != "" {
		return strings.ReplaceAll(f.Path, "/", f.Delimiter)
	}
	return f.Path
}

// changesError marks an error returned by archive.Changes: never retried.
type changesError struct{ err error }

func (e changesError) Error() string { return e.err.Error() }
func (e changesError) Unwrap() error { return e.err }

// Sync reports the changes in folder f since cursor since. A dropped
// connection or a throttling answer makes it wait and start the folder
// again (what was already stored is found again cheaply).
//
// In label mode, Sync of All Mail reports each message once, with its
// labels (Message.Labels), under its X-GM-MSGID; a known message whose
// labels changed is kept through archive.Relabeler. A server that
// refuses to send more (Gmail's download limit) stops the sync with an
// error wrapping ErrDownloadLimit, and every later Sync of the Source
// with the same error.
func (s *Source) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, ch archive.Changes) (archive.Cursor, error) {
	op := "sync " + strconv.Quote(f.Path)
	if err := s.limitErr(); err != nil {
		return nil, prefix(op, err)
	}
	var prev *cursor
	if len(since) > 0 {
		c, err := parseCursor(since)
		if err != nil {
			s.log.Warn("unreadable cursor, full sync", "folder", f.Path, "err", err)
		} else {
			prev = &c
		}
	}
	var out archive.Cursor
	err := s.withConn(ctx, op, func(c *conn) error {
		var err error
		out, err = s.syncFolder(ctx, c, f, prev, ch)
		return err
	})
	return out, err
}

// withConn runs fn on a pooled connection, retrying with backoff when the
// connection drops, cannot be made during a run, or the server throttles.
func (s *Source) withConn(ctx context.Context, op string, fn func(*conn) error) error {
	policy := backoff.Policy{Initial: s.opts.RetryDelay, Max: 30 * time.Second}
	for attempt := 0; ; attempt++ {
		c, err := s.pool.get(ctx)
		if err == nil {
			stop := context.AfterFunc(ctx, c.close)
			err = fn(c)
			stop()
			if err != nil && connDropped(err) {
				c.close() // so that the pool drops it, even before go-imap notices
			}
			s.pool.put(c)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return prefix(op, ctx.Err())
		}
		if text, ok := downloadLimit(err, c); ok {
			return prefix(op, s.setLimit(text))
		}
		wait, retry := s.retryable(err, c)
		if !retry || attempt >= s.opts.Retries {
			return prefix(op, err)
		}
		if wait == 0 {
			wait = policy.Delay(attempt)
		}
		s.log.Warn("retrying", "op", cmp.Or(op, "list folders"), "attempt", attempt+1, "wait", wait, "err", err)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return prefix(op, err)
		}
	}
}

// setLimit notes that the server's download limit is reached and
// returns the error that says so.
func (s *Source) setLimit(server string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit == nil {
		s.limit = limitError(server)
	}
	return s.limit
}

func (s *Source) limitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

func prefix(op string, err error) error {
	if op == "" {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// retryable says whether err is worth another try, and how long the server
// asked to wait (0: use the backoff).
func (s *Source) retryable(err error, c *conn) (time.Duration, bool) {
	var ce changesError
	if errors.As(err, &ce) || errors.Is(err, ErrAuth) || errors.Is(err, ErrCertificate) || errors.Is(err, ErrDownloadLimit) {
		return 0, false
	}
	var ie *goimap.Error
	if errors.As(err, &ie) {
		if d, ok := throttled(string(ie.Code), ie.Text); ok {
			return d, true
		}
	}
	// A refusal or a BYE on the connection that reads labels.
	var se *statusError
	if errors.As(err, &se) {
		if d, ok := throttled(se.code, se.text); ok {
			return d, true
		}
		if se.status == "BYE" {
			return 0, true
		}
	}
	if c != nil && c.io.overrun() != nil {
		return 0, false
	}
	if c != nil && c.failed(err) {
		if d, ok := throttleDelay(c.tail.last()); ok {
			return d, true
		}
		if d, ok := throttled("", byeText(c.tail.last())); ok {
			return d, true
		}
		return 0, true
	}
	if errors.Is(err, ErrUnreachable) {
		// The first connection of a run fails fast: a wrong host or port
		// is not worth a minute of retries. Later ones (the server went
		// away mid-run) are retried.
		return 0, s.pool.everConnected()
	}
	return 0, false
}

// syncFolder does one attempt at syncing a folder.
func (s *Source) syncFolder(ctx context.Context, c *conn, f archive.Folder, prev *cursor, ch archive.Changes) (archive.Cursor, error) {
	mailbox := s.mailbox(f)
	sel, err := c.c.Select(mailbox, &goimap.SelectOptions{ReadOnly: true, CondStore: c.condstore}).Wait()
	if err != nil {
		return nil, fmt.Errorf("examine %q: %w", mailbox, err)
	}
	cur := cursor{UIDValidity: sel.UIDValidity, UIDNext: uint32(sel.UIDNext), ModSeq: sel.HighestModSeq, Messages: sel.NumMessages}
	if !c.condstore {
		cur.ModSeq = 0
	}
	log := s.log.With("folder", f.Path)
	r := &folderRun{s: s, c: c, ch: ch, f: f, cur: cur, log: log, epoch: c.expunges.Load()}
	if s.labelFolder(f) {
		r.cur.Labels = true
		cur = r.cur
		if prev != nil && !prev.Labels {
			// Read without labels last time: list it whole.
			log.Info("first sync with labels, full listing")
			prev = nil
		}
	}
	unchanged := prev != nil && *prev == cur && cur.ModSeq != 0 && cur.UIDNext != 0
	if cur.Labels && !unchanged {
		s.mu.Lock()
		names := s.names
		s.mu.Unlock()
		r.gm = &gmRun{delim: f.Delimiter, names: names, keys: make(map[goimap.UID]gmKey)}
		stop, err := r.dialLabels(ctx, mailbox)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	switch {
	case unchanged:
		// Nothing was added, expunged or flagged since last time.
		log.Debug("folder unchanged")
		return cur.encode(), nil
	case prev != nil && prev.UIDValidity == cur.UIDValidity && prev.ModSeq != 0 && cur.ModSeq != 0 && prev.UIDNext != 0:
		log.Debug("incremental sync", "since_modseq", prev.ModSeq, "since_uidnext", prev.UIDNext)
		if r.gm != nil {
			err = r.gmIncremental(prev)
		} else {
			err = r.incremental(prev)
		}
	default:
		if prev != nil && prev.UIDValidity != cur.UIDValidity {
			log.Info("uidvalidity changed, full sync", "old", prev.UIDValidity, "new", cur.UIDValidity)
		}
		if r.gm != nil {
			err = r.gmFull()
		} else {
			err = r.full()
		}
	}
	if err != nil {
		return nil, err
	}
	return cur.encode(), nil
}

// meta is what is known of a message before its body is fetched.
type meta struct {
	uid   goimap.UID
	seq   uint32 // its sequence number, while no EXPUNGE came (folderRun.epoch)
	flags []string
	date  time.Time
	size  int64
	// labels are its labels, in label mode.
	labels []string
}

// folderRun is one attempt at one folder.
type folderRun struct {
	s   *Source
	c   *conn
	ch  archive.Changes
	f   archive.Folder
	cur cursor
	log *slog.Logger
	// epoch is the count of EXPUNGE answers on c when the sequence
	// numbers of the metas were noted.
	epoch uint64
	// gm is label mode's state, in label mode (gmail.go).
	gm *gmRun
}

// fingerprint is the fingerprint of message uid: in a folder, its UID
// under the folder's UIDVALIDITY; in label mode, see gmKey.
func (r *folderRun) fingerprint(uid goimap.UID) string {
	if r.gm != nil {
		if k, ok := r.gm.keys[uid]; ok {
			return k.fp
		}
	}
	return r.folderFingerprint(uid)
}

func (r *folderRun) folderFingerprint(uid goimap.UID) string {
	return strconv.FormatUint(uint64(r.cur.UIDValidity), 10) + "/" + strconv.FormatUint(uint64(uid), 10)
}

// sourceID is the source ID of message uid: its UID; in label mode, see
// gmKey.
func (r *folderRun) sourceID(uid goimap.UID) string {
	if r.gm != nil {
		if k, ok := r.gm.keys[uid]; ok {
			return k.id
		}
	}
	return strconv.FormatUint(uint64(uid), 10)
}

func (r *folderRun) reset() error {
	if err := r.ch.Reset(); err != nil {
		return changesError{err}
	}
	return nil
}

// full lists every message: known ones are kept with their current flags,
// the others are fetched.
func (r *folderRun) full() error {
	if err := r.reset(); err != nil {
		return err
	}
	if r.cur.Messages == 0 {
		return nil
	}
	metas, err := r.metas(goimap.UIDSet{{Start: 1, Stop: 0}}, 1)
	if err != nil {
		return err
	}
	return r.keepOrFetch(metas)
}

// keepOrFetch keeps the messages the parent has and fetches the others.
func (r *folderRun) keepOrFetch(metas []meta) error {
	var fetch []meta
	for _, m := range metas {
		id := r.sourceID(m.uid)
		if r.ch.Have(id, r.fingerprint(m.uid)) {
			if err := r.ch.Keep(id, m.flags); err != nil {
				return changesError{err}
			}
			continue
		}
		fetch = append(fetch, m)
	}
	return r.fetchBodies(fetch)
}

// incremental uses CONDSTORE: the present UIDs from a search, changed
// flags from CHANGEDSINCE, and new messages from UIDs >= the old UIDNEXT.
func (r *folderRun) incremental(prev *cursor) error {
	if err := r.reset(); err != nil {
		return err
	}
	if r.cur.Messages == 0 {
		return nil
	}
	var sopts *goimap.SearchOptions
	if r.c.esearch {
		sopts = &goimap.SearchOptions{ReturnAll: true}
	}
	sd, err := r.c.c.UIDSearch(&goimap.SearchCriteria{}, sopts).Wait()
	if err != nil {
		return fmt.Errorf("search %q: %w", r.f.Path, err)
	}
	present, _ := sd.All.(goimap.UIDSet)
	if len(present) == 0 {
		// An answer without UIDs means an empty folder only if the
		// folder is empty now (EXPUNGE answers keep the count).
		if mb := r.c.c.Mailbox(); mb == nil || mb.NumMessages > 0 {
			return fmt.Errorf("search %q: the server's answer holds no UIDs for a folder of %d messages", r.f.Path, r.cur.Messages)
		}
	}

	changed := make(map[goimap.UID][]string)
	if prev.UIDNext > 1 {
		old := goimap.UIDSet{{Start: 1, Stop: goimap.UID(prev.UIDNext - 1)}}
		cmd := r.c.c.Fetch(old, &goimap.FetchOptions{UID: true, Flags: true, ChangedSince: prev.ModSeq})
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			b, err := msg.Collect()
			if err != nil {
				cmd.Close()
				return fmt.Errorf("fetch flags %q: %w", r.f.Path, err)
			}
			if b.UID != 0 {
				changed[b.UID] = convertFlags(b.Flags)
			}
		}
		if err := cmd.Close(); err != nil {
			return fmt.Errorf("fetch flags %q: %w", r.f.Path, err)
		}
	}

	var missing goimap.UIDSet
	for _, rg := range present {
		stop := rg.Stop
		if stop == 0 || stop >= goimap.UID(prev.UIDNext) {
			stop = goimap.UID(prev.UIDNext) - 1
		}
		for uid := rg.Start; uid <= stop && uid != 0; uid++ {
			id := r.sourceID(uid)
			if !r.ch.Have(id, r.fingerprint(uid)) {
				missing.AddNum(uid)
				continue
			}
			if err := r.ch.Keep(id, changed[uid]); err != nil {
				return changesError{err}
			}
		}
	}
	var metas []meta
	r.epoch = r.c.expunges.Load()
	if len(missing) > 0 {
		m, err := r.metas(missing, 0)
		if err != nil {
			return err
		}
		metas = m
		// The search found them: those the server does not describe
		// are named, or found expunged.
		sent := make(map[goimap.UID]bool, len(m))
		for _, x := range m {
			sent[x.uid] = true
		}
		var unsent []goimap.UID
		for _, rg := range missing {
			for uid := rg.Start; uid <= rg.Stop && uid != 0; uid++ {
				if !sent[uid] {
					unsent = append(unsent, uid)
				}
			}
		}
		if err := r.unsent(unsent); err != nil {
			return err
		}
	}
	if r.cur.UIDNext == 0 || r.cur.UIDNext > prev.UIDNext {
		m, err := r.metas(goimap.UIDSet{{Start: goimap.UID(prev.UIDNext), Stop: 0}}, goimap.UID(prev.UIDNext))
		if err != nil {
			return err
		}
		metas = append(metas, m...)
	}
	return r.keepOrFetch(metas)
}

// metas fetches UID, FLAGS, INTERNALDATE and RFC822.SIZE for set, keeping
// UIDs >= min ("N:*" also returns the last message when no UID is >= N),
// with each message's sequence number.
func (r *folderRun) metas(set goimap.UIDSet, min goimap.UID) ([]meta, error) {
	cmd := r.c.c.Fetch(set, &goimap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true})
	var out []meta
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		b, err := msg.Collect()
		if err != nil {
			cmd.Close()
			return nil, fmt.Errorf("fetch %q: %w", r.f.Path, err)
		}
		if b.UID == 0 || b.UID < min {
			continue
		}
		out = append(out, meta{uid: b.UID, seq: b.SeqNum, flags: convertFlags(b.Flags), date: b.InternalDate, size: b.RFC822Size})
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("fetch %q: %w", r.f.Path, err)
	}
	slices.SortFunc(out, func(a, b meta) int { return cmp.Compare(a.uid, b.uid) })
	return out, nil
}

// Batches of body fetches: at most this many messages or bytes per FETCH.
const (
	batchMessages = 200
	batchBytes    = 16 << 20
)

// fetchBodies streams the bodies of metas into Put, in batches.
// A batch the server ends with NO, and the messages it leaves out of a
// batch, are asked for again one by one; a message it still refuses is
// skipped, one it still does not send is checked with unsent.
//
// Bodies are fetched by sequence number (FETCH, not UID FETCH): go-imap
// pairs the answers to a UID FETCH with the command by their UID, and
// drops those that send the body before it, which RFC 3501 allows. The
// answers to a FETCH go by their sequence number, which comes first, and
// readMessage pairs each body with its UID whatever the order.
func (r *folderRun) fetchBodies(metas []meta) error {
	if len(metas) == 0 {
		return nil
	}
	byUID := make(map[goimap.UID]*meta, len(metas))
	var starts []int // of the batches in metas
	start, bytes := 0, int64(0)
	for i := range metas {
		byUID[metas[i].uid] = &metas[i]
		bytes += metas[i].size
		if i+1-start >= batchMessages || bytes >= batchBytes || i == len(metas)-1 {
			starts = append(starts, start)
			start, bytes = i+1, 0
		}
	}
	// One batch at a time: Dovecot runs pipelined FETCH commands in
	// parallel and interleaves their answers, which a streaming reader
	// cannot untangle. Each batch streams without round trips.
	var (
		leftovers []meta
		missing   []goimap.UID
	)
	for i, s := range starts {
		end := len(metas)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		cur, gone, err := r.sendBodies(metas[s:end], metas[s:])
		if err != nil {
			return err
		}
		missing = append(missing, gone...)
		if cur == nil {
			continue
		}
		err = r.readBatch(cur, byUID)
		if err != nil {
			var ie *goimap.Error
			if !errors.As(err, &ie) || pauses(err) || r.c.broken() {
				return err
			}
			// The server refused some message of the batch: try the
			// rest one by one.
			r.log.Warn("server refused part of a fetch, retrying one by one", "err", err)
		}
		n := len(leftovers)
		for _, m := range cur.metas {
			if !cur.got[m.uid] {
				leftovers = append(leftovers, m)
			}
		}
		if err == nil && len(leftovers) > n {
			r.log.Warn("server left messages out of a fetch, asking one by one", "messages", len(leftovers)-n)
		}
	}
	return r.fetchOneByOne(leftovers, byUID, missing)
}

// sendBodies sends a FETCH of the bodies of batch, a start of rest (the
// messages still to fetch). When an EXPUNGE came since their sequence
// numbers were noted, the numbers of rest are asked for again; the
// messages that are gone are returned, and nil when none is left.
func (r *folderRun) sendBodies(batch, rest []meta) (*batchCmd, []goimap.UID, error) {
	if r.c.expunges.Load() != r.epoch {
		if err := r.renumber(rest); err != nil {
			return nil, nil, err
		}
	}
	b := &batchCmd{uidOf: make(map[uint32]goimap.UID, len(batch))}
	var (
		set  goimap.SeqSet
		gone []goimap.UID
	)
	for _, m := range batch {
		if m.seq == 0 {
			gone = append(gone, m.uid)
			continue
		}
		set.AddNum(m.seq)
		b.uidOf[m.seq] = m.uid
		b.metas = append(b.metas, m)
	}
	if len(b.metas) == 0 {
		return nil, gone, nil
	}
	b.cmd = r.c.c.Fetch(set, &goimap.FetchOptions{
		UID:         true,
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	})
	return b, gone, nil
}

// renumber asks for the current sequence numbers of metas (an EXPUNGE
// made those noted stale); a message no longer there gets 0.
func (r *folderRun) renumber(metas []meta) error {
	var set goimap.UIDSet
	for _, m := range metas {
		set.AddNum(m.uid)
	}
	return r.renumberSet(metas, set)
}

// renumberSet is renumber, asking for the UIDs of set (which holds
// those of metas).
func (r *folderRun) renumberSet(metas []meta, set goimap.UIDSet) error {
	for range 5 {
		epoch := r.c.expunges.Load()
		msgs, err := r.c.c.Fetch(set, &goimap.FetchOptions{UID: true}).Collect()
		if err != nil {
			return fmt.Errorf("fetch %q: %w", r.f.Path, err)
		}
		if r.c.expunges.Load() != epoch {
			continue // numbers changed while they came
		}
		seq := make(map[goimap.UID]uint32, len(msgs))
		for _, m := range msgs {
			if m.UID != 0 {
				seq[m.UID] = m.SeqNum
			}
		}
		for i := range metas {
			metas[i].seq = seq[metas[i].uid]
		}
		r.epoch = epoch
		return nil
	}
	return fmt.Errorf("fetch %q: messages keep being expunged", r.f.Path)
}

func errText(err error) string {
	var ie *goimap.Error
	if errors.As(err, &ie) {
		return ie.Text
	}
	return ""
}

// batchCmd is one FETCH of bodies in flight.
type batchCmd struct {
	metas []meta
	uidOf map[uint32]goimap.UID // by sequence number
	cmd   *imapclient.FetchCommand
	got   map[goimap.UID]bool
	// readErr is the error a body's literal returned (the connection
	// failed or was closed under it), else nil.
	readErr error
}

// litReader reads a FETCH literal and notes in *err the error, other than
// io.EOF, that it returns.
type litReader struct {
	goimap.LiteralReader
	err *error
}

func (l litReader) Read(p []byte) (int, error) {
	n, err := l.LiteralReader.Read(p)
	if err != nil && err != io.EOF && *l.err == nil {
		*l.err = err
	}
	return n, err
}

// readBatch reads a batch's answers into Put. It returns the command's
// error: a *goimap.Error when the server ended it with NO or BAD.
func (r *folderRun) readBatch(b *batchCmd, byUID map[goimap.UID]*meta) error {
	b.got = make(map[goimap.UID]bool, len(b.metas))
	for {
		msg := b.cmd.Next()
		if msg == nil {
			break
		}
		if err := r.readMessage(msg, b, byUID); err != nil {
			if b.readErr != nil {
				// A literal failed under us: go-imap's reader has
				// the connection again (the literal told it so), and
				// Close, which would read the rest of the literal,
				// would read beside it. The connection is done for.
				r.c.close()
				return err
			}
			b.cmd.Close()
			return err
		}
	}
	return b.cmd.Close()
}

// readMessage stores the body of one FETCH answer. RFC 3501 fixes no
// order of the items: a body that comes before its UID is kept aside in
// a temporary file until the UID tells which message it is. An answer
// without a UID is the message its sequence number was asked for.
func (r *folderRun) readMessage(msg *imapclient.FetchMessageData, b *batchCmd, byUID map[goimap.UID]*meta) error {
	var (
		uid     goimap.UID
		early   *spillFile // a body read before the UID
		nilBody bool       // a NIL body before the UID
	)
	defer func() {
		if early != nil {
			early.Close()
		}
	}()
	for {
		item := msg.Next()
		if item == nil {
			break
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			uid = it.UID
		case imapclient.FetchItemDataBodySection:
			if it.Literal != nil {
				it.Literal = litReader{it.Literal, &b.readErr}
			}
			if uid != 0 {
				var body io.Reader
				if it.Literal != nil {
					body = it.Literal
				}
				if err := r.put(uid, body, sizeOf(it.Literal), byUID, b.got); err != nil {
					return err
				}
				continue
			}
			if early != nil || nilBody {
				continue // a second body: discarded by Next
			}
			if it.Literal == nil {
				nilBody = true
				continue
			}
			body := &countingReader{r: it.Literal}
			f, _, err := spillCopy(body)
			if body.err != nil {
				return fmt.Errorf("fetch %s: %w", r.f.Path, body.err)
			}
			if err != nil {
				return fmt.Errorf("fetch %s: %w", r.f.Path, err)
			}
			early = f
		}
	}
	if uid == 0 {
		uid = b.uidOf[msg.SeqNum]
	}
	switch {
	case uid == 0:
		return nil
	case early != nil:
		st, err := early.Stat()
		if err != nil {
			return fmt.Errorf("fetch %s uid %d: %w", r.f.Path, uid, err)
		}
		return r.put(uid, early, st.Size(), byUID, b.got)
	case nilBody:
		return r.put(uid, nil, 0, byUID, b.got)
	}
	return nil
}

func sizeOf(l goimap.LiteralReader) int64 {
	if l == nil {
		return 0
	}
	return l.Size()
}

// put stores the body of message uid, if it was asked for and not stored
// yet; a nil body (the server sent NIL) is skipped.
func (r *folderRun) put(uid goimap.UID, body io.Reader, size int64, byUID map[goimap.UID]*meta, got map[goimap.UID]bool) error {
	m := byUID[uid]
	if m == nil || got[uid] {
		return nil // not asked for: discarded by Next
	}
	got[uid] = true
	id := r.sourceID(uid)
	if body == nil {
		if err := r.ch.Skip(id, fmt.Errorf("fetch %s uid %d: %w: the server sent no body", r.f.Path, uid, archive.ErrSkipped)); err != nil {
			return changesError{err}
		}
		return nil
	}
	cr := &countingReader{r: body}
	err := r.ch.Put(&archive.Message{
		Folder:       r.f.Path,
		SourceID:     id,
		Flags:        m.flags,
		InternalDate: m.date,
		Size:         size,
		Body:         cr,
		Fingerprint:  r.fingerprint(uid),
		Labels:       m.labels,
	})
	r.s.bodies.Add(1)
	r.s.bodyBytes.Add(cr.n)
	if err != nil {
		return changesError{err}
	}
	if cr.err != nil {
		// The engine named the message; the connection is what
		// failed: start the folder again.
		return fmt.Errorf("fetch %s uid %d: %w", r.f.Path, uid, cr.err)
	}
	return nil
}

// fetchOneByOne fetches messages one at a time (those of batches the
// server ended with NO or left out); a message it refuses again is
// skipped. Those it does not send, and gone (messages no longer found
// by UID), are checked with unsent.
func (r *folderRun) fetchOneByOne(metas []meta, byUID map[goimap.UID]*meta, gone []goimap.UID) error {
	missing := gone
	for i, m := range metas {
		one, g, err := r.sendBodies(metas[i:i+1], metas[i:])
		if err != nil {
			return err
		}
		if one == nil {
			missing = append(missing, g...)
			continue
		}
		err = r.readBatch(one, byUID)
		var ie *goimap.Error
		switch {
		case err == nil:
			if !one.got[m.uid] {
				missing = append(missing, m.uid)
			}
		case errors.As(err, &ie) && !r.c.broken():
			if pauses(err) {
				return err
			}
			if err := r.ch.Skip(r.sourceID(m.uid), fmt.Errorf("fetch %s uid %d: %w: %w", r.f.Path, m.uid, archive.ErrSkipped, err)); err != nil {
				return changesError{err}
			}
		default:
			return err
		}
	}
	return r.unsent(missing)
}

// unsent accounts for messages asked for that the server did not send,
// though it answered OK: those a UID SEARCH no longer finds were expunged
// meanwhile and are left out; the others are skipped, named.
func (r *folderRun) unsent(uids []goimap.UID) error {
	if len(uids) == 0 {
		return nil
	}
	sd, err := r.c.c.UIDSearch(&goimap.SearchCriteria{UID: []goimap.UIDSet{goimap.UIDSetNum(uids...)}}, nil).Wait()
	if err != nil {
		return fmt.Errorf("search %q: %w", r.f.Path, err)
	}
	present := make(map[goimap.UID]bool)
	for _, u := range sd.AllUIDs() {
		present[u] = true
	}
	for _, uid := range uids {
		if !present[uid] {
			r.log.Debug("message expunged during the backup", "uid", uid)
			continue
		}
		r.log.Warn("the server did not send a message", "uid", uid)
		if err := r.ch.Skip(r.sourceID(uid), fmt.Errorf("fetch %s uid %d: %w: the server did not send it", r.f.Path, uid, archive.ErrSkipped)); err != nil {
			return changesError{err}
		}
	}
	return nil
}

// countingReader counts bytes and remembers the first read error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// convertFlags maps IMAP flags to archive flags: system flags in their
// canonical spelling, keywords as they are, \Recent dropped.
func convertFlags(flags []goimap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if s, ok := canonFlag(string(f)); ok {
			out = append(out, s)
		}
	}
	return out
}

// canonFlag returns a flag as archive spells it: system flags in their
// canonical spelling, keywords as they are; false for \Recent.
func canonFlag(s string) (string, bool) {
	if !strings.HasPrefix(s, `\`) {
		return s, true
	}
	switch strings.ToLower(s) {
	case `\recent`:
		return "", false
	case `\seen`:
		return archive.FlagSeen, true
	case `\answered`:
		return archive.FlagAnswered, true
	case `\flagged`:
		return archive.FlagFlagged, true
	case `\deleted`:
		return archive.FlagDeleted, true
	case `\draft`:
		return archive.FlagDraft, true
	}
	return s, true
}
