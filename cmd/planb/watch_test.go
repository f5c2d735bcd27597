package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/graph/graphtest"
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
		defer func() {
			if t.Failed() {
				t.Logf("the watch's log:\n%s", w.log.String())
			}
		}()
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

// bigMessages returns n distinct messages of about size bytes each.
func bigMessages(prefix string, n, size int) []imaptest.Message {
	out := make([]imaptest.Message, n)
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	for i := range out {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: a@example.org\r\nSubject: %s %d\r\nMessage-ID: <%s.%d@example.org>\r\n\r\n", prefix, i, prefix, i)
		for b.Len() < size {
			fmt.Fprintf(&b, "%d %s", i, line)
		}
		out[i] = imaptest.Message{Body: b.Bytes()}
	}
	return out
}

// newest returns the newest snapshot or checkpoint of a source.
func newest(t *testing.T, r *repo.Repository, desc string) *repo.Snapshot {
	t.Helper()
	snaps, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var best *repo.Snapshot
	for _, s := range snaps {
		if s.Source == desc && (best == nil || s.Time.After(best.Time) || s.Supersedes(best)) {
			best = s
		}
	}
	return best
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

// TestWatchSignalDuringBurst stops a watch as SIGTERM does while it
// fetches a burst of mail (acceptance 4): it exits within 10 s, the
// repository checks clean with --read-data, and the next start fetches
// only what the first did not store (counted in bytes by a proxy).
func TestWatchSignalDuringBurst(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	user, pw := d.NewUser(t)
	pwFile := filepath.Join(dir, "user.pass")
	writeSecret(t, pwFile, pw)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("old", 2))
	p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, d.Port))
	config := watchConfig(t, dir, repoDir, repoPW, p.Addr(), [][2]string{{user, pwFile}}, `interval = "2s"
snapshot_every = "5s"`)
	desc := fmt.Sprintf("imap://%s@%s", user, p.Addr())
	w := startWatch(t, config, nil)

	const n, size = 300, 64 << 10
	// The connection that fetches the burst stalls after about 100
	// bodies: the signal comes in the middle of it.
	stalled := p.StallAfter(imaptest.ToClient, 100*size)
	imaptest.Append(t, c, "INBOX", bigMessages("burst", n, size))
	r := openTestRepo(t, repoDir, repoPW)
	select {
	case <-stalled:
	case <-time.After(60 * time.Second):
		t.Fatal("the watch did not fetch the burst within 60 s")
	}
	took := w.stop(t)
	t.Logf("stopped %s after the signal", took.Round(10*time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("watch took %s to stop, want at most 10 s", took)
	}
	if code, out, stderr := planbCLI(t, "--repo", repoDir, "--password-file", repoPW, "check", "--read-data"); code != 0 {
		t.Fatalf("planb check --read-data after the signal = %d: %s%s", code, out, stderr)
	}
	ck := newest(t, openTestRepo(t, repoDir, repoPW), desc)
	stored := folderMessages(ck, "INBOX") - 2
	t.Logf("stored before the signal: %d of %d messages (%s %s)", stored, n, map[bool]string{true: "checkpoint", false: "snapshot"}[ck.Checkpoint], ck.ID.Short())
	if stored <= 0 {
		t.Fatalf("nothing of the burst stored before the signal: the test shows nothing")
	}

	// The next start fetches the rest only.
	before := sum(p.Sent(imaptest.ToClient))
	w = startWatch(t, config, nil)
	waitFor(t, 2*time.Minute, "the whole burst in a snapshot", func() bool {
		snaps := snapshotsOf(t, r, desc)
		return len(snaps) > 0 && folderMessages(snaps[len(snaps)-1], "INBOX") == 2+n
	})
	fetched := sum(p.Sent(imaptest.ToClient)) - before
	rest := int64(n) - stored
	t.Logf("after the restart the server sent %d KiB for the %d messages not stored (%d KiB of bodies)", fetched>>10, rest, rest*size>>10)
	if limit := rest*size + int64(n)*2048 + 256<<10; fetched > limit {
		t.Errorf("after the restart the server sent %d bytes, want at most %d: what was stored was fetched again", fetched, limit)
	}
	w.stop(t)
}

