package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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

	goimap "github.com/emersion/go-imap/v2"
	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/cmd/planb/internal/engine"
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

%s`, filepath.Join(dir, "state"), repoDir, repoPW,
		accounts[0].user, d.Host, d.Port, accounts[0].pwFile,
		accounts[1].user, d.Host, d.Port, accounts[1].pwFile,
		maildir, graphSourceTOML("contoso", `mailboxes = ["alice@contoso.eu", "bob@contoso.eu"]`, secretFile, srv.URL(), "main")))
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
			if s.Status != engine.StatusOK || s.Kind != w.kind || s.Snapshots != w.snapshots || s.Messages != w.messages ||
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
		if r.Status != engine.StatusOK || r.Snapshots != wantSnaps || r.Check == nil || !r.Check.OK || r.Check.PacksRead != r.Check.Packs {
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
	if code != exitOK || rep.Status != engine.StatusOK {
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
	if code != exitFailed || rep.Status != engine.StatusFailed {
		t.Errorf("run with a wrong password: exit %d, status %s; want 1, failed", code, rep.Status)
	}
	if !strings.Contains(stderr, "planb: error: run: 1 of 4 sources failed") {
		t.Errorf("stderr = %q, want the failed source counted", stderr)
	}
	bert := findSource(t, rep, "bert")
	if bert.Status != engine.StatusFailed || !strings.Contains(bert.Error, "authentication failed") || bert.Snapshots != 0 {
		t.Errorf("bert: status %s, error %q, %d snapshots; want failed, authentication failed, 0", bert.Status, bert.Error, bert.Snapshots)
	}
	metrics := readMetrics(t, metricsFile)
	for _, name := range []string{"anna", "mail", "contoso"} {
		if s := findSource(t, rep, name); s.Status != engine.StatusOK || s.MessagesAdded != 0 {
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

// TestRunHelperProcess is not a test: TestRunKilledStaleLock and
// TestRunSignal start the test binary with it to run planb in a process
// of its own, through main (its signal handling and exit codes).
func TestRunHelperProcess(t *testing.T) {
	if os.Getenv("PLANB_RUN_HELPER") != "1" {
		t.Skip("helper process only")
	}
	os.Args = append([]string{"planb"}, strings.Split(os.Getenv("PLANB_RUN_ARGS"), "\n")...)
	main()
}

// startHelper starts planb args in a process of its own (see
// TestRunHelperProcess) with the fake Graph's certificate trusted.
func startHelper(t *testing.T, cert string, stdout, stderr *bytes.Buffer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunHelperProcess$")
	cmd.Env = append(os.Environ(), "PLANB_RUN_HELPER=1", "SSL_CERT_FILE="+cert,
		"PLANB_RUN_ARGS="+strings.Join(args, "\n"))
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// lockFileName is the name of a lock file written to its end (not a
// backend's temporary file).
var lockFileName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// repoFiles lists a repository's files of one kind (locks, snapshots):
// those written to their end.
func repoFiles(dir, kind string) []string {
	entries, _ := os.ReadDir(filepath.Join(dir, kind))
	var names []string
	for _, e := range entries {
		if lockFileName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// fakeBob starts a fake Graph tenant with planb's app and the mailbox
// bob@contoso.eu holding one message; it returns the server, the mailbox,
// the app's client secret file (in dir) and the server's CA file.
// graphSourceTOML is a config file's [[source]] of kind graph reading the
// fake tenant at url with the client secret in secretFile; mailboxes is
// its mailboxes or all_mailboxes line.
func graphSourceTOML(name, mailboxes, secretFile, url, repository string) string {
	return fmt.Sprintf(`[[source]]
