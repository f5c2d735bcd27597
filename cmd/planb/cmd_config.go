package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/cmd/planb/internal/engine"
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
	cfg, err := engine.Load(opts.Config)
	var probs engine.Problems
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
	env := engineEnv(g, opts.httpClient, nil, false)
	for _, n := range cfg.Names() {
		probe("repository "+n, func(ctx context.Context) error { return engine.ProbeRepository(ctx, cfg, env, n) })
	}
	for _, sc := range cfg.Source {
		probe("source "+sc.Name, func(ctx context.Context) error { return engine.ProbeSource(ctx, cfg, env, sc) })
	}
	if failed > 0 {
		return fmt.Errorf("config check: %d of %d probes failed", failed, len(cfg.Names())+len(cfg.Source))
	}
	return nil
}

// printPlan prints what a run of cfg would do.
func printPlan(g *globalOptions, cfg *engine.Config) {
	w := g.stdout
	dir, err := cfg.StateDirectory()
	if err != nil {
		dir = "(" + err.Error() + ")"
	}
	fmt.Fprintf(w, "config %s: ok\n", cfg.File())
	ck := "no checkpoints"
	if d := cfg.CheckpointInterval(); d > 0 {
		ck = "a checkpoint every " + shortDuration(d)
	}
	fmt.Fprintf(w, "%s at once; state in %s; %s\n", plural(cfg.Concurrency, "source"), dir, ck)
	interval, every, maintain := cfg.Watch.Intervals()
	fmt.Fprintf(w, "watch: check every %s, a snapshot per source at most every %s, maintenance every %s\n",
		shortDuration(interval), shortDuration(every), formatEvery(maintain))
	for _, n := range cfg.Names() {
		rc := cfg.Repository[n]
		var what []string
		if p := rc.Policy(); !p.Empty() {
			what = append(what, "keep "+p.String())
			if d := rc.PruneInterval(); d > 0 {
				what = append(what, "prune every "+formatEvery(d))
			} else {
				what = append(what, "never prune")
			}
		} else {
			what = append(what, "keep every snapshot")
		}
		if rc.CheckFraction() > 0 {
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

func describeSource(sc *engine.SourceConfig) string {
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
