package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/atomicfile"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/retention"
	"codeberg.org/planb/planb/dedup"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/imap"
)

// runCommand is `planb run`.
func runCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "back up every source of a config file, apply retention, check, and report (for cron or a systemd timer)",
		Description: "Reads the TOML config (see `planb config check`), backs up each source into its\n" +
			"repository (concurrency sources at once; one failing source does not stop the others),\n" +
			"forgets snapshots by each repository's keep policy, prunes every prune_every, checks\n" +
			"check_sample of the packs, and prints a report (one JSON object with --json).\n" +
			"On SIGTERM or SIGINT it stops the sources still running (each saves a checkpoint of\n" +
			"what it stored, which the next run goes on from), skips retention and check,\n" +
			"releases its locks, still writes the state, the metrics and the report (status\n" +
			"\"interrupted\") and exits 1. --dry-run opens each repository read-only and signs in\n" +
			"to each source to count its folders and messages, writing nothing.\n" +
			"Exit codes: 0 all good, 3 some sources partial, 1 a source or a repository failed\n" +
			"or the run was interrupted.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"PLANB_CONFIG"}, Usage: "the TOML config `FILE`"},
			&cli.StringFlag{Name: "metrics-file", Usage: "write Prometheus metrics to `FILE` (node_exporter textfile collector)"},
			&cli.DurationFlag{Name: "lock-wait", Value: 10 * time.Minute, Usage: "wait up to `DUR` for a repository locked by another process"},
			&cli.BoolFlag{Name: "dry-run", Usage: "only open each repository read-only and count each source's folders and messages; write nothing"},
			&cli.StringFlag{Name: "shard", EnvVars: []string{"PLANB_SHARD"}, Usage: "back up only part `K/N` (0 <= K < N) of the sources, a Graph tenant's mailboxes spread one by one; shard 0 also applies retention and checks"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "run --config FILE [--json] [--metrics-file FILE] [--lock-wait DUR] [--dry-run] [--shard K/N]"); err != nil {
				return err
			}
			if err := requireFlags(c, "config"); err != nil {
				return err
			}
			opts := runOptions{
				Config: c.String("config"), MetricsFile: c.String("metrics-file"), LockWait: c.Duration("lock-wait"),
			}
			var err error
			if opts.Shard, err = parseShard(c.String("shard")); err != nil {
				return usageErrorf("%v", err)
			}
			if c.Bool("dry-run") {
				return runDryRun(c.Context, opts, g)
			}
			return runRun(c.Context, opts, g)
		},
	}
}

// runOptions are the options of planb run.
type runOptions struct {
	Config      string
	MetricsFile string
	LockWait    time.Duration
	Shard       shard // see shard.go

	// Tests: a clock (snapshots then carry its time), a client that
	// trusts a fake Graph, and how often a locked repository is retried.
	now        func() time.Time
	httpClient *http.Client
	lockPoll   time.Duration
}

// Statuses of sources and repositories in the report.
const (
	statusOK      = "ok"
	statusPartial = "partial"
	statusFailed  = "failed"
	// statusInterrupted marks a run, a source or a repository that a
	// signal (SIGTERM, SIGINT) stopped before it finished.
	statusInterrupted = "interrupted"
)

// errInterrupted is the error of a source or repository that a signal
// stopped.
const errInterrupted = "interrupted by signal"

// runReport is the report of a run: the --json output.
type runReport struct {
	Type         string          `json:"type"` // "run"
	Config       string          `json:"config"`
	Started      time.Time       `json:"started"`
	DurationMS   int64           `json:"duration_ms"`
	Status       string          `json:"status"`
	Sources      []*sourceReport `json:"sources"`
	Repositories []*repoReport   `json:"repositories"`
}

// sourceReport is what the backup of one source did.
type sourceReport struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Repository  string   `json:"repository"`
	Status      string   `json:"status"` // ok, partial, failed or interrupted
	Error       string   `json:"error,omitempty"`
	Snapshots   int      `json:"snapshots"`
	SnapshotIDs []string `json:"snapshot_ids"`
	// CheckpointIDs are the checkpoints an interrupted source saved (not
	// counted in Snapshots, Messages...).
	CheckpointIDs []string        `json:"checkpoint_ids,omitempty"`
	Messages      int64           `json:"messages"`
	Bytes         int64           `json:"bytes"`
	MessagesAdded int64           `json:"messages_added"`
	BytesAdded    int64           `json:"bytes_added"`
	Skipped       []repo.Skipped  `json:"skipped"`
	Errors        int             `json:"errors"` // skipped messages and folders, failed mailboxes
	DurationMS    int64           `json:"duration_ms"`
	Mailboxes     []mailboxReport `json:"mailboxes,omitempty"` // graph

	started time.Time
	partial errPartial
}

