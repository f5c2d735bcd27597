package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap"
)

// imapTargetFlags are the flags that reach an IMAP account other than by
// --url: the password and the TLS switches of backup imap.
func imapTargetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "imap-password-file", EnvVars: []string{"PLANB_IMAP_PASSWORD_FILE"}, Usage: "read the IMAP password from `FILE`"},
		&cli.StringFlag{Name: "oauth2-token-command", Usage: "run `CMD` with sh -c; its output is an OAuth2 access token"},
		&cli.BoolFlag{Name: "insecure-plaintext", Usage: "with imap://, talk without TLS (password and mail in the clear)"},
		&cli.BoolFlag{Name: "insecure-skip-verify", Usage: "do not check the server's TLS certificate"},
	}
}

// imapTargetOptions reads the flags of imapTargetFlags for the account at
// url, through the same code as backup imap.
func imapTargetOptions(c *cli.Context, url string, connections int, g *globalOptions) (*imap.Options, error) {
	return imapSourceOptions(backupIMAPOptions{
		URL: url, Connections: connections,
		PasswordFile: c.String("imap-password-file"), PasswordEnv: os.Getenv("PLANB_IMAP_PASSWORD"),
		TokenCommand:       c.String("oauth2-token-command"),
		InsecurePlaintext:  c.Bool("insecure-plaintext"),
		InsecureSkipVerify: c.Bool("insecure-skip-verify"),
	}, g)
}

// parseMap reads --map FROM=TO flags.
func parseMap(flags []string) (map[string]string, error) {
	m := make(map[string]string, len(flags))
	for _, f := range flags {
		from, to, ok := strings.Cut(f, "=")
		from, to = strings.Trim(from, "/"), strings.Trim(to, "/")
		if !ok || from == "" || to == "" {
			return nil, usageErrorf("--map %q: want FROM=TO (folder paths with / separators)", f)
		}
		m[from] = to
	}
	return m, nil
}

func restoreCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "restore a snapshot into an IMAP account (resumable: appends only what is missing)",
		ArgsUsage: "SNAPSHOT",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "target account `URL`: imaps://user@host[:port] or imap://user@host[:port]"},
			&cli.StringSliceFlag{Name: "map", Usage: "restore folder `FROM=TO` (and below) into TO (repeatable)"},
			&cli.StringSliceFlag{Name: "folder", Usage: "restore only folders matching `GLOB` (repeatable)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "append nothing; say what would be appended"},
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "append on `N` connections at once"},
			&cli.IntFlag{Name: "pipeline", Value: 8, Usage: "keep `N` APPEND commands in flight per connection"},
		}, imapTargetFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "restore SNAPSHOT --to imaps://user@host"); err != nil {
				return err
			}
			if err := requireFlags(c, "to"); err != nil {
				return err
			}
			m, err := parseMap(c.StringSlice("map"))
			if err != nil {
				return err
			}
			if c.Int("pipeline") < 1 {
				return usageErrorf("--pipeline must be at least 1")
			}
			io, err := imapTargetOptions(c, c.String("to"), c.Int("connections"), g)
			if err != nil {
				return err
			}
			return withRepo(c.Context, g, func(r *repo.Repository) error {
				snap, err := r.FindSnapshot(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				return runRestore(c.Context, r, snap, io, &imap.SinkOptions{
					MapOptions: imap.MapOptions{Map: m}, DryRun: c.Bool("dry-run"), Pipeline: c.Int("pipeline"),
				}, c.StringSlice("folder"), "restore", g)
			})
		},
	}
}

// restoreResult is the --json summary of a restore.
type restoreResult struct {
	Type       string         `json:"type"` // "summary"
	Op         string         `json:"op"`   // "restore" or "migrate"
	Snapshot   string         `json:"snapshot"`
	To         string         `json:"to"`
	DryRun     bool           `json:"dry_run,omitempty"`
	Appended   int64          `json:"appended"`
	Present    int64          `json:"present"`
	Bytes      int64          `json:"bytes"`
	Attempts   int            `json:"attempts"`
	DurationMS int64          `json:"duration_ms"`
	Skipped    []repo.Skipped `json:"skipped"`
}

