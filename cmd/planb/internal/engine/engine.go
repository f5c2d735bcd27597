package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/imap"
)

// Env is what the engine takes from the command that runs it: how the
// repositories and sources of a config are opened (the command's own code,
// so that a config key means what the flag of the same name means), the
// libraries' log, and a clock. Every function must be set, but Progress
// and Now.
type Env struct {
	// OpenBackend opens the storage of a repository.
	OpenBackend func(ctx context.Context, rc *RepoConfig) (backend.Backend, error)
	// Password returns a repository's password.
	Password func(ctx context.Context, rc *RepoConfig) (string, error)
	// IMAP returns the options of an imap source, with connections
	// connections.
	IMAP func(sc *SourceConfig, connections int) (*imap.Options, error)
	// Graph returns the options of a graph source's client, with
	// connections mailboxes at once.
	Graph func(sc *SourceConfig, connections int) (*graph.Options, error)
	// Files returns the source of a maildir or mbox source.
	Files func(sc *SourceConfig) (archive.Source, error)
	// Progress, when set, returns the progress of a source's backup and
	// the function to call when it ends (a bar, when sources are backed
	// up one at a time on a terminal); nil: none.
	Progress func(source string) (archive.Progress, func())
	// IndexCache is the folder where repositories keep their index on
	// disk ("": in memory; see repo.Options.IndexCache).
	IndexCache string
	// Logger receives the libraries' messages (nil: discard).
	Logger *slog.Logger
	// Now is the clock of snapshots and state (nil: time.Now). Tests set
	// it.
	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Env) logger() *slog.Logger {
	if e.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Logger
}

// ErrNoRepository is the error of a repository path where none exists.
var ErrNoRepository = errors.New("repository does not exist")

// Locking is how the engine waits for a repository another process
// locked.
type Locking struct {
	// Wait is how long to wait (default 10m).
	Wait time.Duration
	// Poll is how often to try again (default 2s).
	Poll time.Duration
}

// engine is what Run, DryRun and a Watch share: the config, the
// environment and how to wait for locks.
type engine struct {
	cfg  *Config
	env  *Env
	lock Locking
	log  *slog.Logger // the libraries'
}

func newEngine(cfg *Config, env *Env, lock Locking) *engine {
	if lock.Wait == 0 {
		lock.Wait = 10 * time.Minute
	}
	if lock.Poll <= 0 {
		lock.Poll = 2 * time.Second
	}
	return &engine{cfg: cfg, env: env, lock: lock, log: env.logger()}
}

// repoRun is an open repository of a run.
type repoRun struct {
	cfg *RepoConfig
	r   *repo.Repository
	rep *RepoReport
}

// newRepoReport is the report of a repository before anything happened
// to it.
func newRepoReport(rc *RepoConfig) *RepoReport {
	return &RepoReport{Name: rc.name, Path: rc.Path, Status: StatusOK, StaleLocks: []string{}, SizeBytes: -1, Snapshots: -1}
}

// openRepo opens a repository of the config and removes the locks left
// by dead processes on this host, naming them in the report. Stale locks
// of other hosts stay: whether their holder is gone is a human's call
// (planb unlock), and until then they block forget and prune.
func (e *engine) openRepo(ctx context.Context, rc *RepoConfig) *repoRun {
	rr := e.openRepoReadOnly(ctx, rc)
	if rr.r == nil {
		return rr
	}
	removed, err := rr.r.RemoveDeadLocks(ctx)
	for _, l := range removed {
		rr.rep.StaleLocks = append(rr.rep.StaleLocks, staleLockName(l))
	}
	if err != nil {
		rr.rep.Status, rr.rep.Error = StatusFailed, oneLine(fmt.Errorf("remove dead locks: %w", err).Error())
		if ctx.Err() != nil {
			rr.rep.Status, rr.rep.Error = StatusInterrupted, ErrInterrupted
		}
	}
	return rr
}

// openRepoReadOnly opens a repository of the config without writing to
// it: the backend, the password, the keys, the config and the index. On
// failure rr.r is nil and the report says why.
func (e *engine) openRepoReadOnly(ctx context.Context, rc *RepoConfig) *repoRun {
	rr := &repoRun{cfg: rc, rep: newRepoReport(rc)}
	r, err := e.open(ctx, rc)
	if err != nil {
		rr.rep.Status, rr.rep.Error = StatusFailed, oneLine(err.Error())
		if ctx.Err() != nil {
			rr.rep.Status, rr.rep.Error = StatusInterrupted, ErrInterrupted
		}
		return rr
	}
	rr.r = r
	return rr
}

