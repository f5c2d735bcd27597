package retention

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive/repo"
)

// Policy says how many snapshots each rule keeps; 0 disables a rule.
type Policy struct {
	// Within keeps every snapshot taken less than Within before the
	// newest snapshot of its group (restic's keep-within).
	Within  time.Duration `json:"within,omitempty"`
	Last    int           `json:"last"`
	Hourly  int           `json:"hourly,omitempty"`
	Daily   int           `json:"daily"`
	Weekly  int           `json:"weekly"`
	Monthly int           `json:"monthly"`
}

// Empty reports whether no rule is set (a count or duration of 0 or less
// disables a rule), that is, whether the policy would keep nothing.
func (p Policy) Empty() bool {
	return p.Within <= 0 && p.Last <= 0 && p.Hourly <= 0 && p.Daily <= 0 && p.Weekly <= 0 && p.Monthly <= 0
}

// Decision is what the policy says of one snapshot.
type Decision struct {
	Snapshot *repo.Snapshot
	Keep     bool
	Reasons  []string // the rules that keep it ("last", "daily 2026-11-23"...)
}

// Apply decides for every snapshot. The result is in the order of snaps.
//
// Checkpoints (the state of backups that did not finish) count for no
// rule: one that a snapshot of its group supersedes is removed, the others
// are kept, with the reason "checkpoint", since the next backup resumes
// from them.
func Apply(snaps []*repo.Snapshot, p Policy) []Decision {
	groups := make(map[string][]int)
	var keys []string
	for i, s := range snaps {
		k := s.Host + "\x00" + s.Source
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	out := make([]Decision, len(snaps))
	for i, s := range snaps {
		out[i].Snapshot = s
	}
	for _, k := range keys {
		idx := groups[k]
		sort.SliceStable(idx, func(a, b int) bool { return snaps[idx[a]].Time.After(snaps[idx[b]].Time) })
		type rule struct {
			name   string
			n      int
			bucket func(s *repo.Snapshot) string
			last   string
		}
		rules := []*rule{
			{name: "last", n: p.Last, bucket: func(s *repo.Snapshot) string { return s.ID.String() }},
			{name: "hourly", n: p.Hourly, bucket: func(s *repo.Snapshot) string { return s.Time.Local().Format("2006-01-02T15") }},
			{name: "daily", n: p.Daily, bucket: func(s *repo.Snapshot) string { return s.Time.Local().Format("2006-01-02") }},
			{name: "weekly", n: p.Weekly, bucket: func(s *repo.Snapshot) string {
				y, w := s.Time.Local().ISOWeek()
				return fmt.Sprintf("%04d-W%02d", y, w)
			}},
			{name: "monthly", n: p.Monthly, bucket: func(s *repo.Snapshot) string { return s.Time.Local().Format("2006-01") }},
		}
		// The reference of Within: the group's newest snapshot (not a
		// checkpoint), so that a watch stopped for a week does not lose
		// its recent history on the first forget after.
		var newest time.Time
		for _, i := range idx {
			if !snaps[i].Checkpoint {
				newest = snaps[i].Time
				break
			}
		}
		for _, i := range idx {
			s := snaps[i]
			if s.Checkpoint {
				superseded := false
				for _, j := range idx {
					superseded = superseded || snaps[j].Supersedes(s)
				}
				if !superseded {
					out[i].Keep = true
					out[i].Reasons = []string{"checkpoint"}
				}
				continue
			}
			if p.Within > 0 && newest.Sub(s.Time) < p.Within {
				out[i].Keep = true
				out[i].Reasons = append(out[i].Reasons, "within "+formatWithin(p.Within))
			}
			for _, r := range rules {
				if r.n <= 0 {
					continue
				}
				b := r.bucket(s)
				if b == r.last {
					continue
				}
				r.last = b
				r.n--
				out[i].Keep = true
				if r.name == "last" {
					out[i].Reasons = append(out[i].Reasons, "last")
				} else {
					out[i].Reasons = append(out[i].Reasons, r.name+" "+b)
				}
			}
		}
	}
	return out
}

// Split applies p and returns the snapshots to keep and to remove.
func Split(snaps []*repo.Snapshot, p Policy) (keep, remove []*repo.Snapshot) {
	for _, d := range Apply(snaps, p) {
		if d.Keep {
			keep = append(keep, d.Snapshot)
		} else {
			remove = append(remove, d.Snapshot)
		}
	}
	return keep, remove
}

// String describes the policy ("within 48h, last 7, daily 14").
func (p Policy) String() string {
	var parts []string
	if p.Within > 0 {
		parts = append(parts, "within "+formatWithin(p.Within))
	}
	for _, r := range []struct {
		name string
		n    int
	}{{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily}, {"weekly", p.Weekly}, {"monthly", p.Monthly}} {
		if r.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r.name, r.n))
		}
	}
	return strings.Join(parts, ", ")
}

// formatWithin writes a duration without zero units: "48h", "90m", "36h30m".
func formatWithin(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
