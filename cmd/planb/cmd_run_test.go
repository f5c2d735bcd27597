package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/graph/graphtest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// testRepo creates a repository in a new directory and returns its path
// and its password file.
func testRepo(t *testing.T) (dir, pwFile string) {
	t.Helper()
	base := t.TempDir()
	dir, pwFile = filepath.Join(base, "repo"), filepath.Join(base, "repo.pass")
	if err := os.WriteFile(pwFile, []byte("repo password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := planbCLI(t, "--repo", dir, "--password-file", pwFile, "init"); code != 0 {
		t.Fatalf("planb init = %d: %s", code, stderr)
	}
	return dir, pwFile
}

// planbCLI runs a planb command line in this process.
func planbCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), append([]string{"planb"}, args...), nil, &out, &errb)
	return code, out.String(), errb.String()
}

// runJSON runs planb run --json in this process and returns the report,
// the exit code main would give and stderr.
func runJSON(t *testing.T, opts runOptions) (*runReport, int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb, JSON: true}
	g.setup()
	err := runRun(t.Context(), opts, g)
	code := report(&errb, err)
	rep := &runReport{}
	if err := json.Unmarshal(out.Bytes(), rep); err != nil {
		t.Fatalf("run --json: stdout %q is not one JSON object: %v (stderr %s)", out.String(), err, errb.String())
	}
	return rep, code, errb.String()
}

// writeConfig writes a config file, readable by its owner only.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	name := filepath.Join(dir, "planb.toml")
	if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// writeSecret writes a secret file, readable by its owner only.
func writeSecret(t *testing.T, name, secret string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

var metricLine = regexp.MustCompile(`^([a-z_]+)\{(source|repository)="([^"]*)"\} (\S+)$`)

// readMetrics parses a textfile: "name/label" → value. Every metric must
// have # HELP and # TYPE gauge lines before its samples.
func readMetrics(t *testing.T, name string) map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	typed := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		if f := strings.Fields(l); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			if f[3] != "gauge" {
				t.Errorf("metrics: %q: want gauge", l)
			}
			typed[f[2]] = true
			continue
		}
		if strings.HasPrefix(l, "# HELP ") {
			continue
		}
		m := metricLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("metrics: line %q is not a gauge sample", l)
		}
		if !typed[m[1]] {
			t.Errorf("metrics: %s has no # TYPE line before its samples", m[1])
		}
		v, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			t.Fatalf("metrics: line %q: %v", l, err)
		}
		out[m[1]+"/"+m[3]] = v
	}
	return out
}

// wantSource is what a source holds, counted independently of planb.
type wantSource struct {
	kind      string
	snapshots int
	messages  int64
	bytes     int64
}

