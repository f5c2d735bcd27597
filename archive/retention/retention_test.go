package retention

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// at returns a local time: the policy's days, weeks and months are local.
func at(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.Local) }

func snap(name, host, source string, t time.Time) *repo.Snapshot {
	return &repo.Snapshot{ID: dedup.Hash([]byte(name)), Host: host, Source: source, Time: t}
}

// names maps snapshot IDs back to the test's names.
type names map[dedup.ID]string

func (n names) of(ss []*repo.Snapshot) []string {
	var out []string
	for _, s := range ss {
		out = append(out, n[s.ID])
	}
	slices.Sort(out)
	return out
}

func TestApplyByHand(t *testing.T) {
	series := []struct {
		name string
		t    time.Time
	}{
		{"s0", at(2023, 12, 31, 10)}, // Sunday, 2023-W52
		{"s1", at(2024, 1, 1, 10)},   // Monday, 2024-W01
		{"s2", at(2024, 1, 1, 18)},
		{"s3", at(2024, 1, 2, 10)},
		{"s4", at(2024, 1, 8, 10)}, // W02
		{"s5", at(2024, 1, 9, 10)},
		{"s6", at(2024, 2, 1, 10)}, // Thursday, W05
		{"s7", at(2024, 2, 1, 11)},
	}
	nm := make(names)
	var snaps []*repo.Snapshot
	for _, s := range series {
		sn := snap(s.name, "host", "imap://a", s.t)
		nm[sn.ID] = s.name
		snaps = append(snaps, sn)
	}
	// The input order does not matter.
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })

	tests := []struct {
		name string
		p    Policy
		want map[string][]string // kept snapshot → reasons
	}{
		{"all rules", Policy{Last: 2, Daily: 3, Weekly: 3, Monthly: 3}, map[string][]string{
			"s7": {"last", "daily 2024-02-01", "weekly 2024-W05", "monthly 2024-02"},
			"s6": {"last"},
			"s5": {"daily 2024-01-09", "weekly 2024-W02", "monthly 2024-01"},
			"s4": {"daily 2024-01-08"},
			"s3": {"weekly 2024-W01"},
			"s0": {"monthly 2023-12"},
		}},
		{"last 3", Policy{Last: 3}, map[string][]string{"s7": {"last"}, "s6": {"last"}, "s5": {"last"}}},
		{"daily 10: one a day, newest of the day", Policy{Daily: 10}, map[string][]string{
			"s7": {"daily 2024-02-01"}, "s5": {"daily 2024-01-09"}, "s4": {"daily 2024-01-08"},
			"s3": {"daily 2024-01-02"}, "s2": {"daily 2024-01-01"}, "s0": {"daily 2023-12-31"},
		}},
		{"weekly 2", Policy{Weekly: 2}, map[string][]string{"s7": {"weekly 2024-W05"}, "s5": {"weekly 2024-W02"}}},
		{"monthly 1", Policy{Monthly: 1}, map[string][]string{"s7": {"monthly 2024-02"}}},
		{"more than there are", Policy{Last: 100}, map[string][]string{
			"s0": {"last"}, "s1": {"last"}, "s2": {"last"}, "s3": {"last"}, "s4": {"last"}, "s5": {"last"}, "s6": {"last"}, "s7": {"last"},
		}},
		{"empty policy keeps nothing", Policy{}, map[string][]string{}},
		{"within a day of the newest", Policy{Within: 24 * time.Hour}, map[string][]string{
			"s7": {"within 24h"}, "s6": {"within 24h"},
		}},
		{"hourly 3", Policy{Hourly: 3}, map[string][]string{
			"s7": {"hourly 2024-02-01T11"}, "s6": {"hourly 2024-02-01T10"}, "s5": {"hourly 2024-01-09T10"},
		}},
		{"within and hourly with daily", Policy{Within: 90 * time.Minute, Hourly: 1, Daily: 2}, map[string][]string{
			"s7": {"within 1h30m", "hourly 2024-02-01T11", "daily 2024-02-01"}, "s6": {"within 1h30m"},
			"s5": {"daily 2024-01-09"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := Apply(snaps, tt.p)
			if len(ds) != len(snaps) {
				t.Fatalf("Apply returned %d decisions for %d snapshots", len(ds), len(snaps))
			}
			for i, d := range ds {
				if d.Snapshot != snaps[i] {
					t.Fatalf("decision %d is about %s, want %s (input order)", i, nm[d.Snapshot.ID], nm[snaps[i].ID])
				}
				name := nm[d.Snapshot.ID]
				want, keep := tt.want[name]
				if d.Keep != keep || !slices.Equal(d.Reasons, want) {
					t.Errorf("%s: keep %v %q, want %v %q", name, d.Keep, d.Reasons, keep, want)
				}
			}
			keep, remove := Split(snaps, tt.p)
			if len(keep) != len(tt.want) || len(keep)+len(remove) != len(snaps) {
				t.Errorf("Split: keep %v, remove %v", nm.of(keep), nm.of(remove))
			}
		})
	}
}

