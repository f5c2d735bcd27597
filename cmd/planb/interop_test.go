package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/imap/imaptest"
)

// The interoperability tests of restore, verify and migrate against the
// servers that are not Dovecot: the strict one (Cyrus IMAP) and the
// rewriting one (a Proton Mail Bridge-shaped server on gluon), with the
// sample mail of testdata and, when ../shared/corpus is there, the whole
// corpus, from a Maildir with LF line ends.

// interopMaildir builds a Maildir++ tree of testdata's sample mail and of
// the corpus (one folder per corpus directory, every file a message as it
// is stored, LF line ends), and returns its path and message count.
func interopMaildir(t *testing.T) (string, int) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "Maildir")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(root, "testdata", "mail", "maildir"))); err != nil {
		t.Fatal(err)
	}
	corpus := filepath.Join(root, "..", "shared", "corpus")
	if _, err := os.Stat(corpus); err == nil {
		i := 0
		err := filepath.WalkDir(corpus, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".txt") {
				return err
			}
			rel, _ := filepath.Rel(corpus, filepath.Dir(p))
			folder := filepath.Join(dir, ".Corpus."+strings.ReplaceAll(filepath.ToSlash(rel), "/", "."), "cur")
			if err := os.MkdirAll(folder, 0o755); err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			i++
			flags := []string{"S", "", "FS", "RS"}[i%4]
			name := filepath.Join(folder, fmt.Sprintf("%d.M%dP1Q1.corpus:2,%s", 1700000000+i*3600, i, flags))
			if err := os.WriteFile(name, b, 0o644); err != nil {
				return err
			}
			mt := time.Unix(int64(1700000000+i*3600), 0)
			return os.Chtimes(name, mt, mt)
		})
		if err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("no corpus at %s: testdata only", corpus)
	}
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && (filepath.Base(filepath.Dir(p)) == "cur" || filepath.Base(filepath.Dir(p)) == "new") {
			n++
		}
		return nil
	})
	return dir, n
}

// interopRepo backs up a fresh interopMaildir into a new repository and
// returns the flags that open it and the message count.
func interopRepo(t *testing.T) (repoFlags []string, n int) {
	t.Helper()
	maildir, n := interopMaildir(t)
	dir := filepath.Join(t.TempDir(), "repo")
	pwFile := filepath.Join(t.TempDir(), "repo-pw")
	if err := os.WriteFile(pwFile, []byte("interop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repoFlags = []string{"--repo", dir, "--password-file", pwFile}
	if code, _, stderr := runPlanb(t, append(repoFlags, "init")...); code != 0 {
		t.Fatalf("init = %d: %s", code, stderr)
	}
	if code, _, stderr := runPlanb(t, append(repoFlags, "--quiet", "backup", "maildir", "--path", maildir)...); code != 0 {
		t.Fatalf("backup maildir = %d: %s", code, stderr)
	}
	return repoFlags, n
}

// interopTarget is an account on a test server.
type interopTarget struct {
	srv            *imaptest.Server
	user, password string
	url            string   // imap:// with STARTTLS
	flags          []string // --ca-file, the password file
}

func newInteropTarget(t *testing.T, srv *imaptest.Server) *interopTarget {
	t.Helper()
	user, pw := srv.NewUser(t)
	pwFile := filepath.Join(t.TempDir(), "pw-"+user)
	if err := os.WriteFile(pwFile, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &interopTarget{
		srv: srv, user: user, password: pw,
		url:   fmt.Sprintf("imap://%s@%s:%d", user, srv.Host, srv.Port),
		flags: []string{"--ca-file", srv.CertFile, "--imap-password-file", pwFile},
	}
}

var (
	appendedRE = regexp.MustCompile(`(?m)^appended (\d+) messages .*, (\d+) already there`)
	repairedRE = regexp.MustCompile(`(?m)^(\d+) of them delivered as repaired copies`)
	hintRE     = regexp.MustCompile(`planb: hint: (\d+) messages? (was|were) refused for (its|their) form \(.+\): --repair would deliver`)
)

// restoreRun is what a restore printed: its exit code, the counts of its
// summary (appended, already there, repaired) and how many messages it
// named on stderr as skipped.
type restoreRun struct {
	code                               int
	appended, present, repaired, named int
	stdout, stderr                     string
}

// interopRestore restores the latest snapshot into tg.
func interopRestore(t *testing.T, repoFlags []string, tg *interopTarget, extra ...string) restoreRun {
	t.Helper()
	args := append(slices.Clone(repoFlags), "restore", "latest", "--to", tg.url)
	args = append(append(args, tg.flags...), extra...)
	var r restoreRun
	r.code, r.stdout, r.stderr = runPlanb(t, args...)
	m := appendedRE.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("restore %v = %d, no summary:\n%s%s", extra, r.code, r.stdout, r.stderr)
	}
	r.appended, _ = strconv.Atoi(m[1])
	r.present, _ = strconv.Atoi(m[2])
	if m := repairedRE.FindStringSubmatch(r.stdout); m != nil {
		r.repaired, _ = strconv.Atoi(m[1])
	}
	r.named = strings.Count(r.stderr, "\nskipped ") + boolInt(strings.HasPrefix(r.stderr, "skipped "))
	return r
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// interopVerify runs verify --json and returns its exit code and summary.
func interopVerify(t *testing.T, repoFlags []string, tg *interopTarget) (int, verifyResult) {
	t.Helper()
	args := append(slices.Clone(repoFlags), "--json", "verify", "latest", "--against", tg.url)
	code, stdout, stderr := runPlanb(t, append(args, tg.flags...)...)
	var res verifyResult
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, `"type":"summary"`) {
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				t.Fatal(err)
			}
		}
	}
	if res.Type != "summary" {
		t.Fatalf("verify = %d without a summary:\n%s%s", code, stdout, stderr)
	}
	return code, res
}