func findSource(t *testing.T, rep *runReport, name string) *sourceReport {
	t.Helper()
	for _, s := range rep.Sources {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("report has no source %q", name)
	return nil
}

// TestRunEndToEnd runs a config of two Dovecot accounts, one Maildir and
// a fake Graph tenant with two mailboxes (acceptance 1), runs it again
// (nothing added), then with one account's password wrong (acceptance 2).
func TestRunEndToEnd(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)

	// Two IMAP accounts; what they hold, as the server serves it.
	type account struct {
		user, pwFile string
		want         wantSource
	}
	var accounts []account
	for i, folders := range []map[string]int{{"INBOX": 3, "Sent": 2}, {"INBOX": 4}} {
		user, pw := d.NewUser(t)
		c := d.Dial(t, user, pw)
		a := account{user: user, pwFile: filepath.Join(dir, user+".pass"), want: wantSource{kind: "imap", snapshots: 1}}
		writeSecret(t, a.pwFile, pw)
		for f, n := range folders {
			imaptest.Append(t, c, f, imaptest.Generate(fmt.Sprintf("%s-%d", f, i), n))
			for _, m := range imaptest.Fetch(t, c, f) {
				a.want.messages++
				a.want.bytes += int64(len(m.Body))
			}
		}
		accounts = append(accounts, a)
	}

	// The Maildir of testdata/mail, counted through its own reader.
	maildir := testMaildir(t)
	src, err := mailfile.NewMaildirSource(maildir, nil)
	if err != nil {
		t.Fatal(err)
	}
	box, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	wantMaildir := wantSource{kind: "maildir", snapshots: 1}
	folders, _ := box.Folders(t.Context())
	for _, f := range folders {
		for _, m := range box.Messages(f.Path) {
			wantMaildir.messages++
			wantMaildir.bytes += int64(len(m.Body))
		}
	}

	// A fake tenant: alice holds testdata/mail, bob two messages.
	srv := graphtest.NewServer()
	defer srv.Close()
	tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
	tn.AddApp(fakeClient, fakeSecret)
	alice := tn.AddMailbox("alice@contoso.eu", "Alice")
	if err := loadMaildir(alice, maildir); err != nil {
		t.Fatal(err)
	}
	bob := tn.AddMailbox("bob@contoso.eu", "Bob")
	bob.AddMessage("inbox", graphtest.Message{MIME: []byte("From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n"), IsRead: true})
	bob.AddMessage("inbox", graphtest.Message{MIME: []byte("From: b@example.org\r\nSubject: two\r\n\r\nsecond\r\n")})
	wantGraph := wantSource{kind: "graph", snapshots: 2}
	for _, mb := range []*graphtest.Mailbox{alice, bob} {
		for _, msgs := range mb.Messages() {
			for _, m := range msgs {
				wantGraph.messages++
				wantGraph.bytes += int64(len(m.MIME))
			}
		}
	}
	secretFile := filepath.Join(dir, "contoso.secret")
	writeSecret(t, secretFile, fakeSecret)

	want := map[string]wantSource{
		"anna": accounts[0].want, "bert": accounts[1].want, "mail": wantMaildir, "contoso": wantGraph,
	}
	metricsFile := filepath.Join(dir, "planb.prom")
	config := writeConfig(t, dir, fmt.Sprintf(`
concurrency = 2
state_dir = %q

[repository.main]
path = %q
password_file = %q
check_sample = "100%%"

[[source]]
name = "anna"
kind = "imap"
url = "imap://%s@%s:%d"
password_file = %q
insecure_skip_verify = true
repository = "main"
tags = ["nightly"]

[[source]]
name = "bert"
kind = "imap"
url = "imap://%s@%s:%d"
password_file = %q
insecure_skip_verify = true
connections = 2
repository = "main"

[[source]]
name = "mail"
kind = "maildir"
path = %q
repository = "main"

[[source]]
name = "contoso"
kind = "graph"
tenant = %q
client_id = %q
client_secret_file = %q
mailboxes = ["alice@contoso.eu", "bob@contoso.eu"]
graph_endpoint = %q
authority_host = %q
repository = "main"
`, filepath.Join(dir, "state"), repoDir, repoPW,
		accounts[0].user, d.Host, d.Port, accounts[0].pwFile,
		accounts[1].user, d.Host, d.Port, accounts[1].pwFile,
		maildir, fakeTenant, fakeClient, secretFile, srv.URL(), srv.URL()))
	opts := runOptions{Config: config, MetricsFile: metricsFile, LockWait: time.Second, httpClient: srv.Client()}

	checkRun := func(t *testing.T, rep *runReport, first bool, wantSnaps int) map[string]float64 {
		t.Helper()
		if len(rep.Sources) != len(want) {
			t.Errorf("report lists %d sources, want %d", len(rep.Sources), len(want))
		}
		metrics := readMetrics(t, metricsFile)
		for name, w := range want {
			s := findSource(t, rep, name)
			wantAdded, wantBytesAdded := w.messages, w.bytes
			if !first {
				wantAdded, wantBytesAdded = 0, 0
			}
			if s.Status != statusOK || s.Kind != w.kind || s.Snapshots != w.snapshots || s.Messages != w.messages ||
				s.Bytes != w.bytes || s.MessagesAdded != wantAdded || s.BytesAdded != wantBytesAdded {
				t.Errorf("source %s: status %s (%s), kind %s, %d snapshots, %d messages, %d bytes, %d added, %d bytes added; want ok, %s, %d, %d, %d, %d, %d",
					name, s.Status, s.Error, s.Kind, s.Snapshots, s.Messages, s.Bytes, s.MessagesAdded, s.BytesAdded,
					w.kind, w.snapshots, w.messages, w.bytes, wantAdded, wantBytesAdded)
			}
			for m, v := range map[string]float64{
				"planb_source_messages_added": float64(wantAdded),
				"planb_source_bytes_added":    float64(wantBytesAdded),
				"planb_source_success":        1,
				"planb_source_errors":         0,
			} {
				if got, ok := metrics[m+"/"+name]; !ok || got != v {
					t.Errorf("metric %s{source=%q} = %v (present %v), want %v", m, name, got, ok, v)
				}
			}
			for _, m := range []string{"planb_source_last_success_timestamp_seconds", "planb_source_last_run_timestamp_seconds", "planb_source_duration_seconds"} {
				if _, ok := metrics[m+"/"+name]; !ok {
					t.Errorf("metric %s{source=%q} missing", m, name)
				}
			}
		}
		r := rep.Repositories[0]
		if r.Status != statusOK || r.Snapshots != wantSnaps || r.Check == nil || !r.Check.OK || r.Check.PacksRead != r.Check.Packs {
			t.Errorf("repository: %+v, check %+v; want ok, %d snapshots, every pack read", r, r.Check, wantSnaps)
		}
		if got := metrics["planb_repository_snapshots/main"]; got != float64(wantSnaps) {
			t.Errorf("planb_repository_snapshots = %v, want %d", got, wantSnaps)
		}
		if got := metrics["planb_repository_size_bytes/main"]; got != float64(r.SizeBytes) || got <= 0 {
			t.Errorf("planb_repository_size_bytes = %v, want %d (> 0)", got, r.SizeBytes)
		}
		return metrics
	}

	rep, code, stderr := runJSON(t, opts)
	if code != exitOK || rep.Status != statusOK {
		t.Fatalf("first run: exit %d, status %s; want 0, ok; stderr:\n%s", code, rep.Status, stderr)
	}
	checkRun(t, rep, true, 5)

	rep, code, stderr = runJSON(t, opts)
	if code != exitOK {
		t.Fatalf("second run: exit %d, want 0; stderr:\n%s", code, stderr)
	}
	before := checkRun(t, rep, false, 10)

	// Acceptance 2: bert's password is wrong; the others complete.
	writeSecret(t, accounts[1].pwFile, "wrong")
	rep, code, stderr = runJSON(t, opts)
	if code != exitFailed || rep.Status != statusFailed {
		t.Errorf("run with a wrong password: exit %d, status %s; want 1, failed", code, rep.Status)
	}
	if !strings.Contains(stderr, "planb: error: run: 1 of 4 sources failed") {
		t.Errorf("stderr = %q, want the failed source counted", stderr)
	}
	bert := findSource(t, rep, "bert")
	if bert.Status != statusFailed || !strings.Contains(bert.Error, "authentication failed") || bert.Snapshots != 0 {
		t.Errorf("bert: status %s, error %q, %d snapshots; want failed, authentication failed, 0", bert.Status, bert.Error, bert.Snapshots)
	}
	metrics := readMetrics(t, metricsFile)
	for _, name := range []string{"anna", "mail", "contoso"} {
		if s := findSource(t, rep, name); s.Status != statusOK || s.MessagesAdded != 0 {
			t.Errorf("source %s: %s (%s), %d added; want ok, 0 added", name, s.Status, s.Error, s.MessagesAdded)
		}
		if got := metrics["planb_source_success/"+name]; got != 1 {
			t.Errorf("planb_source_success{source=%q} = %v, want 1", name, got)
		}
	}
	if got := metrics["planb_source_success/bert"]; got != 0 {
		t.Errorf("planb_source_success{source=\"bert\"} = %v, want 0", got)
	}
	if got := metrics["planb_source_errors/bert"]; got != 1 {
		t.Errorf("planb_source_errors{source=\"bert\"} = %v, want 1", got)
	}
	// The last success survives the failed run.
	key := "planb_source_last_success_timestamp_seconds/bert"
	if got, ok := metrics[key]; !ok || got != before[key] || got == 0 {
		t.Errorf("%s = %v (present %v), want %v from the run before", key, got, ok, before[key])
	}
	if got := metrics["planb_repository_snapshots/main"]; got != 14 {
		t.Errorf("planb_repository_snapshots = %v, want 14", got)
	}
}

