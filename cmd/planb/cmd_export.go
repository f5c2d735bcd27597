package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
)

func exportCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write a snapshot's messages to mbox files, a Maildir or .eml files",
		ArgsUsage: "SNAPSHOT",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "format", Usage: "`FORMAT`: mbox, maildir or eml"},
			&cli.StringFlag{Name: "out", Usage: "write into `DIR`"},
			&cli.StringSliceFlag{Name: "folder", Usage: "export only folders matching `GLOB` (repeatable)"},
			labelsFlag(),
		}, selectionFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "export SNAPSHOT --format FORMAT --out DIR"); err != nil {
				return err
			}
			if err := requireFlags(c, "format", "out"); err != nil {
				return err
			}
			sel, err := selectionOf(c)
			if err != nil {
				return err
			}
			sc, err := scopeOf(c)
			if err != nil {
				return err
			}
			return runExport(c.Context, exportOptions{
				Snapshot: c.Args().First(), Format: c.String("format"), Out: c.String("out"), Folders: sc.Folders,
				Labels: sc.Labels, Select: sel,
			}, g)
		},
	}
}

// exportOptions are the options of export.
type exportOptions struct {
	Snapshot string
	Format   string // "mbox", "maildir" or "eml"
	Out      string
	Folders  []string // globs; empty means all
	Labels   restore.LabelMode
	Select   selection
}

// exportResult is the --json summary of an export.
type exportResult struct {
	Type       string         `json:"type"` // "summary"
	Op         string         `json:"op"`   // "export"
	Snapshot   string         `json:"snapshot"`
	Format     string         `json:"format"`
	Out        string         `json:"out"`
	Messages   int64          `json:"messages"`
	Bytes      int64          `json:"bytes"`
	DurationMS int64          `json:"duration_ms"`
	Skipped    []repo.Skipped `json:"skipped"`
}

func newSink(format, dir string, g *globalOptions) (archive.Sink, error) {
	mopts := &mailfile.Options{Logger: g.logger}
	switch format {
	case "mbox":
		return mailfile.NewMboxSink(dir, mopts)
	case "maildir":
		return mailfile.NewMaildirSink(dir, mopts)
	case "eml":
		return mailfile.NewEMLSink(dir, mopts)
	}
	return nil, usageErrorf("unknown export format %q: want mbox, maildir or eml", format)
}

func runExport(ctx context.Context, opts exportOptions, g *globalOptions) error {
	start := time.Now()
	return withRepo(ctx, g, func(r *repo.Repository) error {
		snap, err := findSnapshot(ctx, r, opts.Snapshot, opts.Select, true)
		if err != nil {
			return err
		}
		lock, err := r.Lock(ctx, false)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		defer lock.Unlock()
		sink, err := newSink(opts.Format, opts.Out, g)
		if err != nil {
			return err
		}
		p := newProgress("export", g.json, g.showBar(), g.stderr)
		rep, err := restore.Run(ctx, r, snap, sink, &restore.Options{Folders: opts.Folders, Labels: opts.Labels, Progress: p, Logger: g.logger})
		p.Done()
		if err != nil {
			return err
		}
		d := time.Since(start)
		if g.json != nil {
			g.json.write(exportResult{
				Type: "summary", Op: "export", Snapshot: snap.ID.String(), Format: opts.Format, Out: opts.Out,
				Messages: rep.Messages, Bytes: rep.Bytes, DurationMS: d.Milliseconds(), Skipped: nonNil(rep.Skipped),
			})
		} else {
			printSkipped(g, rep.Skipped)
			if !g.Quiet {
				fmt.Fprintf(g.stdout, "exported %d messages (%s) from snapshot %s to %s in %s\n",
					rep.Messages, formatBytes(rep.Bytes), snap.ID.Short(), opts.Out, formatDuration(d))
			}
		}
		return newPartial(rep.Skipped)
	})
}
