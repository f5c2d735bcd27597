package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/imap/imaptest"
)

// The tests of label-based mailboxes (issue 19): a Dovecot laid out as
// Gmail shows itself over IMAP, and the Proton Mail Bridge-shaped server,
// backed up and restored into a folder-based Dovecot and back into a
// label-based account.

// labelled is a message of a label-based test account: its Message-ID's
// local part, its flags and the mailboxes of the account holding it.
type labelled struct {
	id     string
	flags  []string
	places []string
}

func (l labelled) message() imaptest.Message {
	body := fmt.Sprintf("From: Sender <sender@example.org>\r\nTo: me@example.org\r\nSubject: message %s\r\n"+
		"Date: Mon, 2 Mar 2026 10:00:00 +0100\r\nMessage-ID: <%s@example.org>\r\n\r\nThe body of %s.\r\n", l.id, l.id, l.id)
	return imaptest.Message{Body: []byte(body), Flags: l.flags, Date: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
}

// gmailAccount: INBOX and the labels Work, Work/Projects and Travel are
// folders holding copies; "[Gmail]/Sent Mail" a view of Store/Sent;
// archived mail in Store/Archived, seen only in All Mail. All Mail and
// Starred show them all again.
var gmailAccount = []labelled{
	{"inbox-work", []string{`\Flagged`, `\Seen`}, []string{"INBOX", "Work"}},
	{"inbox-only", []string{`\Seen`}, []string{"INBOX"}},
	{"nested", nil, []string{"Work", "Work/Projects"}},
	{"travel", []string{`\Answered`, `\Seen`}, []string{"Travel"}},
	{"archived", []string{`\Seen`}, []string{"Store/Archived"}},
	{"archived-starred", []string{`\Flagged`}, []string{"Store/Archived"}},
	{"sent", []string{`\Seen`}, []string{"[Gmail]/Sent Mail"}},
	{"sent-work", []string{`\Seen`}, []string{"[Gmail]/Sent Mail", "Work"}},
}

// seedGmail fills a new account of a gmail-flavoured Dovecot.
func seedGmail(t *testing.T, srv *imaptest.Server) *interopTarget {
	t.Helper()
	tg := newInteropTarget(t, srv)
	c := srv.Dial(t, tg.user, tg.password)
	for _, l := range gmailAccount {
		for _, mb := range l.places {
			imaptest.Append(t, c, mb, []imaptest.Message{l.message()})
		}
	}
	return tg
}

// bridgeAccount: Proton's model. A message has one location (INBOX, Sent,
// Archive or a folder under Folders/), any number of labels (Labels/...)
// and a star (\Flagged, shown in Starred); All Mail shows every message.
var bridgeAccount = []labelled{
	{"inbox-work", []string{`\Flagged`, `\Seen`}, []string{"INBOX", "Labels/Work"}},
	{"inbox-only", []string{`\Seen`}, []string{"INBOX"}},
	{"folder", nil, []string{"Folders/Projects", "Labels/Work", "Labels/Travel"}},
	{"archived", []string{`\Seen`}, []string{"Archive"}},
	{"sent", []string{`\Seen`}, []string{"Sent", "Labels/Work"}},
}

// seedBridge fills a new account of the Bridge-shaped server as Proton's
// clients do: each message appended to its location, then copied into
// its labels.
func seedBridge(t *testing.T, srv *imaptest.Server) *interopTarget {
	t.Helper()
	tg := newInteropTarget(t, srv)
	c := srv.Dial(t, tg.user, tg.password)
	for _, mb := range []string{"Folders/Projects", "Labels/Work", "Labels/Travel"} {
		if err := c.Create(mb, nil).Wait(); err != nil {
			t.Fatalf("create %s: %v", mb, err)
		}
	}
	for _, l := range bridgeAccount {
		if err := imaptest.TryAppend(c, l.places[0], l.message()); err != nil {
			t.Fatalf("append %s to %s: %v", l.id, l.places[0], err)
		}
		if _, err := c.Select(l.places[0], nil).Wait(); err != nil {
			t.Fatal(err)
		}
		uids, err := c.UIDSearch(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: l.id + "@example.org"}}}, nil).Wait()
		if err != nil || len(uids.AllUIDs()) != 1 {
			t.Fatalf("search %s in %s: %v, %v", l.id, l.places[0], uids, err)
		}
		for _, label := range l.places[1:] {
			if _, err := c.Copy(goimap.UIDSetNum(uids.AllUIDs()...), label).Wait(); err != nil {
				t.Fatalf("copy %s into %s: %v", l.id, label, err)
			}
		}
	}
	return tg
}

