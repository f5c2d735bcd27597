package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backoff"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/imap"
)

// WatchOptions tune Watch.
type WatchOptions struct {
	Locking Locking
	// Log receives the watch's own lines: one per snapshot, one per
	// incident (a source lost, back again), one per maintenance. Nil:
	// discard. (Env.Logger receives the libraries'.)
	Log *slog.Logger
	// Metrics, when set, is called with the watch's metrics whenever they
	// changed, and every interval; from one goroutine at a time.
	Metrics func([]Metric)
	// Ready, when set, is called once, when every source has made its
	// first pass (stored what it holds, or failed to).
	Ready func()
	// ShutdownGrace bounds what a watch does after ctx ends: promoting
	// the checkpoints not yet in a snapshot (default 5s).
	ShutdownGrace time.Duration
	// Reload, when set, brings new configs to apply in place (see
	// InPlace): sources removed stop (their pending checkpoints made
	// snapshots), new ones start, changed ones start again; the others
	// go on undisturbed.
	Reload <-chan *Config
}

// InPlace reports whether a watch of cfg can take next without starting
// again: only the sources differ (repositories, [watch] table and the
// global settings are the same).
func InPlace(cfg, next *Config) bool {
	return cfg.Concurrency == next.Concurrency && cfg.StateDir == next.StateDir && cfg.Checkpoint == next.Checkpoint &&
		reflect.DeepEqual(cfg.Repository, next.Repository) && reflect.DeepEqual(cfg.Watch, next.Watch)
}

// Watch follows every source of cfg for as long as ctx lasts: IMAP
// sources by NOTIFY on every folder where the server offers it, else IDLE
// on INBOX, and a STATUS of every folder every interval,
// Graph mailboxes and Maildir or mbox sources by a backup every interval
// (Graph's delta queries make one cheap). What changed is stored as it
// comes, in checkpoints; a source's latest checkpoint becomes a snapshot
// at most every snapshot_every, and only when something changed. Every
// maintain_every each repository's keep policy is applied, a prune
// considered (prune_every) and check_sample of the packs read.
//
// A source that fails (a server down, a token refused, throttling) is
// tried again every interval, with one line in the log when it fails and
// one when it is back. When ctx ends, the backups running stop with a
// checkpoint of what they stored, the checkpoints not yet in a snapshot
// are promoted (within ShutdownGrace), the locks are released and Watch
// returns nil. It returns an error only when it cannot start: the state
// file, a repository that does not open.
func Watch(ctx context.Context, cfg *Config, env *Env, opts WatchOptions) error {
	dir, err := cfg.StateDirectory()
	if err != nil {
		return err
	}
	stateName := StateFile(dir, cfg.file)
	st, err := LoadState(stateName)
	if err != nil {
		return err
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	interval, snapshotEvery, maintainEvery := cfg.Watch.Intervals()
	w := &watch{
		engine: newEngine(cfg, env, opts.Locking), opts: opts, st: st, stateName: stateName,
		interval: interval, snapshotEvery: snapshotEvery, maintainEvery: maintainEvery,
		repos: make(map[string]*watchRepo),
	}
	for _, name := range cfg.names {
		rr := w.openRepo(ctx, cfg.Repository[name])
		if rr.r == nil {
			w.closeRepos()
			return fmt.Errorf("repository %s: %s", name, rr.rep.Error)
		}
		w.repos[name] = &watchRepo{repoRun: rr}
	}
	defer w.closeRepos()

	var wg sync.WaitGroup
	var first sync.WaitGroup
	live := map[string]*liveSource{}
	start := func(sc *SourceConfig, firstDone func()) {
		ws := &watchSource{w: w, sc: sc, repo: w.repos[sc.Repository], connected: true}
		sctx, stop := context.WithCancel(ctx)
		ls := &liveSource{ws: ws, stop: stop, done: make(chan struct{})}
		live[sc.Name] = ls
		w.srcMu.Lock()
		w.sources = append(w.sources, ws)
		w.srcMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(ls.done)
			ws.run(sctx, firstDone)
		}()
	}
	for _, sc := range cfg.Source {
		first.Add(1)
		start(sc, first.Done)
	}
	ready := make(chan struct{})
	go func() {
		first.Wait()
		close(ready)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.housekeeping(ctx, ready)
	}()
	if opts.Reload != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case next := <-opts.Reload:
					w.reload(next, live, start)
				}
			}
		}()
	}
	wg.Wait()
	w.publish()
	return nil
}

