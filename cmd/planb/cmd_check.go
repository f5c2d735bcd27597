package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func checkCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "check the repository's structure, and with --read-data every blob",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-data", Usage: "read and verify every pack"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "check [--read-data]"); err != nil {
				return err
			}
			return runCheck(c.Context, checkOptions{ReadData: c.Bool("read-data")}, g)
		},
	}
}

// folderList is the source ID repo.Check gives when a folder's list of
// messages, rather than a message, is damaged.
const folderList = "(folder list)"

type checkOptions struct {
	ReadData bool
}

// checkResult is the --json output of check.
type checkResult struct {
	Type         string            `json:"type"` // "check"
	OK           bool              `json:"ok"`
	Errors       []repo.CheckError `json:"errors"`
	Unreferenced []string          `json:"unreferenced"`
}

func runCheck(ctx context.Context, opts checkOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		// A shared lock keeps forget and prune away while checking.
		lock, err := r.Lock(ctx, false)
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		defer lock.Unlock()
		rep, err := r.Check(lock.Context(ctx), &repo.CheckOptions{ReadData: opts.ReadData})
		if lerr := lock.Err(); lerr != nil {
			// A prune may have run meanwhile: the findings are not the
			// repository's.
			return fmt.Errorf("check: %w", lerr)
		}
		if err != nil {
			return err
		}
		if g.json != nil {
			g.json.write(checkResult{Type: "check", OK: rep.OK(), Errors: nonNil(rep.Errors), Unreferenced: nonNil(rep.Unreferenced)})
		} else {
			for _, e := range rep.Errors {
				fmt.Fprintf(g.stdout, "damaged: %s: %s\n", e.File, e.Err)
				for _, m := range e.Messages {
					if m.SourceID == folderList {
						fmt.Fprintf(g.stdout, "  affects snapshot %s folder %s: its list of messages\n", m.Snapshot.Short(), m.Folder)
						continue
					}
					fmt.Fprintf(g.stdout, "  affects snapshot %s folder %s message %s\n", m.Snapshot.Short(), m.Folder, m.SourceID)
				}
			}
			if len(rep.Unreferenced) > 0 && !g.Quiet {
				fmt.Fprintf(g.stdout, "%d unreferenced files (left by an interrupted run; `planb prune` removes them)\n", len(rep.Unreferenced))
			}
		}
		if !rep.OK() {
			return fmt.Errorf("check: %d errors found", len(rep.Errors))
		}
		if g.json == nil && !g.Quiet {
			fmt.Fprintln(g.stdout, "no errors found")
		}
		return nil
	})
}
