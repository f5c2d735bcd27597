package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/mailfile"
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
