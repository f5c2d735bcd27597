package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/graph"
)

// DryRunReport is the report of planb run --dry-run: its --json output.
// It has the run report's shape where that fits.
type DryRunReport struct {
	Type         string          `json:"type"` // "run"
	DryRun       bool            `json:"dry_run"`
	Config       string          `json:"config"`
	Started      time.Time       `json:"started"`
	DurationMS   int64           `json:"duration_ms"`
	Status       string          `json:"status"` // ok or failed
	Sources      []*DryRunSource `json:"sources"`
	Repositories []*DryRunRepo   `json:"repositories"`
}

// DryRunSource is what a dry run found at one source: the folders and
// messages a backup would see.
type DryRunSource struct {
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`
	Repository string          `json:"repository"`
	Status     string          `json:"status"` // ok or failed
	Error      string          `json:"error,omitempty"`
	Folders    int             `json:"folders"`
	Messages   int64           `json:"messages"`
	DurationMS int64           `json:"duration_ms"`
	Mailboxes  []DryRunMailbox `json:"mailboxes,omitempty"` // graph
}

// DryRunMailbox is one mailbox of a Graph source.
type DryRunMailbox struct {
	Mailbox  string `json:"mailbox"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
	Folders  int    `json:"folders"`
	Messages int64  `json:"messages"`
}

// DryRunRepo is what a dry run found in one repository, opened
// read-only.
type DryRunRepo struct {
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

// DryRunOptions tune DryRun: Source and Repository, when set, are told
// of each source and repository as it is done (from one goroutine at a
// time).
type DryRunOptions struct {
	Source     func(*DryRunSource)
	Repository func(*DryRunRepo)
}

// DryRun checks what a run of cfg would do without writing anything: it
// opens each repository read-only (no lock, no stale lock removed), signs
// in to each source and counts its folders and messages. It writes
// neither the state nor the metrics.
func DryRun(ctx context.Context, cfg *Config, env *Env, opts DryRunOptions) *DryRunReport {
	e := newEngine(cfg, env, Locking{})
	start := time.Now()
	rep := &DryRunReport{Type: "run", DryRun: true, Config: cfg.file, Started: env.now().UTC(),
		Sources: make([]*DryRunSource, len(cfg.Source)), Repositories: []*DryRunRepo{}}

	failedRepos := 0
	for _, name := range cfg.names {
		dr := e.dryRunRepo(ctx, cfg.Repository[name])
		if dr.Status != StatusOK {
			failedRepos++
		}
		rep.Repositories = append(rep.Repositories, dr)
		if opts.Repository != nil {
			opts.Repository(dr)
		}
	}

	var mu sync.Mutex
	sem := make(chan struct{}, max(cfg.Concurrency, 1))
	var wg sync.WaitGroup
	for i, sc := range cfg.Source {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ds := e.dryRunSource(ctx, sc)
			rep.Sources[i] = ds
			if opts.Source != nil {
				mu.Lock()
				opts.Source(ds)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	failed := 0
	for _, ds := range rep.Sources {
		if ds.Status != StatusOK {
			failed++
		}
	}
	rep.Status = StatusOK
	if failed > 0 || failedRepos > 0 {
		rep.Status = StatusFailed
	}
	rep.DurationMS = time.Since(start).Milliseconds()
	return rep
}

// dryRunRepo opens a repository read-only and lists its snapshots and
// locks.
func (e *engine) dryRunRepo(ctx context.Context, rc *RepoConfig) *DryRunRepo {
	dr := &DryRunRepo{Name: rc.name, Path: rc.Path, Status: StatusOK, Snapshots: -1, StaleLocks: []string{}}
	fail := func(err error) *DryRunRepo {
		dr.Status, dr.Error = StatusFailed, oneLine(err.Error())
		return dr
	}
	rr := e.openRepoReadOnly(ctx, rc)
	if rr.r == nil {
		dr.Status, dr.Error = StatusFailed, rr.rep.Error
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
func (e *engine) dryRunSource(ctx context.Context, sc *SourceConfig) *DryRunSource {
	ds := &DryRunSource{Name: sc.Name, Kind: sc.Kind, Repository: sc.Repository, Status: StatusOK}
	start := time.Now()
	defer func() { ds.DurationMS = time.Since(start).Milliseconds() }()
	fail := func(err error) *DryRunSource {
		ds.Status, ds.Error = StatusFailed, oneLine(err.Error())
		return ds
	}
	switch sc.Kind {
	case "maildir", "mbox":
		src, err := e.env.Files(sc)
		if err != nil {
			return fail(err)
		}
		if ds.Folders, ds.Messages, err = countSource(ctx, src); err != nil {
			return fail(err)
		}
	case "imap":
		// Folders are counted one after the other: one connection.
		src, err := e.imapSource(sc, 1)
		if err != nil {
			return fail(err)
		}
		defer src.Close()
		if ds.Folders, ds.Messages, err = countSource(ctx, src); err != nil {
			return fail(err)
		}
	case "graph":
		client, mbs, err := e.graphClient(ctx, sc, 1)
		if err != nil {
			return fail(err)
		}
		var failures []string
		for _, mb := range mbs {
			m := DryRunMailbox{Mailbox: mb, Status: StatusOK}
			m.Folders, m.Messages, err = countSource(ctx, client.Source(mb))
			switch {
			case err != nil && sc.AllMailboxes && errors.Is(err, graph.ErrNoMailbox):
				continue // a run leaves it out too
			case err != nil:
				m.Status, m.Error = StatusFailed, oneLine(err.Error())
				failures = append(failures, m.Error)
			}
			ds.Folders += m.Folders
			ds.Messages += m.Messages
			ds.Mailboxes = append(ds.Mailboxes, m)
		}
		if len(failures) > 0 {
			ds.Status = StatusFailed
			ds.Error = fmt.Sprintf("%d of %d mailboxes failed: %s", len(failures), len(mbs), strings.Join(failures, "; "))
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
