package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func pruneCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "prune",
		Usage:     "remove data that no snapshot refers to",
		ArgsUsage: " ",
		Flags:     []cli.Flag{adminFlag()},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "prune [--admin]"); err != nil {
				return err
			}
			g.S3.Admin = c.Bool("admin")
			return runPrune(c.Context, g)
		},
	}
}

// pruneResult is the --json output of prune.
type pruneResult struct {
	Type          string `json:"type"` // "prune"
	RemovedPacks  int    `json:"removed_packs"`
	RepackedPacks int    `json:"repacked_packs"`
	FreedBytes    int64  `json:"freed_bytes"`
}

func runPrune(ctx context.Context, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error { return prune(ctx, r, g) })
}

func prune(ctx context.Context, r *repo.Repository, g *globalOptions) error {
	if err := g.refuseAppendOnly(r, "prune"); err != nil {
		return err
	}
	rep, err := r.Prune(ctx, &repo.PruneOptions{})
	if err != nil {
		return err
	}
	switch {
	case g.json != nil:
		g.json.write(pruneResult{Type: "prune", RemovedPacks: rep.RemovedPacks, RepackedPacks: rep.RepackedPacks, FreedBytes: rep.FreedBytes})
	case !g.Quiet:
		fmt.Fprintf(g.stdout, "pruned: removed %d packs, repacked %d, freed %s\n", rep.RemovedPacks, rep.RepackedPacks, formatBytes(rep.FreedBytes))
	}
	return nil
}