func TestApplyGroups(t *testing.T) {
	nm := make(names)
	var snaps []*repo.Snapshot
	add := func(name, host, source string, tm time.Time) {
		s := snap(name, host, source, tm)
		nm[s.ID] = name
		snaps = append(snaps, s)
	}
	for d := 1; d <= 5; d++ {
		add(fmt.Sprintf("a-inbox-%d", d), "a", "imap://x", at(2024, 5, d, 9))
		add(fmt.Sprintf("b-inbox-%d", d), "b", "imap://x", at(2024, 5, d, 10))
		add(fmt.Sprintf("a-maildir-%d", d), "a", "maildir:/m", at(2024, 5, d, 11))
	}
	// The newest of one group is older than the others' oldest.
	add("c-old", "c", "imap://x", at(2020, 1, 1, 9))
	keep, _ := Split(snaps, Policy{Last: 2})
	want := []string{"a-inbox-4", "a-inbox-5", "a-maildir-4", "a-maildir-5", "b-inbox-4", "b-inbox-5", "c-old"}
	if got := nm.of(keep); !slices.Equal(got, want) {
		t.Errorf("keep last 2 per host and source = %v, want %v", got, want)
	}
	keep, _ = Split(snaps, Policy{Daily: 1, Monthly: 1})
	want = []string{"a-inbox-5", "a-maildir-5", "b-inbox-5", "c-old"}
	if got := nm.of(keep); !slices.Equal(got, want) {
		t.Errorf("keep daily 1, monthly 1 per group = %v, want %v", got, want)
	}
}

// TestApply100Days runs a policy over 100 days of three snapshots a day.
func TestApply100Days(t *testing.T) {
	nm := make(names)
	var snaps []*repo.Snapshot
	start := at(2024, 1, 1, 0) // a Monday
	for d := range 100 {
		day := start.AddDate(0, 0, d)
		for _, h := range []int{1, 10, 18} {
			tm := time.Date(day.Year(), day.Month(), day.Day(), h, 0, 0, 0, time.Local)
			name := tm.Format("01-02 15h")
			s := snap(name, "h", "imap://x", tm)
			nm[s.ID] = name
			snaps = append(snaps, s)
		}
	}
	if last := snaps[len(snaps)-1].Time; last.Month() != time.April || last.Day() != 9 {
		t.Fatalf("series ends %v, want April 9", last)
	}
	tests := []struct {
		p    Policy
		want []string
	}{
		// Day 100 is Tuesday 2024-04-09 (ISO week 15).
		{Policy{Last: 3, Daily: 7, Weekly: 4, Monthly: 3}, []string{
			"02-29 18h",                           // monthly 2024-02
			"03-24 18h",                           // weekly W12
			"03-31 18h",                           // weekly W13, monthly 2024-03
			"04-03 18h", "04-04 18h", "04-05 18h", // daily
			"04-06 18h", "04-07 18h", "04-08 18h", // daily (04-07: weekly W14 too)
			"04-09 01h", "04-09 10h", "04-09 18h", // last 3 (18h: daily, weekly, monthly)
		}},
		{Policy{Weekly: 3}, []string{"03-31 18h", "04-07 18h", "04-09 18h"}},
		{Policy{Monthly: 12}, []string{"01-31 18h", "02-29 18h", "03-31 18h", "04-09 18h"}},
		{Policy{Daily: 2, Last: 1}, []string{"04-08 18h", "04-09 18h"}},
	}
	for _, tt := range tests {
		t.Run(tt.p.String(), func(t *testing.T) {
			keep, remove := Split(snaps, tt.p)
			if got := nm.of(keep); !slices.Equal(got, tt.want) {
				t.Errorf("kept %v, want %v", got, tt.want)
			}
			if len(keep)+len(remove) != 300 {
				t.Errorf("kept %d + removed %d, want 300", len(keep), len(remove))
			}
		})
	}
}

