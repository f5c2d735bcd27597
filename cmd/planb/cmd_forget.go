package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/retention"
	"codeberg.org/planb/planb/dedup"
)

func forgetCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "forget",
		Usage:     "remove snapshots by a retention policy (data stays until prune)",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			&cli.DurationFlag{Name: "keep-within", Usage: "keep every snapshot less than `DUR` older than the newest (e.g. 48h)"},
			&cli.IntFlag{Name: "keep-last", Usage: "keep the last `N` snapshots"},
			&cli.IntFlag{Name: "keep-hourly", Usage: "keep the last snapshot of each of the last `N` hours"},
			&cli.IntFlag{Name: "keep-daily", Usage: "keep the last snapshot of each of the last `N` days"},
			&cli.IntFlag{Name: "keep-weekly", Usage: "keep the last snapshot of each of the last `N` weeks"},
			&cli.IntFlag{Name: "keep-monthly", Usage: "keep the last snapshot of each of the last `N` months"},
			&cli.BoolFlag{Name: "prune", Usage: "prune the repository afterwards"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only print what would be removed"},
			adminFlag(),
		}, selectionFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "forget --keep-... N [--prune] [--dry-run]"); err != nil {
				return err
			}
			g.S3.Admin = c.Bool("admin")
			sel, err := selectionOf(c)
			if err != nil {
				return err
			}
			return runForget(c.Context, forgetOptions{
				Select: sel,
				Policy: retention.Policy{
					Within: c.Duration("keep-within"), Last: c.Int("keep-last"), Hourly: c.Int("keep-hourly"), Daily: c.Int("keep-daily"),
					Weekly: c.Int("keep-weekly"), Monthly: c.Int("keep-monthly"),
				},
				Prune: c.Bool("prune"), DryRun: c.Bool("dry-run"),
			}, g)
		},
	}
}

type forgetOptions struct {
	Select selection // only these snapshots are considered
	Policy retention.Policy
	Prune  bool
	DryRun bool
}

// forgetResult is the --json output of forget.
type forgetResult struct {
	Type   string   `json:"type"` // "forget"
	DryRun bool     `json:"dry_run"`
	Keep   []string `json:"keep"`
	Remove []string `json:"remove"`
}

func runForget(ctx context.Context, opts forgetOptions, g *globalOptions) error {
	p := opts.Policy
	if p.Within < 0 || p.Last < 0 || p.Hourly < 0 || p.Daily < 0 || p.Weekly < 0 || p.Monthly < 0 {
		return usageErrorf("forget: keep counts must not be negative")
	}
	if p.Empty() {
		return usageErrorf("forget: no policy given, refusing to remove every snapshot: use --keep-within, --keep-last, --keep-hourly, --keep-daily, --keep-weekly or --keep-monthly")
	}
	return withRepo(ctx, g, func(r *repo.Repository) error {
		if !opts.DryRun {
			if err := g.refuseAppendOnly(r, "forget"); err != nil {
				return err
			}
		}
		snaps, err := r.Snapshots(ctx)
		if err != nil {
			return err
		}
		decisions := retention.Apply(opts.Select.filter(snaps), p)
		res := forgetResult{Type: "forget", DryRun: opts.DryRun, Keep: []string{}, Remove: []string{}}
		var remove []dedup.ID
		for _, d := range decisions {
			if d.Keep {
				res.Keep = append(res.Keep, d.Snapshot.ID.String())
			} else {
				res.Remove = append(res.Remove, d.Snapshot.ID.String())
				remove = append(remove, d.Snapshot.ID)
			}
		}
		if g.summary() {
			printDecisions(g, decisions, opts.DryRun)
		}
		if opts.DryRun {
			if g.json != nil {
				g.json.write(res)
			}
			return nil
		}
		if err := r.Forget(ctx, remove); err != nil {
			return err
		}
		switch {
		case g.json != nil:
			g.json.write(res)
		case !g.Quiet:
			fmt.Fprintf(g.stdout, "removed %d snapshots, kept %d\n", len(res.Remove), len(res.Keep))
		}
		if opts.Prune && len(remove) > 0 {
			return prune(ctx, r, g)
		}
		return nil
	})
}

func printDecisions(g *globalOptions, decisions []retention.Decision, dryRun bool) {
	verb := "remove"
	if dryRun {
		verb = "would remove"
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	for _, d := range decisions {
		s := d.Snapshot
		what := verb
		if d.Keep {
			what = "keep (" + strings.Join(d.Reasons, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.ID.Short(), s.Time.Local().Format(time.DateTime), s.Source, what)
	}
	_ = tw.Flush()
}
