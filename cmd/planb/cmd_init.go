package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func initCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a repository",
		ArgsUsage: " ",
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "init"); err != nil {
				return err
			}
			return runInit(c.Context, g)
		},
	}
}

// initResult is the --json output of init.
type initResult struct {
	Type       string `json:"type"` // "init"
	ID         string `json:"id"`
	Repository string `json:"repository"`
}

func runInit(ctx context.Context, g *globalOptions) error {
	if g.Repo == "" {
		return usageErrorf("no repository: set --repo or PLANB_REPOSITORY")
	}
	pw, err := g.Password.get(ctx, "new repository password", true)
	if err != nil {
		return err
	}
	be, err := g.openBackend(ctx, true)
	if err != nil {
		return err
	}
	r, err := repo.Init(ctx, be, pw, &repo.Options{Logger: g.logger})
	if err != nil {
		return err
	}
	defer r.Close()
	id := r.Config().ID
	switch {
	case g.json != nil:
		g.json.write(initResult{Type: "init", ID: id, Repository: g.Repo})
	case !g.Quiet:
		fmt.Fprintf(g.stdout, "created repository %s at %s\n", id[:8], g.Repo)
		fmt.Fprintln(g.stdout, "keep the password safe: without it the repository cannot be read")
	}
	return nil
}