func TestPolicyEmptyString(t *testing.T) {
	tests := []struct {
		p         Policy
		wantEmpty bool
		wantStr   string
	}{
		{Policy{}, true, ""},
		{Policy{Last: 7}, false, "last 7"},
		{Policy{Daily: 14}, false, "daily 14"},
		{Policy{Weekly: 1}, false, "weekly 1"},
		{Policy{Monthly: 12}, false, "monthly 12"},
		{Policy{Last: 7, Daily: 14}, false, "last 7, daily 14"},
		{Policy{Last: 1, Daily: 2, Weekly: 3, Monthly: 4}, false, "last 1, daily 2, weekly 3, monthly 4"},
		// A negative count disables its rule: such a policy keeps nothing
		// and must count as empty (forget refuses an empty policy).
		{Policy{Last: -1}, true, ""},
		{Policy{Last: -1, Daily: -3, Weekly: -1, Monthly: -9}, true, ""},
		{Policy{Last: -1, Weekly: 2}, false, "weekly 2"},
	}
	for _, tt := range tests {
		if got := tt.p.Empty(); got != tt.wantEmpty {
			t.Errorf("%+v.Empty() = %v, want %v", tt.p, got, tt.wantEmpty)
		}
		if got := tt.p.String(); got != tt.wantStr {
			t.Errorf("%+v.String() = %q, want %q", tt.p, got, tt.wantStr)
		}
	}
}

// TestApplyCheckpoints: checkpoints count for no rule; one superseded by a
// newer snapshot of its group (or a later checkpoint of the same backup)
// goes, the newest of an unfinished backup stays.
func TestApplyCheckpoints(t *testing.T) {
	nm := make(names)
	var snaps []*repo.Snapshot
	add := func(name, source string, tm time.Time, checkpoint bool, d time.Duration) {
		s := snap(name, "h", source, tm)
		s.Checkpoint, s.Summary.Duration = checkpoint, d
		nm[s.ID] = name
		snaps = append(snaps, s)
	}
	add("c1", "imap://x", at(2024, 5, 1, 9), true, time.Minute) // superseded by s1, same backup
	add("s1", "imap://x", at(2024, 5, 1, 9), false, time.Hour)
	add("c2", "imap://x", at(2024, 5, 2, 9), true, time.Minute) // superseded by c2b, later in the same backup
	add("c2b", "imap://x", at(2024, 5, 2, 9), true, 2*time.Minute)
	add("c3", "imap://x", at(2024, 5, 3, 9), true, time.Minute) // the backup that has not finished
	add("m1", "maildir:/m", at(2024, 5, 1, 9), false, time.Minute)
	add("mc", "maildir:/m", at(2024, 4, 30, 9), true, time.Minute) // older than m1
	want := map[string][]string{"s1": {"last"}, "c3": {"checkpoint"}, "m1": {"last"}}
	for _, d := range Apply(snaps, Policy{Last: 1}) {
		name := nm[d.Snapshot.ID]
		w, keep := want[name]
		if d.Keep != keep || !slices.Equal(d.Reasons, w) {
			t.Errorf("%s: keep %v %q, want %v %q", name, d.Keep, d.Reasons, keep, w)
		}
	}
}

// TestApplyWatch runs a watch's policy over four days of a snapshot every
// 15 minutes: everything of the last 48 hours (of the newest snapshot),
// then one an hour for 48 hours, then one a day.
func TestApplyWatch(t *testing.T) {
	var snaps []*repo.Snapshot
	start := at(2024, 3, 4, 0)
	n := 4 * 24 * 4
	for i := range n {
		snaps = append(snaps, snap(fmt.Sprint(i), "h", "imaps://a@x", start.Add(time.Duration(i)*15*time.Minute)))
	}
	// A checkpoint of a round not finished counts for nothing and stays.
	ck := snap("ck", "h", "imaps://a@x", start.Add(time.Duration(n)*15*time.Minute))
	ck.Checkpoint = true
	snaps = append(snaps, ck)
	p := Policy{Within: 48 * time.Hour, Hourly: 48, Daily: 31}
	keep, _ := Split(snaps, p)
	// 192 within 48h; hourly 48 keeps the newest of the 48 newest hours,
	// all within 48h; daily 31 adds the newest of each older day (2).
	if got, want := len(keep), 192+2+1; got != want {
		t.Errorf("keep %d snapshots, want %d", got, want)
	}
	if got, want := p.String(), "within 48h, hourly 48, daily 31"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
