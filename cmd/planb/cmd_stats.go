package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func statsCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "show the repository's size, or one snapshot's",
		ArgsUsage: "[SNAPSHOT]",
		Flags:     selectionFlags(),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 1, "stats [SNAPSHOT]"); err != nil {
				return err
			}
			sel, err := selectionOf(c)
			if err != nil {
				return err
			}
			return runStats(c.Context, statsOptions{Snapshot: c.Args().First(), Select: sel}, g)
		},
	}
}

type statsOptions struct {
	Snapshot string // empty: the whole repository, or the selected snapshots
	Select   selection
}

// statsResult is the --json output of stats.
type statsResult struct {
	Type        string  `json:"type"` // "stats"
	Snapshot    string  `json:"snapshot,omitempty"`
	Snapshots   int     `json:"snapshots,omitempty"`
	Folders     int     `json:"folders,omitempty"`
	Messages    int64   `json:"messages"`
	RawBytes    int64   `json:"raw_bytes"`
	BlobBytes   int64   `json:"blob_bytes,omitempty"`
	StoredBytes int64   `json:"stored_bytes,omitempty"`
	Ratio       float64 `json:"ratio,omitempty"`
	// Cipher, Compression and Base64Lines are the repository's (planb
	// init's), in the whole repository's stats.
	Cipher      string `json:"cipher,omitempty"`
	Compression string `json:"compression,omitempty"`
	Base64Lines bool   `json:"base64_lines,omitempty"`
}

func runStats(ctx context.Context, opts statsOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		if opts.Snapshot != "" {
			snap, err := findSnapshot(ctx, r, opts.Snapshot, opts.Select, false)
			if err != nil {
				return err
			}
			st, err := r.Stats(ctx, []*repo.Snapshot{snap})
			if err != nil {
				return err
			}
			// The repository's stored size is shared by all snapshots:
			// for one snapshot only its own data is shown.
			if g.json != nil {
				g.json.write(statsResult{Type: "stats", Snapshot: snap.ID.String(), Folders: len(snap.Folders),
					Messages: st.Messages, RawBytes: st.RawBytes, BlobBytes: st.BlobBytes})
				return nil
			}
			fmt.Fprintf(g.stdout, "snapshot %s\n", snap.ID.Short())
			fmt.Fprintf(g.stdout, "  folders:      %d\n", len(snap.Folders))
			fmt.Fprintf(g.stdout, "  messages:     %d distinct\n", st.Messages)
			fmt.Fprintf(g.stdout, "  raw size:     %s\n", formatBytes(st.RawBytes))
			fmt.Fprintf(g.stdout, "  unique data:  %s (before compression and encryption)\n", formatBytes(st.BlobBytes))
			return nil
		}
		var selected []*repo.Snapshot
		if !opts.Select.empty() {
			snaps, err := r.Snapshots(ctx)
			if err != nil {
				return err
			}
			if selected = opts.Select.filter(snaps); len(selected) == 0 {
				return fmt.Errorf("stats: no snapshot matches %s", opts.Select)
			}
		}
		st, err := r.Stats(ctx, selected)
		if err != nil {
			return err
		}
		if g.json != nil {
			g.json.write(statsResult{Type: "stats", Snapshots: st.Snapshots, Messages: st.Messages, RawBytes: st.RawBytes,
				BlobBytes: st.BlobBytes, StoredBytes: st.StoredBytes, Ratio: st.Ratio,
				Cipher: r.Cipher().String(), Compression: r.Compression().String(), Base64Lines: r.Config().Base64Lines})
			return nil
		}
		fmt.Fprintf(g.stdout, "snapshots:     %d\n", st.Snapshots)
		fmt.Fprintf(g.stdout, "messages:      %d distinct\n", st.Messages)
		fmt.Fprintf(g.stdout, "raw size:      %s\n", formatBytes(st.RawBytes))
		fmt.Fprintf(g.stdout, "unique data:   %s (before compression and encryption)\n", formatBytes(st.BlobBytes))
		fmt.Fprintf(g.stdout, "stored size:   %s\n", formatBytes(st.StoredBytes))
		fmt.Fprintf(g.stdout, "ratio:         %.2f (stored / raw)\n", st.Ratio)
		fmt.Fprintf(g.stdout, "encryption:    %s\n", r.Cipher())
		// Base64 lines are stored decoded in repositories made with max
		// since December 2026: older ones are larger and slower to read.
		lines := ""
		if r.Config().Base64Lines {
			lines = ", base64 lines decoded"
		}
		fmt.Fprintf(g.stdout, "compression:   %s%s\n", r.Compression(), lines)
		return nil
	})
}
