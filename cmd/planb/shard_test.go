package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backend/s3/s3test"
	"codeberg.org/planb/planb/cmd/planb/internal/engine"
	"codeberg.org/planb/planb/graph/graphtest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestRunShardUsage: a shard out of range is a usage error.
func TestRunShardUsage(t *testing.T) {
	if code, _, stderr := planbCLI(t, "run", "--config", "planb.toml", "--shard", "3/3"); code != 2 || !strings.Contains(stderr, "0 <= K < N") {
		t.Errorf("planb run --shard 3/3 = %d, %q; want a usage error (2)", code, stderr)
	}
}

// runReportOf runs planb run --json in this process, from any goroutine.
func runReportOf(ctx context.Context, opts runOptions) (*runReport, error) {
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb, JSON: true}
	g.setup()
	runErr := runRun(ctx, opts, g)
	rep := &runReport{}
	if err := json.Unmarshal(out.Bytes(), rep); err != nil {
		return nil, fmt.Errorf("run --json: stdout %q: %v (run: %v; stderr %s)", out.String(), err, runErr, errb.String())
	}
	if runErr != nil {
		var why []string
		for _, r := range rep.Repositories {
			why = append(why, r.Name+": "+r.Error)
		}
		for _, s := range rep.Sources {
			if s.Error != "" {
				why = append(why, s.Name+": "+s.Error)
			}
		}
		return rep, fmt.Errorf("run: %v (%s; stderr %s)", runErr, strings.Join(why, "; "), errb.String())
	}
	return rep, nil
}

// sourceSummary is what a report says of a source, without what differs
// from run to run (times, snapshot IDs).
type sourceSummary struct {
	Kind, Status                               string
	Snapshots                                  int
	Messages, Bytes, MessagesAdded, BytesAdded int64
	Mailboxes                                  map[string]engine.MailboxReport
}

// summarize merges reports: the same source in several (a Graph source
// in every shard) adds up, its mailboxes joined.
func summarize(t *testing.T, reps ...*runReport) map[string]sourceSummary {
	t.Helper()
	out := make(map[string]sourceSummary)
	for _, rep := range reps {
		for _, s := range rep.Sources {
			sum, ok := out[s.Name]
			if !ok {
				sum = sourceSummary{Kind: s.Kind, Status: s.Status, Mailboxes: map[string]engine.MailboxReport{}}
			}
			if s.Status != engine.StatusOK {
				sum.Status = s.Status
			}
			sum.Snapshots += s.Snapshots
			sum.Messages += s.Messages
			sum.Bytes += s.Bytes
			sum.MessagesAdded += s.MessagesAdded
			sum.BytesAdded += s.BytesAdded
			for _, m := range s.Mailboxes {
				if _, dup := sum.Mailboxes[m.Mailbox]; dup {
					t.Errorf("mailbox %s of %s backed up by two shards", m.Mailbox, s.Name)
				}
				m.Snapshot = ""
				sum.Mailboxes[m.Mailbox] = m
			}
			out[s.Name] = sum
		}
	}
	return out
}