// liveSource is a running source of a watch.
type liveSource struct {
	ws   *watchSource
	stop context.CancelFunc
	done chan struct{}
}

// reload applies next in place: the sources it no longer has, or has
// changed, stop (as at the end of a watch: what is pending becomes a
// snapshot), then the new and changed ones start.
func (w *watch) reload(next *Config, live map[string]*liveSource, start func(*SourceConfig, func())) {
	want := make(map[string]*SourceConfig, len(next.Source))
	for _, sc := range next.Source {
		want[sc.Name] = sc
	}
	var added, removed int
	changed := map[string]bool{}
	for name, ls := range live {
		sc, ok := want[name]
		if ok && reflect.DeepEqual(sc, ls.ws.sc) {
			continue
		}
		ls.stop()
		<-ls.done
		delete(live, name)
		w.srcMu.Lock()
		w.sources = slices.DeleteFunc(w.sources, func(ws *watchSource) bool { return ws == ls.ws })
		w.srcMu.Unlock()
		if ok {
			changed[name] = true
		} else {
			removed++
		}
	}
	for _, sc := range next.Source {
		if _, ok := live[sc.Name]; !ok {
			start(sc, func() {})
			if !changed[sc.Name] {
				added++
			}
		}
	}
	w.opts.Log.Info("config reloaded in place", "sources", len(next.Source), "added", added, "removed", removed, "restarted", len(changed))
	w.publish()
}

// watch is one Watch.
type watch struct {
	*engine
	opts                                   WatchOptions
	st                                     *State
	stMu                                   sync.Mutex
	stateName                              string
	interval, snapshotEvery, maintainEvery time.Duration
	repos                                  map[string]*watchRepo
	srcMu                                  sync.Mutex // guards sources
	sources                                []*watchSource
	metricsMu                              sync.Mutex
}

// watchRepo is an open repository of a watch. Backups hold mu for
// reading, maintenance for writing (retention must see the snapshots
// the sources know).
type watchRepo struct {
	*repoRun
	mu         sync.RWMutex
	generation int // maintenance runs; the sources reload their snapshots after one
}

func (w *watch) closeRepos() {
	for _, wr := range w.repos {
		wr.r.Close()
	}
}

// housekeeping calls opts.Ready once the sources made their first pass,
// publishes the metrics every interval and maintains the repositories
// every maintain_every.
func (w *watch) housekeeping(ctx context.Context, ready <-chan struct{}) {
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	maintain := time.NewTicker(w.maintainEvery)
	defer maintain.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ready:
			ready = nil
			w.publish()
			if w.opts.Ready != nil {
				w.opts.Ready()
			}
		case <-tick.C:
			w.publish()
		case <-maintain.C:
			for _, name := range w.cfg.names {
				w.maintain(ctx, w.repos[name])
			}
			if err := w.saveState(); err != nil {
				w.opts.Log.Warn("state not saved", "err", err)
			}
		}
	}
}

// maintain applies a repository's keep policy, prunes when due and
// checks it, with one line in the log.
func (w *watch) maintain(ctx context.Context, wr *watchRepo) {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	wr.rep = newRepoReport(wr.cfg)
	w.maintainRepo(ctx, wr.repoRun, w.st, &w.stMu, true)
	wr.generation++
	rep := wr.rep
	if rep.Status != StatusOK {
		w.opts.Log.Warn("maintenance failed", "repository", rep.Name, "err", rep.Error)
		return
	}
	w.opts.Log.Info("maintained", "repository", rep.Name, "forgot", rep.Forgot, "pruned", rep.Pruned, "snapshots", rep.Snapshots, "bytes", rep.SizeBytes)
}

func (w *watch) saveState() error {
	w.stMu.Lock()
	defer w.stMu.Unlock()
	return w.st.Save(w.stateName)
}

// publish hands the metrics to opts.Metrics.
func (w *watch) publish() {
	if w.opts.Metrics == nil {
		return
	}
	w.metricsMu.Lock()
	defer w.metricsMu.Unlock()
	w.opts.Metrics(w.metrics())
}

// watchSource is a source of a watch: one or more units (an IMAP
// account, Maildir or mbox is one; a Graph source has one per mailbox).
type watchSource struct {
	w    *watch
	sc   *SourceConfig
	repo *watchRepo

	mu        sync.Mutex // guards what follows: the metrics read it
	units     []*unit
	connected bool
	down      time.Time      // when it failed, while it does
	inbox     archive.Cursor // INBOX's cursor in the newest snapshot or checkpoint (IMAP)
	// woken are the folders (paths) that NOTIFY or IDLE said changed since
	// the main loop last looked; wokenAll that it could not say which.
	woken    map[string]bool
	wokenAll bool
	counters watchCounters
}