// TestInteropRestore: a Maildir of testdata and the corpus restored into
// the strict server and into the Bridge-shaped one (issue 14, points 1, 2
// and 5): every message the server takes arrives (verify finds it exact,
// or rewritten as the server rewrites), the others are named with exit 3
// and a last line saying how many --repair delivers; a re-run appends
// nothing; --repair delivers every one, exit 0; a re-run appends nothing;
// verify exits 0 with its counts per class, and catches an expunged
// message, an extra one and a changed body.
func TestInteropRestore(t *testing.T) {
	repoFlags, n := interopRepo(t)
	for _, kind := range []imaptest.Kind{imaptest.KindCyrus, imaptest.KindBridge} {
		t.Run(kind.Name, func(t *testing.T) {
			t.Setenv("PLANB_STATE_DIR", t.TempDir())
			srv := imaptest.SharedOf(t, kind)
			tg := newInteropTarget(t, srv)

			first := interopRestore(t, repoFlags, tg)
			t.Logf("first restore: %d appended, %d named (%d messages)", first.appended, first.named, n)
			m := hintRE.FindStringSubmatch(first.stderr)
			lines := strings.Split(strings.TrimSpace(first.stderr), "\n")
			switch {
			case first.code != exitPartial:
				t.Errorf("first restore exit %d, want 3:\n%s", first.code, first.stderr)
			case first.named == 0 || first.appended+first.named != n:
				t.Errorf("first restore: %d appended + %d named, want %d in all, some named", first.appended, first.named, n)
			case m == nil || !strings.HasPrefix(lines[len(lines)-1], "planb: hint:"):
				t.Errorf("first restore: the last line is not the --repair hint: %q", lines[len(lines)-1])
			case m[1] != strconv.Itoa(first.named):
				t.Errorf("first restore: the hint counts %s messages, %d were named", m[1], first.named)
			}
			code, res := interopVerify(t, repoFlags, tg)
			if code != exitFailed || res.Counts["missing"] != int64(first.named) || res.Counts["extra"] != 0 || res.Counts["altered"] != 0 ||
				res.Counts["exact"]+res.Counts["rewritten"] != int64(first.appended) {
				t.Errorf("verify after the first restore = %d, %v; want exit 1, %d missing, the %d appended exact or rewritten", code, res.Counts, first.named, first.appended)
			}
			if kind == imaptest.KindCyrus {
				// The strict server keeps the bytes: every one exact.
				if res.Counts["rewritten"] != 0 {
					t.Errorf("Cyrus: %d messages rewritten, want none", res.Counts["rewritten"])
				}
				checkFlagsDates(t, repoFlags, tg, srv)
			} else {
				checkBridgeLayout(t, tg)
			}

			if again := interopRestore(t, repoFlags, tg); again.code != exitPartial || again.appended != 0 || again.present != first.appended {
				t.Errorf("second restore = %d, %d appended, %d there; want 3, 0, %d", again.code, again.appended, again.present, first.appended)
			}
			rep := interopRestore(t, repoFlags, tg, "--repair")
			if rep.code != exitOK || rep.appended != first.named || rep.repaired != first.named || rep.named != 0 {
				t.Errorf("restore --repair = %d, %d appended (%d repaired), %d named; want 0, %d, %d, 0:\n%s", rep.code, rep.appended, rep.repaired, rep.named, first.named, first.named, rep.stderr)
			}
			if again := interopRestore(t, repoFlags, tg, "--repair"); again.code != exitOK || again.appended != 0 || again.present != n {
				t.Errorf("restore --repair again = %d, %d appended, %d there; want 0, 0, %d", again.code, again.appended, again.present, n)
			}
			args := append(slices.Clone(repoFlags), "verify", "latest", "--against", tg.url)
			code, stdout, stderr := runPlanb(t, append(args, tg.flags...)...)
			want := regexp.MustCompile(fmt.Sprintf(`(?m)^verified %d messages of snapshot \w+ against .*: (\d+) exact, (\d+) rewritten, %d repaired, 0 missing, 0 extra, 0 altered$`, n, first.named))
			if code != exitOK || !want.MatchString(stdout) {
				t.Errorf("verify = %d, want 0 and %s:\n%s%s", code, want, stdout, stderr)
			}
			if kind == imaptest.KindCyrus {
				checkFlagsDates(t, repoFlags, tg, srv)
			}
			detectChanges(t, repoFlags, tg)
		})
	}
}