// open opens a repository of the config.
func (e *engine) open(ctx context.Context, rc *RepoConfig) (*repo.Repository, error) {
	be, err := e.env.OpenBackend(ctx, rc)
	if err != nil {
		return nil, err
	}
	pw, err := e.env.Password(ctx, rc)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, pw, &repo.Options{Logger: e.log, IndexCache: e.env.IndexCache})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			err = fmt.Errorf("%w: %s", ErrNoRepository, rc.Path)
		}
		return nil, err
	}
	return r, nil
}

// ProbeRepository opens a repository of the config read-only and closes
// it (planb config check --probe).
func ProbeRepository(ctx context.Context, cfg *Config, env *Env, name string) error {
	e := newEngine(cfg, env, Locking{})
	r, err := e.open(ctx, cfg.Repository[name])
	if err != nil {
		return err
	}
	return r.Close()
}

// staleLockName describes a lock a run removes.
func staleLockName(l repo.LockInfo) string {
	return short(l.ID) + " (" + l.String() + ")"
}

// retryLocked runs fn until it does not fail with repo.ErrLocked, or
// until the lock wait has passed.
func (e *engine) retryLocked(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(e.lock.Wait)
	for {
		err := fn()
		if err == nil || !errors.Is(err, repo.ErrLocked) || !time.Now().Before(deadline) {
			return err
		}
		wait := min(e.lock.Poll, time.Until(deadline))
		e.log.Info("repository locked, waiting", "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// connections returns a source's connections key, 4 if not set.
func connections(sc *SourceConfig) int {
	if sc.Connections == 0 {
		return 4
	}
	return sc.Connections
}

// imapSource returns the source of an imap source; the caller closes it.
func (e *engine) imapSource(sc *SourceConfig, connections int) (*imap.Source, error) {
	o, err := e.env.IMAP(sc, connections)
	if err != nil {
		return nil, err
	}
	return imap.New(o)
}

// signInGraph makes the Graph client of a graph source and signs in.
func (e *engine) signInGraph(ctx context.Context, sc *SourceConfig, connections int) (*graph.Client, error) {
	o, err := e.env.Graph(sc, connections)
	if err != nil {
		return nil, err
	}
	client, err := graph.NewClient(o)
	if err != nil {
		return nil, err
	}
	if err := client.Check(ctx); err != nil {
		return nil, err
	}
	return client, nil
}

// mailboxes returns the addresses of a graph source's mailboxes: every
// user's, with all_mailboxes.
func mailboxes(ctx context.Context, client *graph.Client, sc *SourceConfig) ([]string, error) {
	if !sc.AllMailboxes {
		return sc.Mailboxes, nil
	}
	users, err := client.Users(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range users {
		out = append(out, u.Mail)
	}
	return out, nil
}

// graphClient signs in for a graph source and returns the client and
// the addresses of the mailboxes to back up.
func (e *engine) graphClient(ctx context.Context, sc *SourceConfig, connections int) (*graph.Client, []string, error) {
	client, err := e.signInGraph(ctx, sc, connections)
	if err != nil {
		return nil, nil, err
	}
	mbs, err := mailboxes(ctx, client, sc)
	if err != nil {
		return nil, nil, err
	}
	return client, mbs, nil
}

// ProbeSource opens a source and signs in (planb config check --probe):
// an IMAP login and folder list, a Graph token request (and the user list
// with all_mailboxes), a look at a Maildir or mbox path.
func ProbeSource(ctx context.Context, cfg *Config, env *Env, sc *SourceConfig) error {
	e := newEngine(cfg, env, Locking{})
	switch sc.Kind {
	case "maildir", "mbox":
		_, err := env.Files(sc)
		return err
	case "imap":
		src, err := e.imapSource(sc, 1)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = src.Folders(ctx)
		return err
	case "graph":
		client, err := e.signInGraph(ctx, sc, 0)
		if err != nil {
			return err
		}
		if sc.AllMailboxes {
			_, err = client.Users(ctx)
		}
		return err
	}
	return fmt.Errorf("unknown kind %q", sc.Kind)
}

// backupOptions are the options of a backup of source sc with workers
// folders at once.
func (e *engine) backupOptions(sc *SourceConfig, workers int) *backup.Options {
	o := &backup.Options{Tags: sc.Tags, Host: sc.Host, Logger: e.log, Workers: workers, Checkpoint: e.cfg.checkpoint}
	if e.env.Now != nil {
		o.Time = e.env.now()
	}
	return o
}

// oneLine joins the lines of a multi-line error message.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "; ")
}

// plural writes "1 source", "2 sources".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// short abbreviates an ID to its first 8 characters.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