// watchCounters are a source's totals since the watch started.
type watchCounters struct {
	messages, bytes, snapshots, errors int64
}

// unit is one archive.Source backed up into snapshots of its own, and
// what the watch knows of them.
type unit struct {
	src  archive.Source
	name string // the source's name, and the mailbox of a Graph unit

	mine       []*repo.Snapshot // its snapshots and checkpoints
	generation int              // of the repository, when mine was loaded
	lastSnap   time.Time        // of its newest snapshot
	pending    *repo.Snapshot   // a checkpoint of a complete run not yet promoted
	since      time.Time        // when the first change not in a snapshot was stored (guarded by watchSource.mu)
	added      repo.Summary     // new messages and bytes since the last snapshot
	dirtyAll   bool             // a run was cut short: read every folder next time
}

// run follows the source until ctx ends.
func (ws *watchSource) run(ctx context.Context, firstDone func()) {
	var once sync.Once
	done := func() { once.Do(firstDone) }
	defer done()
	switch ws.sc.Kind {
	case "imap":
		ws.runIMAP(ctx, done)
	case "graph":
		ws.runGraph(ctx, done)
	case "maildir", "mbox":
		ws.runFiles(ctx, done)
	default:
		ws.failed(fmt.Errorf("unknown kind %q", ws.sc.Kind))
	}
	ws.shutdown(ctx)
}

// failed notes a failure of the source: one line when it starts failing.
func (ws *watchSource) failed(err error) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.counters.errors++
	if !ws.connected {
		return
	}
	ws.connected = false
	ws.down = time.Now()
	ws.w.opts.Log.Warn("source failed, retrying every interval", "source", ws.sc.Name, "err", oneLine(err.Error()))
}

// ok notes that the source answered: one line if it had failed.
func (ws *watchSource) ok() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.connected {
		return
	}
	ws.connected = true
	ws.w.opts.Log.Info("source back", "source", ws.sc.Name, "after", time.Since(ws.down).Round(time.Second))
}

// load reads the unit's snapshots from the repository.
func (ws *watchSource) load(ctx context.Context, u *unit) error {
	r := ws.repo.r
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return err
	}
	host := ws.sc.Host
	if host == "" {
		host, _ = os.Hostname()
	}
	// A pending checkpoint that is still there stays pending (maintenance
	// reloads the snapshots; retention keeps checkpoints not superseded).
	var pendingID dedup.ID
	if u.pending != nil {
		pendingID = u.pending.ID
	}
	u.mine = u.mine[:0]
	u.pending = nil
	for _, s := range snaps {
		if s.Source != u.src.Describe() || s.Host != host {
			continue
		}
		if s.Checkpoint && s.ID == pendingID {
			u.pending = s
		}
		u.mine = append(u.mine, s)
		if !s.Checkpoint && s.Time.After(u.lastSnap) {
			u.lastSnap = s.Time
		}
	}
	if u.mine == nil {
		u.mine = []*repo.Snapshot{}
	}
	u.generation = ws.repo.generation
	return nil
}

// parent returns the snapshot or checkpoint the unit's next run builds
// on (the newest).
func (u *unit) parent() *repo.Snapshot {
	var best *repo.Snapshot
	for _, s := range u.mine {
		if best == nil || s.Time.After(best.Time) || s.Supersedes(best) {
			best = s
		}
	}
	return best
}

