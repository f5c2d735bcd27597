package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/imap"
)

// configCommand is `planb config`.
func configCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "work with the config file of planb run",
		Subcommands: []*cli.Command{
			{
				Name:  "check",
				Usage: "validate a config file and print what planb run would do",
				Description: "Reports unknown keys, missing keys, unreadable secret files and loose file\n" +
					"permissions, one line each; with --probe it also opens every repository and\n" +
					"signs in to every source.",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"PLANB_CONFIG"}, Usage: "the TOML config `FILE`"},
					&cli.BoolFlag{Name: "probe", Usage: "open every repository and sign in to every source"},
					&cli.DurationFlag{Name: "timeout", Value: 20 * time.Second, Usage: "give up on each probe after `DUR`"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0, "config check --config FILE [--probe]"); err != nil {
						return err
					}
					if err := requireFlags(c, "config"); err != nil {
						return err
					}
					return runConfigCheck(c.Context, configCheckOptions{
						Config: c.String("config"), Probe: c.Bool("probe"), Timeout: c.Duration("timeout"),
					}, g)
				},
			},
		},
	}
}

// configCheckOptions are the options of config check.
type configCheckOptions struct {
	Config  string
	Probe   bool
	Timeout time.Duration

	httpClient *http.Client // tests: trust a fake Graph
}

func runConfigCheck(ctx context.Context, opts configCheckOptions, g *globalOptions) error {
	cfg, err := loadRunConfig(opts.Config)
	var probs configProblems
	if errors.As(err, &probs) {
		for _, p := range probs {
			fmt.Fprintln(g.stdout, p)
		}
		return fmt.Errorf("config %s: %s", opts.Config, plural(len(probs), "problem"))
	}
	if err != nil {
		return err
	}
	printPlan(g, cfg)
	if !opts.Probe {
		return nil
	}
	failed := 0
	probe := func(what string, fn func(ctx context.Context) error) {
		pctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
		if err := fn(pctx); err != nil {
			failed++
			fmt.Fprintf(g.stdout, "probe %s: failed: %s\n", what, oneLine(err.Error()))
			return
		}
		fmt.Fprintf(g.stdout, "probe %s: ok\n", what)
	}
	ru := &runner{opts: runOptions{httpClient: opts.httpClient}, g: g, cfg: cfg}
	for _, n := range cfg.names {
		probe("repository "+n, func(ctx context.Context) error {
			rr := ru.openRepoReadOnly(ctx, cfg.Repository[n])
			if rr.r != nil {
				defer rr.r.Close()
			}
			if rr.rep.Error != "" {
				return errors.New(rr.rep.Error)
			}
			return nil
		})
	}
	for _, sc := range cfg.Source {
		probe("source "+sc.Name, func(ctx context.Context) error { return ru.probeSource(ctx, sc) })
	}
	if failed > 0 {
		return fmt.Errorf("config check: %d of %d probes failed", failed, len(cfg.names)+len(cfg.Source))
	}
	return nil
}

// probeSource opens a source and signs in: an IMAP login and folder list,
// a Graph token request (and the user list with all_mailboxes), a look at
// a Maildir or mbox path.
func (ru *runner) probeSource(ctx context.Context, sc *sourceConfig) error {
	switch sc.Kind {
	case "maildir", "mbox":
		if _, err := os.Stat(sc.Path); err != nil {
			return err
		}
		_, err := newSource(sc.Kind, sc.Path, ru.g)
		return err
	case "imap":
		o := backupIMAPOptions{
			URL: sc.URL, Connections: 1, PasswordFile: sc.PasswordFile, TokenCommand: sc.OAuth2TokenCommand,
			InsecurePlaintext: sc.InsecurePlaintext, InsecureSkipVerify: sc.InsecureSkipVerify, CAFile: sc.CAFile,
		}
		if sc.PasswordEnv != "" {
			o.PasswordEnv = os.Getenv(sc.PasswordEnv)
		}
		io, err := imapSourceOptions(o, ru.g)
		if err != nil {
			return err
		}
		src, err := imap.New(io)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = src.Folders(ctx)
		return err
	case "graph":
		client, err := ru.signInGraph(ctx, sc, 0)
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

// printPlan prints what a run of cfg would do.
func printPlan(g *globalOptions, cfg *runConfig) {
	w := g.stdout
	dir, err := cfg.stateDir()
	if err != nil {
		dir = "(" + err.Error() + ")"
	}
	fmt.Fprintf(w, "config %s: ok\n", cfg.file)
	ck := "no checkpoints"
	if cfg.checkpoint > 0 {
		ck = "a checkpoint every " + shortDuration(cfg.checkpoint)
	}
	fmt.Fprintf(w, "%s at once; state in %s; %s\n", plural(cfg.Concurrency, "source"), dir, ck)
	for _, n := range cfg.names {
		rc := cfg.Repository[n]
		var what []string
		if p := rc.Keep.policy(); !p.Empty() {
			what = append(what, "keep "+p.String())
			if rc.pruneEvery > 0 {
				what = append(what, "prune every "+formatEvery(rc.pruneEvery))
			} else {
				what = append(what, "never prune")
			}
		} else {
			what = append(what, "keep every snapshot")
		}
		if rc.sample > 0 {
			what = append(what, fmt.Sprintf("check and read %s of the packs", strings.TrimSuffix(rc.CheckSample, " ")))
		} else {
			what = append(what, "check the structure")
		}
		fmt.Fprintf(w, "repository %s: %s; %s\n", n, rc.Path, strings.Join(what, ", "))
		for _, sc := range cfg.Source {
			if sc.Repository != n {
				continue
			}
			fmt.Fprintf(w, "  source %s: %s\n", sc.Name, describeSource(sc))
		}
	}
}

func describeSource(sc *sourceConfig) string {
	var s string
	switch sc.Kind {
	case "maildir", "mbox":
		s = sc.Kind + " " + sc.Path
	case "imap":
		s = "imap " + sc.URL
		if len(sc.Folders) > 0 {
			s += ", folders " + strings.Join(sc.Folders, ", ")
		}
		if len(sc.Exclude) > 0 {
			s += ", exclude " + strings.Join(sc.Exclude, ", ")
		}
	case "graph":
		s = "graph tenant " + sc.Tenant
		if sc.AllMailboxes {
			s += ", every mailbox (one snapshot each)"
		} else {
			s += ", mailboxes " + strings.Join(sc.Mailboxes, ", ") + " (one snapshot each)"
		}
	}
	if len(sc.Tags) > 0 {
		s += ", tags " + strings.Join(sc.Tags, ", ")
	}
	return s
}

// formatEvery words a prune interval: "7d", "36h".
// shortDuration writes d without its zero minutes and seconds ("10m",
// "1h", "1h30m").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func formatEvery(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