// restoreRetries is how often a restore starts again after a dropped
// connection (it resumes: what was appended is found on the target).
const restoreRetries = 5

// runRestore restores snap into the account io, retrying after dropped
// connections, and prints the report.
func runRestore(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, io *imap.Options, so *imap.SinkOptions, folders []string, op string, g *globalOptions) error {
	start := time.Now()
	lock, err := r.Lock(ctx, false)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	defer lock.Unlock()
	var (
		total   imap.SinkReport
		skipped []repo.Skipped
		attempt int
		delay   = time.Second
	)
	for attempt = 1; ; attempt++ {
		sink, err := imap.NewSink(ctx, io, so)
		if err == nil {
			p := newProgress(op, g.json, g.showBar(), g.stderr)
			var rep *restore.Report
			rep, err = restore.Run(ctx, r, snap, sink, &restore.Options{Folders: folders, Progress: p, Logger: g.logger})
			p.Done()
			sr := sink.Report()
			// What earlier attempts appended is "present" now: count it
			// once, as appended.
			total.Present = max(0, sr.Present-total.Appended)
			total.Appended += sr.Appended
			total.Bytes += sr.Bytes
			total.Refused = append(total.Refused, sr.Refused...)
			if rep != nil && err == nil {
				skipped = rep.Skipped
			}
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil || attempt > restoreRetries || !retryableRestore(err) {
			return err
		}
		g.logger.Warn("restore interrupted, resuming", "attempt", attempt, "err", err)
		if !g.Quiet && g.json == nil {
			fmt.Fprintf(g.stderr, "%s: %v; resuming in %s\n", op, err, delay)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
	for _, rf := range total.Refused {
		skipped = append(skipped, repo.Skipped{Folder: rf.Folder, SourceID: rf.SourceID, Error: "refused by the target: " + rf.Error})
	}
	d := time.Since(start)
	if g.json != nil {
		g.json.write(restoreResult{
			Type: "summary", Op: op, Snapshot: snap.ID.String(), To: strings.TrimSpace(describeTarget(io)), DryRun: so.DryRun,
			Appended: total.Appended, Present: total.Present, Bytes: total.Bytes, Attempts: attempt,
			DurationMS: d.Milliseconds(), Skipped: nonNil(skipped),
		})
	} else {
		printSkipped(g, skipped)
		if !g.Quiet {
			verb := "appended"
			if so.DryRun {
				verb = "would append"
			}
			fmt.Fprintf(g.stdout, "%s %d messages (%s) from snapshot %s to %s, %d already there, in %s\n",
				verb, total.Appended, formatBytes(total.Bytes), snap.ID.Short(), describeTarget(io), total.Present, formatDuration(d))
		}
	}
	return newPartial(skipped)
}

func describeTarget(o *imap.Options) string {
	scheme := "imaps"
	if o.TLS != imap.TLSImplicit {
		scheme = "imap"
	}
	return scheme + "://" + o.User + "@" + o.Host
}

// retryableRestore says whether a restore error is a lost connection.
func retryableRestore(err error) bool {
	if errors.Is(err, imap.ErrAuth) || errors.Is(err, imap.ErrCertificate) {
		return false
	}
	var be *repo.BlobError
	if errors.As(err, &be) {
		return false
	}
	var ne interface{ Timeout() bool }
	s := err.Error()
	return errors.Is(err, imap.ErrUnreachable) || errors.As(err, &ne) ||
		strings.Contains(s, "EOF") || strings.Contains(s, "connection reset") ||
		strings.Contains(s, "broken pipe") || strings.Contains(s, "use of closed network connection")
}
