package main

import (
	"maps"
	"regexp"
	"slices"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// TestServeCheckpoints: a checkpoint (a backup that has not finished) is
// never the top level while a finished snapshot of its source exists; it
// shows under Snapshots/ marked as one; and the UIDVALIDITY of the
// finished snapshots is the same with or without it (it is removed once
// superseded). A source with only a checkpoint shows it at the top level.
func TestServeCheckpoints(t *testing.T) {
	page := func(s string) dedup.ID { return dedup.Hash([]byte(s)) }
	folder := func(path string, pages ...string) repo.FolderEntry {
		f := repo.FolderEntry{Folder: archive.Folder{Path: path}}
		for _, p := range pages {
			f.Pages = append(f.Pages, page(p))
		}
		return f
	}
	t0 := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	snap := func(name, source string, at time.Duration, checkpoint bool, folders ...repo.FolderEntry) *repo.Snapshot {
		return &repo.Snapshot{ID: page(name), Source: source, Time: t0.Add(at), Checkpoint: checkpoint, Folders: folders}
	}
	a := snap("a", "maildir:/alice", 0, false, folder("INBOX", "1"), folder("Sent", "2"))
	c := snap("c", "maildir:/alice", 24*time.Hour, true, folder("INBOX", "1", "3"))
	b := snap("b", "maildir:/alice", 48*time.Hour, false, folder("INBOX", "1", "3", "4"), folder("Sent", "2"))
	only := snap("o", "maildir:/bob", time.Hour, true, folder("INBOX", "9"))
	all := []*repo.Snapshot{a, only, c, b} // oldest first

	withC, withoutC := uidValidities(all), uidValidities([]*repo.Snapshot{a, only, b})
	for _, s := range []*repo.Snapshot{a, b} {
		if !maps.Equal(withC[s.ID], withoutC[s.ID]) {
			t.Errorf("snapshot %s: UIDVALIDITY %v with the checkpoint, %v without", s.ID.Short(), withC[s.ID], withoutC[s.ID])
		}
	}
	if withC[b.ID]["Sent"] != withC[a.ID]["Sent"] || withC[b.ID]["INBOX"] <= withC[c.ID]["INBOX"] || withC[c.ID]["INBOX"] <= withC[a.ID]["INBOX"] {
		t.Errorf("UIDVALIDITY a %v, checkpoint %v, b %v: want Sent kept, INBOX growing", withC[a.ID], withC[c.ID], withC[b.ID])
	}

	layout := func(pattern string, snaps ...*repo.Snapshot) map[string]*repo.Snapshot {
		re, err := globRegexp(pattern)
		if err != nil {
			t.Fatal(err)
		}
		s := &archiveStore{snaps: snaps}
		out := map[string]*repo.Snapshot{}
		for name, tg := range s.layout(&serveUser{sources: []*regexp.Regexp{re}}) {
			out[name] = tg.snap
		}
		return out
	}
	stamp := func(s *repo.Snapshot) string { return s.Time.Local().Format("2006-01-02 15:04") }
	// The checkpoint is newer than a, the only finished snapshot: a is
	// the top level.
	got := layout("maildir:/alice", a, c)
	want := map[string]*repo.Snapshot{"INBOX": a, "Sent": a, "Snapshots/" + stamp(c) + " (checkpoint)/INBOX": c}
	if !maps.Equal(got, want) {
		t.Errorf("a and a checkpoint: %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	got = layout("maildir:/alice", a, c, b)
	if got["INBOX"] != b || got["Snapshots/"+stamp(a)+"/INBOX"] != a || got["Snapshots/"+stamp(c)+" (checkpoint)/INBOX"] != c {
		t.Errorf("a, a checkpoint and b: %v", slices.Sorted(maps.Keys(got)))
	}
	// Nothing finished: the checkpoint is all there is to read.
	if got = layout("maildir:/bob", only); got["INBOX"] != only || len(got) != 1 {
		t.Errorf("a checkpoint alone: %v", got)
	}
}
