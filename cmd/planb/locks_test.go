package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/cmd/planb/internal/engine"
	"codeberg.org/planb/planb/dedup"
)

// writeForeignLock writes a lock file as a planb on host with the given
// lock time would, and returns its name.
func writeForeignLock(t *testing.T, r *repo.Repository, host string, at time.Time, exclusive bool) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"time": at.UTC(), "host": host, "pid": 4242, "exclusive": exclusive})
	if err != nil {
		t.Fatal(err)
	}
	name := dedup.RandomID().String()
	if err := r.Backend().Save(t.Context(), backend.Handle{Type: backend.LockFile, Name: name}, bytes.NewReader(r.Codec().SealPlain(b))); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestRunKeepsOtherHostsLocks: run removes no lock of another host, not
// even one whose time is hours old (a human decides with planb unlock),
// and a lock written by a host whose clock is 40 minutes behind blocks
// its forget and prune like any live lock.
func TestRunKeepsOtherHostsLocks(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	config := writeConfig(t, dir, fmt.Sprintf(`
state_dir = %q
[repository.main]
path = %q
password_file = %q
keep = { last = 1 }
prune_every = "1d"
[[source]]
name = "mail"
kind = "maildir"
path = %q
repository = "main"
`, filepath.Join(dir, "state"), repoDir, repoPW, testMaildir(t)))
	r := openTestRepo(t, repoDir, repoPW)
	tests := []struct {
		name string
		at   time.Time
	}{
		{"clock 40 minutes behind", time.Now().Add(-40 * time.Minute)},
		{"three hours old", time.Now().Add(-3 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lock := writeForeignLock(t, r, "elsewhere.example", tt.at, false)
			defer r.Backend().Remove(t.Context(), backend.Handle{Type: backend.LockFile, Name: lock})
			rep, code, stderr := runJSON(t, runOptions{Config: config, LockWait: 300 * time.Millisecond, lockPoll: 100 * time.Millisecond})
			rr := rep.Repositories[0]
			if len(rr.StaleLocks) != 0 {
				t.Errorf("run removed locks %q, want none", rr.StaleLocks)
			}
			if _, err := r.Backend().Stat(t.Context(), backend.Handle{Type: backend.LockFile, Name: lock}); err != nil {
				t.Errorf("the other host's lock after the run: %v, want it kept", err)
			}
			if s := rep.Sources[0]; s.Status != engine.StatusOK {
				t.Errorf("backup beside a shared lock: %s (%s), want ok", s.Status, s.Error)
			}
			if code != exitFailed || rr.Pruned || !strings.Contains(rr.Error, "locked") {
				t.Errorf("run: exit %d, repository %s (%s), pruned %v; want 1, forget failed on the lock, not pruned; stderr:\n%s", code, rr.Status, rr.Error, rr.Pruned, stderr)
			}
		})
	}
}

// TestLocksAndUnlock: planb locks marks dead, stale and unreadable locks;
// planb unlock removes the stale ones (dead ones included) and leaves live
// and unreadable ones, which only --remove-all removes.
func TestLocksAndUnlock(t *testing.T) {
	repoDir, repoPW := testRepo(t)
	r := openTestRepo(t, repoDir, repoPW)
	host, _ := os.Hostname()
	live := writeForeignLock(t, r, "elsewhere.example", time.Now().Add(-40*time.Minute), false)
	old := writeForeignLock(t, r, "elsewhere.example", time.Now().Add(-3*time.Hour), true)
	dead := writeForeignLock(t, r, host, time.Now(), false) // PID 4242: surely not ours
	if processExists(4242) {
		t.Skip("PID 4242 is alive here")
	}
	garbage := strings.Repeat("0", 64)
	if err := r.Backend().Save(t.Context(), backend.Handle{Type: backend.LockFile, Name: garbage}, bytes.NewReader([]byte("garbage"))); err != nil {
		t.Fatal(err)
	}
	args := []string{"--repo", repoDir, "--password-file", repoPW}
	code, stdout, stderr := planbCLI(t, append(args, "locks")...)
	if code != 0 {
		t.Fatalf("planb locks = %d: %s", code, stderr)
	}
	for _, want := range []struct{ id, state string }{
		{live[:8], "elsewhere.example"},
		{old[:8], "stale"},
		{dead[:8], "stale (process gone)"},
		{garbage[:8], "unreadable"},
	} {
		if !regexp.MustCompile(`(?m)^` + want.id + `.*` + regexp.QuoteMeta(want.state)).MatchString(stdout) {
			t.Errorf("planb locks: no line %s … %s in:\n%s", want.id, want.state, stdout)
		}
	}
	if strings.Contains(lineOf(stdout, live[:8]), "stale") {
		t.Errorf("planb locks: the skewed live lock marked stale: %q", lineOf(stdout, live[:8]))
	}
	code, stdout, _ = planbCLI(t, append(args, "--json", "locks")...)
	if code != 0 || !strings.Contains(stdout, `"unreadable":true`) || !strings.Contains(stdout, `"dead":true`) {
		t.Errorf("planb --json locks = %d:\n%s\nwant the unreadable and the dead lock marked", code, stdout)
	}
	if code, stdout, _ := planbCLI(t, append(args, "unlock")...); code != 0 || strings.TrimSpace(stdout) != "removed 2 locks" {
		t.Errorf("planb unlock = %d, %q; want 0, removed 2 locks", code, stdout)
	}
	locks, err := r.Locks(t.Context())
	if err != nil || len(locks) != 2 {
		t.Errorf("after planb unlock: %v, %v; want the live and the unreadable lock", locks, err)
	}
	if code, stdout, _ := planbCLI(t, append(args, "unlock", "--remove-all")...); code != 0 || strings.TrimSpace(stdout) != "removed 2 locks" {
		t.Errorf("planb unlock --remove-all = %d, %q; want 0, removed 2 locks", code, stdout)
	}
}

// lineOf returns the first line of s that starts with prefix.
func lineOf(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
