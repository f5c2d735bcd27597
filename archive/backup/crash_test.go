package backup_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
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
	mb := crashMailbox()
	// Each run also brings mail of its own, so that it always has new data
	// to write when it is killed, not only the data earlier runs left.
	if extra := os.Getenv("PLANB_CRASH_EXTRA"); extra != "" {
		mb.AddFolder(archive.Folder{Path: "Neu/" + extra})
		for i := range 40 {
			body := message(i, extra+string(attachment(uint64(len(extra)*1000+i), 60<<10)))
			mb.Add("Neu/"+extra, archivetest.Msg{InternalDate: date(i), Body: body})
		}
	}
	fmt.Println("backup-start") // the parent times its kill from here
	// A host of its own: no parent, so every run reads every message (and
	// dedup stores only what earlier runs did not), and takes as long.
	opts := &backup.Options{Host: "crash-" + os.Getenv("PLANB_CRASH_EXTRA"), Progress: paced{}}
	if _, err := backup.Run(t.Context(), r, mb, opts); err != nil {
		t.Fatal(err)
	}
}

// startChild starts a backup in a child process and returns once the
// child is about to back up.
// paced stretches a child's backup to about a second (1 ms a message), so
// that kills spread over its whole run, whatever the machine's speed.
type paced struct{ archive.Progress }

func (paced) Start(archive.Counts) {}
func (paced) Event(archive.Event)  {}
func (paced) Add(c archive.Counts) {
	if c.Messages > 0 {
		time.Sleep(time.Millisecond)
	}
}

func startChild(t *testing.T, dir, extra string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "PLANB_CRASH_REPO="+dir, "PLANB_CRASH_EXTRA="+extra)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "backup-start" {
			go io.Copy(io.Discard, out)
			return cmd
		}
	}
	cmd.Wait()
	t.Fatalf("child ended before its backup started")
	return nil
}

func initLocal(t *testing.T, dir string, chunker *dedup.Params) {
	be, err := local.Create(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(t.Context(), be, password, &repo.Options{PackSize: 1 << 20, Chunker: chunker}); err != nil {
		t.Fatal(err)
	}
}

// TestCrashSafety kills backups with SIGKILL at random points, until 20
// were killed mid-way. After each
// kill the repository must open and check clean (unreferenced packs
// allowed), and the next run must reuse what the killed ones wrote.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 25 backups")
	}
	// Calibrate: how long does a whole backup take here?
	calib := t.TempDir()
	params, err := dedup.NewParams()
	if err != nil {
		t.Fatal(err)
	}
	initLocal(t, calib, &params)
	cmd := startChild(t, calib, "")
	start := time.Now()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("calibration backup: %v", err)
	}
	full := time.Since(start)
	clean := mustOpen(t, calib)
	if err := clean.EnsureIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	fullSize := totalSize(t, clean.Backend())

	dir := t.TempDir()
	initLocal(t, dir, &params) // same chunks as the calibration run
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	kills := 0
	for i := 0; kills < 20 && i < 60; i++ {
		cmd := startChild(t, dir, fmt.Sprint(i))
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
			if s.Summary.Messages != 640 {
				t.Fatalf("kill %d: snapshot %s has %d messages, want 640", i, s.ID.Short(), s.Summary.Messages)
			}
		}
	}
	if kills < 20 {
		t.Errorf("only %d runs of 60 were killed mid-way, want >= 20", kills)
	}
	// What did the killed runs leave of a clean backup's blobs?
	r := mustOpen(t, dir)
	if _, err := r.AdoptPacks(t.Context()); err != nil {
		t.Fatal(err)
	}
	var want, present int64
	clean.Index().Each(func(id dedup.ID, _ dedup.Location) {
		want++
		if r.Index().Has(id) {
			present++
		}
	})
	// A stale lock from a killed run does not block the next one.
	snap, err := backup.Run(t.Context(), r, crashMailbox(), &backup.Options{Host: "crash"})
	if err != nil {
		t.Fatalf("backup after the kills: %v", err)
	}
	archivetest.Equal(t, crashMailbox(), repotest.Restore(t, r, snap))
	// Reuse: the final run stores exactly the blobs the killed runs had not
	// stored, none twice.
	if present == 0 || snap.Summary.AddedBlobs != want-present {
		t.Errorf("killed runs left %d of %d blobs; the next run added %d, want %d", present, want, snap.Summary.AddedBlobs, want-present)
	}
	t.Logf("%d kills; clean backup %d bytes, %d blobs in %v; killed runs left %d blobs; final run added %d blobs, %d bytes",
		kills, fullSize, want, full, present, snap.Summary.AddedBlobs, snap.Summary.AddedStored)
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
