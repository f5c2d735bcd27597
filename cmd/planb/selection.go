package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

// selection picks snapshots, as restic users know it: --source PATTERN,
// --host H and --tag T, each repeatable. A snapshot is selected when it
// matches one of the source patterns (if any), one of the hosts (if any)
// and carries every tag given. A source pattern is a glob over the whole
// source in which * matches any run of characters, "/" included
// ("graph://contoso.eu/*", "imaps://alice@*"), ? one character and
// [...] a class.
type selection struct {
	sources []*regexp.Regexp
	raw     []string // the source patterns as given
	hosts   []string
	tags    []string
}

// selectionFlags are the flags of selectionOf.
func selectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "source", Usage: "only snapshots whose source matches `PATTERN` (* matches anything, / too; repeatable)"},
		&cli.StringSliceFlag{Name: "host", Usage: "only snapshots made on `HOST` (repeatable)"},
		&cli.StringSliceFlag{Name: "tag", Usage: "only snapshots with tag `T` (repeatable: all of them)"},
	}
}

// selectionOf reads the selection flags.
func selectionOf(c *cli.Context) (selection, error) {
	return newSelection(c.StringSlice("source"), c.StringSlice("host"), c.StringSlice("tag"))
}

func newSelection(sources, hosts, tags []string) (selection, error) {
	s := selection{raw: sources, hosts: hosts, tags: tags}
	for _, p := range sources {
		re, err := globRegexp(p)
		if err != nil {
			return s, usageErrorf("--source %q: %v", p, err)
		}
		s.sources = append(s.sources, re)
	}
	return s, nil
}

// globRegexp compiles a source pattern.
func globRegexp(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := strings.IndexByte(p[i+1:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unclosed [")
			}
			class := p[i+1 : i+1+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			i += j + 1
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

func (s selection) empty() bool {
	return len(s.sources) == 0 && len(s.hosts) == 0 && len(s.tags) == 0
}

// match reports whether the selection takes snap.
func (s selection) match(snap *repo.Snapshot) bool {
	if len(s.sources) > 0 && !slices.ContainsFunc(s.sources, func(re *regexp.Regexp) bool { return re.MatchString(snap.Source) }) {
		return false
	}
	if len(s.hosts) > 0 && !slices.Contains(s.hosts, snap.Host) {
		return false
	}
	for _, t := range s.tags {
		if !slices.Contains(snap.Tags, t) {
			return false
		}
	}
	return true
}

// filter returns the snapshots the selection takes, in their order.
func (s selection) filter(snaps []*repo.Snapshot) []*repo.Snapshot {
	var out []*repo.Snapshot
	for _, snap := range snaps {
		if s.match(snap) {
			out = append(out, snap)
		}
	}
	return out
}

// String describes the selection for a message ("--source graph://*").
func (s selection) String() string {
	var parts []string
	for _, p := range s.raw {
		parts = append(parts, "--source "+p)
	}
	for _, h := range s.hosts {
		parts = append(parts, "--host "+h)
	}
	for _, t := range s.tags {
		parts = append(parts, "--tag "+t)
	}
	return strings.Join(parts, " ")
}

// findSnapshot resolves ref (an ID prefix, or "latest": the newest
// snapshot the selection takes). With oneSource, "latest" is refused when
// the selected snapshots come from several sources: a restore of "the
// newest snapshot of whichever source finished last" is never what is
// meant. An ID prefix must name a snapshot the selection takes.
func findSnapshot(ctx context.Context, r *repo.Repository, ref string, sel selection, oneSource bool) (*repo.Snapshot, error) {
	if ref != "latest" {
		snap, err := r.FindSnapshot(ctx, ref)
		if err != nil {
			return nil, err
		}
		if !sel.match(snap) {
			return nil, fmt.Errorf("snapshot %s is not among those %s selects", snap.ID.Short(), sel)
		}
		return snap, nil
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil && len(snaps) == 0 {
		return nil, err
	}
	return latestOf(snaps, sel, oneSource)
}

// latestOf is findSnapshot's "latest" among snaps, the repository's
// snapshots as repo.Snapshots returns them.
func latestOf(snaps []*repo.Snapshot, sel selection, oneSource bool) (*repo.Snapshot, error) {
	snaps = finished(sel.filter(snaps))
	if len(snaps) == 0 {
		if sel.empty() {
			return nil, fmt.Errorf("latest: %w", repo.ErrNoSnapshot)
		}
		return nil, fmt.Errorf("latest: no snapshot matches %s: %w", sel, repo.ErrNoSnapshot)
	}
	if oneSource {
		sources := map[string]bool{}
		for _, s := range snaps {
			sources[s.Source] = true
		}
		if n := len(sources); n > 1 {
			what := "the repository holds snapshots"
			if !sel.empty() {
				what = sel.String() + " selects snapshots"
			}
			return nil, usageErrorf("latest: %s of %d sources: pick one with --source (`planb sources` lists them) or give a snapshot ID", what, n)
		}
	}
	return latest(snaps), nil
}

// latest returns the newest of snaps, sorted oldest first as
// repo.Snapshots returns them, or nil if there is none. It is the one
// place that says which snapshot "latest" is (planb serve's top level
// too).
func latest(snaps []*repo.Snapshot) *repo.Snapshot {
	if len(snaps) == 0 {
		return nil
	}
	return snaps[len(snaps)-1]
}

// finished returns the snapshots that are not checkpoints of unfinished
// backups: what "latest" may name, what `planb sources` shows.
func finished(snaps []*repo.Snapshot) []*repo.Snapshot {
	var out []*repo.Snapshot
	for _, s := range snaps {
		if !s.Checkpoint {
			out = append(out, s)
		}
	}
	return out
}
