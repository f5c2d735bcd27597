package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/graph/graphtest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// child is planb running in a process of its own (see
// TestRunHelperProcess), through main: its signal handling and exit code.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{} // closed once the process has ended
	err            error         // of Wait, once done is closed
}

// startChild starts planb args; extraEnv is added to the environment.
func startChild(t *testing.T, extraEnv []string, args ...string) *child {
	t.Helper()
	c := &child{done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestRunHelperProcess$")
	c.cmd.Env = append(append(os.Environ(), "PLANB_RUN_HELPER=1", "PLANB_RUN_ARGS="+strings.Join(args, "\n")), extraEnv...)
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// waitFor waits until cond holds, checking it every few milliseconds. It
// fails the test if the process ends first or after timeout.
func (c *child) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-c.done:
			if cond() {
				return
			}
			t.Fatalf("waiting for %s: planb ended first (%v); stdout:\n%s\nstderr:\n%s", what, c.err, c.stdout.String(), c.stderr.String())
		case <-deadline:
			_ = c.cmd.Process.Kill()
			<-c.done
			t.Fatalf("no %s after %v; stdout:\n%s\nstderr:\n%s", what, timeout, c.stdout.String(), c.stderr.String())
		case <-tick.C:
		}
	}
}

// wait waits for the process to end and returns its exit code (-1 if a
// signal ended it).
func (c *child) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("planb still running after %v; stdout:\n%s\nstderr:\n%s", timeout, c.stdout.String(), c.stderr.String())
	}
	return c.cmd.ProcessState.ExitCode()
}

// signal sends sig to the process.
func (c *child) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// snapshotMailbox reads a snapshot back into an in-memory mailbox.
func snapshotMailbox(t *testing.T, r *repo.Repository, snap *repo.Snapshot) *archivetest.Mailbox {
	t.Helper()
	mb := archivetest.NewMailbox()
	if _, err := restore.Run(t.Context(), r, snap, mb, nil); err != nil {
		t.Fatalf("read snapshot %s back: %v", snap.ID.Short(), err)
	}
	return mb
}

// resumeTenant fills a fake tenant with mailboxes of n messages each
// (Inbox, a folder below it and Sent Items; flags, categories and dates
// varied) and returns their addresses and the number of messages.
func resumeTenant(tn *graphtest.Tenant, mailboxes, n int) ([]string, int) {
	var addrs []string
	base := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	for b := range mailboxes {
		addr := fmt.Sprintf("user%d@contoso.eu", b)
		mb := tn.AddMailbox(addr, fmt.Sprintf("User %d", b))
		projects := mb.AddFolder("inbox", "Projects", false)
		folders := []string{"inbox", "inbox", "inbox", projects, "sentitems"}
		for i := range n {
			m := graphtest.Message{
				MIME: []byte(fmt.Sprintf("From: sender%d@example.org\r\nTo: %s\r\nSubject: message %d of %s\r\nMessage-ID: <m%d.%d@example.org>\r\n\r\n%s\r\n",
					i%17, addr, i, addr, b, i, strings.Repeat(fmt.Sprintf("Line %d of message %d. ", i%5, i), 20+i%40))),
				IsRead:   i%3 != 0,
				Flagged:  i%7 == 0,
				Received: base.Add(time.Duration(b*n+i) * time.Hour),
			}
			if i%11 == 0 {
				m.Categories = []string{"Blue category"}
			}
			mb.AddMessage(folders[i%len(folders)], m)
		}
		addrs = append(addrs, addr)
	}
	return addrs, mailboxes * n
}