var messageIDRE = regexp.MustCompile(`(?im)^Message-ID: <([^@>]+)@example\.org>`)

// mailboxState is what a server holds: per mailbox with messages, its
// messages as "id flags..." lines, sorted.
type mailboxState map[string][]string

// stateOf reads every selectable mailbox of an account. keepFlags says
// which flags count (nil: all).
func stateOf(t *testing.T, c *imapclient.Client, keepFlags func(string) bool) mailboxState {
	t.Helper()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	st := mailboxState{}
	for _, l := range list {
		if slices.Contains(l.Attrs, goimap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, goimap.MailboxAttrNonExistent) {
			continue
		}
		for _, m := range imaptest.Fetch(t, c, l.Mailbox) {
			id := "?"
			if sm := messageIDRE.FindSubmatch(m.Body); sm != nil {
				id = string(sm[1])
			}
			line := []string{id}
			for _, f := range m.Flags {
				if keepFlags == nil || keepFlags(f) {
					line = append(line, f)
				}
			}
			st[l.Mailbox] = append(st[l.Mailbox], strings.Join(line, " "))
		}
		slices.Sort(st[l.Mailbox])
	}
	return st
}

func (s mailboxState) String() string {
	var b strings.Builder
	for _, mb := range slices.Sorted(func(yield func(string) bool) {
		for k := range s {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "  %s: %q\n", mb, s[mb])
	}
	return b.String()
}

// checkState compares a server's state with want.
func checkState(t *testing.T, what string, got, want mailboxState) {
	t.Helper()
	for mb, w := range want {
		if !slices.Equal(got[mb], w) {
			t.Errorf("%s: %s holds %q, want %q", what, mb, got[mb], w)
		}
	}
	for mb := range got {
		if _, ok := want[mb]; !ok {
			t.Errorf("%s: unexpected messages in %s: %q", what, mb, got[mb])
		}
	}
	if t.Failed() {
		t.Logf("%s: the server holds:\n%s", what, got)
	}
}

// labelBackup backs the account up into a new repository and returns the
// flags that open it, after checking that every message is stored once:
// as many distinct messages and blobs as the account has messages,
// although the snapshot lists many more.
func labelBackup(t *testing.T, tg *interopTarget, messages int) []string {
	t.Helper()
	dir, pwFile := testRepo(t)
	repoFlags := []string{"--repo", dir, "--password-file", pwFile}
	args := append(slices.Clone(repoFlags), "--quiet", "backup", "imap", "--url", tg.url)
	if code, _, stderr := runPlanb(t, append(args, tg.flags...)...); code != 0 {
		t.Fatalf("backup = %d: %s", code, stderr)
	}
	r := openTestRepo(t, dir, pwFile)
	snaps, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %d, %v", len(snaps), err)
	}
	st, err := r.Stats(t.Context(), snaps)
	if err != nil {
		t.Fatal(err)
	}
	var entries int64
	for _, f := range snaps[0].Folders {
		entries += f.Messages
	}
	t.Logf("backup: %d entries in %d folders, %d distinct messages, %d blobs", entries, len(snaps[0].Folders), st.Messages, st.Blobs)
	if st.Messages != int64(messages) || st.Blobs != int64(messages) || entries <= int64(messages) {
		t.Errorf("backup: %d distinct messages in %d blobs (%d entries), want %d in %d (more entries)", st.Messages, st.Blobs, entries, messages, messages)
	}
	return repoFlags
}

// labelVerify runs verify --json with extra flags.
func labelVerify(t *testing.T, repoFlags []string, tg *interopTarget, extra ...string) (int, verifyResult) {
	t.Helper()
	args := append(slices.Clone(repoFlags), "--json", "verify", "latest", "--against", tg.url)
	args = append(append(args, tg.flags...), extra...)
	code, stdout, stderr := runPlanb(t, args...)
	var res verifyResult
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, `"type":"summary"`) {
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				t.Fatal(err)
			}
		}
	}
	if res.Type != "summary" {
		t.Fatalf("verify %v = %d without a summary:\n%s%s", extra, code, stdout, stderr)
	}
	return code, res
}

