package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/graph/graphtest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// typedLines decodes the JSON lines of stdout whose "type" is typ.
func typedLines[T any](t *testing.T, stdout, typ string) []T {
	t.Helper()
	var out []T
	for _, l := range strings.Split(stdout, "\n") {
		if !strings.Contains(l, `"type":"`+typ+`"`) {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, v)
	}
	return out
}

// TestSelectSources: a repository that `planb run` filled from three IMAP
// accounts, a fake Microsoft 365 tenant of three mailboxes and a Maildir
// (issue 15, point 1). `restore latest` without a selection is refused
// with one line; with --source it restores the right mailbox; snapshots
// --source 'graph://*' lists only the tenant; forget --source touches only
// what it selects; `planb sources` shows all seven with their counts.
func TestSelectSources(t *testing.T) {
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	want := map[string]int64{} // messages by source

	var imapTOML strings.Builder
	for i, n := range []int{3, 4, 5} {
		user, pw := d.NewUser(t)
		c := d.Dial(t, user, pw)
		imaptest.Append(t, c, "INBOX", imaptest.Generate(fmt.Sprintf("acct%d", i), n))
		pwFile := filepath.Join(dir, user+".pass")
		writeSecret(t, pwFile, pw)
		fmt.Fprintf(&imapTOML, "[[source]]\nname = %q\nkind = \"imap\"\nurl = \"imap://%s@%s:%d\"\npassword_file = %q\ninsecure_skip_verify = true\nrepository = \"main\"\n\n",
			user, user, d.Host, d.Port, pwFile)
		want[fmt.Sprintf("imap://%s@%s:%d", user, d.Host, d.Port)] = int64(n)
	}
	maildir := testMaildir(t)
	src, err := mailfile.NewMaildirSource(maildir, nil)
	if err != nil {
		t.Fatal(err)
	}
	box, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	want["maildir:"+maildir] = int64(box.Count())

	srv := graphtest.NewServer()
	defer srv.Close()
	tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
	tn.AddApp(fakeClient, fakeSecret)
	for i, addr := range []string{"alice@contoso.eu", "bob@contoso.eu", "carol@contoso.eu"} {
		mb := tn.AddMailbox(addr, addr)
		for k := 0; k <= i; k++ {
			mb.AddMessage("inbox", graphtest.Message{MIME: fmt.Appendf(nil, "From: x@example.org\r\nSubject: %s %d\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <%d.%s>\r\n\r\nbody %d of %s\r\n", addr, k, k, addr, k, addr)})
		}
		want["graph://"+fakeTenant+"/"+addr] = int64(i + 1)
	}
	secretFile := filepath.Join(dir, "contoso.secret")
	writeSecret(t, secretFile, fakeSecret)
	config := writeConfig(t, dir, fmt.Sprintf("state_dir = %q\n\n[repository.main]\npath = %q\npassword_file = %q\n\n%s[[source]]\nname = \"mail\"\nkind = \"maildir\"\npath = %q\nrepository = \"main\"\n\n%s",
		filepath.Join(dir, "state"), repoDir, repoPW, imapTOML.String(), maildir,
		graphSourceTOML("contoso", `all_mailboxes = true`, secretFile, srv.URL(), "main")))
	for range 2 {
		if rep, code, stderr := runJSON(t, runOptions{Config: config, LockWait: time.Second, httpClient: srv.Client()}); code != exitOK {
			t.Fatalf("planb run = %d: %+v\n%s", code, rep, stderr)
		}
	}
	repoFlags := []string{"--repo", repoDir, "--password-file", repoPW}
	planb := func(args ...string) (int, string, string) {
		t.Helper()
		return runPlanb(t, append(slices.Clone(repoFlags), args...)...)
	}

	// planb sources: all seven, with their counts.
	code, stdout, stderr := planb("--json", "sources")
	lines := typedLines[sourceLine](t, stdout, "source")
	if code != exitOK || len(lines) != 7 {
		t.Fatalf("sources = %d, %d sources, want 7:\n%s%s", code, len(lines), stdout, stderr)
	}
	for _, l := range lines {
		if w, ok := want[l.Source]; !ok || l.Messages != w || l.Snapshots != 2 || l.AgeSeconds > 600 {
			t.Errorf("source %s: %d messages, %d snapshots, age %ds; want %d (known: %v), 2, recent", l.Source, l.Messages, l.Snapshots, l.AgeSeconds, w, ok)
		}
	}
	if code, stdout, _ := planb("sources"); code != exitOK || !strings.Contains(stdout, "7 sources") {
		t.Errorf("sources (text) = %d:\n%s", code, stdout)
	}

	// snapshots --source 'graph://*': the tenant only.
	code, stdout, _ = planb("--json", "snapshots", "--source", "graph://*")
	snaps := typedLines[snapshotLine](t, stdout, "snapshot")
	if code != exitOK || len(snaps) != 6 {
		t.Errorf("snapshots --source graph://* = %d, %d snapshots, want 6", code, len(snaps))
	}
	for _, s := range snaps {
		if !strings.HasPrefix(s.Source, "graph://") {
			t.Errorf("snapshots --source graph://* lists %s", s.Source)
		}
	}

	// restore latest without a selection: refused, one line.
	user, pw := d.NewUser(t)
	pwFile := filepath.Join(dir, "target.pass")
	writeSecret(t, pwFile, pw)
	target := fmt.Sprintf("imap://%s@%s:%d", user, d.Host, d.Port)
	code, _, stderr = planb("restore", "latest", "--to", target, "--imap-password-file", pwFile, "--ca-file", d.CertFile)
	if code != exitUsage || !regexp.MustCompile(`(?m)^planb: error: latest: the repository holds snapshots of 7 sources: pick one with --source`).MatchString(stderr) {
		t.Errorf("restore latest = %d, want 2 and the one line:\n%s", code, stderr)
	}
	code, _, stderr = planb("export", "latest", "--source", "graph://*", "--format", "eml", "--out", filepath.Join(dir, "out"))
	if code != exitUsage || !strings.Contains(stderr, "--source graph://* selects snapshots of 3 sources") {
		t.Errorf("export latest --source graph://* = %d, want 2 and the one line:\n%s", code, stderr)
	}
	// With --source: bob's two messages, and nothing else.
	code, stdout, stderr = planb("restore", "latest", "--source", "graph://*/bob@contoso.eu", "--to", target, "--imap-password-file", pwFile, "--ca-file", d.CertFile)
	if code != exitOK || !strings.HasPrefix(stdout, "appended 2 messages") {
		t.Errorf("restore latest --source bob = %d:\n%s%s", code, stdout, stderr)
	}
	got := imaptest.Fetch(t, d.Dial(t, user, pw), "INBOX")
	if len(got) != 2 || !strings.Contains(string(got[0].Body)+string(got[1].Body), "of bob@contoso.eu") {
		t.Errorf("the target holds %d messages, want bob's 2", len(got))
	}
	code, stdout, _ = planb("verify", "latest", "--source", "graph://*/bob@contoso.eu", "--against", target, "--imap-password-file", pwFile, "--ca-file", d.CertFile)
	if code != exitOK || !strings.Contains(stdout, ": 2 exact, 0 rewritten") {
		t.Errorf("verify --source bob = %d:\n%s", code, stdout)
	}

	// forget --source: only the Maildir's older snapshot goes.
	code, stdout, stderr = planb("forget", "--source", "maildir:*", "--keep-last", "1")
	if code != exitOK || !strings.Contains(stdout, "removed 1 snapshots, kept 1") {
		t.Errorf("forget --source maildir:* = %d:\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = planb("--json", "sources")
	for _, l := range typedLines[sourceLine](t, stdout, "source") {
		wantSnaps := 2
		if strings.HasPrefix(l.Source, "maildir:") {
			wantSnaps = 1
		}
		if l.Snapshots != wantSnaps {
			t.Errorf("after forget --source maildir:*: %s has %d snapshots, want %d", l.Source, l.Snapshots, wantSnaps)
		}
	}

	// --plan-template: one line per source, the target made from the
	// template.
	code, stdout, _ = planb("sources", "--source", "graph://*", "--plan-template", "--to", "imaps://{local}@mail.example.eu")
	wantPlan := "source,to,password_file,map,folder\n" +
		"graph://" + fakeTenant + "/alice@contoso.eu,imaps://alice@mail.example.eu,,,\n" +
		"graph://" + fakeTenant + "/bob@contoso.eu,imaps://bob@mail.example.eu,,,\n" +
		"graph://" + fakeTenant + "/carol@contoso.eu,imaps://carol@mail.example.eu,,,\n"
	if code != exitOK || stdout != wantPlan {
		t.Errorf("sources --plan-template = %d:\n%s\nwant:\n%s", code, stdout, wantPlan)
	}
}

// planAccounts is what planSetup made.
type planAccounts struct {
	repoFlags []string
	sources   []string          // the accounts' URLs, as planb sources prints them
	counts    map[string]int64  // messages by source
	pwFiles   map[string]string // password file by source
	server    *imaptest.Server
}

// planSetup fills 20 accounts of a Dovecot with testdata and the corpus,
// spread over them folder by folder, and backs them up with one planb run.
func planSetup(t *testing.T) *planAccounts {
	t.Helper()
	interop, _ := interopRepo(t)
	code, stdout, stderr := runPlanb(t, append(slices.Clone(interop), "--json", "ls", "latest")...)
	if code != exitOK {
		t.Fatalf("ls = %d: %s", code, stderr)
	}
	type folder struct {
		Path     string `json:"path"`
		Messages int64  `json:"messages"`
	}
	folders := typedLines[folder](t, stdout, "folder")
	d := imaptest.Start(t)
	dir := t.TempDir()
	repoDir, repoPW := testRepo(t)
	pa := &planAccounts{server: d, pwFiles: map[string]string{}}
	var toml strings.Builder
	const accounts = 20
	for i := range accounts {
		user, pw := d.NewUser(t)
		pwFile := filepath.Join(dir, user+".pass")
		writeSecret(t, pwFile, pw)
		args := append(slices.Clone(interop), "--quiet", "restore", "latest", "--to", fmt.Sprintf("imap://%s@%s:%d", user, d.Host, d.Port),
			"--imap-password-file", pwFile, "--ca-file", d.CertFile)
		n := 0
		for k, f := range folders {
			if k%accounts == i && f.Messages > 0 {
				args = append(args, "--folder", f.Path)
				n++
			}
		}
		if n == 0 {
			args = append(args, "--folder", "INBOX")
		}
		if code, _, stderr := runPlanb(t, args...); code != exitOK && code != exitPartial {
			t.Fatalf("filling %s = %d: %s", user, code, stderr)
		}
		fmt.Fprintf(&toml, "[[source]]\nname = %q\nkind = \"imap\"\nurl = \"imap://%s@%s:%d\"\npassword_file = %q\nca_file = %q\nrepository = \"main\"\n\n",
			user, user, d.Host, d.Port, pwFile, d.CertFile)
		src := fmt.Sprintf("imap://%s@%s:%d", user, d.Host, d.Port)
		pa.sources = append(pa.sources, src)
		pa.pwFiles[src] = pwFile
	}
	config := writeConfig(t, dir, fmt.Sprintf("concurrency = 4\nstate_dir = %q\n\n[repository.main]\npath = %q\npassword_file = %q\n\n%s",
		filepath.Join(dir, "state"), repoDir, repoPW, toml.String()))
	if rep, code, stderr := runJSON(t, runOptions{Config: config, LockWait: time.Second}); code != exitOK {
		t.Fatalf("planb run = %d: %+v\n%s", code, rep, stderr)
	}
	pa.repoFlags = []string{"--repo", repoDir, "--password-file", repoPW}
	_, stdout, _ = runPlanb(t, append(slices.Clone(pa.repoFlags), "--json", "sources")...)
	pa.counts = map[string]int64{}
	var total int64
	for _, l := range typedLines[sourceLine](t, stdout, "source") {
		pa.counts[l.Source] = l.Messages
		total += l.Messages
	}
	if len(pa.counts) != accounts {
		t.Fatalf("%d sources after the run, want %d", len(pa.counts), accounts)
	}
	t.Logf("%d accounts, %d messages", accounts, total)
	return pa
}

// writePlan writes a plan of sources into accounts of srv, the password of
// line bad (if not -1) wrong; with fromPW (migrate), each line names its
// source's password file too. It returns the plan's path and the targets.
func writePlan(t *testing.T, srv *imaptest.Server, sources []string, bad int, fromPW map[string]string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("source,to,password_file")
	if fromPW != nil {
		b.WriteString(",from_password_file")
	}
	b.WriteString("\n")
	var targets []string
	for i, s := range sources {
		user, pw := srv.NewUser(t)
		if i == bad {
			pw = "wrong"
		}
		pwFile := filepath.Join(dir, user+".pass")
		writeSecret(t, pwFile, pw)
		to := fmt.Sprintf("imap://%s@%s:%d", user, srv.Host, srv.Port)
		fmt.Fprintf(&b, "%s,%s,%s", s, to, pwFile)
		if fromPW != nil {
			fmt.Fprintf(&b, ",%s", fromPW[s])
		}
		b.WriteString("\n")
		targets = append(targets, to)
	}
	plan := filepath.Join(dir, "plan.csv")
	if err := os.WriteFile(plan, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return plan, targets
}

// planSummaryOf runs restore --plan (--json) and returns its exit code and
// summary.
func planSummaryOf(t *testing.T, repoFlags []string, args ...string) (int, planSummary, string) {
	t.Helper()
	code, stdout, stderr := runPlanb(t, append(append(slices.Clone(repoFlags), "--json"), args...)...)
	sums := typedLines[planSummary](t, stdout, "summary")
	if len(sums) != 1 {
		t.Fatalf("%v = %d without a summary:\n%s%s", args, code, stdout, stderr)
	}
	sum := sums[0]
	for _, a := range sum.Accounts {
		if a.Status != planDone && a.Status != planEarlier {
			stderr += fmt.Sprintf("line %d (%s -> %s): %s: %s; %d skipped %v\n", a.Line, a.Source, a.To, a.Status, a.Error, len(a.Skipped), a.Skipped[:min(len(a.Skipped), 2)])
		}
	}
	return code, sum, stderr
}

// TestPlanRestore: 20 Dovecot accounts backed up by one planb run are
// restored with restore --plan into 20 accounts of a second Dovecot,
// --parallel 4 (issue 15, points 2 and 3): every message of every account
// arrives once (--verify: all exact); the line with a wrong password fails
// alone (exit 1, the 19 others done); a run again skips those 19 and does
// the last once fixed. Then the plan into 20 fresh accounts is killed at
// 5 random points; each run again completes, and every account holds
// every message once.
func TestPlanRestore(t *testing.T) {
	t.Setenv("PLANB_STATE_DIR", t.TempDir())
	pa := planSetup(t)
	repoFlags, sources, counts := pa.repoFlags, pa.sources, pa.counts
	target := imaptest.Start(t)
	plan, targets := writePlan(t, target, sources, 7, nil)
	run := []string{"restore", "--plan", plan, "--parallel", "4", "--verify", "--ca-file", target.CertFile}
	code, sum, stderr := planSummaryOf(t, repoFlags, run...)
	if code != exitFailed || sum.Done != 19 || sum.Failed != 1 || sum.Partial != 0 {
		t.Fatalf("restore --plan = %d, %d done, %d failed, %d partial; want 1, 19, 1, 0:\n%s", code, sum.Done, sum.Failed, sum.Partial, stderr)
	}
	for _, a := range sum.Accounts {
		if a.To == targets[7] {
			if a.Status != planFailed || !strings.Contains(a.Error, "authentication failed") {
				t.Errorf("line %d: %s (%s), want failed: authentication failed", a.Line, a.Status, a.Error)
			}
			continue
		}
		if a.Appended != counts[a.Source] || a.Verify["exact"] != counts[a.Source] || a.Verify["missing"]+a.Verify["extra"]+a.Verify["altered"] != 0 {
			t.Errorf("line %d (%s): %d appended, verify %v; want %d, all exact", a.Line, a.Source, a.Appended, a.Verify, counts[a.Source])
		}
	}
	// The wrong password fixed, a run again does that line only.
	user := strings.TrimPrefix(strings.Split(targets[7], "@")[0], "imap://")
	writeSecret(t, filepath.Join(filepath.Dir(plan), user+".pass"), "pw-"+user)
	code, sum, stderr = planSummaryOf(t, repoFlags, run...)
	if code != exitOK || sum.AlreadyDone != 19 || sum.Done != 1 {
		t.Fatalf("restore --plan again = %d, %d already done, %d done; want 0, 19, 1:\n%s", code, sum.AlreadyDone, sum.Done, stderr)
	}
	for _, a := range sum.Accounts {
		if a.Status == planDone && (a.To != targets[7] || a.Verify["exact"] != counts[a.Source]) {
			t.Errorf("again: line %d done with %d exact, want only line 8 with %d", a.Line, a.Verify["exact"], counts[a.Source])
		}
	}

	// Killed at 5 random points, then run to the end.
	target2 := imaptest.Start(t)
	plan2, targets2 := writePlan(t, target2, sources, -1, nil)
	state := os.Getenv("PLANB_STATE_DIR")
	var total int64
	for _, n := range counts {
		total += n
	}
	points := randomPoints(5, int(total))
	t.Logf("kill points (messages journalled): %v", points)
	args := append(slices.Clone(repoFlags), "--quiet", "restore", "--plan", plan2, "--parallel", "4", "--ca-file", target2.CertFile)
	before := journalled(state)
	for _, at := range points {
		killAt(t, state, before+at, args)
	}
	code, sum, stderr = planSummaryOf(t, repoFlags, "restore", "--plan", plan2, "--parallel", "4", "--ca-file", target2.CertFile)
	if code != exitOK || sum.Done+sum.AlreadyDone != 20 {
		t.Fatalf("restore --plan after the kills = %d, %d done, %d already; want 0, 20 in all:\n%s", code, sum.Done, sum.AlreadyDone, stderr)
	}
	for i, s := range sources {
		pwFile := filepath.Join(filepath.Dir(plan2), strings.TrimPrefix(strings.Split(targets2[i], "@")[0], "imap://")+".pass")
		code, res := interopVerify(t, repoFlags, &interopTarget{url: targets2[i], flags: []string{"--ca-file", target2.CertFile, "--imap-password-file", pwFile, "--source", s}})
		if code != exitOK || res.Counts["exact"] != counts[s] || res.Messages != counts[s] {
			t.Errorf("%s after the kills: verify = %d, %v; want 0, %d exact", targets2[i], code, res.Counts, counts[s])
		}
	}
}

// TestPlanMigrate: migrate --plan from the 20 Dovecot accounts into 20
// accounts of the Bridge-shaped server, with --repair and --verify (issue
// 15, point 4): every message of every account arrives once (as Bridge
// keeps it, or repaired), the line with a wrong password fails alone;
// fixed, a run again does that line and no other.
func TestPlanMigrate(t *testing.T) {
	t.Setenv("PLANB_STATE_DIR", t.TempDir())
	pa := planSetup(t)
	bridge := imaptest.SharedOf(t, imaptest.KindBridge)
	plan, targets := writePlan(t, bridge, pa.sources, 3, pa.pwFiles)
	cas := filepath.Join(t.TempDir(), "ca.pem")
	writeSecret(t, cas, readFile(t, pa.server.CertFile)+readFile(t, bridge.CertFile))
	repo := filepath.Join(t.TempDir(), "migrate-repo")
	t.Setenv("PLANB_PASSWORD", "migrate")
	run := []string{"--repo", repo, "migrate", "--plan", plan, "--parallel", "4", "--repair", "--verify", "--ca-file", cas}
	check := func(sum planSummary, only string) {
		t.Helper()
		for _, a := range sum.Accounts {
			if a.Status != planDone || (only != "" && a.To != only) {
				continue
			}
			v := a.Verify
			if v["rewritten"]+v["repaired"]+v["exact"] != pa.counts[a.Source] || v["missing"]+v["extra"]+v["altered"] != 0 ||
				a.Appended != pa.counts[a.Source] || int64(a.Repaired) != v["repaired"] {
				t.Errorf("line %d (%s): %d appended (%d repaired), verify %v; want every one of %d once", a.Line, a.Source, a.Appended, a.Repaired, v, pa.counts[a.Source])
			}
		}
	}
	code, sum, stderr := planSummaryOf(t, nil, run...)
	if code != exitFailed || sum.Done != 19 || sum.Failed != 1 {
		t.Fatalf("migrate --plan = %d, %d done, %d failed, %d partial; want 1, 19, 1, 0:\n%s", code, sum.Done, sum.Failed, sum.Partial, stderr)
	}
	check(sum, "")
	user := strings.TrimPrefix(strings.Split(targets[3], "@")[0], "imap://")
	writeSecret(t, filepath.Join(filepath.Dir(plan), user+".pass"), "pw-"+user)
	code, sum, stderr = planSummaryOf(t, nil, run...)
	if code != exitOK || sum.AlreadyDone != 19 || sum.Done != 1 {
		t.Fatalf("migrate --plan again = %d, %d already done, %d done; want 0, 19, 1:\n%s", code, sum.AlreadyDone, sum.Done, stderr)
	}
	check(sum, targets[3])
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPlanShares: a plan's accounts share the connections and the memory
// budget of one account, unless --connections says otherwise; the frame
// cache grows with the accounts restored at once.
func TestPlanShares(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 1}, // --parallel 4 by default
		{[]string{"--parallel", "2"}, 2},
		{[]string{"--parallel", "1"}, 4},
		{[]string{"--parallel", "16"}, 1},
		{[]string{"--parallel", "16", "--connections", "3"}, 3},
	} {
		got := 0
		app := &cli.App{
			Flags: []cli.Flag{
				&cli.IntFlag{Name: "connections", Value: 4},
				&cli.IntFlag{Name: "parallel", Value: 4},
			},
			Action: func(c *cli.Context) error { got = planConnections(c); return nil },
		}
		if err := app.Run(append([]string{"planb"}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("planConnections(%q) = %d, want %d", tc.args, got, tc.want)
		}
	}
	for parallel, want := range map[int]int64{1: 24 << 20, 2: 12 << 20, 4: 8 << 20, 16: 8 << 20, 0: 24 << 20} {
		if got := planBuffered(parallel); got != want {
			t.Errorf("planBuffered(%d) = %d, want %d", parallel, got, want)
		}
	}
	for parallel, want := range map[int]int{1: 16, 4: 64, 0: 16} {
		if got := planFrames(parallel); got != want {
			t.Errorf("planFrames(%d) = %d, want %d", parallel, got, want)
		}
	}
}

// TestPlanOrder: restore --plan starts the lines without a snapshot
// first, then the largest mailboxes, ties in the plan's order.
func TestPlanOrder(t *testing.T) {
	snap := func(bytes int64) planSnap {
		return planSnap{snap: &repo.Snapshot{Summary: repo.Summary{Bytes: bytes}}}
	}
	snaps := []planSnap{snap(10), snap(500), {err: errors.New("no snapshot")}, snap(10), snap(7000), snap(500)}
	if got, want := planOrder(len(snaps), snaps), []int{2, 4, 1, 5, 0, 3}; !slices.Equal(got, want) {
		t.Errorf("planOrder = %v, want %v", got, want)
	}
	if got, want := planOrder(3, nil), []int{0, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("planOrder without snapshots (migrate) = %v, want %v", got, want)
	}
}

// TestPlanSourceWithoutSnapshot: a line of restore --plan whose source
// has no snapshot fails alone, naming it; the other line is restored.
func TestPlanSourceWithoutSnapshot(t *testing.T) {
	t.Setenv("PLANB_STATE_DIR", t.TempDir())
	repoDir, repoPW := testRepo(t)
	maildir := testMaildir(t)
	if code, _, stderr := planbCLI(t, "--repo", repoDir, "--password-file", repoPW, "backup", "maildir", "--path", maildir); code != 0 {
		t.Fatalf("planb backup maildir = %d: %s", code, stderr)
	}
	d := imaptest.Shared(t)
	plan, _ := writePlan(t, d, []string{"maildir:" + maildir, "maildir:/nowhere"}, -1, nil)
	code, sum, stderr := planSummaryOf(t, []string{"--repo", repoDir, "--password-file", repoPW}, "restore", "--plan", plan, "--ca-file", d.CertFile)
	// testdata's empty message is refused by Dovecot: line 2 is partial.
	if code != exitFailed || sum.Partial != 1 || sum.Failed != 1 {
		t.Fatalf("restore --plan = %d, %d partial, %d failed; want 1, 1, 1:\n%s", code, sum.Partial, sum.Failed, stderr)
	}
	if a := sum.Accounts[1]; a.Status != planFailed || a.Error != "latest: no snapshot matches --source maildir:/nowhere: no such snapshot" {
		t.Errorf("line 3: %s, %q; want failed, no snapshot matches its source", a.Status, a.Error)
	}
	if a := sum.Accounts[0]; a.Status != planPartial || a.Appended == 0 || len(a.Skipped) != 1 {
		t.Errorf("line 2: %s, %d appended, %d skipped; want partial, 1 skipped", a.Status, a.Appended, len(a.Skipped))
	}
}

// fakeSink counts the connections a lender adds to it.
type fakeSink struct {
	added  int
	closed bool
}

func (s *fakeSink) Grow() bool {
	if s.closed {
		return false
	}
	s.added++
	return true
}

// TestLender: the connections of runners with no line left go to the
// running accounts with the most bytes left, up to the most one account
// may have; those of an account that ends, or that a closed sink cannot
// take, are lent again.
func TestLender(t *testing.T) {
	l := newLender(4)
	account := func(total, done int64) (*borrower, *fakeSink) {
		p := newProgress("restore", nil, false, io.Discard)
		p.Start(archive.Counts{Bytes: total})
		p.Add(archive.Counts{Bytes: done})
		b, s := l.join(p, 1), &fakeSink{}
		b.attempt(s)
		return b, s
	}
	big, bigSink := account(1000, 100)    // 900 left
	mid, midSink := account(800, 200)     // 600 left
	small, smallSink := account(100, 100) // done appending: nothing left
	l.give(1)
	if bigSink.added != 1 || midSink.added != 0 {
		t.Fatalf("one connection went to %d (900 left) and %d (600 left), want the first", bigSink.added, midSink.added)
	}
	l.give(4) // 2 more fill the big one (4 at most), then the middle one
	if bigSink.added != 3 || midSink.added != 2 || smallSink.added != 0 {
		t.Fatalf("added %d, %d, %d; want 3, 2, 0", bigSink.added, midSink.added, smallSink.added)
	}
	// The big one ends: its 3 lent connections go to the middle one (1
	// more fills it) and wait for an account that can take them.
	big.leave()
	if midSink.added != 3 || l.free != 2 {
		t.Fatalf("after the end of the big one: middle one added %d, %d free; want 3 and 2", midSink.added, l.free)
	}
	// The middle one retries on a new sink with its own connection: the
	// 2 waiting and the 3 lent to the last attempt go to it (3 of them).
	midSink.closed = true
	again := &fakeSink{}
	mid.attempt(again)
	if again.added != 3 || l.free != 2 {
		t.Fatalf("new attempt: added %d, %d free; want 3 and 2", again.added, l.free)
	}
	// A sink that is closing takes none; the others wait.
	again.closed = true
	l.give(1)
	if l.free != 3 {
		t.Fatalf("%d free, want 3", l.free)
	}
	small.leave()
	mid.leave()
	if len(l.running) != 0 {
		t.Errorf("%d accounts still registered", len(l.running))
	}
}

// TestRaiseMemoryLimit: a plan of 4 accounts at once raises the soft heap
// limit by 3 accounts' share and puts it back; GOMEMLIMIT is left alone,
// and a higher limit is not lowered.
func TestRaiseMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(memoryLimit))
	restore := raiseMemoryLimit(4)
	if got, want := debug.SetMemoryLimit(-1), int64(memoryLimit+3*planMemory); got != want {
		t.Errorf("limit with 4 accounts = %d, want %d", got, want)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != memoryLimit {
		t.Errorf("limit after the plan = %d, want %d", got, memoryLimit)
	}
	for _, tt := range []struct {
		name    string
		limit   int64
		env     string
		workers int
	}{
		{"one account", memoryLimit, "", 1},
		{"a higher limit", 1 << 30, "", 4},
		{"GOMEMLIMIT", memoryLimit, "100MiB", 4},
	} {
		debug.SetMemoryLimit(tt.limit)
		t.Setenv("GOMEMLIMIT", tt.env)
		restore := raiseMemoryLimit(tt.workers)
		if got := debug.SetMemoryLimit(-1); got != tt.limit {
			t.Errorf("%s: limit %d became %d", tt.name, tt.limit, got)
		}
		restore()
	}
}
