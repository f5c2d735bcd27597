package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
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
	// Kind, in a snapshot of a label-based mailbox (Gmail, Proton Mail):
	// "view" (All Mail, Starred: held elsewhere too), "inbox", "system",
	// "folder" (Proton's Folders/) or "label".
	Kind string `json:"kind,omitempty"`
}

type messageLine struct {
	Type     string    `json:"type"` // "message"
	Folder   string    `json:"folder"`
	SourceID string    `json:"source_id"`
	Date     time.Time `json:"date"`
	Size     int64     `json:"size"`
	Flags    []string  `json:"flags,omitempty"`
	Labels   []string  `json:"labels,omitempty"`
	ID       string    `json:"id"`
}

func runLs(ctx context.Context, opts lsOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		snap, err := findSnapshot(ctx, r, opts.Snapshot, opts.Select, false)
		if err != nil {
			return err
		}
		labels, kinds, err := restore.Labels(ctx, r, snap)
		if err != nil {
			return err
		}
		if opts.Folder == "" {
			return lsFolders(g, snap, kinds)
		}
		for i, f := range snap.Folders {
			if f.Path == opts.Folder {
				return lsMessages(ctx, g, r, snap, i, labels)
			}
		}
		return fmt.Errorf("ls: snapshot %s has no folder %q", snap.ID.Short(), opts.Folder)
	})
}

// lsFolders lists the folders of snap; kinds, for a label-based
// snapshot, says what each is (see restore.Labels).
func lsFolders(g *globalOptions, snap *repo.Snapshot, kinds []string) error {
	kind := func(i int) string {
		if kinds == nil {
			return ""
		}
		return kinds[i]
	}
	if g.json != nil {
		for i, f := range snap.Folders {
			g.json.write(folderLine{Type: "folder", Path: f.Path, Messages: f.Messages, Bytes: f.Bytes, Kind: kind(i)})
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if kinds == nil {
		fmt.Fprintln(tw, "FOLDER\tMESSAGES\tSIZE")
	} else {
		fmt.Fprintln(tw, "FOLDER\tMESSAGES\tSIZE\tKIND")
	}
	for i, f := range snap.Folders {
		line := fmt.Sprintf("%s\t%d\t%s", f.Path, f.Messages, formatBytes(f.Bytes))
		if kinds != nil {
			line += "\t" + kind(i)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// lsMessages lists the messages of one folder of snap; labels, for a
// label-based snapshot, gives each message's labels.
func lsMessages(ctx context.Context, g *globalOptions, r *repo.Repository, snap *repo.Snapshot, folder int, labels func(*repo.Entry) []string) error {
	path := snap.Folders[folder].Path
	labelsOf := func(e *repo.Entry) []string {
		if labels == nil {
			return nil
		}
		return labels(e)
	}
	if g.json != nil {
		return r.Entries(ctx, snap, folder, func(e repo.Entry) error {
			g.json.write(messageLine{Type: "message", Folder: path, SourceID: e.SourceID, Date: e.Date,
				Size: e.Size, Flags: e.Flags, Labels: labelsOf(&e), ID: e.ID.String()})
			return nil
		})
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if labels == nil {
		fmt.Fprintln(tw, "SOURCE ID\tDATE\tSIZE\tFLAGS")
	} else {
		fmt.Fprintln(tw, "SOURCE ID\tDATE\tSIZE\tFLAGS\tLABELS")
	}
	err := r.Entries(ctx, snap, folder, func(e repo.Entry) error {
		line := fmt.Sprintf("%s\t%s\t%d\t%s", e.SourceID, e.Date.Local().Format(time.DateTime),
			e.Size, strings.Join(e.Flags, " "))
		if labels != nil {
			line += "\t" + strings.Join(labels(&e), ", ")
		}
		_, err := fmt.Fprintln(tw, line)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}
