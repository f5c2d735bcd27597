package archivetest

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/mailform"
)

// CompareOptions relaxes Compare. The zero value compares everything.
type CompareOptions struct {
	IgnoreFlags bool          // do not compare flags
	IgnoreDates bool          // do not compare internal dates
	DateUnit    time.Duration // compare dates truncated to this unit (for example time.Second)
	// IgnoreEmptyFolders ignores folders without messages on either side.
	IgnoreEmptyFolders bool
	// WireLineEnds compares bodies with their line ends made CRLF, as a
	// restore sends them (bare LF and bare CR alike).
	WireLineEnds bool
}

// Compare compares two mailboxes and returns their differences, one
// sentence each, or nil when they match. Folders match by path; messages
// within a folder match by their bytes, whatever their source IDs and order;
// flags compare as sets; dates with time.Time.Equal.
func Compare(want, got *Mailbox, opts *CompareOptions) []string {
	if opts == nil {
		opts = &CompareOptions{}
	}
	var diffs []string
	wf := folderPaths(want, opts)
	gf := folderPaths(got, opts)
	for _, p := range wf {
		if !slices.Contains(gf, p) {
			diffs = append(diffs, fmt.Sprintf("folder %q missing", p))
		}
	}
	for _, p := range gf {
		if !slices.Contains(wf, p) {
			diffs = append(diffs, fmt.Sprintf("folder %q unexpected", p))
		}
	}
	for _, p := range wf {
		if slices.Contains(gf, p) {
			diffs = append(diffs, compareFolder(p, want.Messages(p), got.Messages(p), opts)...)
		}
	}
	return diffs
}

// Equal reports every difference between want and got as a test error.
func Equal(t testing.TB, want, got *Mailbox) {
	t.Helper()
	EqualOpts(t, want, got, nil)
}

// EqualOpts is Equal with CompareOptions.
func EqualOpts(t testing.TB, want, got *Mailbox, opts *CompareOptions) {
	t.Helper()
	diffs := Compare(want, got, opts)
	const max = 20
	for i, d := range diffs {
		if i == max {
			t.Errorf("... and %d more differences", len(diffs)-max)
			break
		}
		t.Error(d)
	}
}

func folderPaths(mb *Mailbox, opts *CompareOptions) []string {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var out []string
	for p, mf := range mb.folders {
		if opts.IgnoreEmptyFolders && len(mf.msgs) == 0 {
			continue
		}
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

type cmpMsg struct {
	id    string
	flags string
	date  time.Time
}

func compareFolder(path string, want, got []Msg, opts *CompareOptions) []string {
	group := func(ms []Msg) map[[32]byte][]cmpMsg {
		g := make(map[[32]byte][]cmpMsg)
		for _, m := range ms {
			c := cmpMsg{id: m.SourceID}
			if !opts.IgnoreFlags {
				f := slices.Clone(m.Flags)
				slices.Sort(f)
				c.flags = strings.Join(slices.Compact(f), " ")
			}
			if !opts.IgnoreDates {
				c.date = m.InternalDate
				if opts.DateUnit > 0 {
					c.date = c.date.Truncate(opts.DateUnit)
				}
			}
			body := m.Body
			if opts.WireLineEnds {
				body = mailform.CRLF(body)
			}
			k := sha256.Sum256(body)
			g[k] = append(g[k], c)
		}
		for _, l := range g {
			sort.Slice(l, func(i, j int) bool {
				if !l[i].date.Equal(l[j].date) {
					return l[i].date.Before(l[j].date)
				}
				return l[i].flags < l[j].flags
			})
		}
		return g
	}
	var diffs []string
	if len(want) != len(got) {
		diffs = append(diffs, fmt.Sprintf("folder %q: %d messages, want %d", path, len(got), len(want)))
	}
	wg, gg := group(want), group(got)
	keys := make([][32]byte, 0, len(wg))
	for k := range wg {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return wg[keys[i]][0].id < wg[keys[j]][0].id })
	for _, k := range keys {
		w, g := wg[k], gg[k]
		if len(w) != len(g) {
			diffs = append(diffs, fmt.Sprintf("folder %q: message %s (%x) found %d times, want %d", path, w[0].id, k[:6], len(g), len(w)))
			continue
		}
		for i := range w {
			if w[i].flags != g[i].flags {
				diffs = append(diffs, fmt.Sprintf("folder %q: message %s has flags [%s], want [%s]", path, w[i].id, g[i].flags, w[i].flags))
			}
			if !w[i].date.Equal(g[i].date) {
				diffs = append(diffs, fmt.Sprintf("folder %q: message %s has date %v, want %v", path, w[i].id, g[i].date, w[i].date))
			}
		}
	}
	for k, g := range gg {
		if _, ok := wg[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("folder %q: unexpected message %s (%x)", path, g[0].id, k[:6]))
		}
	}
	return diffs
}
