package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
)

func backupCommand(g *globalOptions) *cli.Command {
	flags := func(pathUsage string) []cli.Flag {
		return []cli.Flag{
			&cli.StringFlag{Name: "path", Usage: pathUsage},
			&cli.StringSliceFlag{Name: "tag", Usage: "add tag `T` to the snapshot (repeatable)"},
			&cli.StringFlag{Name: "host", Usage: "record `HOST` instead of this machine's name"},
			checkpointFlag(),
		}
	}
	action := func(kind string) cli.ActionFunc {
		return func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "backup "+kind+" --path PATH"); err != nil {
				return err
			}
			if err := requireFlags(c, "path"); err != nil {
				return err
			}
			opts := backupOptions{Kind: kind, Path: c.String("path"), Tags: c.StringSlice("tag"), Host: c.String("host"),
				Checkpoint: c.Duration("checkpoint")}
			return runBackup(c.Context, opts, g)
		}
	}
	return &cli.Command{
		Name:  "backup",
		Usage: "back up a mail source into a new snapshot",
		Subcommands: []*cli.Command{
			{
				Name:   "maildir",
				Usage:  "back up a Maildir++ tree",
				Flags:  flags("Maildir `DIR` (with cur/, new/ and .Sub.Folders)"),
				Action: action("maildir"),
			},
			{
				Name:   "mbox",
				Usage:  "back up an mbox file, or a directory of mbox files",
				Flags:  flags("mbox `FILE` or directory"),
				Action: action("mbox"),
			},
			backupGraphCommand(g),
			backupIMAPCommand(g),
		},
	}
}

// backupOptions are the options of backup maildir and backup mbox.
type backupOptions struct {
	Kind       string // "maildir" or "mbox"
	Path       string
	Tags       []string
	Host       string
	Checkpoint time.Duration // 0: none
}

// defaultCheckpoint is how often a backup saves a checkpoint by default.
const defaultCheckpoint = 10 * time.Minute

// checkpointFlag is --checkpoint, for every backup command.
func checkpointFlag() cli.Flag {
	return &cli.DurationFlag{Name: "checkpoint", Value: defaultCheckpoint,
		Usage: "save what is stored so far every `DUR`, and when stopped (SIGTERM), as a checkpoint the next backup goes on from (0: never)"}
}

// backupResult is the --json summary of a backup, or of the checkpoint
// of a backup that was stopped.
type backupResult struct {
	Type        string         `json:"type"` // "summary" or "checkpoint"
	Op          string         `json:"op"`   // "backup"
	Snapshot    string         `json:"snapshot"`
	Messages    int64          `json:"messages"`
	Bytes       int64          `json:"bytes"`
	NewMessages int64          `json:"new_messages"`
	NewBytes    int64          `json:"new_bytes"`
	AddedBlobs  int64          `json:"added_blobs"`
	AddedStored int64          `json:"added_stored"`
	DurationMS  int64          `json:"duration_ms"`
	Partial     bool           `json:"partial"`
	Skipped     []repo.Skipped `json:"skipped"`
}

func newSource(kind, path string, g *globalOptions) (archive.Source, error) {
	mopts := &mailfile.Options{Logger: g.logger}
	switch kind {
	case "maildir":
		return mailfile.NewMaildirSource(path, mopts)
	case "mbox":
		return mailfile.NewMboxSource(path, mopts)
	}
	return nil, usageErrorf("unknown source kind %q", kind)
}

func runBackup(ctx context.Context, opts backupOptions, g *globalOptions) error {
	src, err := newSource(opts.Kind, opts.Path, g)
	if err != nil {
		return err
	}
	return withRepo(ctx, g, func(r *repo.Repository) error {
		p := newProgress("backup", g.json, g.showBar(), g.stderr)
		snap, err := backup.Run(ctx, r, src, &backup.Options{
			Tags: opts.Tags, Host: opts.Host, Progress: p, Logger: g.logger, Checkpoint: opts.Checkpoint,
		})
		p.Done()
		if err != nil {
			printCheckpoint(g, snap)
			return err
		}
		printBackup(g, snap)
		return newPartial(snap.Skipped)
	})
}

// printCheckpoint tells of the checkpoint that a stopped backup saved, if
// snap is one.
func printCheckpoint(g *globalOptions, snap *repo.Snapshot) {
	if snap == nil || !snap.Checkpoint {
		return
	}
	s := snap.Summary
	switch {
	case g.json != nil:
		g.json.write(backupResult{
			Type: "checkpoint", Op: "backup", Snapshot: snap.ID.String(),
			Messages: s.Messages, Bytes: s.Bytes, NewMessages: s.NewMessages, NewBytes: s.NewBytes,
			AddedBlobs: s.AddedBlobs, AddedStored: s.AddedStored, DurationMS: s.Duration.Milliseconds(),
			Partial: snap.Partial, Skipped: nonNil(snap.Skipped),
		})
	case !g.Quiet:
		fmt.Fprintf(g.stdout, "checkpoint %s saved: %s (%d new); the next backup goes on from there\n",
			snap.ID.Short(), plural(int(s.Messages), "message"), s.NewMessages)
	}
}

func printBackup(g *globalOptions, snap *repo.Snapshot) {
	s := snap.Summary
	if g.json != nil {
		g.json.write(backupResult{
			Type: "summary", Op: "backup", Snapshot: snap.ID.String(),
			Messages: s.Messages, Bytes: s.Bytes, NewMessages: s.NewMessages, NewBytes: s.NewBytes,
			AddedBlobs: s.AddedBlobs, AddedStored: s.AddedStored, DurationMS: s.Duration.Milliseconds(),
			Partial: snap.Partial, Skipped: nonNil(snap.Skipped),
		})
		return
	}
	printSkipped(g, snap.Skipped)
	if g.Quiet {
		return
	}
	fmt.Fprintf(g.stdout, "snapshot %s saved\n", snap.ID.Short())
	fmt.Fprintf(g.stdout, "  messages:  %d (%d new)\n", s.Messages, s.NewMessages)
	fmt.Fprintf(g.stdout, "  size:      %s (%s new)\n", formatBytes(s.Bytes), formatBytes(s.NewBytes))
	fmt.Fprintf(g.stdout, "  added:     %s stored in %d blobs\n", formatBytes(s.AddedStored), s.AddedBlobs)
	fmt.Fprintf(g.stdout, "  duration:  %s\n", formatDuration(s.Duration))
}

// printSkipped names each skipped message on stderr (even with --quiet:
// they are why the exit code is 3).
func printSkipped(g *globalOptions, skipped []repo.Skipped) {
	for _, s := range skipped {
		if s.SourceID == "" {
			fmt.Fprintf(g.stderr, "skipped folder %s: %s\n", s.Folder, s.Error)
			continue
		}
		fmt.Fprintf(g.stderr, "skipped %s %s: %s\n", s.Folder, s.SourceID, s.Error)
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
