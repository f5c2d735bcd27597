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

func snapshotsCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "snapshots",
		Usage:     "list snapshots, oldest first (checkpoints of unfinished backups marked)",
		ArgsUsage: " ",
		Flags:     selectionFlags(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "snapshots [--source PATTERN] [--host H] [--tag T]"); err != nil {
				return err
			}
			sel, err := selectionOf(c)
			if err != nil {
				return err
			}
			return runSnapshots(c.Context, sel, g)
		},
	}
}

// snapshotLine is the --json form of a snapshot.
type snapshotLine struct {
	Type     string    `json:"type"` // "snapshot"
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Host     string    `json:"host"`
	Username string    `json:"username,omitempty"`
	Tags     []string  `json:"tags,omitempty"`
	Source   string    `json:"source"`
	Parent   string    `json:"parent,omitempty"`
	Partial  bool      `json:"partial,omitempty"`
	// Repaired marks a snapshot written by repair snapshots in place of a
	// damaged one.
	Repaired *repo.Repair `json:"repaired,omitempty"`
	// Checkpoint marks the state of a backup that has not finished.
	Checkpoint bool  `json:"checkpoint,omitempty"`
	Folders    int   `json:"folders"`
	Messages   int64 `json:"messages"`
	Bytes      int64 `json:"bytes"`
}

func newSnapshotLine(s *repo.Snapshot) snapshotLine {
	l := snapshotLine{
		Type: "snapshot", ID: s.ID.String(), Time: s.Time, Host: s.Host, Username: s.Username,
		Tags: s.Tags, Source: s.Source, Partial: s.Partial, Repaired: s.Repaired, Checkpoint: s.Checkpoint,
		Folders: len(s.Folders),
	}
	if s.Parent != nil {
		l.Parent = s.Parent.String()
	}
	l.Messages, l.Bytes = snapshotSize(s)
	return l
}

// snapshotSize adds up the messages and bytes of a snapshot's folders.
func snapshotSize(s *repo.Snapshot) (messages, bytes int64) {
	for _, f := range s.Folders {
		messages += f.Messages
		bytes += f.Bytes
	}
	return messages, bytes
}

func runSnapshots(ctx context.Context, sel selection, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		// Snapshots that do not load are named by the error, after the
		// others are listed.
		snaps, err := r.Snapshots(ctx)
		snaps = sel.filter(snaps)
		if g.json != nil {
			for _, s := range snaps {
				g.json.write(newSnapshotLine(s))
			}
			return err
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTIME\tHOST\tTAGS\tMESSAGES\tSIZE\tSOURCE")
		for _, s := range snaps {
			n, b := snapshotSize(s)
			id := s.ID.Short()
			if s.Checkpoint {
				id += " (checkpoint)"
			}
			if s.Partial {
				id += " (partial)"
			}
			if s.Repaired != nil {
				id += fmt.Sprintf(" (repaired from %s, %d lost)", s.Repaired.Original.Short(), s.Repaired.LostMessages)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", id, s.Time.Local().Format(time.DateTime),
				s.Host, strings.Join(s.Tags, ","), n, formatBytes(b), s.Source)
		}
		if ferr := tw.Flush(); ferr != nil {
			return ferr
		}
		if !g.Quiet {
			fmt.Fprintf(g.stdout, "%d snapshots\n", len(snaps))
		}
		return err
	})
}