// backup runs one backup of the unit (only the dirty folders, when dirty
// is set), ending in a checkpoint when something changed, and promotes
// it when snapshot_every has passed since the last snapshot.
func (ws *watchSource) backup(ctx context.Context, u *unit, dirty func(string) bool) error {
	wr := ws.repo
	wr.mu.RLock()
	defer wr.mu.RUnlock()
	if u.mine == nil || u.generation != wr.generation {
		if err := ws.load(ctx, u); err != nil {
			return err
		}
	}
	if u.dirtyAll {
		dirty = nil
	}
	o := ws.w.backupOptions(ws.sc, connections(ws.sc))
	o.Snapshots, o.Dirty, o.SkipUnchanged, o.AsCheckpoint = u.mine, dirty, true, true
	start := time.Now()
	var ck *repo.Snapshot
	err := ws.w.retryLocked(ctx, func() error {
		var err error
		ck, err = backup.Run(ctx, wr.r, u.src, o)
		return err
	})
	if err != nil {
		if ck != nil && ck.Checkpoint {
			// Cut short: the checkpoint holds what was stored and
			// supersedes the earlier ones; the next run reads it all.
			u.keep(ck)
			u.pending, u.dirtyAll = nil, true
		}
		return err
	}
	u.dirtyAll = false
	if ck == nil {
		return nil // nothing changed
	}
	u.keep(ck)
	u.pending = ck
	u.added.NewMessages += ck.Summary.NewMessages
	u.added.NewBytes += ck.Summary.NewBytes
	ws.mu.Lock()
	if u.since.IsZero() {
		u.since = start
	}
	ws.counters.messages += ck.Summary.NewMessages
	ws.counters.bytes += ck.Summary.NewBytes
	ws.counters.errors += int64(len(ck.Skipped))
	ws.mu.Unlock()
	return ws.promote(ctx, u, false)
}

// keep records a new checkpoint of the unit: it supersedes the others.
func (u *unit) keep(ck *repo.Snapshot) {
	u.mine = slices.DeleteFunc(u.mine, func(s *repo.Snapshot) bool { return s.Checkpoint })
	u.mine = append(u.mine, ck)
}

// promote turns the unit's pending checkpoint into a snapshot when
// snapshot_every has passed since the last one (or now, when force).
func (ws *watchSource) promote(ctx context.Context, u *unit, force bool) error {
	if u.pending == nil || !force && time.Since(u.lastSnap) < ws.w.snapshotEvery {
		return nil
	}
	sum := u.pending.Summary
	sum.NewMessages, sum.NewBytes = u.added.NewMessages, u.added.NewBytes
	var snap *repo.Snapshot
	err := ws.w.retryLocked(ctx, func() error {
		var err error
		snap, err = backup.Promote(ctx, ws.repo.r, u.pending, &sum)
		return err
	})
	if snap == nil {
		return err
	}
	pending := u.pending
	u.mine = slices.DeleteFunc(u.mine, func(s *repo.Snapshot) bool { return s == pending })
	u.mine = append(u.mine, snap)
	u.pending, u.added = nil, repo.Summary{}
	u.lastSnap = time.Now()
	ws.mu.Lock()
	u.since = time.Time{}
	ws.counters.snapshots++
	ws.mu.Unlock()
	ws.w.opts.Log.Info("snapshot saved", "source", u.name, "snapshot", snap.ID.Short(),
		"messages", snap.Summary.Messages, "new_messages", sum.NewMessages, "bytes", snap.Summary.Bytes)
	return err
}

// promoteEvery is how often a source looks for a checkpoint due to
// become a snapshot: a tenth of snapshot_every, between 1 and 30 seconds
// (nothing is read when nothing is pending).
func (w *watch) promoteEvery() time.Duration {
	return min(max(w.snapshotEvery/10, time.Second), 30*time.Second)
}

// promoteDue promotes every pending checkpoint of the source whose time
// has come.
func (ws *watchSource) promoteDue(ctx context.Context) {
	ws.repo.mu.RLock()
	defer ws.repo.mu.RUnlock()
	for _, u := range ws.units {
		if err := ws.promote(ctx, u, false); err != nil {
			ws.failed(err)
		}
	}
}

// shutdown promotes what is pending, within the grace period, and closes
// the sources.
func (ws *watchSource) shutdown(ctx context.Context) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ws.w.opts.ShutdownGrace)
	defer cancel()
	ws.repo.mu.RLock()
	for _, u := range ws.units {
		if err := ws.promote(gctx, u, true); err != nil {
			ws.w.opts.Log.Warn("pending changes left in a checkpoint", "source", u.name, "err", oneLine(err.Error()))
		}
	}
	ws.repo.mu.RUnlock()
	for _, u := range ws.units {
		if c, ok := u.src.(interface{ Close() error }); ok {
			c.Close()
		}
	}
}

// pass runs one backup of a unit and notes how it went.
func (ws *watchSource) pass(ctx context.Context, u *unit, dirty func(string) bool) bool {
	err := ws.backup(ctx, u, dirty)
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		ws.failed(err)
		return false
	}
	ws.ok()
	ws.w.publish()
	return true
}