// TestRunShardsS3 (acceptance 3): a config of 12 Dovecot accounts and a
// fake Graph tenant of 6 mailboxes, run as 3 shards at the same time into
// one S3 (versitygw) repository: every account and mailbox is backed up
// exactly once, check --read-data is clean, and the three reports add up
// to the report of a run without shards (into a repository of its own).
func TestRunShardsS3(t *testing.T) {
	d := imaptest.Start(t)
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "")
	dir := t.TempDir()

	var imapTOML strings.Builder
	for i := range 12 {
		user, pw := d.NewUser(t)
		c := d.Dial(t, user, pw)
		imaptest.Append(t, c, "INBOX", imaptest.Generate(fmt.Sprintf("inbox-%d", i), 2+i%4))
		if i%3 == 0 {
			imaptest.Append(t, c, "Sent", imaptest.Generate(fmt.Sprintf("sent-%d", i), 2))
		}
		pwFile := filepath.Join(dir, user+".pass")
		writeSecret(t, pwFile, pw)
		fmt.Fprintf(&imapTOML, "[[source]]\nname = \"acct%02d\"\nkind = \"imap\"\nurl = \"imap://%s@%s:%d\"\npassword_file = %q\ninsecure_skip_verify = true\nconnections = 1\nrepository = \"main\"\n\n",
			i, user, d.Host, d.Port, pwFile)
	}

	gsrv := graphtest.NewServer()
	defer gsrv.Close()
	tn := gsrv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
	tn.AddApp(fakeClient, fakeSecret)
	var addrs []string
	for i := range 6 {
		addr := fmt.Sprintf("user%d@contoso.eu", i)
		mb := tn.AddMailbox(addr, fmt.Sprintf("User %d", i))
		for j := range 1 + i%3 {
			mb.AddMessage("inbox", graphtest.Message{MIME: fmt.Appendf(nil, "From: a@example.org\r\nSubject: %s %d\r\n\r\nbody %d\r\n", addr, j, j), IsRead: j%2 == 0})
		}
		addrs = append(addrs, fmt.Sprintf("%q", addr))
	}
	secretFile := filepath.Join(dir, "contoso.secret")
	writeSecret(t, secretFile, fakeSecret)
	repoPW := filepath.Join(dir, "repo.pass")
	writeSecret(t, repoPW, "repo password")

	config := func(name, prefix string) string {
		url := "s3:http://" + srv.Host + "/" + srv.Bucket + "/" + prefix
		if code, _, stderr := planbCLI(t, "--repo", url, "--s3-insecure-plaintext", "--password-file", repoPW, "init"); code != 0 {
			t.Fatalf("planb init %s = %d: %s", url, code, stderr)
		}
		sub := filepath.Join(dir, prefix)
		if err := os.Mkdir(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		return writeConfig(t, sub, fmt.Sprintf(`
concurrency = 3
state_dir = %q

[repository.main]
path = %q
password_file = %q
s3_insecure_plaintext = true

%s
%s`, filepath.Join(dir, "state-"+prefix), url, repoPW, imapTOML.String(),
			graphSourceTOML("contoso", "mailboxes = ["+strings.Join(addrs, ", ")+"]", secretFile, gsrv.URL(), "main")))
	}
	now := func() time.Time { return time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC) }

	whole, err := runReportOf(t.Context(), runOptions{Config: config("whole.toml", "whole"), LockWait: time.Minute, httpClient: gsrv.Client(), now: now})
	if err != nil {
		t.Fatalf("unsharded run: %v", err)
	}

	shardedConfig := config("sharded.toml", "sharded")
	reps := make([]*runReport, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	ctx := t.Context()
	for k := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[k], errs[k] = runReportOf(ctx, runOptions{Config: shardedConfig, LockWait: time.Minute, httpClient: gsrv.Client(),
				now: now, Shard: engine.Shard{K: k, N: 3}})
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			t.Fatalf("shard %d/3: %v", k, err)
		}
	}

	// The union of the shards' reports is the unsharded report.
	want, got := summarize(t, whole), summarize(t, reps...)
	if len(want) != 13 || len(want["contoso"].Mailboxes) != 6 {
		t.Fatalf("unsharded run reports %d sources, %d mailboxes; want 13, 6", len(want), len(want["contoso"].Mailboxes))
	}
	for name, w := range want {
		if w.Status != engine.StatusOK || w.Snapshots == 0 || w.Messages == 0 {
			t.Errorf("unsharded %s: %+v, want ok with messages", name, w)
		}
	}
	if !maps.EqualFunc(want, got, func(a, b sourceSummary) bool {
		return a.Kind == b.Kind && a.Status == b.Status && a.Snapshots == b.Snapshots && a.Messages == b.Messages &&
			a.Bytes == b.Bytes && a.MessagesAdded == b.MessagesAdded && a.BytesAdded == b.BytesAdded && maps.Equal(a.Mailboxes, b.Mailboxes)
	}) {
		t.Errorf("union of the shards' reports:\n%+v\nwant the unsharded report:\n%+v", got, want)
	}
	for k, rep := range reps {
		n := 0
		for _, s := range rep.Sources {
			if s.Kind == "imap" {
				n++
			}
		}
		t.Logf("shard %d/3: %d IMAP accounts, %d mailboxes", k, n, len(summarize(t, rep)["contoso"].Mailboxes))
		if n == 0 || n == 12 {
			t.Errorf("shard %d/3 backed up %d of 12 accounts: not spread", k, n)
		}
	}

	// Independently of the reports: one snapshot per account and mailbox.
	url := "s3:http://" + srv.Host + "/" + srv.Bucket + "/sharded"
	code, stdout, stderr := planbCLI(t, "--repo", url, "--s3-insecure-plaintext", "--password-file", repoPW, "--json", "snapshots")
	if code != 0 {
		t.Fatalf("planb snapshots = %d: %s", code, stderr)
	}
	perSource := make(map[string]int)
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var l snapshotLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if !l.Checkpoint {
			perSource[l.Source]++
		}
	}
	if len(perSource) != 18 {
		t.Errorf("snapshots of %d sources, want 18 (12 accounts, 6 mailboxes): %v", len(perSource), perSource)
	}
	for src, n := range perSource {
		if n != 1 {
			t.Errorf("%d snapshots of %s, want exactly 1", n, src)
		}
	}
	if code, stdout, stderr := planbCLI(t, "--repo", url, "--s3-insecure-plaintext", "--password-file", repoPW, "check", "--read-data"); code != 0 {
		t.Errorf("planb check --read-data = %d:\n%s\n%s", code, stdout, stderr)
	}
}