// TestBackupGraphResume is issue 16's point 6: a first backup of three
// mailboxes from a slow fake Graph is stopped with SIGTERM at half of the
// bodies and with SIGKILL at three quarters, then run to the end. The
// three runs together fetch at most 10% more bodies than there are
// messages, and the final snapshots hold what an uninterrupted backup
// into another repository holds.
func TestBackupGraphResume(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of paced downloads")
	}
	dir := t.TempDir()
	srv := graphtest.NewServer()
	t.Cleanup(srv.Close)
	tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
	tn.AddApp(fakeClient, fakeSecret)
	addrs, total := resumeTenant(tn, 3, 400)
	secretFile := filepath.Join(dir, "contoso.secret")
	writeSecret(t, secretFile, fakeSecret)
	cert, err := srv.WriteCertFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"SSL_CERT_FILE=" + cert}
	args := func(repoDir, pwFile string, extra ...string) []string {
		a := []string{"--repo", repoDir, "--password-file", pwFile, "backup", "graph",
			"--tenant", fakeTenant, "--client-id", fakeClient, "--client-secret-file", secretFile,
			"--graph-endpoint", srv.URL(), "--authority-host", srv.URL()}
		for _, addr := range addrs {
			a = append(a, "--mailbox", addr)
		}
		return append(a, extra...)
	}
	valueCalls := func() int {
		n := 0
		for _, addr := range addrs {
			n += srv.Stats(addr).ValueCalls
		}
		return n
	}
	// settledCalls is valueCalls once the fake has answered what a killed
	// process had asked for: the count no longer moves.
	settledCalls := func() int {
		n := valueCalls()
		for {
			time.Sleep(300 * time.Millisecond)
			m := valueCalls()
			if m == n {
				return n
			}
			n = m
		}
	}

	// The reference: an uninterrupted backup into a repository of its own.
	refDir, refPW := testRepo(t)
	ref := startChild(t, env, args(refDir, refPW)...)
	if code := ref.wait(t, 2*time.Minute); code != exitOK {
		t.Fatalf("uninterrupted backup: exit %d; stderr:\n%s", code, ref.stderr.String())
	}
	if n := valueCalls(); n != total {
		t.Fatalf("uninterrupted backup: %d $value calls for %d messages", n, total)
	}
	srv.ResetStats()

	// Exchange's pace: 0.75s a message, four at once per mailbox.
	srv.SetValueDelay(750 * time.Millisecond)
	repoDir, repoPW := testRepo(t)
	// stored counts the messages of the repository's snapshots, the
	// newest of each mailbox, and how many of those are checkpoints.
	stored := func() (messages int64, checkpoints int) {
		t.Helper()
		snaps, err := openTestRepo(t, repoDir, repoPW).Snapshots(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		newest := make(map[string]*repo.Snapshot)
		for _, s := range snaps {
			newest[s.Source] = s
		}
		for _, s := range newest {
			messages += s.Summary.Messages
			if s.Checkpoint {
				checkpoints++
			}
		}
		return messages, checkpoints
	}
	first := startChild(t, env, args(repoDir, repoPW, "--checkpoint", "5s")...)
	first.waitFor(t, "half of the bodies fetched", 2*time.Minute, func() bool { return valueCalls() >= total/2 })
	first.signal(t, syscall.SIGTERM)
	if code := first.wait(t, time.Minute); code != exitFailed {
		t.Errorf("backup stopped by SIGTERM: exit %d, want 1; stderr:\n%s", code, first.stderr.String())
	}
	calls1 := valueCalls()
	stored1, cks := stored()
	t.Logf("SIGTERM: %d bodies fetched, %d messages in %d checkpoints; planb said:\n%s%s", calls1, stored1, cks, first.stdout.String(), first.stderr.String())
	if cks != len(addrs) || int(stored1) > calls1 || calls1-int(stored1) > 4*len(addrs) {
		t.Errorf("after SIGTERM: %d messages in %d checkpoints for %d bodies fetched; want a checkpoint per mailbox, at most %d bodies lost (4 a mailbox in flight)",
			stored1, cks, calls1, 4*len(addrs))
	}

	second := startChild(t, env, args(repoDir, repoPW, "--checkpoint", "5s")...)
	second.waitFor(t, "three quarters of the bodies fetched", 2*time.Minute, func() bool { return valueCalls() >= total*3/4 })
	second.signal(t, syscall.SIGKILL)
	if code := second.wait(t, time.Minute); code != -1 {
		t.Errorf("backup killed by SIGKILL: exit %d, want killed", code)
	}
	calls2 := settledCalls() - calls1
	stored2, cks := stored()
	t.Logf("SIGKILL: %d bodies fetched, %d messages in the newest snapshots (%d checkpoints)", calls2, stored2, cks)

	srv.SetValueDelay(0)
	third := startChild(t, env, args(repoDir, repoPW, "--checkpoint", "5s")...)
	if code := third.wait(t, 2*time.Minute); code != exitOK {
		t.Fatalf("last backup: exit %d, want 0; stderr:\n%s", code, third.stderr.String())
	}
	calls3 := valueCalls() - calls1 - calls2
	if want := total - int(stored2); calls3 != want {
		t.Errorf("last run fetched %d bodies, want %d: those the snapshots it went on from lack", calls3, want)
	}
	all := calls1 + calls2 + calls3
	t.Logf("$value calls: %d (SIGTERM), %d (SIGKILL), %d (to the end): %d for %d messages (%+.1f%%)",
		calls1, calls2, calls3, all, total, 100*float64(all-total)/float64(total))
	if all > total*11/10 {
		t.Errorf("the three runs fetched %d bodies for %d messages, want at most %d (10%% more)", all, total, total*11/10)
	}

	// The final snapshots equal the uninterrupted backup's, mailbox by
	// mailbox.
	rr, r := openTestRepo(t, refDir, refPW), openTestRepo(t, repoDir, repoPW)
	refSnaps, err := rr.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != len(refSnaps) {
		t.Errorf("%d snapshots at the end, want %d, one a mailbox (the checkpoints they replace removed)", len(snaps), len(refSnaps))
	}
	newest := make(map[string]*repo.Snapshot)
	for _, s := range snaps {
		if s.Checkpoint {
			t.Errorf("checkpoint %s left at the end", s.ID.Short())
		}
		newest[s.Source] = s // oldest first
	}
	for _, want := range refSnaps {
		got := newest[want.Source]
		if got == nil {
			t.Errorf("no snapshot of %s", want.Source)
			continue
		}
		if got.Summary.Messages != want.Summary.Messages {
			t.Errorf("%s: %d messages, want %d", want.Source, got.Summary.Messages, want.Summary.Messages)
		}
		archivetest.Equal(t, snapshotMailbox(t, rr, want), snapshotMailbox(t, r, got))
	}
}

