package main

import (
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
)

// TestCommandsSkipIndex: with every index file damaged, the commands that
// do not need the index (snapshots, sources, ls of a snapshot's folders,
// forget without --prune, locks) run clean and never warn of a damaged
// index file: they do not read one. Listing a folder's messages does read
// the index: from the cache the backups left, without a warning (the cache
// holds what the files held); with --no-cache from the damaged files, and
// warns.
func TestCommandsSkipIndex(t *testing.T) {
	repoDir, repoPW := testRepo(t)
	args := []string{"--repo", repoDir, "--password-file", repoPW}
	maildir := bulkyMaildir(t)
	for range 2 {
		if code, _, stderr := planbCLI(t, append(args, "backup", "maildir", "--path", maildir)...); code != 0 {
			t.Fatalf("planb backup = %d: %s", code, stderr)
		}
	}
	r := openTestRepo(t, repoDir, repoPW)
	var idx []string
	r.Backend().List(t.Context(), backend.IndexFile, func(fi backend.FileInfo) error { idx = append(idx, fi.Name); return nil })
	if len(idx) == 0 {
		t.Fatal("no index file")
	}
	for _, name := range idx {
		flip(t, r, backend.Handle{Type: backend.IndexFile, Name: name}, 40)
	}
	for _, cmd := range [][]string{
		{"snapshots"},
		{"sources"},
		{"ls", "latest"},
		{"locks"},
		{"forget", "--keep-last", "1"},
		{"snapshots"},
	} {
		code, stdout, stderr := planbCLI(t, append(args, cmd...)...)
		if code != 0 || strings.Contains(stderr, "damaged index file") {
			t.Errorf("planb %s = %d, stderr %q; want 0 and no index read", strings.Join(cmd, " "), code, stderr)
		}
		if cmd[0] == "ls" && !strings.Contains(stdout, "Archive") {
			t.Errorf("planb ls latest = %q, want the folder Archive listed", stdout)
		}
	}
	snaps, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 1 {
		t.Errorf("after forget --keep-last 1: %d snapshots, %v; want 1", len(snaps), err)
	}
	code, stdout, stderr := planbCLI(t, append(args, "ls", "latest", "Archive")...)
	if code != 0 || strings.Contains(stderr, "damaged index file") || strings.Count(stdout, ".test ") != 40 {
		t.Errorf("planb ls latest Archive with the cache = %d, stdout %q, stderr %q; want 0, the messages and no warning", code, stdout, stderr)
	}
	_, _, stderr = planbCLI(t, append(args, "--no-cache", "ls", "latest", "Archive")...)
	if !strings.Contains(stderr, "damaged index file") {
		t.Errorf("planb --no-cache ls latest Archive: stderr %q, want a warning of the damaged index files it read", stderr)
	}
}
