package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/backoff"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/cmd/planb/internal/engine"
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
		caFileFlag(),
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
		CAFile:             c.String("ca-file"),
	}, g)
}

// labelsFlag is --labels, of restore, migrate, export and verify.
func labelsFlag() cli.Flag {
	return &cli.StringFlag{Name: "labels", Value: "copies", Usage: "how the labels of a Gmail or Proton Mail snapshot become folders: `MODE` copies (a copy in each label's folder), keywords (one copy, labels as keywords) or first (one copy, in its first folder)"}
}

// restoreScope is what of a snapshot a restore or a verify writes or
// compares, and how.
type restoreScope struct {
	Folders []string // globs; empty means all
	Labels  restore.LabelMode
}

// scopeOf reads --folder and --labels.
func scopeOf(c *cli.Context) (restoreScope, error) {
	m, err := restore.ParseLabelMode(c.String("labels"))
	if err != nil {
		return restoreScope{}, usageErrorf("--%v", err)
	}
	return restoreScope{Folders: c.StringSlice("folder"), Labels: m}, nil
}

// selectedScope reads the snapshot selection and the scope of a command
// that reads one snapshot's messages (restore, export, verify).
func selectedScope(c *cli.Context) (selection, restoreScope, error) {
	sel, err := selectionOf(c)
	if err != nil {
		return selection{}, restoreScope{}, err
	}
	sc, err := scopeOf(c)
	return sel, sc, err
}

// repairFlag is --repair, of restore and migrate.
func repairFlag() cli.Flag {
	return &cli.BoolFlag{Name: "repair", Usage: "deliver a message the target refuses for its form (no Date, unparseable From, NUL bytes...) as a marked, repaired copy that carries the original"}
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
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "append on `N` connections at once (with --plan, per account; by default the 4 are shared among the --parallel accounts)"},
			&cli.IntFlag{Name: "pipeline", Value: 8, Usage: "keep `N` APPEND commands in flight per connection"},
			repairFlag(),
			labelsFlag(),
			&cli.StringFlag{Name: "plan", Usage: "restore every mailbox of the CSV plan `FILE` (see README: Moving an organisation)"},
			&cli.IntFlag{Name: "parallel", Value: 4, Usage: "with --plan, restore `N` accounts at once"},
			&cli.BoolFlag{Name: "verify", Usage: "with --plan, verify each account once restored"},
		}, append(imapTargetFlags(), selectionFlags()...)...),
		Action: func(c *cli.Context) error {
			if c.String("plan") != "" {
				if err := needArgs(c, 0, 0, "restore --plan FILE"); err != nil {
					return err
				}
				if c.String("to") != "" || c.Bool("dry-run") || len(c.StringSlice("map")) > 0 || len(c.StringSlice("folder")) > 0 {
					return usageErrorf("restore --plan: --to, --map, --folder and --dry-run belong in the plan's lines")
				}
				sel, sc, err := selectedScope(c)
				if err != nil {
					return err
				}
				return runPlan(c.Context, planOptions{
					Op: "restore", File: c.String("plan"), Parallel: c.Int("parallel"), Verify: c.Bool("verify"),
					Connections: planConnections(c), Pipeline: c.Int("pipeline"), Repair: c.Bool("repair"), Labels: sc.Labels,
					InsecurePlaintext: c.Bool("insecure-plaintext"), InsecureSkipVerify: c.Bool("insecure-skip-verify"),
					CAFile: c.String("ca-file"), Select: sel,
				}, g)
			}
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
			sel, sc, err := selectedScope(c)
			if err != nil {
				return err
			}
			return withRepo(c.Context, g, func(r *repo.Repository) error {
				snap, err := findSnapshot(c.Context, r, c.Args().First(), sel, true)
				if err != nil {
					return err
				}
				return runRestore(c.Context, r, snap, io, &imap.SinkOptions{
					MapOptions: imap.MapOptions{Map: m}, DryRun: c.Bool("dry-run"), Pipeline: c.Int("pipeline"),
					Repair: c.Bool("repair"),
				}, sc, "restore", g)
			})
		},
	}
}

// restoreResult is the --json summary of a restore.
type restoreResult struct {
	Type       string          `json:"type"` // "summary"
	Op         string          `json:"op"`   // "restore" or "migrate"
	Snapshot   string          `json:"snapshot"`
	To         string          `json:"to"`
	DryRun     bool            `json:"dry_run,omitempty"`
	Appended   int64           `json:"appended"`
	Present    int64           `json:"present"`
	Bytes      int64           `json:"bytes"`
	Attempts   int             `json:"attempts"`
	Labeled    int64           `json:"labeled,omitempty"` // labels given on a label-based target
	DurationMS int64           `json:"duration_ms"`
	Repaired   []imap.Repaired `json:"repaired"`
	Skipped    []repo.Skipped  `json:"skipped"`
}

