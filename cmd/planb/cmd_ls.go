package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func lsCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list a snapshot's folders, or the messages of one folder",
		ArgsUsage: "SNAPSHOT [FOLDER]",
		Flags:     selectionFlags(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 2, "ls SNAPSHOT [FOLDER]"); err != nil {
				return err
			}
			sel, err := selectionOf(c)
			if err != nil {
				return err
			}
			return runLs(c.Context, lsOptions{Snapshot: c.Args().Get(0), Folder: c.Args().Get(1), Select: sel}, g)
		},
	}
}

type lsOptions struct {
	Snapshot string // id prefix or "latest"
	Folder   string // empty: list folders
	Select   selection
}

// folderLine and messageLine are the --json output of ls.
type folderLine struct {
	Type     string `json:"type"` // "folder"
	Path     string `json:"path"`
	Messages int64  `json:"messages"`
	Bytes    int64  `json:"bytes"`
}

type messageLine struct {
	Type     string    `json:"type"` // "message"
	Folder   string    `json:"folder"`
	SourceID string    `json:"source_id"`
	Date     time.Time `json:"date"`
	Size     int64     `json:"size"`
	Flags    []string  `json:"flags,omitempty"`
	ID       string    `json:"id"`
}

func runLs(ctx context.Context, opts lsOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		snap, err := findSnapshot(ctx, r, opts.Snapshot, opts.Select, false)
		if err != nil {
			return err
		}
		if opts.Folder == "" {
			return lsFolders(g, snap)
		}
		for i, f := range snap.Folders {
			if f.Path == opts.Folder {
				return lsMessages(ctx, g, r, snap, i)
			}
		}
		return fmt.Errorf("ls: snapshot %s has no folder %q", snap.ID.Short(), opts.Folder)
	})
}

func lsFolders(g *globalOptions, snap *repo.Snapshot) error {
	if g.json != nil {
		for _, f := range snap.Folders {
			g.json.write(folderLine{Type: "folder", Path: f.Path, Messages: f.Messages, Bytes: f.Bytes})
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FOLDER\tMESSAGES\tSIZE")
	for _, f := range snap.Folders {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", f.Path, f.Messages, formatBytes(f.Bytes))
	}
	return tw.Flush()
}

func lsMessages(ctx context.Context, g *globalOptions, r *repo.Repository, snap *repo.Snapshot, folder int) error {
	path := snap.Folders[folder].Path
	if g.json != nil {
		return r.Entries(ctx, snap, folder, func(e repo.Entry) error {
			g.json.write(messageLine{Type: "message", Folder: path, SourceID: e.SourceID, Date: e.Date,
				Size: e.Size, Flags: e.Flags, ID: e.ID.String()})
			return nil
		})
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE ID\tDATE\tSIZE\tFLAGS")
	err := r.Entries(ctx, snap, folder, func(e repo.Entry) error {
		_, err := fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", e.SourceID, e.Date.Local().Format(time.DateTime),
			e.Size, strings.Join(e.Flags, " "))
		return err
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}
