package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/imap"
)

// migrateGraphFlags names the flags of backup graph that migrate takes for
// a graph:// source (the tenant and the mailbox are in the URL).
var migrateGraphFlags = []string{
	"client-id", "client-secret-file", "client-certificate", "device-code",
	"token-cache", "cloud", "graph-endpoint", "authority-host",
}

// graphFlags returns backup graph's own flags named in migrateGraphFlags,
// so that both commands spell and document them alike.
func graphFlags(g *globalOptions) []cli.Flag {
	var out []cli.Flag
	for _, f := range backupGraphCommand(g).Flags {
		if slices.Contains(migrateGraphFlags, f.Names()[0]) {
			out = append(out, f)
		}
	}
	return out
}

func migrateCommand(g *globalOptions) *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "from", Usage: "source `URL`: imaps://user@host[:port], imap://..., or graph://TENANT/ADDR (a Microsoft 365 mailbox)"},
		&cli.StringFlag{Name: "to", Usage: "target account `URL`"},
		&cli.StringFlag{Name: "repo", Usage: "keep the intermediate snapshot in repository `DIR`"},
		&cli.StringFlag{Name: "from-password-file", EnvVars: []string{"PLANB_FROM_IMAP_PASSWORD_FILE"}, Usage: "source password `FILE`"},
		&cli.StringFlag{Name: "to-password-file", EnvVars: []string{"PLANB_TO_IMAP_PASSWORD_FILE"}, Usage: "target password `FILE`"},
		&cli.StringSliceFlag{Name: "map", Usage: "restore folder `FROM=TO` (and below) into TO (repeatable)"},
		&cli.StringSliceFlag{Name: "folder", Usage: "copy only folders matching `GLOB` (repeatable)"},
		&cli.IntFlag{Name: "connections", Value: 4, Usage: "use `N` connections on each side (with --plan, per account; by default the 4 are shared among the --parallel accounts)"},
		repairFlag(),
		labelsFlag(),
		&cli.StringFlag{Name: "plan", Usage: "migrate every mailbox of the CSV plan `FILE` (see README: Moving an organisation)"},
		&cli.IntFlag{Name: "parallel", Value: 4, Usage: "with --plan, migrate `N` accounts at once"},
		&cli.BoolFlag{Name: "verify", Usage: "with --plan, verify each account once migrated"},
	}
	flags = append(flags, imapTargetFlags()...)
	flags = append(flags, graphFlags(g)...)
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy an IMAP account or a Microsoft 365 mailbox into an IMAP account: backup, then restore of that snapshot",
		Description: "Without --repo (or the global --repo), the repository lives in the user's cache folder\n" +
			"(planb/migrate-HASH), with a generated password stored next to it (mode 0600).\n" +
			"Passwords: --from-password-file / PLANB_FROM_IMAP_PASSWORD(_FILE) and\n" +
			"--to-password-file / PLANB_TO_IMAP_PASSWORD(_FILE), else --imap-password-file /\n" +
			"PLANB_IMAP_PASSWORD(_FILE) for both. A re-run copies only what is missing.\n" +
			"With --from graph://TENANT/ADDR the source is a Microsoft 365 mailbox, reached as\n" +
			"backup graph reaches it: --client-id and --client-secret-file (or\n" +
			"PLANB_GRAPH_CLIENT_SECRET), --client-certificate or --device-code.",
		Flags: flags,
		Action: func(c *cli.Context) error {
			sc, err := scopeOf(c)
			if err != nil {
				return err
			}
			if c.String("plan") != "" {
				if err := needArgs(c, 0, 0, "migrate --plan FILE"); err != nil {
					return err
				}
				if c.String("from") != "" || c.String("to") != "" || len(c.StringSlice("map")) > 0 || len(c.StringSlice("folder")) > 0 {
					return usageErrorf("migrate --plan: --from, --to, --map and --folder belong in the plan's lines")
				}
				if c.String("repo") != "" {
					g.Repo = c.String("repo")
				}
				po := planOptions{
					Op: "migrate", File: c.String("plan"), Parallel: c.Int("parallel"), Verify: c.Bool("verify"),
					Connections: planConnections(c), Pipeline: 8, Repair: c.Bool("repair"), Labels: sc.Labels,
					InsecurePlaintext: c.Bool("insecure-plaintext"), InsecureSkipVerify: c.Bool("insecure-skip-verify"),
					CAFile: c.String("ca-file"),
				}
				if c.String("client-id") != "" {
					po.Graph = &graphBackupOptions{
						ClientID: c.String("client-id"), SecretFile: c.String("client-secret-file"), SecretEnv: os.Getenv("PLANB_GRAPH_CLIENT_SECRET"),
						Certificate: c.String("client-certificate"), DeviceCode: c.Bool("device-code"), TokenCache: c.String("token-cache"),
						Cloud: c.String("cloud"), GraphEndpoint: c.String("graph-endpoint"), AuthorityHost: c.String("authority-host"),
						Connections: c.Int("connections"),
					}
				}
				return runPlan(c.Context, po, g)
			}
			if err := needArgs(c, 0, 0, "migrate --from imaps://user@host|graph://TENANT/ADDR --to imaps://user@host"); err != nil {
				return err
			}
			if err := requireFlags(c, "from", "to"); err != nil {
				return err
			}
			m, err := parseMap(c.StringSlice("map"))
			if err != nil {
				return err
			}
			side := func(url, fileFlag, env string) (*imap.Options, error) {
				o := backupIMAPOptions{
					URL: url, Connections: c.Int("connections"), Folders: c.StringSlice("folder"),
					PasswordFile: c.String(fileFlag), PasswordEnv: os.Getenv(env),
					TokenCommand:       c.String("oauth2-token-command"),
					InsecurePlaintext:  c.Bool("insecure-plaintext"),
					InsecureSkipVerify: c.Bool("insecure-skip-verify"),
					CAFile:             c.String("ca-file"),
				}
				if o.PasswordFile == "" && o.PasswordEnv == "" {
					o.PasswordFile, o.PasswordEnv = c.String("imap-password-file"), os.Getenv("PLANB_IMAP_PASSWORD")
				}
				return imapSourceOptions(o, g)
			}
			to, err := side(c.String("to"), "to-password-file", "PLANB_TO_IMAP_PASSWORD")
			if err != nil {
				return err
			}
			to.Folders = nil
			var src migrateSource
			if strings.HasPrefix(c.String("from"), "graph://") {
				tenant, mailbox, err := parseGraphURL(c.String("from"))
				if err != nil {
					return err
				}
				if len(c.StringSlice("folder")) > 0 {
					return usageErrorf("migrate: --folder is for IMAP sources")
				}
				src.graph = &graphBackupOptions{
					Tenant: tenant, ClientID: c.String("client-id"), Mailboxes: []string{mailbox},
					SecretFile: c.String("client-secret-file"), SecretEnv: os.Getenv("PLANB_GRAPH_CLIENT_SECRET"),
					Certificate: c.String("client-certificate"), DeviceCode: c.Bool("device-code"),
					TokenCache: c.String("token-cache"),
					Cloud:      c.String("cloud"), GraphEndpoint: c.String("graph-endpoint"), AuthorityHost: c.String("authority-host"),
					Connections: c.Int("connections"),
				}
				if src.graph.ClientID == "" {
					return usageErrorf("migrate: --from graph:// needs --client-id")
				}
			} else {
				if src.imap, err = side(c.String("from"), "from-password-file", "PLANB_FROM_IMAP_PASSWORD"); err != nil {
					return err
				}
			}
			if c.String("repo") != "" {
				g.Repo = c.String("repo")
			}
			return runMigrate(c.Context, c.String("from"), src, to, &imap.SinkOptions{MapOptions: imap.MapOptions{Map: m}, Repair: c.Bool("repair")}, sc.Labels, g)
		},
	}
}

