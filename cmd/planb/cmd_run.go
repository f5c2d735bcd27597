package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/atomicfile"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/cmd/planb/internal/engine"
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
			if opts.Shard, err = engine.ParseShard(c.String("shard")); err != nil {
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
	Shard       engine.Shard

	// Tests: a clock (snapshots then carry its time), a client that
	// trusts a fake Graph, and how often a locked repository is retried.
	now        func() time.Time
	httpClient *http.Client
	lockPoll   time.Duration
}

// The engine's report, as tests and printers name it.
type (
	runReport    = engine.RunReport
	sourceReport = engine.SourceReport
	repoReport   = engine.RepoReport
)

// loadConfigReported loads the config at path; its problems, if any, go
// to standard error one a line, and the error sums them up.
func loadConfigReported(path string, g *globalOptions) (*engine.Config, error) {
	cfg, err := engine.Load(path)
	if err != nil {
		var probs engine.Problems
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

// engineEnv is how the engine opens what a config names: with the code
// of the backup commands, so that a key of the config means what the flag
// of the same name means.
func engineEnv(g *globalOptions, httpClient *http.Client, now func() time.Time, bars bool) *engine.Env {
	env := &engine.Env{
		OpenBackend: func(ctx context.Context, rc *engine.RepoConfig) (backend.Backend, error) {
			rg := *g
			rg.Repo = rc.Path
			rg.S3 = s3Settings{Region: rc.S3Region, PathStyle: rc.S3PathStyle, InsecurePlaintext: rc.S3InsecurePlaintext}
			return rg.backend(ctx)
		},
		Password: func(ctx context.Context, rc *engine.RepoConfig) (string, error) {
			pwo := passwordOptions{File: rc.PasswordFile, Command: rc.PasswordCommand}
			if rc.PasswordEnv != "" {
				pwo.Env = os.Getenv(rc.PasswordEnv)
			}
			return pwo.get(ctx, "repository password", false)
		},
		IMAP: func(sc *engine.SourceConfig, connections int) (*imap.Options, error) {
			o := backupIMAPOptions{
				URL: sc.URL, Folders: sc.Folders, Exclude: sc.Exclude, Connections: connections,
				PasswordFile: sc.PasswordFile, TokenCommand: sc.OAuth2TokenCommand,
				InsecurePlaintext: sc.InsecurePlaintext, InsecureSkipVerify: sc.InsecureSkipVerify, CAFile: sc.CAFile,
			}
			if sc.PasswordEnv != "" {
				o.PasswordEnv = os.Getenv(sc.PasswordEnv)
			}
			return imapSourceOptions(o, g)
		},
		Graph: func(sc *engine.SourceConfig, connections int) (*graph.Options, error) {
			cloud := sc.Cloud
			if cloud == "" {
				cloud = "global"
			}
			o := graphBackupOptions{
				Tenant: sc.Tenant, ClientID: sc.ClientID, Mailboxes: sc.Mailboxes, AllMailboxes: sc.AllMailboxes,
				SecretFile: sc.ClientSecretFile, Certificate: sc.ClientCertificate, Cloud: cloud,
				GraphEndpoint: sc.GraphEndpoint, AuthorityHost: sc.AuthorityHost, Connections: connections,
				httpClient: httpClient,
			}
			if sc.ClientSecretEnv != "" {
				o.SecretEnv = os.Getenv(sc.ClientSecretEnv)
			}
			return o.graphOptions(g)
		},
		Files:      func(sc *engine.SourceConfig) (archive.Source, error) { return newSource(sc.Kind, sc.Path, g) },
		Logger:     g.logger,
		IndexCache: g.indexCache(),
		Now:        now,
	}
	if bars && g.showBar() {
		env.Progress = func(name string) (archive.Progress, func()) {
			p := newProgress("backup "+name, nil, true, g.stderr)
			return p, p.Done
		}
	}
	return env
}

func runRun(ctx context.Context, opts runOptions, g *globalOptions) error {
	cfg, err := loadConfigReported(opts.Config, g)
	if err != nil {
		return err
	}
	cfg.Source = opts.Shard.Sources(cfg.Source)
	pr := &runPrinter{g: g}
	rep, stateErr := engine.Run(ctx, cfg, engineEnv(g, opts.httpClient, opts.now, true), engine.RunOptions{
		Locking:    engine.Locking{Wait: opts.LockWait, Poll: opts.lockPoll},
		Shard:      opts.Shard,
		Source:     pr.printSource,
		Repository: pr.printRepo,
	})
	if rep == nil {
		return stateErr
	}
	failed, partial, interrupted, failedRepos, _ := rep.Counts()
	pr.printSummary(rep, failed, partial, interrupted)

	var metricsErr error
	if opts.MetricsFile != "" {
		metricsErr = writeMetricsFile(opts.MetricsFile, rep.Metrics())
	}
	switch {
	case rep.Status == engine.StatusInterrupted:
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
		var skipped []repo.Skipped
		for _, sr := range rep.Sources {
			if sr.Status == engine.StatusPartial {
				skipped = append(skipped, sr.Skipped...)
			}
		}
		return fmt.Errorf("run: %s partial: %w", plural(partial, "source"), newPartial(skipped))
	}
	return nil
}

// writeMetricsFile writes the metrics to name atomically, making its
// directory if needed.
func writeMetricsFile(name string, ms []engine.Metric) error {
	err := os.MkdirAll(filepath.Dir(name), 0o755)
	if err == nil {
		err = atomicfile.Write(name, []byte(engine.FormatMetrics(ms)), 0o644)
	}
	if err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

// runPrinter prints a run's lines as its sources and repositories end
// (text mode), and its summary.
type runPrinter struct {
	g *globalOptions
}

// printSource prints one line for a finished source (text mode).
func (pr *runPrinter) printSource(sr *sourceReport) {
	if pr.g.json != nil {
		return
	}
	if pr.g.Quiet && sr.Status == engine.StatusOK {
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
	fmt.Fprintln(pr.g.stdout, line)
	for _, sk := range sr.Skipped {
		if sk.SourceID == "" {
			fmt.Fprintf(pr.g.stderr, "skipped %s: folder %s: %s\n", sr.Name, sk.Folder, sk.Error)
		} else {
			fmt.Fprintf(pr.g.stderr, "skipped %s: %s %s: %s\n", sr.Name, sk.Folder, sk.SourceID, sk.Error)
		}
	}
}

// printRepo prints one line for a repository (text mode).
func (pr *runPrinter) printRepo(r *repoReport) {
	if pr.g.json != nil || (pr.g.Quiet && r.Status == engine.StatusOK) {
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
	fmt.Fprintln(pr.g.stdout, line)
}

func (pr *runPrinter) printSummary(rep *runReport, failed, partial, interrupted int) {
	if pr.g.json != nil {
		pr.g.json.write(rep)
		return
	}
	if pr.g.Quiet && rep.Status != engine.StatusInterrupted {
		return
	}
	ok := len(rep.Sources) - failed - partial - interrupted
	okRepos := 0
	for _, r := range rep.Repositories {
		if r.Status == engine.StatusOK {
			okRepos++
		}
	}
	line := fmt.Sprintf("run %s: %d sources ok, %d partial, %d failed", rep.Status, ok, partial, failed)
	if interrupted > 0 {
		line += fmt.Sprintf(", %d interrupted", interrupted)
	}
	fmt.Fprintf(pr.g.stdout, "%s; %d of %d repositories ok\n", line, okRepos, len(rep.Repositories))
}

// runDryRun checks what a run of the config would do without writing
// anything (see engine.DryRun) and prints it.
func runDryRun(ctx context.Context, opts runOptions, g *globalOptions) error {
	cfg, err := loadConfigReported(opts.Config, g)
	if err != nil {
		return err
	}
	cfg.Source = opts.Shard.Sources(cfg.Source)
	pr := &runPrinter{g: g}
	rep := engine.DryRun(ctx, cfg, engineEnv(g, opts.httpClient, opts.now, false), engine.DryRunOptions{
		Source: pr.printDrySource, Repository: pr.printDryRepo,
	})
	failed, failedRepos := 0, 0
	for _, ds := range rep.Sources {
		if ds.Status != engine.StatusOK {
			failed++
		}
	}
	for _, dr := range rep.Repositories {
		if dr.Status != engine.StatusOK {
			failedRepos++
		}
	}
	switch {
	case g.json != nil:
		g.json.write(rep)
	case !g.Quiet || rep.Status != engine.StatusOK:
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

// printDryRepo prints one line for a repository of a dry run (text
// mode).
func (pr *runPrinter) printDryRepo(dr *engine.DryRunRepo) {
	if pr.g.json != nil || (pr.g.Quiet && dr.Status == engine.StatusOK) {
		return
	}
	line := fmt.Sprintf("repository %s: %s", dr.Name, dr.Status)
	if dr.Status == engine.StatusOK {
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
	fmt.Fprintln(pr.g.stdout, line)
}

// printDrySource prints one line for a source of a dry run (text mode).
func (pr *runPrinter) printDrySource(ds *engine.DryRunSource) {
	if pr.g.json != nil {
		return
	}
	if pr.g.Quiet && ds.Status == engine.StatusOK {
		return
	}
	line := fmt.Sprintf("source %s (%s → %s): %s", ds.Name, ds.Kind, ds.Repository, ds.Status)
	if ds.Status == engine.StatusOK || ds.Folders > 0 {
		line += fmt.Sprintf(", %s, %s", plural(ds.Folders, "folder"), plural(int(ds.Messages), "message"))
	}
	line += ", " + formatDuration(time.Duration(ds.DurationMS)*time.Millisecond)
	if ds.Error != "" {
		line += ": " + ds.Error
	}
	fmt.Fprintln(pr.g.stdout, line)
}