// restoreLabels restores the latest snapshot into a new account of srv
// with extra flags, checks the summary and returns the account.
func restoreLabels(t *testing.T, repoFlags []string, srv *imaptest.Server, appended int, extra ...string) (*interopTarget, restoreRun) {
	t.Helper()
	tg := newInteropTarget(t, srv)
	r := interopRestore(t, repoFlags, tg, extra...)
	if r.code != exitOK || r.appended != appended || r.present != 0 {
		t.Errorf("restore %v = %d, %d appended, %d there; want 0, %d, 0:\n%s%s", extra, r.code, r.appended, r.present, appended, r.stdout, r.stderr)
	}
	if again := interopRestore(t, repoFlags, tg, extra...); again.code != exitOK || again.appended != 0 || again.present != appended {
		t.Errorf("restore %v again = %d, %d appended, %d there; want 0, 0, %d", extra, again.code, again.appended, again.present, appended)
	}
	return tg, r
}

// checkVerify runs verify with extra flags and wants exit 0 with n exact
// messages, or (n < 0) exit 1.
func checkVerify(t *testing.T, repoFlags []string, tg *interopTarget, n int, extra ...string) {
	t.Helper()
	code, res := labelVerify(t, repoFlags, tg, extra...)
	switch {
	case n < 0 && code != exitFailed:
		t.Errorf("verify %v = %d, %v; want 1", extra, code, res.Counts)
	case n >= 0 && (code != exitOK || res.Counts["exact"]+res.Counts["rewritten"] != int64(n) || res.Counts["missing"]+res.Counts["extra"]+res.Counts["altered"] != 0):
		t.Errorf("verify %v = %d, %v; want 0 and %d found", extra, code, res.Counts, n)
	}
}

// gmailCopies is the layout the default (--labels copies) gives
// gmailAccount in a folder-based Dovecot ("." separator): each message
// once per label's folder, nothing in All Mail or Starred, archived mail
// in Archive, flags kept.
var gmailCopies = mailboxState{
	"INBOX":         {`inbox-only \Seen`, `inbox-work \Flagged \Seen`},
	"Work":          {`inbox-work \Flagged \Seen`, `nested`, `sent-work \Seen`},
	"Work.Projects": {`nested`},
	"Travel":        {`travel \Answered \Seen`},
	"Sent":          {`sent \Seen`, `sent-work \Seen`},
	"Archive":       {`archived \Seen`, `archived-starred \Flagged`},
}