// restoreRetries is how often a restore starts again after a dropped
// connection (it resumes: what was appended is found on the target).
const restoreRetries = 5

// runRestore restores snap into the account io, retrying after dropped
// connections, and prints the report.
func runRestore(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, io *imap.Options, so *imap.SinkOptions, sc restoreScope, op string, g *globalOptions) error {
	start := time.Now()
	out, err := restoreAttempts(ctx, r, snap, io, so, sc, op, nil, g)
	if err != nil {
		return err
	}
	d := time.Since(start)
	if g.json != nil {
		g.json.write(restoreResult{
			Type: "summary", Op: op, Snapshot: snap.ID.String(), To: strings.TrimSpace(describeTarget(io)), DryRun: so.DryRun,
			Appended: out.Appended, Present: out.Present, Bytes: out.Bytes, Attempts: out.Attempts, Labeled: out.Labeled,
			DurationMS: d.Milliseconds(), Repaired: nonNil(out.Repaired), Skipped: nonNil(out.Skipped),
		})
	} else {
		printSkipped(g, out.Skipped)
		if !g.Quiet {
			verb := "appended"
			if so.DryRun {
				verb = "would append"
			}
			fmt.Fprintf(g.stdout, "%s %d messages (%s) from snapshot %s to %s, %d already there, in %s\n",
				verb, out.Appended, formatBytes(out.Bytes), snap.ID.Short(), describeTarget(io), out.Present, formatDuration(d))
			if out.Labeled > 0 {
				fmt.Fprintf(g.stdout, "%d labels given (each a COPY into a label's mailbox)\n", out.Labeled)
			}
			printRepaired(g, out.Repaired)
		}
	}
	return out.partial()
}

// printRepaired says how many messages went as repaired copies, and why.
func printRepaired(g *globalOptions, rs []imap.Repaired) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(g.stdout, "%d of them delivered as repaired copies (marked X-Planb-Repaired, the original inside each):\n", len(rs))
	for _, r := range rs {
		fmt.Fprintf(g.stdout, "  repaired %s %s: %s\n", r.Folder, r.SourceID, r.Note)
	}
}

// restoreOutcome is what the attempts of a restore did together.
type restoreOutcome struct {
	imap.SinkReport
	Skipped  []repo.Skipped // unreadable in the repository, or refused by the target
	Attempts int
}