// TestRunHelperProcess is not a test: TestRunKilledStaleLock starts the
// test binary with it to run planb in a process of its own.
func TestRunHelperProcess(t *testing.T) {
	if os.Getenv("PLANB_RUN_HELPER") != "1" {
		t.Skip("helper process only")
	}
	args := strings.Split(os.Getenv("PLANB_RUN_ARGS"), "\n")
	os.Exit(run(context.Background(), append([]string{"planb"}, args...), os.Stdin, os.Stdout, os.Stderr))
}

// TestRunKilledStaleLock kills a run with SIGKILL while it holds a lock
// (the fake Graph throttles every request, so the backup waits); the next
// run names the stale lock, removes it and completes (acceptance 3).
func TestRunKilledStaleLock(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	srv := graphtest.NewServer()
	defer srv.Close()
	tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
	tn.AddApp(fakeClient, fakeSecret)
	bob := tn.AddMailbox("bob@contoso.eu", "Bob")
	bob.AddMessage("inbox", graphtest.Message{MIME: []byte("From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n")})
	secretFile := filepath.Join(dir, "contoso.secret")
	writeSecret(t, secretFile, fakeSecret)
	cert, err := srv.WriteCertFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	config := writeConfig(t, dir, fmt.Sprintf(`
state_dir = %q
[repository.main]
path = %q
password_file = %q
[[source]]
name = "contoso"
kind = "graph"
tenant = %q
client_id = %q
client_secret_file = %q
mailboxes = ["bob@contoso.eu"]
graph_endpoint = %q
authority_host = %q
repository = "main"
`, filepath.Join(dir, "state"), repoDir, repoPW, fakeTenant, fakeClient, secretFile, srv.URL(), srv.URL()))

	srv.SetThrottle(1, 429, "5")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunHelperProcess$")
	cmd.Env = append(os.Environ(), "PLANB_RUN_HELPER=1", "SSL_CERT_FILE="+cert,
		"PLANB_RUN_ARGS="+strings.Join([]string{"run", "--config", config}, "\n"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	locks := filepath.Join(repoDir, "locks")
	// lockFiles lists the lock files written to the end (not the
	// backend's temporary files).
	lockFiles := func() []string {
		entries, _ := os.ReadDir(locks)
		var names []string
		for _, e := range entries {
			if regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(e.Name()) {
				names = append(names, e.Name())
			}
		}
		return names
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if len(lockFiles()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("no lock file in %s after 30s; planb run said:\n%s", locks, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if st, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !st.Signaled() || st.Signal() != syscall.SIGKILL {
		t.Fatalf("planb run ended with %v, want killed by SIGKILL; output:\n%s", cmd.ProcessState, out.String())
	}
	left := lockFiles()
	if len(left) != 1 {
		t.Fatalf("%d lock files after the kill, want 1", len(left))
	}

	srv.SetThrottle(0, 429, "")
	rep, code, stderr := runJSON(t, runOptions{Config: config, LockWait: time.Second, httpClient: srv.Client()})
	if code != exitOK {
		t.Fatalf("run after the kill: exit %d, want 0; stderr:\n%s", code, stderr)
	}
	r := rep.Repositories[0]
	if len(r.StaleLocks) != 1 || !strings.HasPrefix(r.StaleLocks[0], left[0][:8]+" (") || !strings.Contains(r.StaleLocks[0], fmt.Sprintf("PID %d ", cmd.Process.Pid)) {
		t.Errorf("stale locks removed = %q, want the lock %s of PID %d", r.StaleLocks, left[0][:8], cmd.Process.Pid)
	}
	if s := rep.Sources[0]; s.Status != statusOK || s.MessagesAdded != 1 {
		t.Errorf("source: %s (%s), %d added; want ok, 1", s.Status, s.Error, s.MessagesAdded)
	}
	if names := lockFiles(); len(names) != 0 {
		t.Errorf("lock files %q after the run, want none", names)
	}

}

// TestRunLiveLockWaits: a lock held by a live process makes run wait for
// --lock-wait, then fail that repository's sources.
func TestRunLiveLockWaits(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	config := writeConfig(t, dir, fmt.Sprintf(`
state_dir = %q
[repository.main]
path = %q
password_file = %q
[[source]]
name = "mail"
kind = "maildir"
path = %q
repository = "main"
`, filepath.Join(dir, "state"), repoDir, repoPW, testMaildir(t)))
	r := openTestRepo(t, repoDir, repoPW)
	lock, err := r.Lock(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rep, code, _ := runJSON(t, runOptions{Config: config, LockWait: 600 * time.Millisecond, lockPoll: 100 * time.Millisecond})
	waited := time.Since(start)
	if code != exitFailed || rep.Sources[0].Status != statusFailed || !strings.Contains(rep.Sources[0].Error, "repository is locked") {
		t.Errorf("run against a live lock: exit %d, source %s (%s); want 1, failed, repository is locked", code, rep.Sources[0].Status, rep.Sources[0].Error)
	}
	if waited < 600*time.Millisecond {
		t.Errorf("run gave up after %v, want at least --lock-wait 600ms", waited)
	}
	if len(rep.Repositories[0].StaleLocks) != 0 {
		t.Errorf("stale locks removed = %q, want none (the lock is live)", rep.Repositories[0].StaleLocks)
	}

	// Released while run waits: run goes on.
	go func() {
		time.Sleep(300 * time.Millisecond)
		lock.Unlock()
	}()
	rep, code, stderr := runJSON(t, runOptions{Config: config, LockWait: 10 * time.Second, lockPoll: 100 * time.Millisecond})
	if code != exitOK || rep.Sources[0].Status != statusOK {
		t.Errorf("run after the lock is released: exit %d, source %s; want 0, ok; stderr:\n%s", code, rep.Sources[0].Status, stderr)
	}
}

// testMaildir returns the absolute path of testdata/mail/maildir.
func testMaildir(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "testdata", "mail", "maildir"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openTestRepo(t *testing.T, dir, pwFile string) *repo.Repository {
	t.Helper()
	be, err := local.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := readPasswordFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, pw, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// dayMessage is the message a Maildir gains on day n.
func dayMessage(n int) []byte {
	return []byte(fmt.Sprintf("From: cron@example.org\r\nTo: ops@example.org\r\nSubject: day %d\r\nMessage-ID: <day-%d@example.org>\r\n\r\nReport of day %d.\r\n%s\r\n",
		n, n, n, strings.Repeat(fmt.Sprintf("line %d ", n), n+1)))
}

// writeDays fills a Maildir with the messages of days 0..n.
func writeDays(t *testing.T, dir string, n int, day func(int) time.Time) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i <= n; i++ {
		name := filepath.Join(dir, "cur", fmt.Sprintf("%d.day%02d.test:2,S", day(i).Unix(), i))
		if _, err := os.Stat(name); err == nil {
			continue
		}
		if err := os.WriteFile(name, dayMessage(i), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, day(i), day(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunRetention60Days runs once a day for 60 simulated days (a test
// clock) against a Maildir that gains a message each day; the repository
// then holds exactly the snapshots the policy names, each restoring to
// what the Maildir held that day (acceptance 4).
func TestRunRetention60Days(t *testing.T) {
	const days = 60
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	maildir := filepath.Join(dir, "Maildir")
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)
	day := func(n int) time.Time { return start.AddDate(0, 0, n) }
	config := writeConfig(t, dir, fmt.Sprintf(`
state_dir = %q
[repository.main]
path = %q
password_file = %q
keep = { last = 3, daily = 7, weekly = 4, monthly = 3 }
prune_every = "7d"
check_sample = "20%%"
[[source]]
name = "ops"
kind = "maildir"
path = %q
repository = "main"
`, filepath.Join(dir, "state"), repoDir, repoPW, maildir))

	snapDay := make(map[string]int) // snapshot ID → day
	var pruned []int
	for n := 0; n < days; n++ {
		writeDays(t, maildir, n, day)
		now := day(n)
		rep, code, stderr := runJSON(t, runOptions{Config: config, LockWait: time.Second, now: func() time.Time { return now }})
		if code != exitOK {
			t.Fatalf("day %d: exit %d; stderr:\n%s", n, code, stderr)
		}
		s := rep.Sources[0]
		if s.MessagesAdded != 1 || s.Messages != int64(n+1) {
			t.Fatalf("day %d: %d messages, %d added; want %d, 1", n, s.Messages, s.MessagesAdded, n+1)
		}
		snapDay[s.SnapshotIDs[0]] = n
		if c := rep.Repositories[0].Check; c == nil || !c.OK || c.PacksRead != (c.Packs+4)/5 {
			t.Fatalf("day %d: check %+v, want ok and 20%% of the packs (rounded up) read", n, c)
		}
		if r := rep.Repositories[0]; r.Pruned {
			pruned = append(pruned, n)
		}
	}
	if want := []int{0, 7, 14, 21, 28, 35, 42, 49, 56}; !slices.Equal(pruned, want) {
		t.Errorf("pruned on days %v, want %v (prune_every 7d)", pruned, want)
	}

	// The policy, by hand: the newest 3 days, the newest 7 days, the
	// newest day of each of the 4 newest ISO weeks and of each of the 3
	// newest months.
	keep := make(map[int]bool)
	for n := days - 7; n < days; n++ {
		keep[n] = true // last 3 and daily 7: one snapshot a day
	}
	newestOf := func(bucket func(time.Time) string, count int) {
		seen := map[string]bool{}
		for n := days - 1; n >= 0 && len(seen) < count; n-- {
			b := bucket(day(n))
			if !seen[b] {
				seen[b] = true
				keep[n] = true
			}
		}
	}
	newestOf(func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprint(y, w) }, 4)
	newestOf(func(t time.Time) string { return t.Format("2006-01") }, 3)
	var wantDays []int
	for n := range keep {
		wantDays = append(wantDays, n)
	}
	slices.Sort(wantDays)

	r := openTestRepo(t, repoDir, repoPW)
	snaps, err := r.Snapshots(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var gotDays []int
	for _, s := range snaps {
		n, ok := snapDay[s.ID.String()]
		if !ok {
			t.Fatalf("snapshot %s was not made by a run", s.ID.Short())
		}
		if !s.Time.Equal(day(n)) {
			t.Errorf("snapshot %s: time %v, want the test clock's %v", s.ID.Short(), s.Time, day(n))
		}
		gotDays = append(gotDays, n)
	}
	slices.Sort(gotDays)
	if !slices.Equal(gotDays, wantDays) {
		t.Fatalf("snapshots of days %v remain, want %v", gotDays, wantDays)
	}

	// Each restores to what the Maildir held that day, byte for byte.
	for _, s := range snaps {
		n := snapDay[s.ID.String()]
		out := filepath.Join(dir, "export", strconv.Itoa(n))
		if code, _, stderr := planbCLI(t, "--repo", repoDir, "--password-file", repoPW, "export", s.ID.String(), "--format", "maildir", "--out", out); code != 0 {
			t.Fatalf("export day %d = %d: %s", n, code, stderr)
		}
		held := filepath.Join(dir, "held", strconv.Itoa(n))
		writeDays(t, held, n, day)
		want := collectMaildir(t, held)
		got := collectMaildir(t, out)
		if diffs := archivetest.Compare(want, got, &archivetest.CompareOptions{IgnoreEmptyFolders: true, DateUnit: time.Second}); len(diffs) > 0 {
			t.Errorf("snapshot of day %d differs from the Maildir of that day:\n%s", n, strings.Join(diffs, "\n"))
		}
	}
}

func collectMaildir(t *testing.T, dir string) *archivetest.Mailbox {
	t.Helper()
	src, err := mailfile.NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	box, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	return box
}

// TestRunScripts runs testdata/run: config check and run from the
// command line.
func TestRunScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/run",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			for _, k := range []string{"PLANB_REPOSITORY", "PLANB_PASSWORD", "PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND", "PLANB_CONFIG"} {
				env.Setenv(k, "")
			}
			mail, err := filepath.Abs(filepath.Join("..", "..", "testdata", "mail"))
			if err != nil {
				return err
			}
			env.Setenv("MAIL", mail)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %s", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":    cmdStatus,
			"jsonlines": cmdJSONLines,
		},
	})
}

// TestConfigCheckProbe: --probe opens the repository and signs in to each
// source; an unreachable IMAP server and a wrong Graph secret fail their
// probe with a line each.
func TestConfigCheckProbe(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	srv := graphtest.NewServer()
	defer srv.Close()
	tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
	tn.AddApp(fakeClient, fakeSecret)
	tn.AddMailbox("bob@contoso.eu", "Bob")
	good, bad := filepath.Join(dir, "good.secret"), filepath.Join(dir, "bad.secret")
	writeSecret(t, good, fakeSecret)
	writeSecret(t, bad, "not the secret")
	imapPW := filepath.Join(dir, "imap.pass")
	writeSecret(t, imapPW, "pw")
	// A port nobody listens on.
	config := writeConfig(t, dir, fmt.Sprintf(`
[repository.main]
path = %q
password_file = %q
[[source]]
name = "mail"
kind = "maildir"
path = %q
repository = "main"
[[source]]
name = "down"
kind = "imap"
url = "imaps://someone@127.0.0.1:1"
password_file = %q
repository = "main"
[[source]]
name = "contoso"
kind = "graph"
tenant = %q
client_id = %q
client_secret_file = %q
all_mailboxes = true
graph_endpoint = %q
authority_host = %q
repository = "main"
[[source]]
name = "wrongsecret"
kind = "graph"
tenant = %q
client_id = %q
client_secret_file = %q
mailboxes = ["bob@contoso.eu"]
graph_endpoint = %q
authority_host = %q
repository = "main"
`, repoDir, repoPW, testMaildir(t), imapPW, fakeTenant, fakeClient, good, srv.URL(), srv.URL(),
		fakeTenant, fakeClient, bad, srv.URL(), srv.URL()))
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb}
	g.setup()
	err := runConfigCheck(t.Context(), configCheckOptions{Config: config, Probe: true, Timeout: 10 * time.Second, httpClient: srv.Client()}, g)
	if err == nil || err.Error() != "config check: 2 of 5 probes failed" {
		t.Errorf("config check --probe = %v, want 2 of 5 probes failed", err)
	}
	for _, re := range []string{
		`(?m)^probe repository main: ok$`,
		`(?m)^probe source mail: ok$`,
		`(?m)^probe source contoso: ok$`,
		`(?m)^probe source down: failed: .*127\.0\.0\.1:1.*refused`,
		`(?m)^probe source wrongsecret: failed: .*Invalid client secret`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("config check --probe output lacks %s:\n%s", re, out.String())
		}
	}
}
