package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func unlockCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "unlock",
		Usage:     "remove stale locks (with --remove-all, every lock, unreadable ones too)",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "remove-all", Usage: "remove all locks, even those of running processes"},
			adminFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "unlock [--remove-all] [--admin]"); err != nil {
				return err
			}
			g.S3.Admin = c.Bool("admin")
			return runUnlock(c.Context, unlockOptions{RemoveAll: c.Bool("remove-all")}, g)
		},
	}
}

func locksCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "locks",
		Usage:     "list the repository's locks",
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "locks"); err != nil {
				return err
			}
			return runLocks(c.Context, g)
		},
	}
}

type unlockOptions struct {
	RemoveAll bool
}

// unlockResult and lockLine are the --json output of unlock and locks.
type unlockResult struct {
	Type    string `json:"type"` // "unlock"
	Removed int    `json:"removed"`
}

type lockLine struct {
	Type string `json:"type"` // "lock"
	repo.LockInfo
}

func runUnlock(ctx context.Context, opts unlockOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		// Stale locks are the backup credentials' to remove (they may
		// delete under locks/), but removing those of running
		// processes is the administrator's decision.
		if opts.RemoveAll {
			if err := g.refuseAppendOnly(r, "unlock --remove-all"); err != nil {
				return err
			}
		}
		n, err := r.RemoveLocks(ctx, opts.RemoveAll)
		if err != nil {
			return err
		}
		switch {
		case g.json != nil:
			g.json.write(unlockResult{Type: "unlock", Removed: n})
		case !g.Quiet:
			fmt.Fprintf(g.stdout, "removed %d locks\n", n)
		}
		return nil
	})
}

func runLocks(ctx context.Context, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		locks, err := r.Locks(ctx)
		if err != nil {
			return err
		}
		if g.json != nil {
			for _, l := range locks {
				g.json.write(lockLine{Type: "lock", LockInfo: l})
			}
			return nil
		}
		now := time.Now()
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tHOST\tPID\tAGE\t")
		for _, l := range locks {
			kind := "shared"
			if l.Exclusive {
				kind = "exclusive"
			}
			state := ""
			switch {
			case l.Unreadable:
				fmt.Fprintf(tw, "%s\t?\t?\t?\t?\tunreadable: %s\n", short(l.ID), l.Err)
				continue
			case l.Dead:
				state = "stale (process gone)"
			case l.Stale:
				state = "stale"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", short(l.ID), kind, l.Host, l.PID, formatAge(now, l.Time), state)
		}
		return tw.Flush()
	})
}