// runIMAP follows an IMAP account: IDLE on INBOX, a STATUS of every
// folder every interval, a backup of what changed.
func (ws *watchSource) runIMAP(ctx context.Context, firstDone func()) {
	// A watch tries again every interval: a source's own retries only
	// ride out a blip.
	o, err := ws.w.env.IMAP(ws.sc, connections(ws.sc))
	var src *imap.Source
	if err == nil {
		o.Retries = 2
		src, err = imap.New(o)
	}
	if err != nil {
		ws.failed(err)
		firstDone()
		<-ctx.Done()
		return
	}
	u := &unit{src: src, name: ws.sc.Name}
	ws.mu.Lock()
	ws.units = []*unit{u}
	ws.mu.Unlock()

	ws.pass(ctx, u, nil)
	ws.noteInbox(u)
	firstDone()

	// The IDLE: it wakes the loop when INBOX changes.
	wake := make(chan struct{}, 1)
	idleCtx, stopIdle := context.WithCancel(ctx)
	defer stopIdle()
	var idleDone sync.WaitGroup
	idleDone.Add(1)
	go func() {
		defer idleDone.Done()
		ws.idle(idleCtx, src, wake)
	}()
	defer idleDone.Wait()

	tick := time.NewTicker(ws.w.interval)
	defer tick.Stop()
	promote := time.NewTicker(ws.w.promoteEvery())
	defer promote.Stop()
	// check runs the STATUS of every folder and a pass over those that
	// changed (all when the unit asks for it); false when ctx ended.
	check := func() bool {
		dirty, err := ws.dirtyFolders(ctx, src, u)
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			ws.failed(err)
			return true
		}
		if dirty != nil {
			ws.pass(ctx, u, dirty)
		} else if u.dirtyAll || u.mine == nil {
			ws.pass(ctx, u, nil)
		} else {
			ws.ok()
		}
		ws.noteInbox(u)
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			ws.mu.Lock()
			woken, all := ws.woken, ws.wokenAll
			ws.woken, ws.wokenAll = nil, false
			ws.mu.Unlock()
			if all {
				// Which folders, the STATUS of each says.
				if !check() {
					return
				}
			} else if len(woken) > 0 {
				ws.pass(ctx, u, func(p string) bool { return woken[p] })
				ws.noteInbox(u)
			}
		case <-tick.C:
			if !check() {
				return
			}
		case <-promote.C:
			ws.promoteDue(ctx)
		}
	}
}

// noteInbox keeps the cursor of INBOX in the unit's newest snapshot or
// checkpoint, for the IDLE to compare with.
func (ws *watchSource) noteInbox(u *unit) {
	var cur archive.Cursor
	if p := u.parent(); p != nil {
		for _, e := range p.Folders {
			if e.Folder.Path == "INBOX" {
				cur = e.Cursor
			}
		}
	}
	ws.mu.Lock()
	ws.inbox = cur
	ws.mu.Unlock()
}