// TestWatchServerRestart stops Dovecot while a watch follows it, mail
// arriving before and after (acceptance 2): the watch logs one line when
// the source fails and one when it is back, reconnects by itself, and
// every message ends up in a snapshot.
func TestWatchServerRestart(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	user, pw := d.NewUser(t)
	pwFile := filepath.Join(dir, "user.pass")
	writeSecret(t, pwFile, pw)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("before", 5))
	addr := fmt.Sprintf("%s:%d", d.Host, d.Port)
	config := watchConfig(t, dir, repoDir, repoPW, addr, [][2]string{{user, pwFile}}, `interval = "2s"
snapshot_every = "3s"`)
	metrics := filepath.Join(dir, "planb.prom")
	w := startWatch(t, config, func(o *watchOptions) { o.MetricsFile = metrics })
	r := openTestRepo(t, repoDir, repoPW)
	desc := "imap://" + user + "@" + addr
	inSnapshot := func(want int64) func() bool {
		return func() bool {
			snaps := snapshotsOf(t, r, desc)
			return len(snaps) > 0 && folderMessages(snaps[len(snaps)-1], "INBOX") == want
		}
	}
	imaptest.Append(t, c, "INBOX", imaptest.Generate("arriving", 3))
	waitFor(t, 60*time.Second, "mail before the stop in a snapshot", inSnapshot(8))

	d.Stop(t)
	down := time.Now()
	waitFor(t, 90*time.Second, "a log line for the failure", func() bool { return strings.Contains(w.log.String(), "source failed") })
	waitFor(t, 30*time.Second, "planb_source_connected 0", func() bool { return readMetrics(t, metrics)["planb_source_connected/"+user] == 0 })
	// PLANB_WATCH_OUTAGE=2m gives the two minutes.
	outage := 30 * time.Second
	if v := os.Getenv("PLANB_WATCH_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PLANB_WATCH_OUTAGE=%q: %v", v, err)
		}
		outage = d
	}
	if rest := outage - time.Since(down); rest > 0 {
		time.Sleep(rest) // the length of the outage, not a synchronisation
	}
	d.Restart(t)
	t.Logf("Dovecot stopped for %s", time.Since(down).Round(time.Second))
	if got := fmt.Sprintf("%s:%d", d.Host, d.Port); got != addr {
		t.Fatalf("Dovecot came back on %s, not %s", got, addr)
	}
	c = d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("after", 4))
	waitFor(t, 90*time.Second, "mail after the restart in a snapshot", inSnapshot(12))
	waitFor(t, 30*time.Second, "planb_source_connected 1", func() bool { return readMetrics(t, metrics)["planb_source_connected/"+user] == 1 })
	log := w.log.String()
	if n := strings.Count(log, "source failed"); n != 1 {
		t.Errorf("%d \"source failed\" lines for one outage, want 1:\n%s", n, log)
	}
	if n := strings.Count(log, "source back"); n != 1 {
		t.Errorf("%d \"source back\" lines for one outage, want 1:\n%s", n, log)
	}
	w.stop(t)
	if code, out, stderr := planbCLI(t, "--repo", repoDir, "--password-file", repoPW, "check", "--read-data"); code != 0 {
		t.Fatalf("planb check --read-data = %d: %s%s", code, out, stderr)
	}
}

