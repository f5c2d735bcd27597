package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

func repairCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "repair",
		Usage: "repair a damaged repository: its index, its snapshots",
		Description: "Run `planb check --read-data` first; it names the damaged files and the messages\n" +
			"they hold. Then `planb repair index` (with --read-data if packs are damaged), then\n" +
			"`planb repair snapshots`. A message whose only copy was in a damaged pack is lost from\n" +
			"the repository: the repaired snapshot names it, and the next backup stores it again if\n" +
			"the source still has it.",
		Subcommands: []*cli.Command{
			{
				Name:      "index",
				Usage:     "rebuild the index from the packs' own headers",
				ArgsUsage: " ",
				Description: "Reads every readable index file and the header of every pack they do not list\n" +
					"right, drops the packs that are gone or unreadable, writes a new index and removes\n" +
					"the old index files, damaged ones included. With --read-data it reads every pack\n" +
					"whole: the intact blobs of a damaged pack are copied into new packs and the damaged\n" +
					"pack is removed. Takes an exclusive lock.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "read-data", Usage: "read every pack whole and salvage damaged ones"},
					adminFlag(),
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0, "repair index [--read-data] [--admin]"); err != nil {
						return err
					}
					g.S3.Admin = c.Bool("admin")
					return runRepairIndex(c.Context, repairIndexOptions{ReadData: c.Bool("read-data")}, g)
				},
			},
			{
				Name:      "snapshots",
				Usage:     "write repaired copies of snapshots that lack pages or messages",
				ArgsUsage: "[SNAPSHOT...]",
				Description: "Looks at the given snapshots (default: all). For each one that lacks something\n" +
					"(an unreadable page of a folder's message list, a message whose data is gone) it\n" +
					"writes a new snapshot, marked repaired, with everything that is left and the names\n" +
					"of what is lost. --forget removes the damaged originals, and snapshot files that do\n" +
					"not open at all. Run `planb repair index` first.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "forget", Usage: "remove each damaged original once its repaired copy is written"},
					&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only print what would be done"},
					adminFlag(),
				},
				Action: func(c *cli.Context) error {
					g.S3.Admin = c.Bool("admin")
					return runRepairSnapshots(c.Context, repairSnapshotsOptions{
						Snapshots: c.Args().Slice(), Forget: c.Bool("forget"), DryRun: c.Bool("dry-run"),
					}, g)
				},
			},
		},
	}
}

type repairIndexOptions struct {
	ReadData bool
}

// repairIndexResult is the --json output of repair index.
type repairIndexResult struct {
	Type string `json:"type"` // "repair_index"
	*repo.RepairIndexReport
}

func runRepairIndex(ctx context.Context, opts repairIndexOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		// It removes the old index files and the packs it salvaged.
		if err := g.refuseAppendOnly(r, "repair index"); err != nil {
			return err
		}
		rep, err := r.RepairIndex(ctx, &repo.RepairIndexOptions{ReadData: opts.ReadData})
		if err != nil {
			return err
		}
		if g.json != nil {
			g.json.write(repairIndexResult{Type: "repair_index", RepairIndexReport: rep})
			return nil
		}
		for _, name := range rep.DamagedIndex {
			fmt.Fprintf(g.stdout, "damaged index file index/%s replaced\n", name)
		}
		for _, p := range rep.Missing {
			fmt.Fprintf(g.stdout, "missing pack %s dropped from the index\n", p)
		}
		for _, p := range rep.Unreadable {
			fmt.Fprintf(g.stdout, "unreadable pack %s dropped from the index (prune removes it): %s\n", p.Pack, p.Err)
		}
		for _, p := range rep.Salvaged {
			fmt.Fprintf(g.stdout, "damaged pack %s: %s kept, %s lost, pack removed: %s\n", p.Pack,
				plural(p.BlobsKept, "blob"), plural(p.BlobsLost, "blob"), p.Err)
		}
		if !g.Quiet {
			fmt.Fprintf(g.stdout, "index rebuilt: %s indexed (%d read), %s replaced\n",
				plural(rep.Packs, "pack"), rep.PacksRead, plural(rep.IndexFiles, "index file"))
			if len(rep.Missing)+len(rep.Unreadable)+len(rep.Salvaged) > 0 {
				fmt.Fprintln(g.stdout, "data was lost: `planb repair snapshots` marks the snapshots that needed it")
			}
		}
		return nil
	})
}

type repairSnapshotsOptions struct {
	Snapshots []string // IDs, prefixes or "latest"; none: all
	Forget    bool
	DryRun    bool
}

