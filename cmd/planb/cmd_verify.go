package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap"
)

func verifyCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "compare a snapshot with an IMAP account, message by message (exit 1 on any difference)",
		ArgsUsage: "SNAPSHOT",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "against", Usage: "account `URL`: imaps://user@host[:port] or imap://user@host[:port]"},
			&cli.StringSliceFlag{Name: "map", Usage: "folder `FROM=TO` was restored into TO (repeatable)"},
			&cli.StringSliceFlag{Name: "folder", Usage: "verify only folders matching `GLOB` (repeatable)"},
		}, imapTargetFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1, "verify SNAPSHOT --against imaps://user@host"); err != nil {
				return err
			}
			if err := requireFlags(c, "against"); err != nil {
				return err
			}
			m, err := parseMap(c.StringSlice("map"))
			if err != nil {
				return err
			}
			io, err := imapTargetOptions(c, c.String("against"), 1, g)
			if err != nil {
				return err
			}
			return withRepo(c.Context, g, func(r *repo.Repository) error {
				snap, err := r.FindSnapshot(c.Context, c.Args().First())
				if err != nil {
					return err
				}
				return runVerify(c.Context, r, snap, io, imap.MapOptions{Map: m}, c.StringSlice("folder"), g)
			})
		},
	}
}

// verifyResult is the --json summary of verify.
type verifyResult struct {
	Type        string            `json:"type"` // "summary"
	Op          string            `json:"op"`   // "verify"
	Snapshot    string            `json:"snapshot"`
	Against     string            `json:"against"`
	Messages    int64             `json:"messages"`
	Differences []imap.Difference `json:"differences"`
	DurationMS  int64             `json:"duration_ms"`
}

func runVerify(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, io *imap.Options, mo imap.MapOptions, folders []string, g *globalOptions) error {
	start := time.Now()
	v, err := imap.NewVerifier(ctx, io, mo)
	if err != nil {
		return err
	}
	defer v.Close()
	var (
		diffs []imap.Difference
		n     int64
	)
	for i, f := range snap.Folders {
		ok, err := restore.Match(folders, f.Path)
		if err != nil {
			return usageErrorf("%v", err)
		}
		if !ok {
			continue
		}
		want, err := imap.SnapshotExpected(ctx, r, snap, i)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		n += int64(len(want))
		d, err := v.Folder(ctx, f.Folder, want)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		diffs = append(diffs, d...)
	}
	if g.json != nil {
		g.json.write(verifyResult{Type: "summary", Op: "verify", Snapshot: snap.ID.String(), Against: describeTarget(io),
			Messages: n, Differences: nonNil(diffs), DurationMS: time.Since(start).Milliseconds()})
	} else {
		for _, d := range diffs {
			what := d.SourceID
			if what == "" {
				what = fmt.Sprintf("uid %d", d.UID)
			}
			if d.MessageID != "" {
				what += " " + d.MessageID
			}
			fmt.Fprintf(g.stdout, "%-8s %s (%s): %s\n", d.Kind, d.Folder, d.Mailbox, what)
		}
		if !g.Quiet {
			fmt.Fprintf(g.stdout, "verified %d messages of snapshot %s against %s: %d differences\n",
				n, snap.ID.Short(), describeTarget(io), len(diffs))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("verify: %d differences between snapshot %s and %s", len(diffs), snap.ID.Short(), describeTarget(io))
	}
	return nil
}