// wakeFor notes what changed for the main loop (folder paths, or all)
// and wakes it.
func (ws *watchSource) wakeFor(wake chan<- struct{}, folders []string, all bool) {
	ws.mu.Lock()
	if ws.woken == nil {
		ws.woken = map[string]bool{}
	}
	for _, f := range folders {
		ws.woken[f] = true
	}
	ws.wokenAll = ws.wokenAll || all
	ws.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

// idle follows the account and signals wake when a folder changed: with
// NOTIFY (RFC 5465) every folder, where the server offers it; else an
// IDLE on INBOX, renewed every interval (the main loop's STATUS of every
// folder every interval finds the rest). A failure waits a backoff (at
// most interval): the main loop's STATUS finds what came meanwhile, and
// reports the failure.
func (ws *watchSource) idle(ctx context.Context, src *imap.Source, wake chan<- struct{}) {
	policy := backoff.Policy{Initial: time.Second, Max: ws.w.interval}
	for attempt := 0; ctx.Err() == nil; {
		folders, all, err := src.Notify(ctx, ws.w.interval)
		if errors.Is(err, imap.ErrNoNotify) {
			break
		}
		if all || len(folders) > 0 {
			ws.wakeFor(wake, folders, all)
		}
		if err != nil {
			ws.w.log.Debug("notify failed", "source", ws.sc.Name, "err", err)
			if backoff.Sleep(ctx, policy.Delay(attempt)) != nil {
				return
			}
			attempt++
			continue
		}
		attempt = 0
	}
	if ctx.Err() != nil {
		return
	}
	inbox := archive.Folder{Path: "INBOX", Name: "INBOX"}
	for attempt := 0; ctx.Err() == nil; {
		ws.mu.Lock()
		since := ws.inbox
		ws.mu.Unlock()
		changed, err := src.Idle(ctx, inbox, since, ws.w.interval)
		if errors.Is(err, imap.ErrNoIdle) {
			ws.w.log.Info("no IDLE, INBOX checked every interval", "source", ws.sc.Name)
			return
		}
		if changed {
			ws.wakeFor(wake, []string{"INBOX"}, false)
		}
		if err != nil {
			ws.w.log.Debug("idle failed", "source", ws.sc.Name, "err", err)
			if backoff.Sleep(ctx, policy.Delay(attempt)) != nil {
				return
			}
			attempt++
			continue
		}
		attempt = 0
	}
}

// dirtyFolders compares every folder with the unit's parent: it returns
// nil when none changed, else the test of the folders to read (those that
// changed; new ones are always read).
func (ws *watchSource) dirtyFolders(ctx context.Context, src *imap.Source, u *unit) (func(string) bool, error) {
	folders, err := src.Folders(ctx)
	if err != nil {
		return nil, err
	}
	ws.repo.mu.RLock()
	parent := u.parent()
	ws.repo.mu.RUnlock()
	if parent == nil {
		return func(string) bool { return true }, nil
	}
	known := make(map[string]archive.Cursor, len(parent.Folders))
	for _, e := range parent.Folders {
		known[e.Folder.Path] = e.Cursor
	}
	dirty := make(map[string]bool)
	gone := len(folders) != len(parent.Folders)
	for _, f := range folders {
		cur, ok := known[f.Path]
		if !ok {
			gone = true // a new folder: the set differs
			continue
		}
		changed, err := src.Changed(ctx, f, cur)
		if err != nil {
			return nil, err
		}
		if changed {
			dirty[f.Path] = true
		}
	}
	if len(dirty) == 0 && !gone {
		return nil, nil
	}
	return func(p string) bool { return dirty[p] }, nil
}

// runGraph follows the mailboxes of a Graph source: a backup of each
// every interval (delta queries: only what changed is read).
func (ws *watchSource) runGraph(ctx context.Context, firstDone func()) {
	conns := connections(ws.sc)
	var client *graph.Client
	var mbs []string
	policy := backoff.Policy{Initial: time.Second, Max: ws.w.interval}
	for attempt := 0; ; attempt++ {
		var err error
		client, mbs, err = ws.w.graphClient(ctx, ws.sc, conns)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			firstDone()
			return
		}
		ws.failed(err)
		firstDone()
		if backoff.Sleep(ctx, policy.Delay(attempt)) != nil {
			return
		}
	}
	ws.ok()
	units := make([]*unit, len(mbs))
	for i, mb := range mbs {
		units[i] = &unit{src: client.Source(mb), name: ws.sc.Name + "/" + mb}
	}
	ws.mu.Lock()
	ws.units = units
	ws.mu.Unlock()
	ws.every(ctx, firstDone)
}

// runFiles follows a Maildir or an mbox: a backup every interval.
func (ws *watchSource) runFiles(ctx context.Context, firstDone func()) {
	src, err := ws.w.env.Files(ws.sc)
	if err != nil {
		ws.failed(err)
		firstDone()
		<-ctx.Done()
		return
	}
	ws.mu.Lock()
	ws.units = []*unit{{src: src, name: ws.sc.Name}}
	ws.mu.Unlock()
	ws.every(ctx, firstDone)
}

// every backs up each unit every interval, a failed one included (the
// next pass tries again), and promotes what is due.
func (ws *watchSource) every(ctx context.Context, firstDone func()) {
	passAll := func() {
		failed := false
		for _, u := range ws.units {
			if err := ws.backup(ctx, u, nil); err != nil && ctx.Err() == nil {
				if errors.Is(err, graph.ErrNoMailbox) && ws.sc.AllMailboxes {
					continue
				}
				ws.failed(fmt.Errorf("%s: %w", u.name, err))
				failed = true
			}
		}
		if !failed && ctx.Err() == nil {
			ws.ok()
			ws.w.publish()
		}
	}
	passAll()
	firstDone()
	tick := time.NewTicker(ws.w.interval)
	defer tick.Stop()
	promote := time.NewTicker(ws.w.promoteEvery())
	defer promote.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			passAll()
		case <-promote.C:
			ws.promoteDue(ctx)
		}
	}
}