// partial is the exit status of a restore: errPartial when messages were
// skipped, with a hint when --repair would deliver some of them.
func (o *restoreOutcome) partial() error {
	err := newPartial(o.Skipped)
	var p *errPartial
	if !errors.As(err, &p) {
		return err
	}
	n := 0
	var problems []string
	for _, rf := range o.Refused {
		if len(rf.Problems) == 0 {
			continue
		}
		n++
		for _, pr := range rf.Problems {
			if !slices.Contains(problems, pr) {
				problems = append(problems, pr)
			}
		}
	}
	if n > 0 {
		what := pluralWord(n, "1 message was refused for its form", fmt.Sprintf("%d messages were refused for their form", n))
		p.Hint = fmt.Sprintf("%s (%s): --repair would deliver a marked, repaired copy of %s that carries the original",
			what, strings.Join(problems, ", "), pluralWord(n, "it", "each"))
	}
	return p
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// restoreJournal opens the restore journal of the account io in the
// state directory (nil for a dry run).
func restoreJournal(io *imap.Options, so *imap.SinkOptions) (*restore.Journal, error) {
	if so.DryRun {
		return nil, nil
	}
	dir, err := engine.DefaultStateDir()
	if err != nil {
		return nil, err
	}
	return restore.OpenJournal(filepath.Join(dir, "restore"), io.Describe())
}

// restoreAttempts restores snap into the account io, starting again after
// a dropped connection (a new attempt resumes: what was appended is found
// on the target, by the journal in the state directory or by its
// fingerprints). With p nil each attempt draws a progress of its own;
// otherwise each attempt reports to p as its phase "restore".
func restoreAttempts(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, io *imap.Options, so *imap.SinkOptions, sc restoreScope, op string, p *progress, g *globalOptions) (restoreOutcome, error) {
	var out restoreOutcome
	lock, err := r.Lock(ctx, false)
	if err != nil {
		return out, fmt.Errorf("%s: %w", op, err)
	}
	defer lock.Unlock()
	if so.Journal == nil {
		j, err := restoreJournal(io, so)
		if err != nil && !g.Quiet && g.json == nil {
			// Not fatal: resume then compares messages by fingerprints.
			fmt.Fprintf(g.stderr, "planb: warning: %s without a journal: %v\n", op, err)
		}
		if j != nil {
			defer j.Close()
			so2 := *so
			so2.Journal = j
			so = &so2
		}
	}
	total := &out.SinkReport
	policy := backoff.Policy{Initial: time.Second, Max: 30 * time.Second}
	if !g.Verbose {
		o := *io
		o.Logger = slog.New(&warnHandler{Handler: g.logger.Handler(), op: op, g: g})
		io = &o
	}
	for out.Attempts = 1; ; out.Attempts++ {
		sink, err := imap.NewSink(ctx, io, so)
		if err == nil {
			g.borrow.attempt(sink)
			ap := p
			if ap == nil {
				ap = newProgress(op, g.json, g.showBar(), g.stderr)
			} else {
				ap.Phase("restore")
			}
			var rep *restore.Report
			rep, err = restore.Run(ctx, r, snap, sink, &restore.Options{Folders: sc.Folders, Labels: sc.Labels, Progress: ap, Logger: g.logger})
			g.borrow.attempt(nil)
			if p == nil {
				ap.Done()
			}
			sr := sink.Report()
			// What earlier attempts appended is "present" now: count it
			// once, as appended.
			total.Present = max(0, sr.Present-total.Appended)
			total.Appended += sr.Appended
			total.Bytes += sr.Bytes
			total.Labeled += sr.Labeled
			total.Refused = mergeRefused(total.Refused, sr.Refused)
			total.Repaired = append(total.Repaired, sr.Repaired...)
			if rep != nil && err == nil {
				out.Skipped = rep.Skipped
			}
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil || out.Attempts > restoreRetries || !retryableRestore(err) {
			return out, err
		}
		delay := policy.Delay(out.Attempts - 1)
		g.logger.Warn("restore interrupted, resuming", "attempt", out.Attempts, "err", err)
		if !g.Quiet && g.json == nil {
			what := op
			if g.account != "" {
				what += " " + g.account
			}
			fmt.Fprintf(g.stderr, "%s: %v; resuming in %s\n", what, err, delay)
		}
		if err := backoff.Sleep(ctx, delay); err != nil {
			return out, err
		}
	}
	for _, rf := range total.Refused {
		out.Skipped = append(out.Skipped, repo.Skipped{Folder: rf.Folder, SourceID: rf.SourceID, Error: "refused by the target: " + rf.Error})
	}
	return out, nil
}

// mergeRefused adds the refusals of a later attempt to those of earlier
// ones: a message refused again is listed once, with its latest refusal.
func mergeRefused(all, later []imap.Refused) []imap.Refused {
	for _, r := range later {
		i := slices.IndexFunc(all, func(x imap.Refused) bool { return x.Folder == r.Folder && x.SourceID == r.SourceID })
		if i >= 0 {
			all[i] = r
		} else {
			all = append(all, r)
		}
	}
	return all
}

// warnHandler shows the warnings the sink logs (the target keeps no
// keywords, refused a message...) without --verbose: "planb: warning: MSG
// (k=v, ...)" on stderr, or with --json a "warning" line. Records also go
// to the debug log's handler.
type warnHandler struct {
	slog.Handler
	op    string
	g     *globalOptions
	attrs []slog.Attr
}

func (h *warnHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.Handler.Enabled(ctx, l)
}

func (h *warnHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.Handler.Enabled(ctx, r.Level) {
		_ = h.Handler.Handle(ctx, r)
	}
	if r.Level < slog.LevelWarn {
		return nil
	}
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	l := eventLine{Type: "warning", Op: h.op, Account: h.g.account, Message: r.Message}
	var text []string
	for _, a := range attrs {
		switch a.Key {
		case "folder":
			l.Folder = a.Value.String()
		case "source_id":
			l.SourceID = a.Value.String()
		}
		text = append(text, a.Key+"="+a.Value.String())
	}
	if h.g.json != nil {
		if len(text) > 0 {
			l.Message += " (" + strings.Join(text, ", ") + ")"
		}
		h.g.json.write(l)
		return nil
	}
	msg := "planb: warning: " + r.Message
	if h.g.account != "" {
		msg = "planb: warning: " + h.g.account + ": " + r.Message
	}
	if len(text) > 0 {
		msg += " (" + strings.Join(text, ", ") + ")"
	}
	fmt.Fprintln(h.g.stderr, msg)
	return nil
}

func (h *warnHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.Handler = h.Handler.WithAttrs(attrs)
	c.attrs = append(slices.Clone(h.attrs), attrs...)
	return &c
}

func (h *warnHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.Handler = h.Handler.WithGroup(name)
	return &c
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
		strings.Contains(s, "broken pipe") || strings.Contains(s, "use of closed network connection") ||
		// A server that died in the middle of an answer leaves one that
		// does not parse; the restore resumes, so it is safe to retry.
		strings.Contains(s, "in response: ")
}