// parseGraphURL reads graph://TENANT/ADDR.
func parseGraphURL(s string) (tenant, mailbox string, err error) {
	rest, _ := strings.CutPrefix(s, "graph://")
	tenant, mailbox, _ = strings.Cut(rest, "/")
	if tenant == "" || mailbox == "" || strings.ContainsAny(mailbox, "/?#") || !strings.Contains(mailbox, "@") {
		return "", "", usageErrorf("migrate: --from %q: want graph://TENANT/ADDR (tenant ID or domain, mailbox address)", s)
	}
	return tenant, mailbox, nil
}

// migrateSource is the source of a migration: an IMAP account or a Graph
// mailbox.
type migrateSource struct {
	imap  *imap.Options
	graph *graphBackupOptions // one mailbox
}

// open connects to the source. For Graph it signs in first, so that a
// wrong secret or tenant fails before the repository is opened.
func (s migrateSource) open(ctx context.Context, g *globalOptions) (archive.Source, func(), error) {
	if s.imap != nil {
		src, err := imap.New(s.imap)
		if err != nil {
			return nil, nil, usageErrorf("%v", err)
		}
		return src, func() { src.Close() }, nil
	}
	gopts, err := s.graph.graphOptions(g)
	if err != nil {
		return nil, nil, err
	}
	client, err := graph.NewClient(gopts)
	if err != nil {
		return nil, nil, usageErrorf("%s", err)
	}
	if err := client.Check(ctx); err != nil {
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return client.Source(s.graph.Mailboxes[0]), func() {}, nil
}

// workers is how many folders the backup reads at once.
func (s migrateSource) workers() int {
	if s.imap != nil {
		return s.imap.Connections
	}
	return s.graph.Connections
}

// migrateRepo opens (or creates) the repository of a migration: --repo
// with the usual password, else one in the cache folder keyed by the
// source URL, with a generated password kept next to it.
func migrateRepo(ctx context.Context, fromURL string, g *globalOptions) (*repo.Repository, error) {
	if g.Repo == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("migrate: no cache folder (give --repo): %w", err)
		}
		sum := sha256.Sum256([]byte(fromURL))
		g.Repo = filepath.Join(cache, "planb", "migrate-"+hex.EncodeToString(sum[:8]))
		if g.Password.File == "" && g.Password.Command == "" && g.Password.Env == "" {
			pwFile := g.Repo + ".password"
			if _, err := os.Stat(pwFile); errors.Is(err, fs.ErrNotExist) {
				b := make([]byte, 24)
				rand.Read(b)
				if err := os.MkdirAll(filepath.Dir(pwFile), 0o700); err != nil {
					return nil, fmt.Errorf("migrate: %w", err)
				}
				if err := os.WriteFile(pwFile, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
					return nil, fmt.Errorf("migrate: %w", err)
				}
			}
			g.Password.File = pwFile
			g.Password.Prompt = nil
		}
	}
	pw, err := g.Password.get(ctx, "repository password", true)
	if err != nil {
		return nil, err
	}
	be, err := g.openBackend(ctx, false)
	if err == nil {
		return repo.Open(ctx, be, pw, &repo.Options{Logger: g.logger, IndexCache: g.indexCache()})
	}
	if !errors.Is(err, errNoRepository) && !errors.Is(err, backend.ErrNotExist) {
		return nil, err
	}
	if isS3(g.Repo) {
		be, err = g.openBackend(ctx, true)
	} else {
		be, err = local.Create(ctx, g.Repo)
	}
	if err != nil {
		return nil, err
	}
	return repo.Init(ctx, be, pw, &repo.Options{Logger: g.logger, IndexCache: g.indexCache()})
}

