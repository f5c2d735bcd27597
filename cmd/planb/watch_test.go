package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/imap/imaptest"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watching is a planb watch running in this process.
type watching struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when runWatch returned err
	err    error
	log    *syncBuffer
	ready  chan struct{}
}

// startWatch runs planb watch on config until stop (or the test's end)
// and waits for its first pass.
func startWatch(t *testing.T, config string, edit func(*watchOptions)) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	w := &watching{cancel: cancel, done: make(chan struct{}), log: &syncBuffer{}, ready: make(chan struct{})}
	var once sync.Once
	opts := watchOptions{Config: config, LockWait: time.Minute, ready: func() { once.Do(func() { close(w.ready) }) }}
	if edit != nil {
		edit(&opts)
	}
	g := &globalOptions{stdout: &syncBuffer{}, stderr: w.log}
	g.setup()
	go func() {
		w.err = runWatch(ctx, opts, g)
		close(w.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
			t.Errorf("planb watch did not stop within 30 s of the end of the test")
		}
	})
	select {
	case <-w.ready:
	case <-w.done:
		t.Fatalf("planb watch ended before its first pass: %v\n%s", w.err, w.log.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("planb watch: no first pass within 2 minutes\n%s", w.log.String())
	}
	return w
}

// stop stops the watch as SIGTERM does and returns how long it took.
func (w *watching) stop(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	w.cancel()
	select {
	case <-w.done:
		if w.err != nil {
			t.Errorf("planb watch = %v, want nil after a signal", w.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("planb watch did not stop within 30 s\n%s", w.log.String())
	}
	return time.Since(start)
}

// snapshotsOf returns the snapshots (not checkpoints) of the source
// described as desc, oldest first.
func snapshotsOf(t *testing.T, r *repo.Repository, desc string) []*repo.Snapshot {
	t.Helper()
	snaps, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*repo.Snapshot
	for _, s := range snaps {
		if s.Source == desc && !s.Checkpoint {
			out = append(out, s)
		}
	}
	return out
}

// waitFor polls cond every 200 ms until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

// lsCount returns how many messages `planb ls SNAPSHOT FOLDER` lists.
func lsCount(t *testing.T, repoDir, pwFile string, snap *repo.Snapshot, folder string) int {
	t.Helper()
	code, out, stderr := planbCLI(t, "--repo", repoDir, "--password-file", pwFile, "ls", snap.ID.String(), folder)
	if code != 0 {
		t.Fatalf("planb ls %s %s = %d: %s", snap.ID.Short(), folder, code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return len(lines) - 1 // the header
}

// watchConfig writes the config of a watch of the accounts (user,
// password file) of d, through addr when not empty.
func watchConfig(t *testing.T, dir, repoDir, repoPW, addr string, users [][2]string, watch string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir = %q\nconcurrency = 4\n\n[watch]\n%s\n\n[repository.main]\npath = %q\npassword_file = %q\n",
		filepath.Join(dir, "state"), watch, repoDir, repoPW)
	for _, u := range users {
		fmt.Fprintf(&b, "\n[[source]]\nname = %q\nkind = \"imap\"\nurl = \"imap://%s@%s\"\npassword_file = %q\ninsecure_skip_verify = true\nconnections = 2\nrepository = \"main\"\n",
			u[0], u[0], addr, u[1])
	}
	return writeConfig(t, dir, b.String())
}

// TestWatchDovecot watches three Dovecot accounts (acceptance 1): a
// message APPENDed to INBOX by another client is in a snapshot (planb
// ls) within 60 s, one in a subfolder within interval + 60 s, and 100
// messages over half a minute (snapshot_every 5s standing for 15m) all
// arrive, in a bounded number of snapshots.
func TestWatchDovecot(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	var users [][2]string
	clients := map[string]*clientOf{}
	for i := range 3 {
		user, pw := d.NewUser(t)
		pwFile := filepath.Join(dir, user+".pass")
		writeSecret(t, pwFile, pw)
		users = append(users, [2]string{user, pwFile})
		c := d.Dial(t, user, pw)
		imaptest.Append(t, c, "INBOX", imaptest.Generate(fmt.Sprintf("old-%d", i), 3))
		imaptest.Append(t, c, "Work", imaptest.Generate(fmt.Sprintf("work-%d", i), 2))
		clients[user] = &clientOf{c: c}
	}
	const interval = 2 * time.Second
	config := watchConfig(t, dir, repoDir, repoPW, fmt.Sprintf("%s:%d", d.Host, d.Port), users,
		`interval = "2s"
snapshot_every = "5s"`)
	w := startWatch(t, config, nil)
	r := openTestRepo(t, repoDir, repoPW)
	desc := func(user string) string { return fmt.Sprintf("imap://%s@%s:%d", user, d.Host, d.Port) }
	for _, u := range users {
		if n := len(snapshotsOf(t, r, desc(u[0]))); n != 1 {
			t.Fatalf("%s: %d snapshots after the first pass, want 1\n%s", u[0], n, w.log.String())
		}
	}

	// INBOX: within 60 s (IDLE).
	a := users[0][0]
	imaptest.Append(t, clients[a].c, "INBOX", []imaptest.Message{{Body: []byte("From: x@example.org\r\nSubject: watched inbox\r\nMessage-ID: <wi@example.org>\r\n\r\nnew\r\n")}})
	took := waitFor(t, 60*time.Second, "INBOX message in a snapshot", func() bool {
		snaps := snapshotsOf(t, r, desc(a))
		return lsCount(t, repoDir, repoPW, snaps[len(snaps)-1], "INBOX") == 3+1
	})
	t.Logf("INBOX message in a snapshot after %s", took.Round(100*time.Millisecond))

	// A subfolder: within interval + 60 s (STATUS).
	b := users[1][0]
	imaptest.Append(t, clients[b].c, "Work", []imaptest.Message{{Body: []byte("From: x@example.org\r\nSubject: watched work\r\nMessage-ID: <ww@example.org>\r\n\r\nnew\r\n")}})
	took = waitFor(t, interval+60*time.Second, "subfolder message in a snapshot", func() bool {
		snaps := snapshotsOf(t, r, desc(b))
		return lsCount(t, repoDir, repoPW, snaps[len(snaps)-1], "Work") == 2+1
	})
	t.Logf("subfolder message in a snapshot after %s", took.Round(100*time.Millisecond))

	// 100 messages over 30 s, into INBOX and Work of the third account.
	c3 := users[2][0]
	before := len(snapshotsOf(t, r, desc(c3)))
	start := time.Now()
	burst := imaptest.Generate("burst", 100)
	for i, m := range burst {
		f := "INBOX"
		if i%4 == 3 {
			f = "Work"
		}
		imaptest.Append(t, clients[c3].c, f, []imaptest.Message{m})
		time.Sleep(300 * time.Millisecond) // the pace of the mail, not a synchronisation
	}
	spread := time.Since(start)
	waitFor(t, interval+60*time.Second, "100 messages in a snapshot", func() bool {
		snaps := snapshotsOf(t, r, desc(c3))
		last := snaps[len(snaps)-1]
		return folderMessages(last, "INBOX") == 3+75 && folderMessages(last, "Work") == 2+25
	})
	made := len(snapshotsOf(t, r, desc(c3))) - before
	// At most one snapshot per snapshot_every while mail comes, one
	// right away for the first change, one for the tail.
	bound := int(spread/(5*time.Second)) + 2
	t.Logf("100 messages over %s: %d snapshots (bound %d)", spread.Round(time.Second), made, bound)
	if made > bound {
		t.Errorf("100 messages over %s made %d snapshots, want at most %d", spread.Round(time.Second), made, bound)
	}
	if n := strings.Count(w.log.String(), "snapshot saved"); n == 0 {
		t.Errorf("log has no \"snapshot saved\" line:\n%s", w.log.String())
	}
	w.stop(t)
	if code, _, stderr := planbCLI(t, "--repo", repoDir, "--password-file", repoPW, "check", "--read-data"); code != 0 {
		t.Fatalf("planb check --read-data = %d: %s", code, stderr)
	}
}

// clientOf holds another client of an account.
type clientOf struct{ c *imapclient.Client }

func folderMessages(s *repo.Snapshot, folder string) int64 {
	for _, e := range s.Folders {
		if e.Folder.Path == folder {
			return e.Messages
		}
	}
	return -1
}