// mailboxReport is one mailbox of a Graph source.
type mailboxReport struct {
	Mailbox  string `json:"mailbox"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	// Checkpoint is the checkpoint of an interrupted mailbox.
	Checkpoint string `json:"checkpoint,omitempty"`
	Messages   int64  `json:"messages"`
	Added      int64  `json:"messages_added"`
}

// repoReport is what happened to one repository: stale locks, retention,
// check, and its size afterwards.
type repoReport struct {
	Name       string   `json:"name"`
	Path       string   `json:"path"`
	Status     string   `json:"status"`
	Error      string   `json:"error,omitempty"`
	StaleLocks []string `json:"stale_locks_removed"` // of dead processes on this host
	SizeBytes  int64    `json:"size_bytes"`          // -1 if unknown
	Snapshots  int      `json:"snapshots"`           // -1 if unknown; checkpoints not counted
	// Checkpoints counts the checkpoints of unfinished backups kept.
	Checkpoints int  `json:"checkpoints"`
	Forgot      int  `json:"forgot"`
	Pruned      bool `json:"pruned"`
	// RetentionSkipped says why keep and prune_every were not applied
	// (an append-only repository: forget and prune are the
	// administrator's, run with --admin).
	RetentionSkipped string        `json:"retention_skipped,omitempty"`
	Prune            *pruneResult  `json:"prune,omitempty"`
	Check            *checkSummary `json:"check,omitempty"`
}

// checkSummary is the result of the sampled check.
type checkSummary struct {
	OK        bool              `json:"ok"`
	Packs     int               `json:"packs"`
	PacksRead int               `json:"packs_read"`
	Errors    []repo.CheckError `json:"errors"`
}

// repoRun is an open repository of a run.
type repoRun struct {
	cfg *repoConfig
	r   *repo.Repository
	rep *repoReport
}

type runner struct {
	opts runOptions
	g    *globalOptions
	cfg  *runConfig
	st   *runState
	mu   sync.Mutex // guards output and st
}

func (ru *runner) now() time.Time {
	if ru.opts.now != nil {
		return ru.opts.now()
	}
	return time.Now()
}

// loadConfigReported loads the config at path; its problems, if any, go
// to standard error one a line, and the error sums them up.
func loadConfigReported(path string, g *globalOptions) (*runConfig, error) {
	cfg, err := loadRunConfig(path)
	if err != nil {
		var probs configProblems
		if errors.As(err, &probs) {
			for _, p := range probs {
				fmt.Fprintln(g.stderr, p)
			}
			return nil, fmt.Errorf("config %s: %s; see `planb config check`", path, plural(len(probs), "problem"))
		}
		return nil, err
	}
	return cfg, nil
}

func runRun(ctx context.Context, opts runOptions, g *globalOptions) error {
	cfg, err := loadConfigReported(opts.Config, g)
	if err != nil {
		return err
	}
	cfg.Source = opts.Shard.sources(cfg.Source)
	if opts.lockPoll <= 0 {
		opts.lockPoll = 2 * time.Second
	}
	dir, err := cfg.stateDir()
	if err != nil {
		return err
	}
	stateName := opts.Shard.stateName(stateFile(dir, opts.Config))
	st, err := loadState(stateName)
	if err != nil {
		return err
	}
	ru := &runner{opts: opts, g: g, cfg: cfg, st: st}
	start := time.Now()
	rep := &runReport{Type: "run", Config: opts.Config, Started: ru.now().UTC(), Sources: []*sourceReport{}, Repositories: []*repoReport{}}

	// A signal (the context's end) stops the run where it is: sources
	// still running see the cancelled context and end without a snapshot,
	// no new source starts, retention and check are skipped. The state,
	// the metrics and the report are still written.
	repos := make(map[string]*repoRun)
	for _, name := range cfg.names {
		var rr *repoRun
		if ctx.Err() != nil {
			rr = &repoRun{cfg: cfg.Repository[name], rep: newRepoReport(cfg.Repository[name])}
			rr.rep.Status, rr.rep.Error = statusInterrupted, errInterrupted
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
	rep.Sources = make([]*sourceReport, len(cfg.Source))
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
			if sr.Status == statusFailed && ctx.Err() != nil {
				// It failed because the signal stopped it.
				sr.Status, sr.Error = statusInterrupted, errInterrupted
			}
			rep.Sources[i] = sr
			ru.printSource(sr)
		}()
	}
	wg.Wait()
	for i, sc := range cfg.Source {
		if rep.Sources[i] == nil {
			sr := &sourceReport{Name: sc.Name, Kind: sc.Kind, Repository: sc.Repository, Status: statusInterrupted,
				Error: errInterrupted, SnapshotIDs: []string{}, Skipped: []repo.Skipped{}, Errors: 1}
			rep.Sources[i] = sr
			ru.printSource(sr)
		}
	}

	// Then retention and check, one repository after the other.
	for _, name := range cfg.names {
		rr := repos[name]
		if rr.r != nil {
			if ctx.Err() == nil {
				ru.maintain(ctx, rr)
			}
			if ctx.Err() != nil {
				rr.rep.Status = statusInterrupted
				rr.rep.Error = errInterrupted + ": retention, prune and check skipped"
			}
		}
		ru.printRepo(rr.rep)
	}

	// Only finished sources change the state: an interrupted one keeps
	// its last run and last success.
	for _, sr := range rep.Sources {
		if sr.Status == statusInterrupted {
			continue
		}
		s := ru.st.Sources[sr.Name]
		s.LastRun = sr.started.UTC()
		if sr.Status != statusFailed {
			s.LastSuccess = sr.started.UTC()
		}
		ru.st.Sources[sr.Name] = s
	}
	stateErr := ru.st.save(stateName)

	rep.DurationMS = time.Since(start).Milliseconds()
	failed, partial, interrupted := 0, 0, 0
	var skipped errPartial
	for _, sr := range rep.Sources {
		switch sr.Status {
		case statusFailed:
			failed++
		case statusPartial:
			partial++
			skipped.Messages += sr.partial.Messages
			skipped.Folders += sr.partial.Folders
		case statusInterrupted:
			interrupted++
		}
	}
	failedRepos, interruptedRepos := 0, 0
	for _, rr := range rep.Repositories {
		switch rr.Status {
		case statusFailed:
			failedRepos++
		case statusInterrupted:
			interruptedRepos++
		}
	}
	rep.Status = statusOK
	switch {
	case interrupted > 0 || interruptedRepos > 0:
		rep.Status = statusInterrupted
	case failed > 0 || failedRepos > 0:
		rep.Status = statusFailed
	case partial > 0:
		rep.Status = statusPartial
	}
	ru.printSummary(rep, failed, partial, interrupted)

	var metricsErr error
	if opts.MetricsFile != "" {
		metricsErr = os.MkdirAll(filepath.Dir(opts.MetricsFile), 0o755)
		if metricsErr == nil {
			metricsErr = atomicfile.Write(opts.MetricsFile, []byte(formatMetrics(runMetrics(rep, ru.st))), 0o644)
		}
		if metricsErr != nil {
			metricsErr = fmt.Errorf("write metrics: %w", metricsErr)
		}
	}
	switch {
	case rep.Status == statusInterrupted:
		what := "retention and check skipped"
		if interrupted == 0 {
			what = "retention or check cut short"
		}
		return fmt.Errorf("run interrupted by signal: %d of %d sources finished, %s", len(rep.Sources)-interrupted, len(rep.Sources), what)
	case failed > 0 || failedRepos > 0:
		var parts []string
		if failed > 0 {
			parts = append(parts, fmt.Sprintf("%d of %d sources failed", failed, len(rep.Sources)))
		}
		if failedRepos > 0 {
			parts = append(parts, fmt.Sprintf("%d of %d repositories failed", failedRepos, len(rep.Repositories)))
		}
		return errors.New("run: " + strings.Join(parts, ", "))
	case stateErr != nil:
		return stateErr
	case metricsErr != nil:
		return metricsErr
	case partial > 0:
		return fmt.Errorf("run: %s partial: %w", plural(partial, "source"), &skipped)
	}
	return nil
}

// newRepoReport is the report of a repository before anything happened
// to it.
func newRepoReport(rc *repoConfig) *repoReport {
	return &repoReport{Name: rc.name, Path: rc.Path, Status: statusOK, StaleLocks: []string{}, SizeBytes: -1, Snapshots: -1}
}

// openRepo opens a repository of the config and removes the locks left
// by dead processes on this host, naming them in the report. Stale locks
// of other hosts stay: whether their holder is gone is a human's call
// (planb unlock), and until then they block forget and prune.
func (ru *runner) openRepo(ctx context.Context, rc *repoConfig) *repoRun {
	rr := ru.openRepoReadOnly(ctx, rc)
	if rr.r == nil {
		return rr
	}
	removed, err := rr.r.RemoveDeadLocks(ctx)
	for _, l := range removed {
		rr.rep.StaleLocks = append(rr.rep.StaleLocks, staleLockName(l))
	}
	if err != nil {
		rr.rep.Status, rr.rep.Error = statusFailed, oneLine(fmt.Errorf("remove dead locks: %w", err).Error())
		if ctx.Err() != nil {
			rr.rep.Status, rr.rep.Error = statusInterrupted, errInterrupted
		}
	}
	return rr
}

// openRepoReadOnly opens a repository of the config without writing to
// it: the backend, the password, the keys, the config and the index. On
// failure rr.r is nil and the report says why.
func (ru *runner) openRepoReadOnly(ctx context.Context, rc *repoConfig) *repoRun {
	rr := &repoRun{cfg: rc, rep: newRepoReport(rc)}
	fail := func(err error) *repoRun {
		rr.rep.Status, rr.rep.Error = statusFailed, oneLine(err.Error())
		if ctx.Err() != nil {
			rr.rep.Status, rr.rep.Error = statusInterrupted, errInterrupted
		}
		return rr
	}
	rg := *ru.g
	rg.Repo = rc.Path
	rg.S3 = s3Settings{Region: rc.S3Region, PathStyle: rc.S3PathStyle, InsecurePlaintext: rc.S3InsecurePlaintext}
	be, err := rg.backend(ctx)
	if err != nil {
		return fail(err)
	}
	pwo := passwordOptions{File: rc.PasswordFile, Command: rc.PasswordCommand}
	if rc.PasswordEnv != "" {
		pwo.Env = os.Getenv(rc.PasswordEnv)
	}
	pw, err := pwo.get(ctx, "repository password", false)
	if err != nil {
		return fail(err)
	}
	r, err := repo.Open(ctx, be, pw, &repo.Options{Logger: ru.g.logger})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			err = fmt.Errorf("%w: %s", errNoRepository, rc.Path)
		}
		return fail(err)
	}
	rr.r = r
	return rr
}

// staleLockName describes a lock a run removes.
func staleLockName(l repo.LockInfo) string {
	return short(l.ID) + " (" + l.String() + ")"
}

// retryLocked runs fn until it does not fail with repo.ErrLocked, or
// until --lock-wait has passed.
func (ru *runner) retryLocked(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(ru.opts.LockWait)
	for {
		err := fn()
		if err == nil || !errors.Is(err, repo.ErrLocked) || !time.Now().Before(deadline) {
			return err
		}
		wait := min(ru.opts.lockPoll, time.Until(deadline))
		ru.g.logger.Info("repository locked, waiting", "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// backupSource backs up one source into its repository.
func (ru *runner) backupSource(ctx context.Context, sc *sourceConfig, rr *repoRun) *sourceReport {
	sr := &sourceReport{Name: sc.Name, Kind: sc.Kind, Repository: sc.Repository, Status: statusOK,
		SnapshotIDs: []string{}, Skipped: []repo.Skipped{}, started: ru.now()}
	start := time.Now()
	defer func() { sr.DurationMS = time.Since(start).Milliseconds() }()
	fail := func(err error) *sourceReport {
		sr.Status, sr.Error = statusFailed, oneLine(err.Error())
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
	bopts := func(workers int) *backup.Options {
		o := &backup.Options{Tags: sc.Tags, Host: sc.Host, Logger: ru.g.logger, Workers: workers, Checkpoint: ru.cfg.checkpoint}
		if ru.opts.now != nil {
			o.Time = ru.now()
		}
		if ru.cfg.Concurrency == 1 && ru.g.showBar() {
			o.Progress = newProgress("backup "+sc.Name, nil, true, ru.g.stderr)
		}
		return o
	}
	run := func(src archive.Source, o *backup.Options) (*repo.Snapshot, error) {
		var snap *repo.Snapshot
		err := ru.retryLocked(ctx, func() error {
			var err error
			snap, err = backup.Run(ctx, rr.r, src, o)
			return err
		})
		if p, ok := o.Progress.(*progress); ok {
			p.Done()
		}
		return snap, err
	}
	connections := sc.Connections
	if connections == 0 {
		connections = 4
	}
	switch sc.Kind {
	case "maildir", "mbox":
		src, err := newSource(sc.Kind, sc.Path, ru.g)
		if err != nil {
			return fail(err)
		}
		snap, err := run(src, bopts(0))
		if err != nil {
			sr.addCheckpoint(snap)
			return fail(err)
		}
		sr.add(snap)
	case "imap":
		src, err := ru.imapSource(sc, connections)
		if err != nil {
			return fail(err)
		}
		defer src.Close()
		snap, err := run(src, bopts(connections))
		if err != nil {
			sr.addCheckpoint(snap)
			return fail(err)
		}
		sr.add(snap)
	case "graph":
		ru.backupGraph(ctx, sc, connections, sr, func(src archive.Source) (*repo.Snapshot, error) { return run(src, bopts(0)) })
	default:
		return fail(fmt.Errorf("unknown kind %q", sc.Kind))
	}
	return sr
}

// backupGraph backs up each mailbox of a Graph source into a snapshot of
// its own, connections at once. A failed mailbox fails the source; the
// other mailboxes are still backed up.
func (ru *runner) backupGraph(ctx context.Context, sc *sourceConfig, connections int, sr *sourceReport, run func(archive.Source) (*repo.Snapshot, error)) {
	client, mailboxes, err := ru.graphClient(ctx, sc, connections)
	if err != nil {
		sr.Status, sr.Error = statusFailed, oneLine(err.Error())
		sr.Errors++
		return
	}
	mailboxes = ru.opts.Shard.mailboxes(sc.Name, mailboxes)
	snaps := make([]*repo.Snapshot, len(mailboxes))
	errs := make([]error, len(mailboxes))
	sem := make(chan struct{}, connections)
	var wg sync.WaitGroup
	for i, mb := range mailboxes {
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
	for i, mb := range mailboxes {
		m := mailboxReport{Mailbox: mb, Status: statusOK}
		switch err := errs[i]; {
		case err != nil && sc.AllMailboxes && errors.Is(err, graph.ErrNoMailbox):
			ru.g.logger.Info("no mailbox, left out", "mailbox", mb)
			continue
		case err != nil:
			m.Status, m.Error = statusFailed, oneLine(err.Error())
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
				m.Status = statusPartial
			}
			sr.add(s)
		}
		sr.Mailboxes = append(sr.Mailboxes, m)
	}
	if len(failures) > 0 {
		sr.Status = statusFailed
		sr.Error = fmt.Sprintf("%d of %d mailboxes failed: %s", len(failures), len(mailboxes), strings.Join(failures, "; "))
	}
}

// imapSource returns the source of an imap [[source]]; the caller closes
// it.
func (ru *runner) imapSource(sc *sourceConfig, connections int) (*imap.Source, error) {
	o := backupIMAPOptions{
		URL: sc.URL, Folders: sc.Folders, Exclude: sc.Exclude, Connections: connections,
		PasswordFile: sc.PasswordFile, TokenCommand: sc.OAuth2TokenCommand,
		InsecurePlaintext: sc.InsecurePlaintext, InsecureSkipVerify: sc.InsecureSkipVerify, CAFile: sc.CAFile,
	}
	if sc.PasswordEnv != "" {
		o.PasswordEnv = os.Getenv(sc.PasswordEnv)
	}
	io, err := imapSourceOptions(o, ru.g)
	if err != nil {
		return nil, err
	}
	return imap.New(io)
}

// signInGraph makes the Graph client of a graph [[source]] and signs in.
func (ru *runner) signInGraph(ctx context.Context, sc *sourceConfig, connections int) (*graph.Client, error) {
	cloud := sc.Cloud
	if cloud == "" {
		cloud = "global"
	}
	o := graphBackupOptions{
		Tenant: sc.Tenant, ClientID: sc.ClientID, Mailboxes: sc.Mailboxes, AllMailboxes: sc.AllMailboxes,
		SecretFile: sc.ClientSecretFile, Certificate: sc.ClientCertificate, Cloud: cloud,
		GraphEndpoint: sc.GraphEndpoint, AuthorityHost: sc.AuthorityHost, Connections: connections,
		httpClient: ru.opts.httpClient,
	}
	if sc.ClientSecretEnv != "" {
		o.SecretEnv = os.Getenv(sc.ClientSecretEnv)
	}
	gopts, err := o.graphOptions(ru.g)
	if err != nil {
		return nil, err
	}
	client, err := graph.NewClient(gopts)
	if err != nil {
		return nil, err
	}
	if err := client.Check(ctx); err != nil {
		return nil, err
	}
	return client, nil
}

// graphClient signs in for a graph [[source]] and returns the client and
// the addresses of the mailboxes to back up (every user's, with
// all_mailboxes).
func (ru *runner) graphClient(ctx context.Context, sc *sourceConfig, connections int) (*graph.Client, []string, error) {
	client, err := ru.signInGraph(ctx, sc, connections)
	if err != nil {
		return nil, nil, err
	}
	mailboxes := sc.Mailboxes
	if sc.AllMailboxes {
		users, err := client.Users(ctx)
		if err != nil {
			return nil, nil, err
		}
		mailboxes = nil
		for _, u := range users {
			mailboxes = append(mailboxes, u.Mail)
		}
	}
	return client, mailboxes, nil
}

// addCheckpoint notes the checkpoint of an interrupted backup, if snap is
// one. It counts for nothing else: the backup did not finish.
func (sr *sourceReport) addCheckpoint(snap *repo.Snapshot) {
	if snap != nil && snap.Checkpoint {
		sr.CheckpointIDs = append(sr.CheckpointIDs, snap.ID.String())
	}
}

// add counts a snapshot of the source.
func (sr *sourceReport) add(snap *repo.Snapshot) {
	s := snap.Summary
	sr.Snapshots++
	sr.SnapshotIDs = append(sr.SnapshotIDs, snap.ID.String())
	sr.Messages += s.Messages
	sr.Bytes += s.Bytes
	sr.MessagesAdded += s.NewMessages
	sr.BytesAdded += s.NewBytes
	sr.Skipped = append(sr.Skipped, snap.Skipped...)
	sr.Errors += len(snap.Skipped)
	if p, ok := newPartial(snap.Skipped).(*errPartial); ok && p != nil {
		sr.partial.Messages += p.Messages
		sr.partial.Folders += p.Folders
		if sr.Status == statusOK {
			sr.Status = statusPartial
		}
	}
}

// maintain applies a repository's retention policy, prunes when
// prune_every has passed since the last prune, checks a sample of the
// packs and measures the repository.
func (ru *runner) maintain(ctx context.Context, rr *repoRun) {
	if rr.r == nil {
		return
	}
	rep, r, rc := rr.rep, rr.r, rr.cfg
	if !ru.opts.Shard.maintains() {
		rep.RetentionSkipped = "shard " + ru.opts.Shard.String() + ": shard 0 applies retention, prunes and checks"
		return
	}
	fail := func(what string, err error) {
		rep.Status = statusFailed
		msg := what + ": " + oneLine(err.Error())
		if rep.Error != "" {
			msg = rep.Error + "; " + msg
		}
		rep.Error = msg
	}
	p := rc.Keep.policy()
	if !p.Empty() && r.AppendOnly() {
		rep.RetentionSkipped = "append-only repository: forget and prune need planb forget/prune --admin"
		p = retention.Policy{}
	}
	if !p.Empty() {
		err := ru.retryLocked(ctx, func() error {
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
		if err != nil {
			fail("forget", err)
		} else if due := ru.st.Repositories[rc.name].LastPrune; rc.pruneEvery > 0 && (due.IsZero() || !ru.now().Before(due.Add(rc.pruneEvery))) {
			var pr *repo.PruneReport
			err := ru.retryLocked(ctx, func() error {
				var err error
				pr, err = r.Prune(ctx, &repo.PruneOptions{})
				return err
			})
			if err != nil {
				fail("prune", err)
			} else {
				rep.Pruned = true
				rep.Prune = &pruneResult{Type: "prune", RemovedPacks: pr.RemovedPacks, RepackedPacks: pr.RepackedPacks, FreedBytes: pr.FreedBytes}
				ru.st.Repositories[rc.name] = repoState{LastPrune: ru.now().UTC()}
			}
		}
	}
	err := ru.retryLocked(ctx, func() error {
		lock, err := r.Lock(ctx, false)
		if err != nil {
			return err
		}
		defer lock.Unlock()
		cr, err := r.Check(ctx, &repo.CheckOptions{ReadData: rc.sample >= 1, ReadDataFraction: rc.sample})
		if err != nil {
			return err
		}
		rep.Check = &checkSummary{OK: cr.OK(), Packs: cr.Packs, PacksRead: cr.PacksRead, Errors: nonNil(cr.Errors)}
		return nil
	})
	switch {
	case err != nil:
		fail("check", err)
	case !rep.Check.OK:
		fail("check", fmt.Errorf("%s found", plural(len(rep.Check.Errors), "error")))
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

// printSource prints one line for a finished source (text mode).
func (ru *runner) printSource(sr *sourceReport) {
	if ru.g.json != nil {
		return
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ru.g.Quiet && sr.Status == statusOK {
		return
	}
	// Skipped messages are named on stderr even with --quiet.
	line := fmt.Sprintf("source %s (%s → %s): %s", sr.Name, sr.Kind, sr.Repository, sr.Status)
	if sr.Snapshots > 0 {
		line += fmt.Sprintf(", %s (%d new), %s (%s new), %s", plural(int(sr.Messages), "message"), sr.MessagesAdded,
			formatBytes(sr.Bytes), formatBytes(sr.BytesAdded), plural(sr.Snapshots, "snapshot"))
	}
	if n := len(sr.CheckpointIDs); n > 0 {
		ids := make([]string, n)
		for i, id := range sr.CheckpointIDs {
			ids[i] = short(id)
		}
		line += fmt.Sprintf(", %s saved (%s)", plural(n, "checkpoint"), strings.Join(ids, ", "))
	}
	if len(sr.Skipped) > 0 {
		line += fmt.Sprintf(", %d skipped", len(sr.Skipped))
	}
	line += ", " + formatDuration(time.Duration(sr.DurationMS)*time.Millisecond)
	if sr.Error != "" {
		line += ": " + sr.Error
	}
	fmt.Fprintln(ru.g.stdout, line)
	for _, sk := range sr.Skipped {
		if sk.SourceID == "" {
			fmt.Fprintf(ru.g.stderr, "skipped %s: folder %s: %s\n", sr.Name, sk.Folder, sk.Error)
		} else {
			fmt.Fprintf(ru.g.stderr, "skipped %s: %s %s: %s\n", sr.Name, sk.Folder, sk.SourceID, sk.Error)
		}
	}
}

// printRepo prints one line for a repository (text mode).
func (ru *runner) printRepo(r *repoReport) {
	if ru.g.json != nil || (ru.g.Quiet && r.Status == statusOK) {
		return
	}
	var parts []string
	for _, l := range r.StaleLocks {
		parts = append(parts, "removed the lock of a dead process "+l)
	}
	if r.Snapshots >= 0 {
		parts = append(parts, fmt.Sprintf("%s, %s", plural(r.Snapshots, "snapshot"), formatBytes(r.SizeBytes)))
	}
	if r.Checkpoints > 0 {
		parts = append(parts, plural(r.Checkpoints, "checkpoint")+" of unfinished backups")
	}
	if r.RetentionSkipped != "" {
		parts = append(parts, "retention skipped ("+r.RetentionSkipped+")")
	}
	if r.Forgot > 0 {
		parts = append(parts, "forgot "+plural(r.Forgot, "snapshot"))
	}
	if r.Prune != nil {
		parts = append(parts, fmt.Sprintf("pruned: removed %d packs, repacked %d, freed %s", r.Prune.RemovedPacks, r.Prune.RepackedPacks, formatBytes(r.Prune.FreedBytes)))
	}
	if c := r.Check; c != nil {
		res := "ok"
		if !c.OK {
			res = plural(len(c.Errors), "error")
		}
		parts = append(parts, fmt.Sprintf("check %s (%d of %d packs read)", res, c.PacksRead, c.Packs))
	}
	line := fmt.Sprintf("repository %s: %s", r.Name, r.Status)
	if len(parts) > 0 {
		line += ", " + strings.Join(parts, ", ")
	}
	if r.Error != "" {
		line += ": " + r.Error
	}
	fmt.Fprintln(ru.g.stdout, line)
}

func (ru *runner) printSummary(rep *runReport, failed, partial, interrupted int) {
	if ru.g.json != nil {
		ru.g.json.write(rep)
		return
	}
	if ru.g.Quiet && rep.Status != statusInterrupted {
		return
	}
	ok := len(rep.Sources) - failed - partial - interrupted
	okRepos := 0
	for _, r := range rep.Repositories {
		if r.Status == statusOK {
			okRepos++
		}
	}
	line := fmt.Sprintf("run %s: %d sources ok, %d partial, %d failed", rep.Status, ok, partial, failed)
	if interrupted > 0 {
		line += fmt.Sprintf(", %d interrupted", interrupted)
	}
	fmt.Fprintf(ru.g.stdout, "%s; %d of %d repositories ok\n", line, okRepos, len(rep.Repositories))
}

// dryRunReport is the report of planb run --dry-run: the --json output.
// It has the run report's shape where that fits.
type dryRunReport struct {
	Type         string          `json:"type"` // "run"
	DryRun       bool            `json:"dry_run"`
	Config       string          `json:"config"`
	Started      time.Time       `json:"started"`
	DurationMS   int64           `json:"duration_ms"`
	Status       string          `json:"status"` // ok or failed
	Sources      []*dryRunSource `json:"sources"`
	Repositories []*dryRunRepo   `json:"repositories"`
}

// dryRunSource is what a dry run found at one source: the folders and
// messages a backup would see.
type dryRunSource struct {
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`
	Repository string          `json:"repository"`
	Status     string          `json:"status"` // ok or failed
	Error      string          `json:"error,omitempty"`
	Folders    int             `json:"folders"`
	Messages   int64           `json:"messages"`
	DurationMS int64           `json:"duration_ms"`
	Mailboxes  []dryRunMailbox `json:"mailboxes,omitempty"` // graph
}

