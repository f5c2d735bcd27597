package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func sourcesCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "sources",
		Usage: "list every source of the repository with its newest snapshot: what can be restored, and what has gone stale",
		Description: "With --plan-template --to URL-TEMPLATE it writes instead, on standard output, a plan file\n" +
			"for `planb restore --plan` with one line per source: {local}, {domain} and {address} in\n" +
			"the template are taken from the source (imaps://alice@example.org@host: alice,\n" +
			"example.org, alice@example.org; graph://TENANT/ADDR: the mailbox's address).",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "plan-template", Usage: "write a plan file for restore --plan (see --to)"},
			&cli.StringFlag{Name: "to", Usage: "target `URL-TEMPLATE` of --plan-template, such as imaps://{local}@mail.example.eu"},
		}, selectionFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "sources [--source PATTERN] [--plan-template --to URL-TEMPLATE]"); err != nil {
				return err
			}
			sel, err := selectionOf(c)
			if err != nil {
				return err
			}
			if c.Bool("plan-template") != (c.String("to") != "") {
				return usageErrorf("sources: --plan-template and --to go together")
			}
			return runSources(c.Context, sel, c.String("to"), g)
		},
	}
}

// sourceLine is one source of the repository: its newest snapshot (the
// one `restore latest --source` takes) and how many snapshots it has,
// checkpoints of unfinished backups left out.
type sourceLine struct {
	Type       string    `json:"type"` // "source"
	Source     string    `json:"source"`
	Snapshots  int       `json:"snapshots"`
	Latest     string    `json:"latest"`
	Time       time.Time `json:"time"`
	AgeSeconds int64     `json:"age_seconds"`
	Host       string    `json:"host"`
	Messages   int64     `json:"messages"`
	Bytes      int64     `json:"bytes"`
	Partial    bool      `json:"partial,omitempty"`
}

// sourceLines groups snaps by source, in the order of their sources.
func sourceLines(snaps []*repo.Snapshot, now time.Time) []sourceLine {
	by := map[string]*sourceLine{}
	for _, s := range snaps {
		l := by[s.Source]
		if l == nil {
			l = &sourceLine{Type: "source", Source: s.Source}
			by[s.Source] = l
		}
		l.Snapshots++
		if l.Latest == "" || !s.Time.Before(l.Time) {
			l.Latest, l.Time, l.Host, l.Partial = s.ID.String(), s.Time, s.Host, s.Partial
			l.Messages, l.Bytes = snapshotSize(s)
		}
	}
	out := make([]sourceLine, 0, len(by))
	for _, l := range by {
		l.AgeSeconds = int64(now.Sub(l.Time).Seconds())
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b sourceLine) int { return strings.Compare(a.Source, b.Source) })
	return out
}

func runSources(ctx context.Context, sel selection, template string, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		snaps, err := r.Snapshots(ctx)
		now := time.Now()
		lines := sourceLines(finished(sel.filter(snaps)), now)
		if template != "" {
			if err != nil {
				return err
			}
			return writePlanTemplate(g, lines, template)
		}
		if g.json != nil {
			for _, l := range lines {
				g.json.write(l)
			}
			return err
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tSNAPSHOTS\tLATEST\tTIME\tAGE\tMESSAGES\tSIZE")
		for _, l := range lines {
			latest := l.Latest[:8]
			if l.Partial {
				latest += " (partial)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\n", l.Source, l.Snapshots, latest,
				l.Time.Local().Format(time.DateTime), formatAge(now, l.Time), l.Messages, formatBytes(l.Bytes))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if !g.Quiet {
			fmt.Fprintf(g.stdout, "%d sources\n", len(lines))
		}
		return err
	})
}

// sourceAddress returns the local part, the domain and the address of the
// mailbox a source describes.
func sourceAddress(source string) (local, domain, address string) {
	switch {
	case strings.HasPrefix(source, "graph://"):
		_, addr, _ := strings.Cut(strings.TrimPrefix(source, "graph://"), "/")
		address = addr
	case strings.HasPrefix(source, "imap://"), strings.HasPrefix(source, "imaps://"):
		if u, err := url.Parse(source); err == nil && u.User != nil {
			address = u.User.Username()
			if !strings.Contains(address, "@") {
				address += "@" + u.Hostname()
			}
		}
	default:
		// maildir:/home/alice/Maildir, mbox:/var/mail/alice
		_, p, _ := strings.Cut(source, ":")
		base := path.Base(strings.TrimSuffix(p, "/"))
		if strings.EqualFold(base, "Maildir") {
			base = path.Base(path.Dir(strings.TrimSuffix(p, "/")))
		}
		return base, "", base
	}
	local, domain, _ = strings.Cut(address, "@")
	return local, domain, address
}

// writePlanTemplate writes a plan file of one line per source, the target
// made from template.
func writePlanTemplate(g *globalOptions, lines []sourceLine, template string) error {
	w := csv.NewWriter(g.stdout)
	w.Write([]string{"source", "to", "password_file", "map", "folder"})
	for _, l := range lines {
		local, domain, address := sourceAddress(l.Source)
		to := strings.NewReplacer("{local}", local, "{domain}", domain, "{address}", address).Replace(template)
		w.Write([]string{l.Source, to, "", "", ""})
	}
	w.Flush()
	return w.Error()
}