// repairedLine, unreadableLine and repairSnapshotsResult are the --json
// output of repair snapshots: one line per snapshot repaired or
// unreadable, then the totals.
type repairedLine struct {
	Type         string         `json:"type"` // "repaired_snapshot"
	Original     string         `json:"original"`
	New          string         `json:"new,omitempty"`
	LostMessages int64          `json:"lost_messages"`
	Lost         []repo.Skipped `json:"lost"`
	Forgotten    bool           `json:"forgotten"`
	DryRun       bool           `json:"dry_run"`
}

type unreadableLine struct {
	Type    string `json:"type"` // "unreadable_snapshot"
	ID      string `json:"id"`
	Error   string `json:"error"`
	Removed bool   `json:"removed"`
}

type repairSnapshotsResult struct {
	Type       string `json:"type"` // "repair_snapshots"
	Snapshots  int    `json:"snapshots"`
	Repaired   int    `json:"repaired"`
	Unreadable int    `json:"unreadable"`
	DryRun     bool   `json:"dry_run"`
}

func runRepairSnapshots(ctx context.Context, opts repairSnapshotsOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		if opts.Forget && !opts.DryRun {
			if err := g.refuseAppendOnly(r, "repair snapshots --forget"); err != nil {
				return err
			}
		}
		ids, err := resolveSnapshotIDs(ctx, r, opts.Snapshots)
		if err != nil {
			return err
		}
		rep, err := r.RepairSnapshots(ctx, &repo.RepairSnapshotsOptions{IDs: ids, Forget: opts.Forget, DryRun: opts.DryRun})
		if err != nil {
			return err
		}
		if g.json != nil {
			for _, s := range rep.Repaired {
				l := repairedLine{Type: "repaired_snapshot", Original: s.Original.String(), LostMessages: s.LostMessages,
					Lost: s.Lost, Forgotten: s.Forgotten, DryRun: opts.DryRun}
				if !s.New.IsNull() {
					l.New = s.New.String()
				}
				g.json.write(l)
			}
			for _, u := range rep.Unreadable {
				g.json.write(unreadableLine{Type: "unreadable_snapshot", ID: u.ID.String(), Error: u.Err, Removed: u.Removed})
			}
			g.json.write(repairSnapshotsResult{Type: "repair_snapshots", Snapshots: rep.Snapshots, Repaired: len(rep.Repaired),
				Unreadable: len(rep.Unreadable), DryRun: opts.DryRun})
			return nil
		}
		for _, s := range rep.Repaired {
			what := "repaired as " + s.New.Short()
			if opts.DryRun {
				what = "would be repaired"
			}
			if s.Forgotten {
				what += ", original forgotten"
			}
			fmt.Fprintf(g.stdout, "snapshot %s: %s: %s lost\n", s.Original.Short(), what, plural(int(s.LostMessages), "message"))
			for _, l := range s.Lost {
				if l.SourceID != "" {
					fmt.Fprintf(g.stdout, "  lost: folder %s message %s: %s\n", l.Folder, l.SourceID, l.Error)
				} else {
					fmt.Fprintf(g.stdout, "  lost: folder %s: %s\n", l.Folder, l.Error)
				}
			}
		}
		for _, u := range rep.Unreadable {
			what := "cannot be repaired (`--forget` removes it)"
			if u.Removed {
				what = "removed"
			}
			fmt.Fprintf(g.stdout, "snapshot %s: unreadable, %s: %s\n", u.ID.Short(), what, u.Err)
		}
		if !g.Quiet {
			fmt.Fprintf(g.stdout, "%s checked, %d repaired, %d unreadable\n", plural(rep.Snapshots, "snapshot"), len(rep.Repaired), len(rep.Unreadable))
		}
		return nil
	})
}

// resolveSnapshotIDs turns snapshot references (ID prefixes, "latest")
// into IDs without loading the snapshots a prefix names, which may be
// damaged; nil refs give nil (all).
func resolveSnapshotIDs(ctx context.Context, r *repo.Repository, refs []string) ([]dedup.ID, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	all, err := r.SnapshotIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []dedup.ID
	for _, ref := range refs {
		if ref == "" {
			return nil, usageErrorf("snapshot: empty ID")
		}
		if ref == "latest" {
			s, err := r.FindSnapshot(ctx, ref)
			if err != nil {
				return nil, err
			}
			out = append(out, s.ID)
			continue
		}
		var match []dedup.ID
		for _, id := range all {
			if strings.HasPrefix(id.String(), strings.ToLower(ref)) {
				match = append(match, id)
			}
		}
		switch len(match) {
		case 0:
			return nil, fmt.Errorf("snapshot %q: %w", ref, repo.ErrNoSnapshot)
		case 1:
			out = append(out, match[0])
		default:
			return nil, fmt.Errorf("snapshot %q: prefix matches %d snapshots", ref, len(match))
		}
	}
	return out, nil
}