// migrateResult is the --json summary of a migration.
type migrateResult struct {
	Type       string          `json:"type"` // "summary"
	Op         string          `json:"op"`   // "migrate"
	From       string          `json:"from"`
	To         string          `json:"to"`
	Snapshot   string          `json:"snapshot"`
	Repository string          `json:"repository"`
	BackedUp   repo.Summary    `json:"backed_up"`
	Appended   int64           `json:"appended"`
	Present    int64           `json:"present"`
	Bytes      int64           `json:"bytes"` // appended
	Attempts   int             `json:"attempts"`
	DurationMS int64           `json:"duration_ms"`
	Repaired   []imap.Repaired `json:"repaired"`
	Skipped    []repo.Skipped  `json:"skipped"`
}

// migrateOne backs src up into r (with checkpoints: a migration stopped
// during its backup goes on from where it stopped) and restores that
// snapshot into to, reporting both phases to p. The outcome's Skipped names what the backup
// skipped, then what the restore did.
func migrateOne(ctx context.Context, r *repo.Repository, src archive.Source, workers int, to *imap.Options, so *imap.SinkOptions, labels restore.LabelMode, p *progress, g *globalOptions) (*repo.Snapshot, restoreOutcome, error) {
	p.Phase("backup")
	snap, err := backup.Run(ctx, r, src, &backup.Options{Progress: p, Logger: g.logger, Workers: workers, Tags: []string{"migrate"}, Checkpoint: defaultCheckpoint})
	if err != nil {
		return nil, restoreOutcome{}, fmt.Errorf("migrate: %w", err)
	}
	out, err := restoreAttempts(ctx, r, snap, to, so, restoreScope{Labels: labels}, "migrate", p, g)
	out.Skipped = append(slices.Clone(snap.Skipped), out.Skipped...)
	return snap, out, err
}