name = %q
kind = "graph"
tenant = %q
client_id = %q
client_secret_file = %q
%s
graph_endpoint = %q
authority_host = %q
repository = %q
`, name, fakeTenant, fakeClient, secretFile, mailboxes, url, url, repository)
}

func fakeBob(t *testing.T, dir string) (*graphtest.Server, *graphtest.Mailbox, string, string) {
	t.Helper()
	srv := graphtest.NewServer()
	t.Cleanup(srv.Close)
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
	return srv, bob, secretFile, cert
}

// TestRunKilledStaleLock kills a run with SIGKILL while it holds a lock
// (the fake Graph throttles every request, so the backup waits); the next
// run names the stale lock, removes it and completes (acceptance 3).
func TestRunKilledStaleLock(t *testing.T) {
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	srv, _, secretFile, cert := fakeBob(t, dir)
	config := writeConfig(t, dir, fmt.Sprintf(`
state_dir = %q
[repository.main]
path = %q
password_file = %q
%s`, filepath.Join(dir, "state"), repoDir, repoPW, graphSourceTOML("contoso", `mailboxes = ["bob@contoso.eu"]`, secretFile, srv.URL(), "main")))

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
	if s := rep.Sources[0]; s.Status != engine.StatusOK || s.MessagesAdded != 1 {
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
	if code != exitFailed || rep.Sources[0].Status != engine.StatusFailed || !strings.Contains(rep.Sources[0].Error, "repository is locked") {
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
	if code != exitOK || rep.Sources[0].Status != engine.StatusOK {
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
	pw, err := readPasswordFile(pwFile, nil)
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
			env.Setenv("PLANB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("PLANB_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
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
%s%s`, repoDir, repoPW, testMaildir(t), imapPW,
		graphSourceTOML("contoso", "all_mailboxes = true", good, srv.URL(), "main"),
		graphSourceTOML("wrongsecret", `mailboxes = ["bob@contoso.eu"]`, bad, srv.URL(), "main")))
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