// TestLabelsGmail: a Dovecot account laid out as Gmail (issue 19,
// acceptance 1 and 4).
func TestLabelsGmail(t *testing.T) {
	t.Setenv("PLANB_STATE_DIR", t.TempDir())
	src := seedGmail(t, imaptest.StartGmail(t))
	repoFlags := labelBackup(t, src, len(gmailAccount))
	plain := imaptest.SharedOf(t, imaptest.KindDovecot)

	t.Run("ls", func(t *testing.T) {
		code, stdout, stderr := runPlanb(t, append(slices.Clone(repoFlags), "ls", "latest")...)
		if code != 0 {
			t.Fatalf("ls = %d: %s", code, stderr)
		}
		for _, re := range []string{`(?m)^\[Gmail\]/All Mail\s+\d+\s+.*\sview$`, `(?m)^\[Gmail\]/Starred\s+.*\sview$`,
			`(?m)^INBOX\s+2\s+.*\sinbox$`, `(?m)^Work/Projects\s+1\s+.*\slabel$`, `(?m)^\[Gmail\]/Sent Mail\s+2\s+.*\ssystem$`} {
			if !regexp.MustCompile(re).MatchString(stdout) {
				t.Errorf("ls latest: no line matching %s:\n%s", re, stdout)
			}
		}
		code, stdout, stderr = runPlanb(t, append(slices.Clone(repoFlags), "--json", "ls", "latest", "[Gmail]/All Mail")...)
		if code != 0 {
			t.Fatalf("ls All Mail = %d: %s", code, stderr)
		}
		labels := map[string][]string{}
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var m messageLine
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			labels[m.SourceID] = m.Labels
		}
		// The JSON lines carry no Message-ID: compare the set of label
		// lists with the account's.
		var got, want []string
		for _, ls := range labels {
			got = append(got, strings.Join(ls, ","))
		}
		for _, l := range []string{`\Inbox,Work`, `\Inbox`, `Work,Work/Projects`, `Travel`, ``, ``, `\Sent`, `\Sent,Work`} {
			want = append(want, l)
		}
		// Dovecot's All Mail shows a message once per copy: compare sets.
		slices.Sort(got)
		slices.Sort(want)
		if got, want = slices.Compact(got), slices.Compact(want); !slices.Equal(got, want) {
			t.Errorf("ls --json All Mail: labels %q, want %q", got, want)
		}
	})

	t.Run("copies", func(t *testing.T) {
		tg, _ := restoreLabels(t, repoFlags, plain, 11)
		got := stateOf(t, plain.Dial(t, tg.user, tg.password), nil)
		checkState(t, "--labels copies", got, gmailCopies)
		for mb := range got {
			if strings.Contains(mb, "All Mail") || strings.Contains(mb, "Starred") || strings.Contains(mb, "Gmail") {
				t.Errorf("--labels copies: a view restored as a folder: %s", mb)
			}
		}
		checkVerify(t, repoFlags, tg, 11)
		checkVerify(t, repoFlags, tg, -1, "--labels", "first")
		// Byte for byte: Dovecot keeps what it is given.
		c := plain.Dial(t, tg.user, tg.password)
		for _, m := range imaptest.Fetch(t, c, "Work.Projects") {
			if want := (labelled{id: "nested"}).message().Body; string(m.Body) != string(want) {
				t.Errorf("Work.Projects: body %q, want %q", m.Body, want)
			}
		}
	})

	t.Run("keywords", func(t *testing.T) {
		tg, _ := restoreLabels(t, repoFlags, plain, len(gmailAccount), "--labels", "keywords")
		checkState(t, "--labels keywords", stateOf(t, plain.Dial(t, tg.user, tg.password), nil), mailboxState{
			"INBOX":   {`inbox-only \Seen`, `inbox-work Work \Flagged \Seen`},
			"Sent":    {`sent \Seen`, `sent-work Work \Seen`},
			"Archive": {`archived \Seen`, `archived-starred \Flagged`, `nested Work Work/Projects`, `travel Travel \Answered \Seen`},
		})
		checkVerify(t, repoFlags, tg, len(gmailAccount), "--labels", "keywords")
		checkVerify(t, repoFlags, tg, -1)
	})

	t.Run("first", func(t *testing.T) {
		tg, _ := restoreLabels(t, repoFlags, plain, len(gmailAccount), "--labels", "first")
		checkState(t, "--labels first", stateOf(t, plain.Dial(t, tg.user, tg.password), nil), mailboxState{
			"INBOX":   {`inbox-only \Seen`, `inbox-work \Flagged \Seen`},
			"Work":    {`nested`},
			"Travel":  {`travel \Answered \Seen`},
			"Sent":    {`sent \Seen`, `sent-work \Seen`},
			"Archive": {`archived \Seen`, `archived-starred \Flagged`},
		})
		checkVerify(t, repoFlags, tg, len(gmailAccount), "--labels", "first")
		checkVerify(t, repoFlags, tg, -1, "--labels", "keywords")
	})

	t.Run("export", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "export")
		args := append(slices.Clone(repoFlags), "--quiet", "export", "latest", "--format", "mbox", "--out", out)
		if code, _, stderr := runPlanb(t, args...); code != 0 {
			t.Fatalf("export mbox = %d: %s", code, stderr)
		}
		checkExportLabels(t, out)
		md := filepath.Join(t.TempDir(), "maildir")
		args = append(slices.Clone(repoFlags), "--quiet", "export", "latest", "--format", "maildir", "--out", md)
		if code, _, stderr := runPlanb(t, args...); code != 0 {
			t.Fatalf("export maildir = %d: %s", code, stderr)
		}
		checkMaildirKeywords(t, md)
	})
}

// bridgeCopies is the layout the default gives bridgeAccount in a
// folder-based Dovecot: Bridge's prefixes dropped.
var bridgeCopies = mailboxState{
	"INBOX":    {`inbox-only \Seen`, `inbox-work \Flagged \Seen`},
	"Work":     {`folder`, `inbox-work \Flagged \Seen`, `sent \Seen`},
	"Travel":   {`folder`},
	"Projects": {`folder`},
	"Sent":     {`sent \Seen`},
	"Archive":  {`archived \Seen`},
}