// runMigrate backs the source up into a snapshot and restores that
// snapshot into the account to, under one progress bar, and prints one
// report.
func runMigrate(ctx context.Context, fromURL string, from migrateSource, to *imap.Options, so *imap.SinkOptions, labels restore.LabelMode, g *globalOptions) error {
	start := time.Now()
	src, closeSrc, err := from.open(ctx, g)
	if err != nil {
		return err
	}
	defer closeSrc()
	r, err := migrateRepo(ctx, fromURL, g)
	if err != nil {
		return err
	}
	defer r.Close()
	p := newProgress("migrate", g.json, g.showBar(), g.stderr)
	defer p.Done()
	snap, out, err := migrateOne(ctx, r, src, from.workers(), to, so, labels, p, g)
	p.Done()
	if err != nil {
		return err
	}
	skipped := out.Skipped
	d := time.Since(start)
	if g.json != nil {
		g.json.write(migrateResult{
			Type: "summary", Op: "migrate", From: src.Describe(), To: describeTarget(to),
			Snapshot: snap.ID.String(), Repository: g.Repo, BackedUp: snap.Summary,
			Appended: out.Appended, Present: out.Present, Bytes: out.Bytes, Attempts: out.Attempts,
			DurationMS: d.Milliseconds(), Repaired: nonNil(out.Repaired), Skipped: nonNil(skipped),
		})
		out.Skipped = skipped
		return out.partial()
	}
	printSkipped(g, skipped)
	if !g.Quiet {
		s := snap.Summary
		fmt.Fprintf(g.stdout, "migrated %s to %s in %s\n", src.Describe(), describeTarget(to), formatDuration(d))
		fmt.Fprintf(g.stdout, "  backed up:  %d messages, %s (%d new, %s) into snapshot %s\n",
			s.Messages, formatBytes(s.Bytes), s.NewMessages, formatBytes(s.NewBytes), snap.ID.Short())
		fmt.Fprintf(g.stdout, "  repository: %s\n", g.Repo)
		fmt.Fprintf(g.stdout, "  appended:   %d messages, %s\n", out.Appended, formatBytes(out.Bytes))
		fmt.Fprintf(g.stdout, "  present:    %d messages already on the target\n", out.Present)
		if len(out.Repaired) > 0 {
			fmt.Fprintf(g.stdout, "  repaired:   %d of the appended messages went as repaired copies\n", len(out.Repaired))
		}
		fmt.Fprintf(g.stdout, "  skipped:    %d messages\n", len(skipped))
		printRepaired(g, out.Repaired)
	}
	out.Skipped = skipped
	return out.partial()
}
