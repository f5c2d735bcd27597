package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
			labelsFlag(),
		}, append(imapTargetFlags(), selectionFlags()...)...),
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
			sel, err := selectionOf(c)
			if err != nil {
				return err
			}
			sc, err := scopeOf(c)
			if err != nil {
				return err
			}
			return withRepo(c.Context, g, func(r *repo.Repository) error {
				snap, err := findSnapshot(c.Context, r, c.Args().First(), sel, true)
				if err != nil {
					return err
				}
				return runVerify(c.Context, r, snap, io, imap.MapOptions{Map: m}, sc, g)
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
	Counts      map[string]int64  `json:"counts"`
	Rewrites    map[string]int64  `json:"rewrites"`
	Differences []restore.Verdict `json:"differences"`
	DurationMS  int64             `json:"duration_ms"`
}

// verifyClasses are the classes verify counts, in the order it prints them.
var verifyClasses = []string{restore.Exact, restore.Rewritten, restore.Repaired, restore.Missing, restore.Extra, restore.Altered}

func runVerify(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, io *imap.Options, mo imap.MapOptions, sc restoreScope, g *globalOptions) error {
	start := time.Now()
	for _, f := range sc.Folders {
		if _, err := restore.Match([]string{f}, ""); err != nil {
			return usageErrorf("%v", err)
		}
	}
	a, err := imap.OpenAccount(ctx, io, mo)
	if err != nil {
		return err
	}
	defer a.Close()
	p := newProgress("verify", g.json, g.showBar(), g.stderr)
	rep, err := restore.Verify(ctx, r, snap, a, &restore.VerifyOptions{Folders: sc.Folders, Labels: sc.Labels, Progress: p})
	p.Done()
	if err != nil {
		return err
	}
	if g.json != nil {
		g.json.write(verifyResult{Type: "summary", Op: "verify", Snapshot: snap.ID.String(), Against: describeTarget(io),
			Messages: rep.Messages, Counts: rep.Counts, Rewrites: rep.Rewrites,
			Differences: nonNil(rep.Differences), DurationMS: time.Since(start).Milliseconds()})
	} else {
		for _, d := range rep.Differences {
			what := d.SourceID
			if what == "" && d.UID != 0 {
				what = fmt.Sprintf("uid %d", d.UID)
			}
			if d.MessageID != "" {
				what += " " + d.MessageID
			}
			fmt.Fprintf(g.stdout, "%-14s %s (%s): %s\n", d.Class, d.Folder, d.Mailbox, strings.TrimSpace(what))
		}
		if !g.Quiet {
			var counts []string
			for _, c := range verifyClasses {
				counts = append(counts, fmt.Sprintf("%d %s", rep.Counts[c], c))
			}
			fmt.Fprintf(g.stdout, "verified %d messages of snapshot %s against %s: %s\n",
				rep.Messages, snap.ID.Short(), describeTarget(io), strings.Join(counts, ", "))
			hows := make([]string, 0, len(rep.Rewrites))
			for h := range rep.Rewrites {
				hows = append(hows, h)
			}
			slices.Sort(hows)
			for _, h := range hows {
				fmt.Fprintf(g.stdout, "  %6d %s\n", rep.Rewrites[h], h)
			}
		}
	}
	n := rep.Counts[restore.Missing] + rep.Counts[restore.Extra] + rep.Counts[restore.Altered]
	if n > 0 {
		return fmt.Errorf("verify: %d messages missing, extra or altered between snapshot %s and %s", n, snap.ID.Short(), describeTarget(io))
	}
	return nil
}