// TestLabelsBridge: the Bridge-shaped server as a source (issue 19,
// acceptance 2): into a folder-based Dovecot as for Gmail, and into a
// fresh Bridge-shaped account, labels as labels, without copies.
func TestLabelsBridge(t *testing.T) {
	t.Setenv("PLANB_STATE_DIR", t.TempDir())
	bridge := imaptest.SharedOf(t, imaptest.KindBridge)
	src := seedBridge(t, bridge)
	repoFlags := labelBackup(t, src, len(bridgeAccount))

	t.Run("dovecot", func(t *testing.T) {
		plain := imaptest.SharedOf(t, imaptest.KindDovecot)
		tg, _ := restoreLabels(t, repoFlags, plain, 9)
		checkState(t, "Bridge into Dovecot", stateOf(t, plain.Dial(t, tg.user, tg.password), nil), bridgeCopies)
		checkVerify(t, repoFlags, tg, 9)
	})

	t.Run("bridge", func(t *testing.T) {
		tg, r := restoreLabels(t, repoFlags, bridge, len(bridgeAccount))
		if !strings.Contains(r.stdout, "\n4 labels given") {
			t.Errorf("restore into Bridge: no \"4 labels given\":\n%s", r.stdout)
		}
		// Bridge's own flags aside, \Flagged is the star.
		flagged := func(f string) bool { return f == `\Flagged` }
		want := mailboxState{
			"INBOX":            {`inbox-only`, `inbox-work \Flagged`},
			"Folders/Projects": {`folder`},
			"Labels/Work":      {`folder`, `inbox-work \Flagged`, `sent`},
			"Labels/Travel":    {`folder`},
			"Sent":             {`sent`},
			"Archive":          {`archived`},
			"Starred":          {`inbox-work \Flagged`},
			"All Mail":         {`archived`, `folder`, `inbox-only`, `inbox-work \Flagged`, `sent`},
		}
		checkState(t, "Bridge into Bridge", stateOf(t, bridge.Dial(t, tg.user, tg.password), flagged), want)
		// Each message in its folder, and each of its 4 labels in the
		// label's mailbox.
		checkVerify(t, repoFlags, tg, len(bridgeAccount)+4)
	})
}

// checkExportLabels reads an mbox export of gmailAccount: each message
// once per folder as restore's default places it, each but the
// archived ones with an X-Gmail-Labels line naming its labels.
func checkExportLabels(t *testing.T, dir string) {
	t.Helper()
	got := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, m := range strings.Split(string(b), "\nFrom ")[0:] {
			id := messageIDRE.FindStringSubmatch(m)
			lab := regexp.MustCompile(`(?m)^X-Gmail-Labels: (.*)$`).FindStringSubmatch(m)
			if id == nil {
				continue
			}
			l := "-"
			if lab != nil {
				l = strings.TrimRight(lab[1], "\r")
			}
			got[rel] = append(got[rel], id[1]+" "+l)
		}
		slices.Sort(got[rel])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mbox export: %v", got)
	for rel, ms := range got {
		for _, m := range ms {
			// Archived mail has no label (but for its star).
			if strings.HasSuffix(m, " -") && !strings.HasPrefix(m, "archived") {
				t.Errorf("mbox export %s: a message without X-Gmail-Labels: %s", rel, m)
			}
		}
	}
	var work []string
	for rel, ms := range got {
		if strings.TrimSuffix(filepath.Base(rel), ".mbox") == "Work" {
			work = ms
		}
	}
	want := []string{"inbox-work Inbox,Work,Starred", "nested Work,Work/Projects", "sent-work Sent,Work"}
	if !slices.Equal(work, want) {
		t.Errorf("mbox export: Work holds %q, want %q", work, want)
	}
}

// checkMaildirKeywords reads a Maildir export of gmailAccount: each
// message's labels are Dovecot keywords (the letters of its file name's
// info, named by its folder's dovecot-keywords file).
func checkMaildirKeywords(t *testing.T, dir string) {
	t.Helper()
	got := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) != "cur" {
			return err
		}
		folder := filepath.Dir(filepath.Dir(p))
		names := map[byte]string{}
		if b, err := os.ReadFile(filepath.Join(folder, "dovecot-keywords")); err == nil {
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var n int
				var name string
				if _, err := fmt.Sscanf(l, "%d %s", &n, &name); err == nil {
					names[byte('a'+n)] = name
				}
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		id := messageIDRE.FindSubmatch(b)
		if id == nil {
			t.Errorf("maildir export: %s has no Message-ID", p)
			return nil
		}
		_, info, _ := strings.Cut(filepath.Base(p), ":2,")
		var kws []string
		for i := 0; i < len(info); i++ {
			if c := info[i]; c >= 'a' && c <= 'z' {
				kws = append(kws, names[c])
			}
		}
		slices.Sort(kws)
		rel, _ := filepath.Rel(dir, folder)
		got[rel+" "+string(id[1])+" "+strings.Join(kws, ",")] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("maildir export: %v", got)
	var lines []string
	for l := range got {
		lines = append(lines, l)
	}
	for _, want := range []string{"nested Work,Work/Projects", "inbox-work Work", "sent-work Work", "travel Travel"} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, " "+want) }) {
			t.Errorf("maildir export: no message %q among %q", want, lines)
		}
	}
	for _, l := range lines {
		if strings.Contains(l, " inbox-only ") && !strings.HasSuffix(l, "inbox-only ") {
			t.Errorf("maildir export: keywords on a message without labels: %q", l)
		}
	}
}
