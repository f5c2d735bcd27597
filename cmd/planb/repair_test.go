package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// bulkyMaildir writes a Maildir of two folders of 40 messages of 20 KiB
// each (their chunks fill several frames) and returns its path.
func bulkyMaildir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, folder := range []string{"", ".Archive"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, folder, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 40 {
			body := make([]byte, 20<<10)
			for j := range body {
				body[j] = 'a' + byte(rng.IntN(26))
			}
			msg := fmt.Appendf(nil, "From: a@example.org\r\nTo: b@example.org\r\nSubject: %s %d\r\nMessage-ID: <%s%d@example.org>\r\n\r\n%s\r\n", folder, i, folder, i, body)
			name := filepath.Join(dir, folder, "cur", fmt.Sprintf("%d.m%02d.test:2,S", 1700000000+i, i))
			if err := os.WriteFile(name, msg, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// flip flips a byte of a repository file (off < 0 counts from the end).
func flip(t *testing.T, r *repo.Repository, h backend.Handle, off int64) {
	t.Helper()
	b, err := backend.ReadAll(t.Context(), r.Backend(), h)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x55
	if err := r.Backend().Save(t.Context(), h, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
}

// exported exports a snapshot as .eml files and returns how many there are.
func exported(t *testing.T, args []string, snapshot string) int {
	t.Helper()
	out := t.TempDir()
	if code, _, stderr := planbCLI(t, append(args, "export", snapshot, "--format", "eml", "--out", out)...); code != 0 {
		t.Fatalf("planb export %s = %d: %s", snapshot, code, stderr)
	}
	n := 0
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".eml") {
			n++
		}
		return nil
	})
	return n
}

// lostWith counts the messages of snap with a chunk in the frame at loc.
func lostWith(t *testing.T, r *repo.Repository, snap *repo.Snapshot, loc dedup.Location) int {
	t.Helper()
	n := 0
	for i := range snap.Folders {
		r.Entries(t.Context(), snap, i, func(e repo.Entry) error {
			for _, c := range e.ChunkIDs() {
				if l, ok := r.Index().Lookup(c); ok && l.Pack == loc.Pack && l.FrameOffset == loc.FrameOffset {
					n++
					break
				}
			}
			return nil
		})
	}
	return n
}

// TestRepairCommands damages each kind of file of a repository and goes
// through what a user does: check names the damage, repair index and
// repair snapshots fix what can be, planb snapshots shows the repaired
// snapshot, check --read-data is then clean and export gets every message
// that was not lost.
func TestRepairCommands(t *testing.T) {
	const total = 80
	var maildir string
	setup := func(t *testing.T) (args []string, r *repo.Repository, snap *repo.Snapshot) {
		repoDir, repoPW := testRepo(t)
		args = []string{"--repo", repoDir, "--password-file", repoPW}
		maildir = bulkyMaildir(t)
		if code, _, stderr := planbCLI(t, append(args, "backup", "maildir", "--path", maildir)...); code != 0 {
			t.Fatalf("planb backup = %d: %s", code, stderr)
		}
		r = openTestRepo(t, repoDir, repoPW)
		if err := r.EnsureIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		snap, err := r.FindSnapshot(t.Context(), "latest")
		if err != nil {
			t.Fatal(err)
		}
		return args, r, snap
	}
	run := func(t *testing.T, want int, args ...string) (stdout, stderr string) {
		t.Helper()
		code, stdout, stderr := planbCLI(t, args...)
		if code != want {
			t.Fatalf("planb %s = %d, want %d; stdout:\n%s\nstderr:\n%s", strings.Join(args[4:], " "), code, want, stdout, stderr)
		}
		return stdout, stderr
	}

	t.Run("index file", func(t *testing.T) {
		args, r, _ := setup(t)
		var idx []string
		r.Backend().List(t.Context(), backend.IndexFile, func(fi backend.FileInfo) error { idx = append(idx, fi.Name); return nil })
		flip(t, r, backend.Handle{Type: backend.IndexFile, Name: idx[0]}, 60)
		// snapshots does not read the index; stats does, and warns.
		if _, stderr := run(t, 0, append(args, "snapshots")...); strings.Contains(stderr, "damaged index file") {
			t.Errorf("planb snapshots: stderr %q, want no index read", stderr)
		}
		// stats reads the index, from the damaged files with --no-cache
		// (the backup's cache still holds them), and warns.
		_, stderr := run(t, 1, append(args, "--no-cache", "stats")...) // a page is in the lost index file
		if !strings.Contains(stderr, "planb: warning: damaged index file index/"+idx[0]) {
			t.Errorf("planb stats: stderr %q, want a warning naming index/%s", stderr, idx[0])
		}
		if stdout, _ := run(t, 1, append(args, "check")...); !strings.Contains(stdout, "damaged: index/"+idx[0]) {
			t.Errorf("planb check: %q, want the index file named", stdout)
		}
		if stdout, _ := run(t, 0, append(args, "repair", "index")...); !strings.Contains(stdout, "damaged index file index/"+idx[0]+" replaced") {
			t.Errorf("planb repair index: %q, want the damaged file named", stdout)
		}
		run(t, 0, append(args, "check", "--read-data")...)
		if n := exported(t, args, "latest"); n != total {
			t.Errorf("exported %d messages after repair, want %d", n, total)
		}
	})

	t.Run("pack", func(t *testing.T) {
		args, r, snap := setup(t)
		var chunk dedup.ID
		r.Entries(t.Context(), snap, 0, func(e repo.Entry) error {
			if chunk.IsNull() {
				chunk = e.ChunkIDs()[0]
			}
			return nil
		})
		loc, _ := r.Index().Lookup(chunk)
		pack := r.Index().Pack(loc.Pack)
		lost := lostWith(t, r, snap, loc)
		if lost == 0 || lost == total {
			t.Fatalf("%d of %d messages in the damaged frame, want some", lost, total)
		}
		flip(t, r, backend.Handle{Type: backend.PackFile, Name: pack.String()}, int64(loc.FrameOffset+loc.FrameLength/2))
		stdout, _ := run(t, 1, append(args, "check", "--read-data")...)
		if !strings.Contains(stdout, "damaged: data/"+pack.String()) || strings.Count(stdout, "  affects snapshot") != lost {
			t.Errorf("planb check --read-data: %q, want the pack and its %d messages named", stdout, lost)
		}
		if stdout, _ := run(t, 0, append(args, "repair", "index", "--read-data")...); !strings.Contains(stdout, "damaged pack "+pack.String()) {
			t.Errorf("planb repair index --read-data: %q, want the damaged pack named", stdout)
		}
		stdout, _ = run(t, 0, append(args, "repair", "snapshots", "--forget")...)
		if !strings.Contains(stdout, fmt.Sprintf("snapshot %s: repaired as ", snap.ID.Short())) || strings.Count(stdout, "  lost: ") != lost {
			t.Errorf("planb repair snapshots --forget: %q, want the snapshot repaired and %d messages named", stdout, lost)
		}
		if stdout, _ := run(t, 0, append(args, "snapshots")...); !strings.Contains(stdout, fmt.Sprintf("(repaired from %s, %d lost)", snap.ID.Short(), lost)) {
			t.Errorf("planb snapshots: %q, want the repaired snapshot marked", stdout)
		}
		stdout, _ = run(t, 0, append(args, "--json", "snapshots")...)
		var line snapshotLine
		if err := json.Unmarshal([]byte(stdout), &line); err != nil || line.Repaired == nil || line.Repaired.Original != snap.ID || line.Repaired.LostMessages != int64(lost) {
			t.Errorf("planb --json snapshots: %q (%v), want the repaired snapshot with \"repaired\"", stdout, err)
		}
		run(t, 0, append(args, "check", "--read-data")...)
		if n := exported(t, args, "latest"); n != total-lost {
			t.Errorf("exported %d messages after repair, want %d", n, total-lost)
		}
	})

	t.Run("snapshot page", func(t *testing.T) {
		// A second backup adds a folder: its page is new, in a pack of
		// its own; the pages of the other folders are the first's.
		args, r, first := setup(t)
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(maildir, ".New", sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		const added = 5
		for i := range added {
			msg := fmt.Appendf(nil, "From: c@example.org\r\nSubject: new %d\r\nMessage-ID: <new%d@example.org>\r\n\r\nnew\r\n", i, i)
			if err := os.WriteFile(filepath.Join(maildir, ".New", "cur", fmt.Sprintf("%d.n%d.test:2,S", 1710000000+i, i)), msg, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		run(t, 0, append(args, "backup", "maildir", "--path", maildir)...)
		r = openTestRepo(t, args[1], args[3])
		if err := r.EnsureIndex(t.Context()); err != nil {
			t.Fatal(err)
		}
		second, err := r.FindSnapshot(t.Context(), "latest")
		if err != nil {
			t.Fatal(err)
		}
		loc, _ := r.Index().Lookup(first.Folders[0].Pages[0])
		pack := r.Index().Pack(loc.Pack)
		for _, f := range second.Folders {
			if l, _ := r.Index().Lookup(f.Pages[0]); f.Path == "New" && l.Pack == loc.Pack {
				t.Fatal("the new folder's page is in the first backup's pack")
			}
		}
		flip(t, r, backend.Handle{Type: backend.PackFile, Name: pack.String()}, int64(loc.FrameOffset+loc.FrameLength/2))
		run(t, 1, append(args, "check", "--read-data")...)
		stdout, _ := run(t, 0, append(args, "--json", "repair", "snapshots", second.ID.Short())...)
		var repaired repairedLine
		if err := json.Unmarshal([]byte(strings.SplitN(stdout, "\n", 2)[0]), &repaired); err != nil || repaired.Type != "repaired_snapshot" || repaired.New == "" || repaired.LostMessages != total || repaired.Forgotten {
			t.Fatalf("planb --json repair snapshots: %q (%v), want the snapshot repaired, %d lost, original kept", stdout, err, total)
		}
		if n := exported(t, args, repaired.New); n != added {
			t.Errorf("exported %d messages of the repaired snapshot, want the %d of the undamaged folder", n, added)
		}
		run(t, 0, append(args, "repair", "snapshots", "--forget")...)
		run(t, 0, append(args, "repair", "index", "--read-data")...)
		run(t, 0, append(args, "prune")...)
		run(t, 0, append(args, "check", "--read-data")...)
		if n := exported(t, args, "latest"); n != added {
			t.Errorf("exported %d messages after the repairs, want %d", n, added)
		}
	})

	t.Run("snapshot file", func(t *testing.T) {
		args, r, snap := setup(t)
		if code, _, stderr := planbCLI(t, append(args, "backup", "maildir", "--path", testMaildir(t))...); code != 0 {
			t.Fatalf("second backup = %d: %s", code, stderr)
		}
		flip(t, r, backend.Handle{Type: backend.SnapshotFile, Name: snap.ID.String()}, -5)
		stdout, stderr := run(t, 1, append(args, "snapshots")...)
		if !strings.Contains(stdout, "1 snapshots") || !strings.Contains(stderr, snap.ID.String()) {
			t.Errorf("planb snapshots: stdout %q, stderr %q; want the other snapshot listed and the damaged one named", stdout, stderr)
		}
		if stdout, _ := run(t, 0, append(args, "repair", "snapshots", "--forget")...); !strings.Contains(stdout, fmt.Sprintf("snapshot %s: unreadable, removed", snap.ID.Short())) {
			t.Errorf("planb repair snapshots --forget: %q, want the damaged snapshot removed", stdout)
		}
		run(t, 0, append(args, "snapshots")...)
		run(t, 0, append(args, "check", "--read-data")...)
	})
}
