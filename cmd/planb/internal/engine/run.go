package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/retention"
	"codeberg.org/planb/planb/dedup"
	"codeberg.org/planb/planb/graph"
)

// RunOptions tune Run.
type RunOptions struct {
	Locking Locking
	// Shard is the part of the config's sources this run backs up: the
	// caller keeps only its sources in the config (Shard.Sources); Run
	// spreads a Graph tenant's mailboxes, names the state file and leaves
	// retention, prune and check to shard 0.
	Shard Shard
	// Source, when set, is told of each source as it ends, and
	// Repository of each repository once maintained (to print them as
	// they come). They are called from one goroutine at a time.
	Source     func(*SourceReport)
	Repository func(*RepoReport)
}

// runner is one run of a config.
type runner struct {
	*engine
	opts RunOptions
	st   *State
	mu   sync.Mutex // guards st and the calls of opts.Source
}

// Run backs up every source of cfg into its repository (concurrency
// sources at once; one failing source does not stop the others), applies
// each repository's keep policy, prunes when prune_every has passed since
// the last prune, checks a sample of the packs, saves the state file and
// returns the report. Its error is one of the state file's: how the run
// went is the report's Status.
//
// A cancelled ctx (a signal) stops the run where it is: sources still
// running end with a checkpoint (see backup.Run), no new source starts,
// retention and check are skipped; the state and the report are still
// written and returned.
func Run(ctx context.Context, cfg *Config, env *Env, opts RunOptions) (*RunReport, error) {
	dir, err := cfg.StateDirectory()
	if err != nil {
		return nil, err
	}
	stateName := opts.Shard.StateName(StateFile(dir, cfg.file))
	st, err := LoadState(stateName)
	if err != nil {
		return nil, err
	}
	ru := &runner{engine: newEngine(cfg, env, opts.Locking), opts: opts, st: st}
	start := time.Now()
	rep := &RunReport{Type: "run", Config: cfg.file, Started: env.now().UTC(), Sources: []*SourceReport{}, Repositories: []*RepoReport{}, state: st}

	repos := make(map[string]*repoRun)
	for _, name := range cfg.names {
		var rr *repoRun
		if ctx.Err() != nil {
			rr = &repoRun{cfg: cfg.Repository[name], rep: newRepoReport(cfg.Repository[name])}
			rr.rep.Status, rr.rep.Error = StatusInterrupted, ErrInterrupted
		} else {
			rr = ru.openRepo(ctx, cfg.Repository[name])
		}
		repos[name] = rr
		rep.Repositories = append(rep.Repositories, rr.rep)
		if rr.r != nil {
			defer rr.r.Close()
		}
	}

	// Back up every source, concurrency at once.
	rep.Sources = make([]*SourceReport, len(cfg.Source))
	sem := make(chan struct{}, max(cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i, sc := range cfg.Source {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			// Not started: sem may hold a slot taken just now; nothing
			// waits for it any more.
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sr := ru.backupSource(ctx, sc, repos[sc.Repository])
			if sr.Status == StatusFailed && ctx.Err() != nil {
				// It failed because the signal stopped it.
				sr.Status, sr.Error = StatusInterrupted, ErrInterrupted
			}
			rep.Sources[i] = sr
			ru.told(sr)
		}()
	}
	wg.Wait()
	for i, sc := range cfg.Source {
		if rep.Sources[i] == nil {
			sr := &SourceReport{Name: sc.Name, Kind: sc.Kind, Repository: sc.Repository, Status: StatusInterrupted,
				Error: ErrInterrupted, SnapshotIDs: []string{}, Skipped: []repo.Skipped{}, Errors: 1}
			rep.Sources[i] = sr
			ru.told(sr)
		}
	}

	// Then retention and check, one repository after the other.
	for _, name := range cfg.names {
		rr := repos[name]
		if rr.r != nil {
			if ctx.Err() == nil {
				ru.maintain(ctx, rr, true)
			}
			if ctx.Err() != nil {
				rr.rep.Status = StatusInterrupted
				rr.rep.Error = ErrInterrupted + ": retention, prune and check skipped"
			}
		}
		if opts.Repository != nil {
			opts.Repository(rr.rep)
		}
	}

	// Only finished sources change the state: an interrupted one keeps
	// its last run and last success.
	for _, sr := range rep.Sources {
		if sr.Status == StatusInterrupted {
			continue
		}
		s := ru.st.Sources[sr.Name]
		s.LastRun = sr.Started.UTC()
		if sr.Status != StatusFailed {
			s.LastSuccess = sr.Started.UTC()
		}
		ru.st.Sources[sr.Name] = s
	}
	stateErr := ru.st.Save(stateName)

	rep.DurationMS = time.Since(start).Milliseconds()
	failed, partial, interrupted, failedRepos, interruptedRepos := rep.Counts()
	rep.Status = StatusOK
	switch {
	case interrupted > 0 || interruptedRepos > 0:
		rep.Status = StatusInterrupted
	case failed > 0 || failedRepos > 0:
		rep.Status = StatusFailed
	case partial > 0:
		rep.Status = StatusPartial
	}
	return rep, stateErr
}

// told tells opts.Source of a finished source.
func (ru *runner) told(sr *SourceReport) {
	if ru.opts.Source == nil {
		return
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.opts.Source(sr)
}

// backupSource backs up one source into its repository.
func (ru *runner) backupSource(ctx context.Context, sc *SourceConfig, rr *repoRun) *SourceReport {
	sr := &SourceReport{Name: sc.Name, Kind: sc.Kind, Repository: sc.Repository, Status: StatusOK,
		SnapshotIDs: []string{}, Skipped: []repo.Skipped{}, Started: ru.env.now()}
	start := time.Now()
	defer func() { sr.DurationMS = time.Since(start).Milliseconds() }()
	fail := func(err error) *SourceReport {
		sr.Status, sr.Error = StatusFailed, oneLine(err.Error())
		sr.Errors++
		return sr
	}
	if rr == nil || rr.r == nil {
		msg := "not available"
		if rr != nil && rr.rep.Error != "" {
			msg = rr.rep.Error
		}
		return fail(fmt.Errorf("repository %s: %s", sc.Repository, msg))
	}
	run := func(src archive.Source, workers int) (*repo.Snapshot, error) {
		o := ru.backupOptions(sc, workers)
		if ru.cfg.Concurrency == 1 && ru.env.Progress != nil {
			p, done := ru.env.Progress(sc.Name)
			o.Progress = p
			defer done()
		}
		var snap *repo.Snapshot
		err := ru.retryLocked(ctx, func() error {
			var err error
			snap, err = backup.Run(ctx, rr.r, src, o)
			return err
		})
		return snap, err
	}
	conns := connections(sc)
	switch sc.Kind {
	case "maildir", "mbox":
		src, err := ru.env.Files(sc)
		if err != nil {
			return fail(err)
		}
		snap, err := run(src, 0)
		if err != nil {
			sr.addCheckpoint(snap)
			return fail(err)
		}
		sr.add(snap)
	case "imap":
		src, err := ru.imapSource(sc, conns)
		if err != nil {
			return fail(err)
		}
		defer src.Close()
		snap, err := run(src, conns)
		if err != nil {
			sr.addCheckpoint(snap)
			return fail(err)
		}
		sr.add(snap)
	case "graph":
		ru.backupGraph(ctx, sc, conns, sr, func(src archive.Source) (*repo.Snapshot, error) { return run(src, 0) })
	default:
		return fail(fmt.Errorf("unknown kind %q", sc.Kind))
	}
	return sr
}

// backupGraph backs up each mailbox of a Graph source into a snapshot of
// its own, connections at once. A failed mailbox fails the source; the
// other mailboxes are still backed up.
func (ru *runner) backupGraph(ctx context.Context, sc *SourceConfig, connections int, sr *SourceReport, run func(archive.Source) (*repo.Snapshot, error)) {
	client, mbs, err := ru.graphClient(ctx, sc, connections)
	if err != nil {
		sr.Status, sr.Error = StatusFailed, oneLine(err.Error())
		sr.Errors++
		return
	}
	mbs = ru.opts.Shard.mailboxes(sc.Name, mbs)
	snaps := make([]*repo.Snapshot, len(mbs))
	errs := make([]error, len(mbs))
	sem := make(chan struct{}, connections)
	var wg sync.WaitGroup
	for i, mb := range mbs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			snaps[i], errs[i] = run(client.Source(mb))
		}()
	}
	wg.Wait()
	var failures []string
	for i, mb := range mbs {
		m := MailboxReport{Mailbox: mb, Status: StatusOK}
		switch err := errs[i]; {
		case err != nil && sc.AllMailboxes && errors.Is(err, graph.ErrNoMailbox):
			ru.log.Info("no mailbox, left out", "mailbox", mb)
			continue
		case err != nil:
			m.Status, m.Error = StatusFailed, oneLine(err.Error())
			if s := snaps[i]; s != nil && s.Checkpoint {
				m.Checkpoint = s.ID.String()
				sr.addCheckpoint(s)
			}
			failures = append(failures, m.Error)
			sr.Errors++
		default:
			s := snaps[i]
			m.Snapshot, m.Messages, m.Added = s.ID.String(), s.Summary.Messages, s.Summary.NewMessages
			if s.Partial {
				m.Status = StatusPartial
			}
			sr.add(s)
		}
		sr.Mailboxes = append(sr.Mailboxes, m)
	}
	if len(failures) > 0 {
		sr.Status = StatusFailed
		sr.Error = fmt.Sprintf("%d of %d mailboxes failed: %s", len(failures), len(mbs), strings.Join(failures, "; "))
	}
}