// checkBridgeLayout checks that user folders landed under Folders/ with
// their nesting, special-use folders in Bridge's own, and nothing in All
// Mail or Starred but what Bridge shows there itself.
func checkBridgeLayout(t *testing.T, tg *interopTarget) {
	t.Helper()
	c := tg.srv.Dial(t, tg.user, tg.password)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range list {
		have[l.Mailbox] = true
	}
	for _, mb := range []string{"Folders/Projects/2026/Q1", "Folders/Entwürfe", "Folders/Corpus/lists-linux-man", "Sent", "Drafts", "Trash", "Spam", "Archive", "INBOX"} {
		if !have[mb] {
			t.Errorf("Bridge: no mailbox %q after the restore (have %v)", mb, have)
		}
	}
	for mb := range have {
		top, _, _ := strings.Cut(mb, "/")
		switch top {
		case "INBOX", "Sent", "Drafts", "Trash", "Spam", "Archive", "All Mail", "Starred", "Folders", "Labels", "Recovered Messages":
		default:
			t.Errorf("Bridge: a user folder at the top level: %q", mb)
		}
	}
	for mb, want := range map[string]string{"Sent": "Sent", "Trash": "Trash", "Spam": "Junk"} {
		st, err := c.Status(mb, &goimap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages == 0 {
			t.Errorf("Bridge: %s (the source's %s) holds no message: %v", mb, want, err)
		}
	}
}

// checkFlagsDates compares, folder by folder, the flags and internal dates
// of the snapshot's messages with those on the server, as multisets.
func checkFlagsDates(t *testing.T, repoFlags []string, tg *interopTarget, srv *imaptest.Server) {
	t.Helper()
	r := openRepo(t, repoFlags)
	snaps, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) == 0 {
		t.Fatalf("snapshots: %v", err)
	}
	snap := snaps[len(snaps)-1]
	c := srv.Dial(t, tg.user, tg.password)
	for i, f := range snap.Folders {
		var want []string
		err := r.Entries(t.Context(), snap, i, func(e repo.Entry) error {
			want = append(want, flagsDate(e.Flags, e.Date))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Cyrus's separator is ".": a "." in a folder's name becomes "_".
		segs := strings.Split(f.Path, "/")
		for k := range segs {
			segs[k] = strings.ReplaceAll(segs[k], ".", "_")
		}
		mb := strings.Join(segs, ".")
		got := serverFlagsDates(t, c, mb)
		if got == nil {
			if len(want) > 0 {
				t.Errorf("no mailbox %q for the folder %q of %d messages", mb, f.Path, len(want))
			}
			continue
		}
		slices.Sort(want)
		slices.Sort(got)
		// Without --repair the refused messages are not there: compare
		// what is.
		if len(got) < len(want) {
			for _, g := range got {
				if i := slices.Index(want, g); i >= 0 {
					want = slices.Delete(want, i, i+1)
				} else {
					t.Errorf("%s: a message with %s, not in the snapshot", mb, g)
				}
			}
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: flags and dates %q, want %q", mb, got, want)
		}
	}
}

func flagsDate(flags []string, date time.Time) string {
	var fs []string
	for _, f := range flags {
		if !strings.EqualFold(f, `\Recent`) {
			fs = append(fs, strings.ToLower(f))
		}
	}
	slices.Sort(fs)
	return strings.Join(fs, " ") + "|" + strconv.FormatInt(date.Unix(), 10)
}

// serverFlagsDates returns the flags and internal dates of every message
// of mailbox (nil when it does not exist).
func serverFlagsDates(t *testing.T, c *imapclient.Client, mailbox string) []string {
	t.Helper()
	sel, err := c.Select(mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil
	}
	if sel.NumMessages == 0 {
		return []string{}
	}
	msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{Flags: true, InternalDate: true}).Collect()
	if err != nil {
		t.Fatalf("fetch %s: %v", mailbox, err)
	}
	out := []string{}
	for _, m := range msgs {
		fs := make([]string, len(m.Flags))
		for i, f := range m.Flags {
			fs[i] = string(f)
		}
		out = append(out, flagsDate(fs, m.InternalDate))
	}
	return out
}

// openRepo opens the repository of repoFlags.
func openRepo(t *testing.T, repoFlags []string) *repo.Repository {
	t.Helper()
	be, err := local.Open(t.Context(), repoFlags[1])
	if err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(repoFlags[3])
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, strings.TrimSpace(string(pw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// detectChanges expunges a message of a folder, appends a message that is
// not in the snapshot and replaces one by a copy with another body; verify
// then names one missing, one extra and one altered, exit 1.
func detectChanges(t *testing.T, repoFlags []string, tg *interopTarget) {
	t.Helper()
	c := tg.srv.Dial(t, tg.user, tg.password)
	mb := "Corpus.lists-linux-man"
	if tg.srv.Kind == imaptest.KindBridge {
		mb = "Folders/Corpus/lists-linux-man"
	}
	if _, err := c.Select(mb, nil).Wait(); err != nil {
		mb = "INBOX" // no corpus: testdata's INBOX
		if _, err := c.Select(mb, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	// Messages with a Message-ID and a single text part, so that the
	// change is in what a reader sees (a MIME preamble is not).
	found, err := c.UIDSearch(&goimap.SearchCriteria{
		Header: []goimap.SearchCriteriaHeaderField{{Key: "Message-Id", Value: "@"}},
		Not:    []goimap.SearchCriteria{{Header: []goimap.SearchCriteriaHeaderField{{Key: "Content-Type", Value: "multipart"}}}},
	}, nil).Wait()
	if err != nil || len(found.AllUIDs()) < 3 {
		t.Fatalf("search %s: %v, %v", mb, found, err)
	}
	uids := found.AllUIDs()
	section := &goimap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(goimap.UIDSetNum(uids[1]), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(bufs) != 1 {
		t.Fatalf("fetch %s uid %d: %v", mb, uids[1], err)
	}
	// Without the X-Pm-Gluon-Id that gluon adds: with it, gluon takes the
	// copy for the message it names.
	body := regexp.MustCompile(`(?mi)^X-Pm-[^\r\n]*\r\n`).ReplaceAll(bufs[0].FindBodySection(section), nil)
	i := strings.Index(string(body), "\r\n\r\n")
	if i < 0 {
		t.Fatalf("message without a body: %q", body)
	}
	altered := append(append([]byte{}, body[:i+4]...), append([]byte("TAMPERED "), body[i+4:]...)...)
	imaptest.Expunge(t, c, mb, []goimap.UID{uids[0], uids[1]})
	extra := []byte("Date: Mon, 1 Jun 2026 10:00:00 +0200\r\nFrom: Extra <extra@example.org>\r\nTo: x@example.org\r\nSubject: extra\r\nMessage-ID: <extra@example.org>\r\n\r\nnot in the snapshot\r\n")
	for _, b := range [][]byte{altered, extra} {
		if err := imaptest.TryAppend(c, mb, imaptest.Message{Body: b, Date: time.Now()}); err != nil {
			t.Fatalf("append to %s: %v", mb, err)
		}
	}
	// Bridge applies changes a moment after the command (as its event loop
	// does): wait until the folder shows them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, res := interopVerify(t, repoFlags, tg)
		ok := code == exitFailed && res.Counts["missing"] == 1 && res.Counts["extra"] == 1 && res.Counts["altered"] == 1
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("verify after the changes = %d, %v; want exit 1, one missing, one extra, one altered: %+v", code, res.Counts, res.Differences)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestInteropKill: a restore into each server (with --repair, so that
// every message goes) is killed with SIGKILL at 10 random points; after
// the re-run every message is there exactly once, as verify finds it
// (issue 14, point 3).
func TestInteropKill(t *testing.T) {
	repoFlags, n := interopRepo(t)
	for _, kind := range []imaptest.Kind{imaptest.KindCyrus, imaptest.KindBridge} {
		t.Run(kind.Name, func(t *testing.T) {
			state := t.TempDir()
			t.Setenv("PLANB_STATE_DIR", state)
			srv := imaptest.SharedOf(t, kind)
			tg := newInteropTarget(t, srv)
			args := append(slices.Clone(repoFlags), "--quiet", "restore", "latest", "--to", tg.url, "--repair")
			args = append(args, tg.flags...)
			points := randomPoints(10, n)
			t.Logf("kill points (messages journalled): %v", points)
			for _, at := range points {
				killAt(t, state, at, args)
			}
			if r := interopRestore(t, repoFlags, tg, "--repair"); r.code != exitOK {
				t.Fatalf("the final restore = %d:\n%s", r.code, r.stderr)
			}
			code, res := interopVerify(t, repoFlags, tg)
			if code != exitOK || res.Messages != int64(n) || res.Counts["missing"]+res.Counts["extra"]+res.Counts["altered"] != 0 {
				t.Errorf("verify after the kills = %d, %d messages, %v; want 0, %d, none missing, extra or altered", code, res.Messages, res.Counts, n)
				byFolder := map[string]int{}
				for _, d := range res.Differences {
					byFolder[fmt.Sprintf("%s %v", d.Folder, d.Class)]++
				}
				t.Logf("differences by folder: %v", byFolder)
			}
			if got := accountCount(t, tg); got != n {
				t.Errorf("the account holds %d messages in the restored folders, want %d", got, n)
			}
		})
	}
}

// randomPoints returns n sorted random numbers in [1, max).
func randomPoints(n, max int) []int {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 14))
	points := make([]int, n)
	for i := range points {
		points[i] = 1 + rng.IntN(max-1)
	}
	slices.Sort(points)
	return points
}

// killAt runs planb args in a process of its own and kills it with
// SIGKILL once the restore journals under state hold at records (or when
// it ends first).
func killAt(t *testing.T, state string, at int, args []string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := startHelper(t, "/dev/null", &stdout, &stderr, args...)
	// Wait (polling, with a deadline) until the journals hold at records,
	// or the process has ended.
	deadline := time.Now().Add(2 * time.Minute)
	for journalled(state) < at && time.Now().Before(deadline) && !exited(cmd.Process) {
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if got := journalled(state); got < at {
		t.Logf("killed at %d journalled (aimed at %d): %s", got, at, stderr.String())
	}
}

// journalled counts the records in the restore journals under state.
func journalled(state string) int {
	n := 0
	filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".journal") {
			if b, err := os.ReadFile(p); err == nil {
				n += strings.Count(string(b), "\n")
			}
		}
		return nil
	})
	return n
}

// exited reports whether cmd's process has ended (it is reaped by Wait).
func exited(cmd interface{ Signal(os.Signal) error }) bool {
	return cmd.Signal(syscall.Signal(0)) != nil
}

// accountCount counts the messages of the account's mailboxes (Bridge's
// views and recovery mailbox left out).
func accountCount(t *testing.T, tg *interopTarget) int {
	t.Helper()
	c := tg.srv.Dial(t, tg.user, tg.password)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range list {
		switch l.Mailbox {
		case "All Mail", "Starred", "Recovered Messages":
			continue
		}
		if slices.ContainsFunc(l.Attrs, func(a goimap.MailboxAttr) bool { return strings.EqualFold(string(a), `\Noselect`) }) {
			continue
		}
		st, err := c.Status(l.Mailbox, &goimap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		total += int(*st.NumMessages)
	}
	return total
}

// TestInteropMigrate: migrate from Dovecot into the Bridge-shaped server,
// as a user moving to Proton would (issue 14, point 4): the messages
// Bridge refuses are named, exit 3, and a re-run appends nothing; with
// --repair every message arrives, exit 0; again, nothing appended; verify
// of the migration's snapshot exits 0.
func TestInteropMigrate(t *testing.T) {
	t.Setenv("PLANB_STATE_DIR", t.TempDir())
	repoFlags, n := interopRepo(t)
	dovecot := imaptest.SharedOf(t, imaptest.KindDovecot)
	from := newInteropTarget(t, dovecot)
	// Fill the Dovecot account: everything Dovecot takes (not the empty
	// message).
	r := interopRestore(t, repoFlags, from)
	if r.appended < n-1 {
		t.Fatalf("filling Dovecot: %d appended of %d:\n%s", r.appended, n, r.stderr)
	}
	bridge := imaptest.SharedOf(t, imaptest.KindBridge)
	to := newInteropTarget(t, bridge)
	// One --ca-file for both sides: a file may hold several certificates.
	cas := filepath.Join(t.TempDir(), "ca.pem")
	var pems []byte
	for _, f := range []string{dovecot.CertFile, bridge.CertFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	if err := os.WriteFile(cas, pems, 0o600); err != nil {
		t.Fatal(err)
	}
	mrepo := filepath.Join(t.TempDir(), "migrate-repo")
	migrate := func(extra ...string) (int, string, string) {
		t.Helper()
		args := []string{"migrate", "--from", from.url, "--to", to.url, "--repo", mrepo, "--ca-file", cas,
			"--from-password-file", from.flags[3], "--to-password-file", to.flags[3]}
		return runPlanb(t, append(args, extra...)...)
	}
	t.Setenv("PLANB_PASSWORD", "migrate")
	count := func(stdout, what string) int {
		m := regexp.MustCompile(`(?m)^  ` + what + `: +(\d+) messages`).FindStringSubmatch(stdout)
		if m == nil {
			t.Fatalf("no %q in the report:\n%s", what, stdout)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	code, stdout, stderr := migrate()
	appended, skipped := count(stdout, "appended"), count(stdout, "skipped")
	t.Logf("first migrate: %d appended, %d skipped", appended, skipped)
	if code != exitPartial || skipped == 0 || appended+skipped != r.appended || !hintRE.MatchString(stderr) {
		t.Errorf("migrate = %d, %d appended, %d skipped, want 3 and %d in all, with the --repair hint:\n%s", code, appended, skipped, r.appended, stderr)
	}
	code, stdout, _ = migrate()
	if code != exitPartial || count(stdout, "appended") != 0 || count(stdout, "present") != appended {
		t.Errorf("migrate again = %d:\n%s", code, stdout)
	}
	code, stdout, stderr = migrate("--repair")
	if code != exitOK || count(stdout, "appended") != skipped || count(stdout, "skipped") != 0 {
		t.Errorf("migrate --repair = %d, want 0 and %d appended:\n%s%s", code, skipped, stdout, stderr)
	}
	code, stdout, _ = migrate("--repair")
	if code != exitOK || count(stdout, "appended") != 0 || count(stdout, "present") != r.appended {
		t.Errorf("migrate --repair again = %d:\n%s", code, stdout)
	}
	code, stdout, stderr = runPlanb(t, "--repo", mrepo, "verify", "latest", "--against", to.url, "--ca-file", cas, "--imap-password-file", to.flags[3])
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^verified %d messages .*: 0 exact, \d+ rewritten, %d repaired, 0 missing, 0 extra, 0 altered$`, r.appended, skipped))
	if code != exitOK || !want.MatchString(stdout) {
		t.Errorf("verify = %d, want 0 and %s:\n%s%s", code, want, stdout, stderr)
	}
}
