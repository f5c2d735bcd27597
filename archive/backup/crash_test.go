package backup_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
)

// crashMailbox is a deterministic mailbox of about 12 MB: text messages
// and some attachments, in three folders.
func crashMailbox() *archivetest.Mailbox {
	rng := rand.New(rand.NewPCG(42, 42))
	mb := archivetest.NewMailbox()
	folders := []string{"INBOX", "Archiv/2025", "Sent"}
	for _, f := range folders {
		mb.AddFolder(archive.Folder{Path: f})
	}
	for i := range 600 {
		extra := fmt.Sprintf("%x\r\n", rng.Uint64())
		if i%15 == 0 {
			extra += string(attachment(uint64(i), 100<<10+rng.IntN(200<<10)))
		} else {
			for range rng.IntN(200) {
				extra += fmt.Sprintf("line %d of a long letter, %x\r\n", rng.IntN(1000), rng.Uint32())
			}
		}
		mb.Add(folders[i%3], archivetest.Msg{Flags: []string{archive.FlagSeen}, InternalDate: date(i), Body: message(i, extra)})
	}
	return mb
}

// TestCrashChild is the process TestCrashSafety kills; it does nothing
// unless started by it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("PLANB_CRASH_REPO")
	if dir == "" {
		t.Skip("only run as a child of TestCrashSafety")
	}
	be, err := local.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(t.Context(), r, crashMailbox(), &backup.Options{Host: "crash"}); err != nil {
		t.Fatal(err)
	}
}

func startChild(t *testing.T, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PLANB_CRASH_REPO="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func initLocal(t *testing.T, dir string) {
	be, err := local.Create(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(t.Context(), be, password, &repo.Options{PackSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
}

// TestCrashSafety kills a backup with SIGKILL at random points. After each
// kill the repository must open and check clean (unreferenced packs
// allowed), and the next run must reuse what the killed ones wrote.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 25 backups")
	}
	// Calibrate: how long does a whole backup take here?
	calib := t.TempDir()
	initLocal(t, calib)
	start := time.Now()
	if err := startChild(t, calib).Wait(); err != nil {
		t.Fatalf("calibration backup: %v", err)
	}
	full := time.Since(start)
	fullSize := totalSize(t, mustOpen(t, calib).Backend())

	dir := t.TempDir()
	initLocal(t, dir)
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	kills := 0
	for i := range 25 {
		cmd := startChild(t, dir)
		delay := time.Duration(rng.Int64N(int64(full)))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
			kills++
		}
		r := mustOpen(t, dir)
		rep, err := r.Check(t.Context(), &repo.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatalf("kill %d after %v: check: %v", i, delay, err)
		}
		if !rep.OK() {
			t.Fatalf("kill %d after %v: check found %+v", i, delay, rep.Errors)
		}
		// Each snapshot that exists is whole.
		snaps, err := r.Snapshots(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range snaps {
			if s.Summary.Messages != 600 {
				t.Fatalf("kill %d: snapshot %s has %d messages, want 600", i, s.ID.Short(), s.Summary.Messages)
			}
		}
	}
	if kills < 20 {
		t.Errorf("only %d of 25 runs were killed mid-way, want >= 20", kills)
	}
	// A stale lock from a killed run does not block the next one.
	r := mustOpen(t, dir)
	snap, err := backup.Run(t.Context(), r, crashMailbox(), &backup.Options{Host: "crash"})
	if err != nil {
		t.Fatalf("backup after the kills: %v", err)
	}
	archivetest.Equal(t, crashMailbox(), restoreAll(t, r, snap))
	// Reuse: the killed runs' packs were adopted, so the repository is no
	// larger than a clean one plus leftovers, and the final run stores
	// little again.
	if got := totalSize(t, r.Backend()); got > fullSize*2 {
		t.Errorf("repository after kills = %d bytes, clean backup = %d", got, fullSize)
	}
	if snap.Summary.AddedStored >= fullSize/2 {
		t.Errorf("the run after the kills stored %d bytes again, want < %d (reuse of the killed runs' packs)", snap.Summary.AddedStored, fullSize/2)
	}
	t.Logf("%d kills; clean backup %d bytes in %v; final run added %d bytes", kills, fullSize, full, snap.Summary.AddedStored)
	if _, err := r.Prune(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if c, err := r.Check(t.Context(), &repo.CheckOptions{ReadData: true}); err != nil || !c.OK() || len(c.Unreferenced) != 0 {
		t.Errorf("check after prune: %+v, %v", c, err)
	}
}

func mustOpen(t *testing.T, dir string) *repo.Repository {
	t.Helper()
	be, err := local.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, password, nil)
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	return r
}