// addCheckpoint notes the checkpoint of an interrupted backup, if snap is
// one. It counts for nothing else: the backup did not finish.
func (sr *SourceReport) addCheckpoint(snap *repo.Snapshot) {
	if snap != nil && snap.Checkpoint {
		sr.CheckpointIDs = append(sr.CheckpointIDs, snap.ID.String())
	}
}

// add counts a snapshot of the source.
func (sr *SourceReport) add(snap *repo.Snapshot) {
	s := snap.Summary
	sr.Snapshots++
	sr.SnapshotIDs = append(sr.SnapshotIDs, snap.ID.String())
	sr.Messages += s.Messages
	sr.Bytes += s.Bytes
	sr.MessagesAdded += s.NewMessages
	sr.BytesAdded += s.NewBytes
	sr.Skipped = append(sr.Skipped, snap.Skipped...)
	sr.Errors += len(snap.Skipped)
	if len(snap.Skipped) > 0 && sr.Status == StatusOK {
		sr.Status = StatusPartial
	}
}

// maintain applies a repository's retention policy, prunes when
// prune_every has passed since the last prune, checks a sample of the
// packs (when check) and measures the repository. The report says what it
// did and what failed; st records the prune and the check.
func (e *engine) maintainRepo(ctx context.Context, rr *repoRun, st *State, stMu *sync.Mutex, check bool) {
	if rr.r == nil {
		return
	}
	rep, r, rc := rr.rep, rr.r, rr.cfg
	fail := func(what string, err error) {
		rep.Status = StatusFailed
		msg := what + ": " + oneLine(err.Error())
		if rep.Error != "" {
			msg = rep.Error + "; " + msg
		}
		rep.Error = msg
	}
	recorded := func(fn func(rs *RepoState)) {
		stMu.Lock()
		defer stMu.Unlock()
		rs := st.Repositories[rc.name]
		fn(&rs)
		st.Repositories[rc.name] = rs
	}
	p := rc.Policy()
	if !p.Empty() && r.AppendOnly() {
		rep.RetentionSkipped = "append-only repository: forget and prune need planb forget/prune --admin"
		p = retention.Policy{}
	}
	if !p.Empty() {
		err := e.retryLocked(ctx, func() error {
			snaps, err := r.Snapshots(ctx)
			if err != nil {
				return err
			}
			_, remove := retention.Split(snaps, p)
			ids := make([]dedup.ID, len(remove))
			for i, s := range remove {
				ids[i] = s.ID
			}
			if len(ids) > 0 {
				if err := r.Forget(ctx, ids); err != nil {
					return err
				}
			}
			rep.Forgot = len(ids)
			return nil
		})
		stMu.Lock()
		due := st.Repositories[rc.name].LastPrune
		stMu.Unlock()
		if err != nil {
			fail("forget", err)
		} else if rc.pruneEvery > 0 && (due.IsZero() || !e.env.now().Before(due.Add(rc.pruneEvery))) {
			var pr *repo.PruneReport
			err := e.retryLocked(ctx, func() error {
				var err error
				pr, err = r.Prune(ctx, &repo.PruneOptions{})
				return err
			})
			if err != nil {
				fail("prune", err)
			} else {
				rep.Pruned = true
				rep.Prune = &PruneResult{Type: "prune", RemovedPacks: pr.RemovedPacks, RepackedPacks: pr.RepackedPacks, FreedBytes: pr.FreedBytes}
				recorded(func(rs *RepoState) { rs.LastPrune = e.env.now().UTC() })
			}
		}
	}
	if check {
		err := e.retryLocked(ctx, func() error {
			lock, err := r.Lock(ctx, false)
			if err != nil {
				return err
			}
			defer lock.Unlock()
			cr, err := r.Check(ctx, &repo.CheckOptions{ReadData: rc.sample >= 1, ReadDataFraction: rc.sample})
			if err != nil {
				return err
			}
			rep.Check = &CheckSummary{OK: cr.OK(), Packs: cr.Packs, PacksRead: cr.PacksRead, Errors: nonNil(cr.Errors)}
			return nil
		})
		switch {
		case err != nil:
			fail("check", err)
		case !rep.Check.OK:
			fail("check", fmt.Errorf("%s found", plural(len(rep.Check.Errors), "error")))
		default:
			recorded(func(rs *RepoState) { rs.LastCheck = e.env.now().UTC() })
		}
	}
	if ids, err := r.SnapshotIDs(ctx); err != nil {
		fail("list snapshots", err)
	} else {
		// Checkpoints are not snapshots for the report and the metrics.
		// A snapshot that does not load counts as a snapshot; check has
		// named it.
		snaps, _ := r.Snapshots(ctx)
		for _, s := range snaps {
			if s.Checkpoint {
				rep.Checkpoints++
			}
		}
		rep.Snapshots = len(ids) - rep.Checkpoints
	}
	if n, err := repoSize(ctx, r.Backend()); err != nil {
		fail("size", err)
	} else {
		rep.SizeBytes = n
	}
}

// maintain is maintainRepo for a run.
func (ru *runner) maintain(ctx context.Context, rr *repoRun, check bool) {
	if !ru.opts.Shard.maintains() {
		if rr.r != nil && rr.rep.RetentionSkipped == "" {
			rr.rep.RetentionSkipped = "shard " + ru.opts.Shard.String() + ": shard 0 applies retention, prunes and checks"
		}
		return
	}
	ru.maintainRepo(ctx, rr, ru.st, &ru.mu, check)
}

// repoSize adds up the sizes of the repository's files.
func repoSize(ctx context.Context, be backend.Backend) (int64, error) {
	var n int64
	for _, t := range []backend.FileType{backend.ConfigFile, backend.KeyFile, backend.PackFile, backend.IndexFile, backend.SnapshotFile, backend.LockFile} {
		if err := be.List(ctx, t, func(fi backend.FileInfo) error {
			n += fi.Size
			return nil
		}); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