// fetchProxy stands between planb and an IMAP server: it passes the
// conversation on, pauses delay before each message body the server sends
// (BODY[] in a FETCH response), and records which bodies it delivered, by
// folder (the last one the connection selected) and UID.
type fetchProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu      sync.Mutex
	fetched map[string]int // "folder/uid" → times delivered
	total   int
}

func newFetchProxy(t *testing.T, target string, delay time.Duration) *fetchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fetchProxy{ln: ln, target: target, delay: delay, fetched: make(map[string]int)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *fetchProxy) addr() string { return p.ln.Addr().String() }

// count returns the bodies delivered since the last take.
func (p *fetchProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// take returns the bodies delivered since the last take and forgets them.
func (p *fetchProxy) take() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.fetched
	p.fetched = make(map[string]int)
	p.total = 0
	return out
}

var (
	selectCmd   = regexp.MustCompile(`(?i)^\S+ (?:SELECT|EXAMINE) "?([^"\s]+)"?`)
	bodyFetch   = regexp.MustCompile(`(?i)^\* \d+ FETCH \(.*BODY\[\]`)
	fetchUID    = regexp.MustCompile(`(?i)\bUID (\d+)`)
	literalTail = regexp.MustCompile(`~?\{(\d+)\+?\}\r\n$`)
)

func (p *fetchProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var mu sync.Mutex
	folder := ""
	go func() {
		// planb → server: note the folder each SELECT or EXAMINE opens.
		defer server.Close()
		br := bufio.NewReader(client)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				if m := selectCmd.FindSubmatch(line); m != nil {
					mu.Lock()
					folder = string(m[1])
					mu.Unlock()
				}
				if _, err := server.Write(line); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	// server → planb, a line at a time, literals passed on whole.
	br := bufio.NewReader(server)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		body := bodyFetch.Match(line)
		if body {
			time.Sleep(p.delay) // the pace of the fake, not a synchronisation
		}
		if _, err := client.Write(line); err != nil {
			return
		}
		m := literalTail.FindSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(string(m[1]))
		if _, err := io.CopyN(client, br, int64(n)); err != nil {
			return
		}
		if u := fetchUID.FindSubmatch(line); body && u != nil {
			mu.Lock()
			key := folder + "/" + string(u[1])
			mu.Unlock()
			p.mu.Lock()
			p.fetched[key]++
			p.total++
			p.mu.Unlock()
		}
	}
}