// TestRunSignal sends SIGTERM to a run of two sources in two repositories
// once the first source has saved its snapshot, while the second (a fake
// Graph, throttled once it has served a few of its 20 new messages) holds
// its repository's lock: the run stops at once, saves a checkpoint of the
// messages the second source stored, releases the lock, writes the report
// (status interrupted, the checkpoint named), the metrics (the second
// source's last success carried over, the checkpoint not counted) and the
// state (the first source's only), and exits 1; the next run completes,
// fetching only what the checkpoint lacks, and replaces the checkpoint.
func TestRunSignal(t *testing.T) {
	dir := t.TempDir()
	mailRepo, mailPW := testRepo(t)
	graphRepo, graphPW := testRepo(t)
	maildir := filepath.Join(dir, "Maildir")
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	day := func(n int) time.Time { return start.AddDate(0, 0, n) }
	writeDays(t, maildir, 1, day)

	srv, bob, secretFile, cert := fakeBob(t, dir)
	stateDir := filepath.Join(dir, "state")
	config := writeConfig(t, dir, fmt.Sprintf(`
concurrency = 1
state_dir = %q
[repository.mailrepo]
path = %q
password_file = %q
keep = { last = 1 }
prune_every = "1d"
check_sample = "100%%"
[repository.graphrepo]
path = %q
password_file = %q
[[source]]
name = "mail"
kind = "maildir"
path = %q
repository = "mailrepo"
%s`, stateDir, mailRepo, mailPW, graphRepo, graphPW, maildir, graphSourceTOML("contoso", `mailboxes = ["bob@contoso.eu"]`, secretFile, srv.URL(), "graphrepo")))
	metricsFile := filepath.Join(dir, "planb.prom")
	stateName := filepath.Join(stateDir, "planb.state.json")
	readState := func() *engine.State {
		t.Helper()
		st, err := engine.LoadState(stateName)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// A first run, whole: both sources have a last success.
	opts := runOptions{Config: config, MetricsFile: metricsFile, LockWait: time.Second, httpClient: srv.Client()}
	if rep, code, stderr := runJSON(t, opts); code != exitOK {
		t.Fatalf("first run: exit %d, status %s; stderr:\n%s", code, rep.Status, stderr)
	}
	before := readState()
	beforeMetrics := readMetrics(t, metricsFile)
	if len(repoFiles(mailRepo, "snapshots")) != 1 || len(repoFiles(graphRepo, "snapshots")) != 1 {
		t.Fatalf("after the first run: %d and %d snapshots, want 1 and 1", len(repoFiles(mailRepo, "snapshots")), len(repoFiles(graphRepo, "snapshots")))
	}

	// The Maildir gains a message, bob 20. Graph takes its time over each
	// body; once it has served 5, it answers every request with 429 and
	// Retry-After 60: the second source waits inside its backup.
	writeDays(t, maildir, 2, day)
	for i := range 20 {
		bob.AddMessage("inbox", graphtest.Message{MIME: fmt.Appendf(nil, "From: b@example.org\r\nSubject: new %d\r\n\r\nnew\r\n", i)})
	}
	srv.ResetStats()
	srv.SetValueDelay(50 * time.Millisecond)
	var stdout, stderr bytes.Buffer
	cmd := startHelper(t, cert, &stdout, &stderr, "--json", "run", "--config", config, "--metrics-file", metricsFile)
	deadline := time.Now().Add(30 * time.Second)
	// Keep the old snapshot's name: keep last 1 would forget it in a
	// whole run, and the interrupted one must not.
	oldSnap := repoFiles(mailRepo, "snapshots")[0]
	oldGraphSnap := repoFiles(graphRepo, "snapshots")[0]
	throttled := false
	for len(repoFiles(mailRepo, "snapshots")) < 2 || len(repoFiles(graphRepo, "locks")) == 0 || !throttled {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d snapshots in the Maildir's repository (want 2), %d locks in Graph's (want 1), %d bodies served (want 5); planb run said:\n%s%s",
				len(repoFiles(mailRepo, "snapshots")), len(repoFiles(graphRepo, "locks")), srv.Stats("bob@contoso.eu").ValueCalls, stdout.String(), stderr.String())
		}
		if !throttled && srv.Stats("bob@contoso.eu").ValueCalls >= 5 {
			srv.SetThrottle(1, 429, "60")
			throttled = true
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	err := cmd.Wait()
	took := time.Since(signalled)
	if took > 10*time.Second {
		t.Errorf("planb run took %v to end after SIGTERM, want a prompt end (the server asked to wait 60s)", took)
	}
	if code := cmd.ProcessState.ExitCode(); code != exitFailed {
		t.Fatalf("planb run after SIGTERM: %v (exit code %d), want exit 1; stderr:\n%s", err, code, stderr.String())
	}
	if want := "planb: error: run interrupted by signal: 1 of 2 sources finished, retention and check skipped\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}

	// The report: one JSON object.
	rep := &runReport{}
	if err := json.Unmarshal(stdout.Bytes(), rep); err != nil {
		t.Fatalf("stdout %q is not one JSON object: %v", stdout.String(), err)
	}
	if rep.Status != engine.StatusInterrupted {
		t.Errorf("run status = %q, want interrupted", rep.Status)
	}
	mail, contoso := findSource(t, rep, "mail"), findSource(t, rep, "contoso")
	if mail.Status != engine.StatusOK || mail.Snapshots != 1 || mail.MessagesAdded != 1 || mail.Messages != 3 {
		t.Errorf("mail: %s (%s), %d snapshots, %d messages, %d added; want ok, 1, 3, 1", mail.Status, mail.Error, mail.Snapshots, mail.Messages, mail.MessagesAdded)
	}
	if contoso.Status != engine.StatusInterrupted || contoso.Error != "interrupted by signal" || contoso.Snapshots != 0 || contoso.MessagesAdded != 0 ||
		len(contoso.CheckpointIDs) != 1 || len(contoso.Mailboxes) != 1 || contoso.Mailboxes[0].Checkpoint != contoso.CheckpointIDs[0] {
		t.Errorf("contoso: %s (%q), %d snapshots, %d added, checkpoints %q, mailboxes %+v; want interrupted (\"interrupted by signal\"), 0, 0, one checkpoint, named by its mailbox",
			contoso.Status, contoso.Error, contoso.Snapshots, contoso.MessagesAdded, contoso.CheckpointIDs, contoso.Mailboxes)
	}
	for _, r := range rep.Repositories {
		if r.Status != engine.StatusInterrupted || r.Error != "interrupted by signal: retention, prune and check skipped" || r.Check != nil || r.Forgot != 0 || r.Pruned {
			t.Errorf("repository %s: %s (%q), check %v, forgot %d, pruned %v; want interrupted, retention, prune and check skipped",
				r.Name, r.Status, r.Error, r.Check, r.Forgot, r.Pruned)
		}
	}

	// The snapshot of the finished source stays, and retention did not
	// forget the old one; the interrupted source saved a checkpoint of
	// the bodies it had stored (some of those served may have waited
	// behind a throttled one).
	if snaps := repoFiles(mailRepo, "snapshots"); len(snaps) != 2 || !slices.Contains(snaps, oldSnap) || !slices.Contains(snaps, mail.SnapshotIDs[0]) {
		t.Errorf("Maildir's repository holds snapshots %q, want the old %s and the new %s", snaps, oldSnap, mail.SnapshotIDs[0])
	}
	if snaps := repoFiles(graphRepo, "snapshots"); len(snaps) != 2 || !slices.Contains(snaps, oldGraphSnap) || len(contoso.CheckpointIDs) != 1 || !slices.Contains(snaps, contoso.CheckpointIDs[0]) {
		t.Fatalf("Graph's repository holds snapshots %q, want the old %s and the checkpoint %q", snaps, oldGraphSnap, contoso.CheckpointIDs)
	}
	ck, err := openTestRepo(t, graphRepo, graphPW).FindSnapshot(t.Context(), contoso.CheckpointIDs[0])
	if err != nil {
		t.Fatal(err)
	}
	served, stored := srv.Stats("bob@contoso.eu").ValueCalls, int(ck.Summary.NewMessages)
	if !ck.Checkpoint || stored < 1 || stored > served || ck.Summary.Messages != 1+int64(stored) {
		t.Errorf("checkpoint: checkpoint=%v, %d messages, %d new; want a checkpoint of the old message and 1 to %d new (served)", ck.Checkpoint, ck.Summary.Messages, stored, served)
	}
	for _, d := range []string{mailRepo, graphRepo} {
		if locks := repoFiles(d, "locks"); len(locks) != 0 {
			t.Errorf("locks %q left in %s, want none", locks, d)
		}
	}

	// The state: the finished source's last run and success are this
	// run's, the interrupted one's are those of the first run.
	after := readState()
	if s := after.Sources["mail"]; !s.LastSuccess.After(before.Sources["mail"].LastSuccess) || !s.LastRun.Equal(s.LastSuccess) {
		t.Errorf("state of mail: %+v, want a last success and run after %v", s, before.Sources["mail"].LastSuccess)
	}
	if s, b := after.Sources["contoso"], before.Sources["contoso"]; !s.LastSuccess.Equal(b.LastSuccess) || !s.LastRun.Equal(b.LastRun) || s.LastSuccess.IsZero() {
		t.Errorf("state of contoso: %+v, want unchanged %+v", s, b)
	}

	// The metrics.
	metrics := readMetrics(t, metricsFile)
	for key, want := range map[string]float64{
		"planb_source_success/mail":                           1,
		"planb_source_messages_added/mail":                    1,
		"planb_source_errors/mail":                            0,
		"planb_source_last_success_timestamp_seconds/mail":    float64(after.Sources["mail"].LastSuccess.Unix()),
		"planb_source_success/contoso":                        0,
		"planb_source_messages_added/contoso":                 0,
		"planb_source_errors/contoso":                         1,
		"planb_source_last_success_timestamp_seconds/contoso": beforeMetrics["planb_source_last_success_timestamp_seconds/contoso"],
	} {
		if got, ok := metrics[key]; !ok || got != want {
			t.Errorf("metric %s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if got := metrics["planb_source_last_run_timestamp_seconds/contoso"]; got < float64(rep.Started.Unix()) {
		t.Errorf("planb_source_last_run_timestamp_seconds{source=\"contoso\"} = %v, want this run's start %d", got, rep.Started.Unix())
	}
	for _, key := range []string{"planb_repository_snapshots/mailrepo", "planb_repository_size_bytes/graphrepo"} {
		if got, ok := metrics[key]; ok {
			t.Errorf("metric %s = %v, want none (not measured after the signal)", key, got)
		}
	}

	// The next run completes, going on from the checkpoint.
	srv.SetThrottle(0, 429, "")
	srv.SetValueDelay(0)
	srv.ResetStats()
	rep, code, errs := runJSON(t, opts)
	if code != exitOK || rep.Status != engine.StatusOK {
		t.Fatalf("run after the interrupted one: exit %d, status %s; stderr:\n%s", code, rep.Status, errs)
	}
	if s := findSource(t, rep, "contoso"); s.MessagesAdded != int64(20-stored) || s.Messages != 21 {
		t.Errorf("contoso after the interrupted run: %d messages, %d added; want 21, %d", s.Messages, s.MessagesAdded, 20-stored)
	}
	if n := srv.Stats("bob@contoso.eu").ValueCalls; n != 20-stored {
		t.Errorf("the run after the interrupted one fetched %d bodies, want %d (those the checkpoint lacks)", n, 20-stored)
	}
	if snaps := repoFiles(graphRepo, "snapshots"); len(snaps) != 2 || slices.Contains(snaps, contoso.CheckpointIDs[0]) {
		t.Errorf("Graph's repository holds snapshots %q after the run, want 2, the checkpoint replaced", snaps)
	}
	for _, r := range rep.Repositories {
		if len(r.StaleLocks) != 0 || r.Check == nil || !r.Check.OK {
			t.Errorf("repository %s after the interrupted run: stale locks %q, check %+v; want none, ok", r.Name, r.StaleLocks, r.Check)
		}
	}
}

// treeState lists the files below dir with their sizes and modification
// times.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%v %d %s", fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dryRunJSON runs planb --json run --dry-run in this process.
func dryRunJSON(t *testing.T, opts runOptions) (*engine.DryRunReport, int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb, JSON: true}
	g.setup()
	code := report(&errb, runDryRun(t.Context(), opts, g))
	rep := &engine.DryRunReport{}
	if err := json.Unmarshal(out.Bytes(), rep); err != nil {
		t.Fatalf("run --dry-run --json: stdout %q is not one JSON object: %v (stderr %s)", out.String(), err, errb.String())
	}
	return rep, code, errb.String()
}

// TestRunDryRun: a dry run of a Maildir and two Dovecot accounts, one
// with a wrong password, counts what a backup would see (LIST and STATUS
// tell independently), fails the wrong password with exit 1, and changes
// nothing: the repository's files and their times stay, no state or
// metrics file appears.
func TestRunDryRun(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	maildir := testMaildir(t)
	if code, _, stderr := planbCLI(t, "--repo", repoDir, "--password-file", repoPW, "backup", "maildir", "--path", maildir); code != 0 {
		t.Fatalf("planb backup maildir = %d: %s", code, stderr)
	}

	// anna: four folders, Junk excluded by the config.
	anna, annaPW := d.NewUser(t)
	c := d.Dial(t, anna, annaPW)
	for f, n := range map[string]int{"INBOX": 3, "Sent": 2, "Archive": 4, "Junk": 1} {
		imaptest.Append(t, c, f, imaptest.Generate(f, n))
	}
	wantFolders, wantMessages := 0, int64(0)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list {
		if l.Mailbox == "Junk" || slices.Contains(l.Attrs, goimap.MailboxAttrNoSelect) {
			continue
		}
		st, err := c.Status(l.Mailbox, &goimap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		wantFolders++
		wantMessages += int64(*st.NumMessages)
	}
	if wantMessages != 9 {
		t.Fatalf("STATUS counts %d messages outside Junk, want 9", wantMessages)
	}
	annaFile := filepath.Join(dir, "anna.pass")
	writeSecret(t, annaFile, annaPW)
	bert, _ := d.NewUser(t)
	bertFile := filepath.Join(dir, "bert.pass")
	writeSecret(t, bertFile, "not bert's password")

	box := collectMaildir(t, maildir)
	mailFolders, _ := box.Folders(t.Context())
	var mailMessages int64
	for _, f := range mailFolders {
		mailMessages += int64(len(box.Messages(f.Path)))
	}

	stateDir, metricsFile := filepath.Join(dir, "state"), filepath.Join(dir, "metrics", "planb.prom")
	const head = `
concurrency = 2
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
[[source]]
name = "anna"
kind = "imap"
url = "imap://%s@%s:%d"
password_file = %q
insecure_skip_verify = true
exclude = ["Junk"]
repository = "main"
`
	config := writeConfig(t, dir, fmt.Sprintf(head+`
[[source]]
name = "bert"
kind = "imap"
url = "imap://%s@%s:%d"
password_file = %q
insecure_skip_verify = true
repository = "main"
`, stateDir, repoDir, repoPW, maildir, anna, d.Host, d.Port, annaFile, bert, d.Host, d.Port, bertFile))

	before := treeState(t, repoDir)
	rep, code, stderr := dryRunJSON(t, runOptions{Config: config, MetricsFile: metricsFile})
	if code != exitFailed || rep.Status != engine.StatusFailed || !rep.DryRun || rep.Type != "run" {
		t.Errorf("dry run: exit %d, type %q, status %s, dry_run %v; want 1, run, failed, true", code, rep.Type, rep.Status, rep.DryRun)
	}
	if want := "planb: error: run --dry-run: 1 of 3 sources failed\n"; stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
	want := map[string]struct {
		status   string
		folders  int
		messages int64
	}{
		"mail": {engine.StatusOK, len(mailFolders), mailMessages},
		"anna": {engine.StatusOK, wantFolders, wantMessages},
		"bert": {engine.StatusFailed, 0, 0},
	}
	if len(rep.Sources) != len(want) {
		t.Errorf("dry run reports %d sources, want %d", len(rep.Sources), len(want))
	}
	for _, s := range rep.Sources {
		w := want[s.Name]
		if s.Status != w.status || s.Folders != w.folders || s.Messages != w.messages {
			t.Errorf("source %s: %s (%s), %d folders, %d messages; want %s, %d, %d", s.Name, s.Status, s.Error, s.Folders, s.Messages, w.status, w.folders, w.messages)
		}
		if s.Name == "bert" && !strings.Contains(s.Error, "authentication failed") {
			t.Errorf("bert: error %q, want authentication failed", s.Error)
		}
	}
	if len(rep.Repositories) != 1 {
		t.Fatalf("dry run reports %d repositories, want 1", len(rep.Repositories))
	}
	if r := rep.Repositories[0]; r.Status != engine.StatusOK || r.Snapshots != 1 || r.Locks != 0 {
		t.Errorf("repository: %s (%s), %d snapshots, %d locks; want ok, 1, 0", r.Status, r.Error, r.Snapshots, r.Locks)
	}
	after := treeState(t, repoDir)
	for p, st := range before {
		if after[p] != st {
			t.Errorf("%s: %q after the dry run, want %q", p, after[p], st)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: written by the dry run", p)
		}
	}
	for _, p := range []string{stateDir, filepath.Dir(metricsFile)} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want not exist", p, err)
		}
	}

	// Without bert, every source and repository is reachable: exit 0.
	config = writeConfig(t, dir, fmt.Sprintf(head, stateDir, repoDir, repoPW, maildir, anna, d.Host, d.Port, annaFile))
	rep, code, stderr = dryRunJSON(t, runOptions{Config: config})
	if code != exitOK || rep.Status != engine.StatusOK {
		t.Errorf("dry run without bert: exit %d, status %s; want 0, ok; stderr:\n%s", code, rep.Status, stderr)
	}
}