// TestWatchGraph watches a fake Graph tenant (acceptance 3): a message
// new in any folder is in a snapshot within interval + 60 s, also under
// a 429 storm (a budget of requests per window, spent), which the watch
// obeys: few requests over the budget, and the message still arrives.
func TestWatchGraph(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	srv := graphtest.NewServer()
	t.Cleanup(srv.Close)
	tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
	tn.AddApp(fakeClient, fakeSecret)
	alice := tn.AddMailbox("alice@contoso.eu", "Alice")
	alice.AddMessage("inbox", graphtest.Message{MIME: []byte("From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n")})
	projects := alice.AddFolder(alice.WellKnown("inbox"), "Projects", false)
	secretFile := filepath.Join(dir, "contoso.secret")
	writeSecret(t, secretFile, fakeSecret)
	config := writeConfig(t, dir, fmt.Sprintf("state_dir = %q\n\n[watch]\ninterval = \"2s\"\nsnapshot_every = \"3s\"\n\n[repository.main]\npath = %q\npassword_file = %q\n\n%s",
		filepath.Join(dir, "state"), repoDir, repoPW,
		graphSourceTOML("contoso", `mailboxes = ["alice@contoso.eu"]`, secretFile, srv.URL(), "main")))
	const interval = 2 * time.Second
	w := startWatch(t, config, func(o *watchOptions) { o.httpClient = srv.Client() })
	r := openTestRepo(t, repoDir, repoPW)
	latest := func() *repo.Snapshot {
		snaps, err := r.Snapshots(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var best *repo.Snapshot
		for _, s := range snaps {
			if !s.Checkpoint && strings.Contains(s.Source, "alice@contoso.eu") && (best == nil || s.Time.After(best.Time)) {
				best = s
			}
		}
		return best
	}
	if s := latest(); s == nil || folderMessages(s, "INBOX") != 1 {
		t.Fatalf("after the first pass: no snapshot with 1 message in INBOX\n%s", w.log.String())
	}

	alice.AddMessage(projects, graphtest.Message{MIME: []byte("From: b@example.org\r\nSubject: two\r\n\r\nsecond\r\n")})
	took := waitFor(t, interval+60*time.Second, "a message of a subfolder in a snapshot", func() bool {
		return folderMessages(latest(), "INBOX/Projects") == 1
	})
	t.Logf("Graph subfolder message in a snapshot after %s", took.Round(100*time.Millisecond))

	// A storm: 6 requests per mailbox every 10 s (a pass of this
	// mailbox takes a dozen), the rest answered 429 with the seconds left
	// in the window. The watch's pace is then the budget's.
	srv.ResetStats()
	srv.SetBudget(6, 10*time.Second)
	alice.AddMessage("inbox", graphtest.Message{MIME: []byte("From: c@example.org\r\nSubject: three\r\n\r\nthird\r\n")})
	took = waitFor(t, 2*time.Minute, "a message in a snapshot under a 429 storm", func() bool {
		return folderMessages(latest(), "INBOX") == 2
	})
	st := srv.Stats("alice@contoso.eu")
	t.Logf("under the storm: in a snapshot after %s; %d requests, %d answered 429 over the budget", took.Round(100*time.Millisecond), st.Requests, st.OverBudget)
	// Obeying Retry-After, a client asks again only when the window is
	// over: a few requests over the budget per window and connection.
	windows := int(took/(10*time.Second)) + 1
	if limit := windows * 4 * 2; st.OverBudget > limit {
		t.Errorf("%d requests over the budget in %d windows, want at most %d: Retry-After not obeyed", st.OverBudget, windows, limit)
	}
	srv.SetBudget(0, 0)
	w.stop(t)
}

// TestWatchIdleMetricsReload watches one account with an interval of 5
// minutes, so that only NOTIFY (which Dovecot offers; IDLE on INBOX where
// a server does not) can bring an INBOX message, and one of another
// folder, into a snapshot within the test's minute; serves the metrics on --metrics-listen; then
// takes a SIGHUP with a config that adds an account and sets
// snapshot_every to an hour: the new account is watched, a message in it
// is stored at once but waits for its snapshot (planb_source_lag_seconds
// above 0); a SIGHUP that only removes the first account is applied in
// place, leaving the second undisturbed; and the signal that stops the
// watch makes the pending message a snapshot.
func TestWatchIdleMetricsReload(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	var users [][2]string
	var clients []*imapclient.Client
	for range 2 {
		user, pw := d.NewUser(t)
		pwFile := filepath.Join(dir, user+".pass")
		writeSecret(t, pwFile, pw)
		users = append(users, [2]string{user, pwFile})
		c := d.Dial(t, user, pw)
		imaptest.Append(t, c, "INBOX", imaptest.Generate(user, 2))
		if err := c.Create("Projets Été", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	addr := fmt.Sprintf("%s:%d", d.Host, d.Port)
	config := watchConfig(t, dir, repoDir, repoPW, addr, users[:1], `interval = "5m"
snapshot_every = "1s"`)
	// As systemd's Type=notify: READY=1 once the first pass is done.
	sock := filepath.Join(t.TempDir(), "notify")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	hup := make(chan os.Signal, 1)
	listening := make(chan string, 1)
	w := startWatch(t, config, func(o *watchOptions) {
		o.MetricsListen = "127.0.0.1:0"
		o.listener = func(ln net.Listener) { listening <- ln.Addr().String() }
		o.hup = hup
	})
	notify.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 256)
	if n, err := notify.Read(buf); err != nil || string(buf[:n]) != "READY=1" {
		t.Errorf("NOTIFY_SOCKET got %q, %v; want READY=1", buf[:n], err)
	}
	metricsURL := "http://" + <-listening + "/metrics"
	metrics := func() map[string]float64 {
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(t.TempDir(), "metrics")
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return readMetrics(t, name)
	}
	a, b := users[0][0], users[1][0]
	if m := metrics(); m["planb_source_connected/"+a] != 1 || m["planb_source_lag_seconds/"+a] != 0 || m["planb_source_messages_added/"+a] != 2 {
		t.Errorf("metrics after the first pass: %v; want %s connected, lag 0, 2 messages added", m, a)
	}
	r := openTestRepo(t, repoDir, repoPW)
	inbox := func(user string) int64 {
		snaps := snapshotsOf(t, r, "imap://"+user+"@"+addr)
		if len(snaps) == 0 {
			return -1
		}
		return folderMessages(snaps[len(snaps)-1], "INBOX")
	}
	imaptest.Append(t, clients[0], "INBOX", imaptest.Generate("pushed", 1))
	took := waitFor(t, 60*time.Second, "an INBOX message in a snapshot, interval 5m", func() bool { return inbox(a) == 3 })
	t.Logf("with interval 5m, an INBOX message in a snapshot after %s (NOTIFY)", took.Round(100*time.Millisecond))
	// A folder besides INBOX: only NOTIFY sees it before the interval.
	imaptest.Append(t, clients[0], "Projets Été", imaptest.Generate("elsewhere", 1))
	took = waitFor(t, 60*time.Second, "a message of another folder in a snapshot, interval 5m", func() bool {
		snaps := snapshotsOf(t, r, "imap://"+a+"@"+addr)
		return len(snaps) > 0 && folderMessages(snaps[len(snaps)-1], "Projets Été") == 1
	})
	t.Logf("with interval 5m, a message of another folder in a snapshot after %s (NOTIFY)", took.Round(100*time.Millisecond))

	// SIGHUP: a second account, snapshots at most hourly.
	watchConfig(t, dir, repoDir, repoPW, addr, users, `interval = "5m"
snapshot_every = "1h"`)
	hup <- syscall.SIGHUP
	waitFor(t, 60*time.Second, "the reloaded config's new account in a snapshot", func() bool { return inbox(b) == 2 })
	if !strings.Contains(w.log.String(), "config reloaded") {
		t.Errorf("no \"config reloaded\" line in the log:\n%s", w.log.String())
	}
	imaptest.Append(t, clients[1], "INBOX", imaptest.Generate("waiting", 1))
	waitFor(t, 60*time.Second, "a stored message waiting for its snapshot (lag > 0)", func() bool {
		m := metrics()
		return m["planb_source_lag_seconds/"+b] > 0 && m["planb_source_messages_added/"+b] == 2+1
	})
	if got := inbox(b); got != 2 {
		t.Errorf("%s: INBOX of the latest snapshot holds %d, want 2 (snapshot_every 1h)", b, got)
	}
	// SIGHUP with only the sources changed (the first account gone): in
	// place. The second account goes on undisturbed: its pending
	// checkpoint stays pending (a restart would make it a snapshot).
	watching := strings.Count(w.log.String(), "msg=watching")
	if watching == 0 {
		t.Fatalf("no \"watching\" line in the log:\n%s", w.log.String())
	}
	watchConfig(t, dir, repoDir, repoPW, addr, users[1:], `interval = "5m"
snapshot_every = "1h"`)
	hup <- syscall.SIGHUP
	waitFor(t, 60*time.Second, "the first account out of the metrics", func() bool {
		_, ok := metrics()["planb_source_connected/"+a]
		return !ok
	})
	if n := strings.Count(w.log.String(), "msg=watching"); n != watching {
		t.Errorf("the watch started again on a SIGHUP that changed only sources (%d \"watching\" lines, was %d):\n%s", n, watching, w.log.String())
	}
	if !strings.Contains(w.log.String(), "config reloaded in place") || !strings.Contains(w.log.String(), "removed=1") {
		t.Errorf("no \"config reloaded in place ... removed=1\" line in the log:\n%s", w.log.String())
	}
	if m := metrics(); m["planb_source_lag_seconds/"+b] <= 0 || inbox(b) != 2 {
		t.Errorf("%s after an in-place reload: lag %v, INBOX of the latest snapshot %d; want still pending (lag > 0, 2)", b, m["planb_source_lag_seconds/"+b], inbox(b))
	}
	took = w.stop(t)
	if got := inbox(b); got != 3 {
		t.Errorf("%s: INBOX of the latest snapshot holds %d after the stop, want 3 (what was pending)", b, got)
	}
	t.Logf("stopped in %s, the pending checkpoint promoted", took.Round(10*time.Millisecond))
}

// TestWatchMaintain watches a Maildir that gains a message every few
// seconds, with keep = { last = 2 } and maintain_every 3s: the watch
// forgets the older snapshots on its schedule (one "maintained" line
// each time), goes on from what it kept, and the repository checks clean.
func TestWatchMaintain(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	maildir := filepath.Join(dir, "Maildir")
	start := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return start.AddDate(0, 0, n) }
	writeDays(t, maildir, 0, day)
	config := writeConfig(t, dir, fmt.Sprintf(`state_dir = %q

[watch]
interval = "1s"
snapshot_every = "1s"
maintain_every = "3s"

[repository.main]
path = %q
password_file = %q
keep = { last = 2 }

[[source]]
name = "mail"
kind = "maildir"
path = %q
repository = "main"
`, filepath.Join(dir, "state"), repoDir, repoPW, maildir))
	w := startWatch(t, config, nil)
	r := openTestRepo(t, repoDir, repoPW)
	count := func() (snaps int, newest int64) {
		all, err := r.Snapshots(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var best *repo.Snapshot
		for _, s := range all {
			if !s.Checkpoint {
				snaps++
				if best == nil || s.Time.After(best.Time) {
					best = s
				}
			}
		}
		if best != nil {
			newest = best.Summary.Messages
		}
		return snaps, newest
	}
	for n := 1; n <= 6; n++ {
		writeDays(t, maildir, n, day)
		waitFor(t, 30*time.Second, fmt.Sprintf("day %d in a snapshot", n), func() bool { _, m := count(); return m == int64(n+1) })
	}
	waitFor(t, 30*time.Second, "retention down to 2 snapshots", func() bool { s, _ := count(); return s <= 2 })
	if n := strings.Count(w.log.String(), "msg=maintained"); n == 0 {
		t.Errorf("no \"maintained\" line in the log:\n%s", w.log.String())
	}
	writeDays(t, maildir, 7, day)
	waitFor(t, 30*time.Second, "day 7 in a snapshot after retention", func() bool { _, m := count(); return m == 8 })
	w.stop(t)
	if code, out, stderr := planbCLI(t, "--repo", repoDir, "--password-file", repoPW, "check", "--read-data"); code != 0 {
		t.Fatalf("planb check --read-data = %d: %s%s", code, out, stderr)
	}
}