// dryRunMailbox is one mailbox of a Graph source.
type dryRunMailbox struct {
	Mailbox  string `json:"mailbox"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
	Folders  int    `json:"folders"`
	Messages int64  `json:"messages"`
}

// dryRunRepo is what a dry run found in one repository, opened
// read-only.
type dryRunRepo struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	AppendOnly bool   `json:"append_only"`
	Snapshots  int    `json:"snapshots"` // -1 if unknown
	Locks      int    `json:"locks"`
	// StaleLocks are the locks a run would remove: those of dead
	// processes on this host.
	StaleLocks []string `json:"stale_locks"`
}

// runDryRun checks what a run of the config would do without writing
// anything: it opens each repository read-only (no lock, no stale lock
// removed), signs in to each source and counts its folders and messages,
// and writes neither the state nor the metrics file.
func runDryRun(ctx context.Context, opts runOptions, g *globalOptions) error {
	cfg, err := loadConfigReported(opts.Config, g)
	if err != nil {
		return err
	}
	cfg.Source = opts.Shard.sources(cfg.Source)
	ru := &runner{opts: opts, g: g, cfg: cfg}
	start := time.Now()
	rep := &dryRunReport{Type: "run", DryRun: true, Config: opts.Config, Started: ru.now().UTC(),
		Sources: make([]*dryRunSource, len(cfg.Source)), Repositories: []*dryRunRepo{}}

	failedRepos := 0
	for _, name := range cfg.names {
		dr := ru.dryRunRepo(ctx, cfg.Repository[name])
		if dr.Status != statusOK {
			failedRepos++
		}
		rep.Repositories = append(rep.Repositories, dr)
		ru.printDryRepo(dr)
	}

	sem := make(chan struct{}, max(cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i, sc := range cfg.Source {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ds := ru.dryRunSource(ctx, sc)
			rep.Sources[i] = ds
			ru.printDrySource(ds)
		}()
	}
	wg.Wait()
	failed := 0
	for _, ds := range rep.Sources {
		if ds.Status != statusOK {
			failed++
		}
	}
	rep.Status = statusOK
	if failed > 0 || failedRepos > 0 {
		rep.Status = statusFailed
	}
	rep.DurationMS = time.Since(start).Milliseconds()
	switch {
	case g.json != nil:
		g.json.write(rep)
	case !g.Quiet || rep.Status != statusOK:
		fmt.Fprintf(g.stdout, "dry run %s: %d of %d sources ok; %d of %d repositories ok\n", rep.Status,
			len(rep.Sources)-failed, len(rep.Sources), len(rep.Repositories)-failedRepos, len(rep.Repositories))
	}
	if failed == 0 && failedRepos == 0 {
		return nil
	}
	var parts []string
	if failed > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d sources failed", failed, len(rep.Sources)))
	}
	if failedRepos > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d repositories failed", failedRepos, len(rep.Repositories)))
	}
	return errors.New("run --dry-run: " + strings.Join(parts, ", "))
}

// dryRunRepo opens a repository read-only and lists its snapshots and
// locks.
func (ru *runner) dryRunRepo(ctx context.Context, rc *repoConfig) *dryRunRepo {
	dr := &dryRunRepo{Name: rc.name, Path: rc.Path, Status: statusOK, Snapshots: -1, StaleLocks: []string{}}
	fail := func(err error) *dryRunRepo {
		dr.Status, dr.Error = statusFailed, oneLine(err.Error())
		return dr
	}
	rr := ru.openRepoReadOnly(ctx, rc)
	if rr.r == nil {
		dr.Status, dr.Error = statusFailed, rr.rep.Error
		return dr
	}
	defer rr.r.Close()
	dr.AppendOnly = rr.r.AppendOnly()
	ids, err := rr.r.SnapshotIDs(ctx)
	if err != nil {
		return fail(err)
	}
	dr.Snapshots = len(ids)
	locks, err := rr.r.Locks(ctx)
	if err != nil {
		return fail(err)
	}
	dr.Locks = len(locks)
	for _, l := range locks {
		if l.Dead {
			dr.StaleLocks = append(dr.StaleLocks, staleLockName(l))
		}
	}
	return dr
}

// dryRunSource signs in to a source and counts the folders and messages
// a backup would see.
func (ru *runner) dryRunSource(ctx context.Context, sc *sourceConfig) *dryRunSource {
	ds := &dryRunSource{Name: sc.Name, Kind: sc.Kind, Repository: sc.Repository, Status: statusOK}
	start := time.Now()
	defer func() { ds.DurationMS = time.Since(start).Milliseconds() }()
	fail := func(err error) *dryRunSource {
		ds.Status, ds.Error = statusFailed, oneLine(err.Error())
		return ds
	}
	switch sc.Kind {
	case "maildir", "mbox":
		src, err := newSource(sc.Kind, sc.Path, ru.g)
		if err != nil {
			return fail(err)
		}
		if ds.Folders, ds.Messages, err = countSource(ctx, src); err != nil {
			return fail(err)
		}
	case "imap":
		// Folders are counted one after the other: one connection.
		src, err := ru.imapSource(sc, 1)
		if err != nil {
			return fail(err)
		}
		defer src.Close()
		if ds.Folders, ds.Messages, err = countSource(ctx, src); err != nil {
			return fail(err)
		}
	case "graph":
		client, mailboxes, err := ru.graphClient(ctx, sc, 1)
		if err != nil {
			return fail(err)
		}
		var failures []string
		for _, mb := range mailboxes {
			m := dryRunMailbox{Mailbox: mb, Status: statusOK}
			m.Folders, m.Messages, err = countSource(ctx, client.Source(mb))
			switch {
			case err != nil && sc.AllMailboxes && errors.Is(err, graph.ErrNoMailbox):
				continue // a run leaves it out too
			case err != nil:
				m.Status, m.Error = statusFailed, oneLine(err.Error())
				failures = append(failures, m.Error)
			}
			ds.Folders += m.Folders
			ds.Messages += m.Messages
			ds.Mailboxes = append(ds.Mailboxes, m)
		}
		if len(failures) > 0 {
			ds.Status = statusFailed
			ds.Error = fmt.Sprintf("%d of %d mailboxes failed: %s", len(failures), len(mailboxes), strings.Join(failures, "; "))
		}
	default:
		return fail(fmt.Errorf("unknown kind %q", sc.Kind))
	}
	return ds
}

// countSource counts the folders of src and the messages in them, as a
// backup would see them. Every message is reported as known (Have), so
// sources list messages without reading their bodies where they can:
// IMAP fetches UIDs, flags and sizes, a Maildir is a directory walk, Graph
// lists delta pages of message metadata.
func countSource(ctx context.Context, src archive.Source) (folders int, messages int64, err error) {
	list, err := src.Folders(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, f := range list {
		c := &countChanges{ids: make(map[string]struct{})}
		if _, err := src.Sync(ctx, f, nil, c); err != nil {
			return len(list), messages, fmt.Errorf("count folder %q: %w", f.Path, err)
		}
		messages += int64(len(c.ids))
	}
	return len(list), messages, nil
}

// countChanges collects the source IDs of one folder's listing
// (archive.Changes): a source that starts over calls Reset again.
type countChanges struct {
	ids map[string]struct{}
}

func (c *countChanges) Reset() error {
	clear(c.ids)
	return nil
}

func (c *countChanges) Have(string, string) bool { return true }

func (c *countChanges) Keep(id string, _ []string) error {
	c.ids[id] = struct{}{}
	return nil
}

func (c *countChanges) Put(m *archive.Message) error {
	if _, err := io.Copy(io.Discard, m.Body); err != nil {
		return err
	}
	c.ids[m.SourceID] = struct{}{}
	return nil
}

func (c *countChanges) Delete(id string) error {
	delete(c.ids, id)
	return nil
}

// Skip counts a message the source cannot read: it is there, and a
// backup would name it.
func (c *countChanges) Skip(id string, _ error) error {
	c.ids[id] = struct{}{}
	return nil
}

// printDryRepo prints one line for a repository of a dry run (text
// mode).
func (ru *runner) printDryRepo(dr *dryRunRepo) {
	if ru.g.json != nil || (ru.g.Quiet && dr.Status == statusOK) {
		return
	}
	line := fmt.Sprintf("repository %s: %s", dr.Name, dr.Status)
	if dr.Status == statusOK {
		line += ", " + plural(dr.Snapshots, "snapshot")
		if dr.AppendOnly {
			line += ", append-only"
		}
		if dr.Locks > 0 {
			line += ", " + plural(dr.Locks, "lock")
		}
		if n := len(dr.StaleLocks); n > 0 {
			line += fmt.Sprintf(" (%d of dead processes, a run removes them: %s)", n, strings.Join(dr.StaleLocks, ", "))
		}
	}
	if dr.Error != "" {
		line += ": " + dr.Error
	}
	fmt.Fprintln(ru.g.stdout, line)
}

// printDrySource prints one line for a source of a dry run (text mode).
func (ru *runner) printDrySource(ds *dryRunSource) {
	if ru.g.json != nil {
		return
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if ru.g.Quiet && ds.Status == statusOK {
		return
	}
	line := fmt.Sprintf("source %s (%s → %s): %s", ds.Name, ds.Kind, ds.Repository, ds.Status)
	if ds.Status == statusOK || ds.Folders > 0 {
		line += fmt.Sprintf(", %s, %s", plural(ds.Folders, "folder"), plural(int(ds.Messages), "message"))
	}
	line += ", " + formatDuration(time.Duration(ds.DurationMS)*time.Millisecond)
	if ds.Error != "" {
		line += ": " + ds.Error
	}
	fmt.Fprintln(ru.g.stdout, line)
}