// storedMessages lists the messages of a snapshot as "folder/source id".
func storedMessages(t *testing.T, r *repo.Repository, snap *repo.Snapshot) map[string]bool {
	t.Helper()
	out := make(map[string]bool)
	for i, f := range snap.Folders {
		err := r.Entries(t.Context(), snap, i, func(e repo.Entry) error {
			out[f.Path+"/"+e.SourceID] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestBackupIMAPResume stops a first backup of a Dovecot account with
// SIGTERM, then the next one with SIGKILL, and runs it to the end: no
// run fetches a body that the snapshot it started from holds, and the
// last one fetches exactly what the checkpoint left by the killed run
// lacks.
func TestBackupIMAPResume(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	total := 0
	for _, f := range []string{"INBOX", "Sent", "Archive"} {
		msgs := imaptest.Generate(f, 200)
		imaptest.Append(t, c, f, msgs)
		total += len(msgs)
	}
	pwFile := filepath.Join(dir, "imap.pass")
	writeSecret(t, pwFile, pw)
	proxy := newFetchProxy(t, fmt.Sprintf("%s:%d", d.Host, d.Port), 20*time.Millisecond)
	repoDir, repoPW := testRepo(t)
	args := []string{"--repo", repoDir, "--password-file", repoPW, "backup", "imap",
		"--url", fmt.Sprintf("imap://%s@%s", user, proxy.addr()), "--insecure-plaintext",
		"--imap-password-file", pwFile, "--checkpoint", "1s"}
	// stored opens the repository as it is now and lists the messages of
	// its newest snapshot, the one the next backup goes on from. (A run
	// killed between saving a checkpoint and removing the one before
	// leaves two.)
	stored := func(when string, want int) map[string]bool {
		t.Helper()
		r := openTestRepo(t, repoDir, repoPW)
		snaps, err := r.Snapshots(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) < 1 || len(snaps) > want {
			t.Fatalf("%s: %d snapshots, want 1 to %d", when, len(snaps), want)
		}
		var newest *repo.Snapshot
		for _, s := range snaps {
			if newest == nil || s.Time.After(newest.Time) || s.Supersedes(newest) {
				newest = s
			}
		}
		return storedMessages(t, r, newest)
	}

	first := startChild(t, nil, args...)
	first.waitFor(t, "half of the bodies fetched", time.Minute, func() bool { return proxy.count() >= total/2 })
	first.signal(t, syscall.SIGTERM)
	if code := first.wait(t, time.Minute); code != exitFailed {
		t.Errorf("backup stopped by SIGTERM: exit %d, want 1; stderr:\n%s", code, first.stderr.String())
	}
	fetched1 := proxy.take()
	stored1 := stored("after SIGTERM", 1)
	t.Logf("SIGTERM: %d bodies fetched, %d stored in the checkpoint", len(fetched1), len(stored1))
	if lost := len(fetched1) - len(stored1); lost < 0 || lost > 10 {
		t.Errorf("SIGTERM: %d bodies fetched, %d stored; want at most 10 lost", len(fetched1), len(stored1))
	}

	second := startChild(t, nil, args...)
	// Killed at three quarters, once it has saved a checkpoint of its own.
	firstCheckpoint := repoFiles(repoDir, "snapshots")
	second.waitFor(t, "three quarters of the bodies fetched and a checkpoint", time.Minute, func() bool {
		return len(stored1)+proxy.count() >= total*3/4 && !slices.Equal(repoFiles(repoDir, "snapshots"), firstCheckpoint)
	})
	second.signal(t, syscall.SIGKILL)
	second.wait(t, time.Minute)
	fetched2 := proxy.take()
	stored2 := stored("after SIGKILL", 2)
	t.Logf("SIGKILL: %d bodies fetched, %d stored in the last checkpoint", len(fetched2), len(stored2))

	third := startChild(t, nil, args...)
	if code := third.wait(t, time.Minute); code != exitOK {
		t.Fatalf("last backup: exit %d, want 0; stderr:\n%s", code, third.stderr.String())
	}
	fetched3 := proxy.take()
	final := stored("at the end", 1)
	t.Logf("to the end: %d bodies fetched, %d messages", len(fetched3), len(final))
	if len(final) != total {
		t.Errorf("final snapshot: %d messages, want %d", len(final), total)
	}
	for _, run := range []struct {
		name    string
		before  map[string]bool
		fetched map[string]int
	}{{"second", stored1, fetched2}, {"third", stored2, fetched3}} {
		again := 0
		for k, n := range run.fetched {
			if run.before[k] || n > 1 {
				again++
			}
		}
		if again > 0 {
			t.Errorf("%s run fetched again %d bodies its parent snapshot holds", run.name, again)
		}
	}
	if want := total - len(stored2); len(fetched3) != want {
		t.Errorf("third run fetched %d bodies, want %d (the messages the checkpoint lacks)", len(fetched3), want)
	}
}

// TestCheckpointCommands: with a checkpoint in the repository (of a Graph
// mailbox whose backup did not finish) and complete snapshots of a
// Maildir, snapshots marks the checkpoint (text and --json), latest is
// the newest complete snapshot, forget keeps the checkpoint without
// counting it, and planb run neither counts it in its report's and
// metrics' snapshots nor lets retention remove it.
func TestCheckpointCommands(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	maildir := testMaildir(t)
	base := []string{"--repo", repoDir, "--password-file", repoPW}
	cli := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := planbCLI(t, append(slices.Clone(base), args...)...)
		if code != exitOK {
			t.Fatalf("planb %q = %d; stderr:\n%s", args, code, stderr)
		}
		return stdout
	}
	cli("backup", "maildir", "--path", maildir)
	r := openTestRepo(t, repoDir, repoPW)
	ck := &repo.Snapshot{Time: time.Now().Add(time.Hour).UTC(), Host: "elsewhere", Source: "graph://t/bob@contoso.eu",
		Folders: []repo.FolderEntry{}, Checkpoint: true}
	if err := r.SaveSnapshot(t.Context(), ck); err != nil {
		t.Fatal(err)
	}
	cli("backup", "maildir", "--path", maildir, "--checkpoint", "0")

	out := cli("snapshots")
	if !regexp.MustCompile(`(?m)^` + ck.ID.Short() + ` \(checkpoint\) .*graph://t/bob@contoso.eu$`).MatchString(out) {
		t.Errorf("snapshots does not mark the checkpoint %s:\n%s", ck.ID.Short(), out)
	}
	if n := strings.Count(out, "(checkpoint)"); n != 1 {
		t.Errorf("snapshots marks %d snapshots as checkpoints, want 1:\n%s", n, out)
	}
	out = cli("--json", "snapshots")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l snapshotLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		if l.Checkpoint != (l.ID == ck.ID.String()) {
			t.Errorf("--json snapshots: %s has checkpoint %v", l.ID, l.Checkpoint)
		}
	}
	if out := cli("ls", "latest"); strings.Contains(out, "no folders") || !strings.Contains(out, "INBOX") {
		t.Errorf("ls latest lists %q, want the Maildir's folders (not the checkpoint's)", out)
	}
	out = cli("forget", "--keep-last", "1", "--dry-run")
	if !regexp.MustCompile(`(?m)^`+ck.ID.Short()+` .*keep \(checkpoint\)$`).MatchString(out) || strings.Count(out, "would remove") != 1 {
		t.Errorf("forget --keep-last 1 --dry-run: want the checkpoint kept and one Maildir snapshot removed:\n%s", out)
	}

	metricsFile := filepath.Join(dir, "planb.prom")
	config := writeConfig(t, dir, fmt.Sprintf(`
state_dir = %q
checkpoint = "0"
[repository.main]
path = %q
password_file = %q
keep = { last = 1 }
[[source]]
name = "mail"
kind = "maildir"
path = %q
repository = "main"
`, filepath.Join(dir, "state"), repoDir, repoPW, maildir))
	rep, code, stderr := runJSON(t, runOptions{Config: config, MetricsFile: metricsFile, LockWait: time.Second})
	if code != exitOK {
		t.Fatalf("run: exit %d; stderr:\n%s", code, stderr)
	}
	if r := rep.Repositories[0]; r.Snapshots != 1 || r.Checkpoints != 1 || r.Forgot != 2 {
		t.Errorf("run report: %d snapshots, %d checkpoints, forgot %d; want 1, 1, 2", r.Snapshots, r.Checkpoints, r.Forgot)
	}
	if got := readMetrics(t, metricsFile)["planb_repository_snapshots/main"]; got != 1 {
		t.Errorf("planb_repository_snapshots = %v, want 1 (the checkpoint not counted)", got)
	}
	if _, err := openTestRepo(t, repoDir, repoPW).FindSnapshot(t.Context(), ck.ID.String()); err != nil {
		t.Errorf("the checkpoint after retention: %v, want it kept", err)
	}
}
