package imap

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap/imaptest"
)

func targetOptions(d *imaptest.Dovecot, user, password string) *Options {
	return &Options{
		Host: d.Host, Port: d.TLSPort, User: user, Password: password, TLS: TLSImplicit,
		RootCAs: d.RootCAs, RetryDelay: 50 * time.Millisecond, Connections: 3,
	}
}

func restoreTo(t *testing.T, r *repo.Repository, snap *repo.Snapshot, o *Options, so *SinkOptions) SinkReport {
	t.Helper()
	sink, err := NewSink(t.Context(), o, so)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	if _, err := restore.Run(t.Context(), r, snap, sink, nil); err != nil {
		t.Fatalf("restore.Run: %v", err)
	}
	return sink.Report()
}

func verifyAgainst(t *testing.T, r *repo.Repository, snap *repo.Snapshot, o *Options) []restore.Verdict {
	t.Helper()
	return verifyMapped(t, r, snap, o, MapOptions{}).Differences
}

// verifyMapped compares snap with the account o, folders mapped by mo.
func verifyMapped(t *testing.T, r *repo.Repository, snap *repo.Snapshot, o *Options, mo MapOptions) *restore.VerifyReport {
	t.Helper()
	a, err := OpenAccount(t.Context(), o, mo)
	if err != nil {
		t.Fatalf("OpenAccount: %v", err)
	}
	defer a.Close()
	rep, err := restore.Verify(t.Context(), r, snap, a, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return rep
}

// renamed returns mb with folder paths changed by ren.
func renamed(mb *archivetest.Mailbox, folders []archive.Folder, ren map[string]string) *archivetest.Mailbox {
	out := archivetest.NewMailbox()
	for _, f := range folders {
		p := f.Path
		if q, ok := ren[p]; ok {
			p = q
		}
		out.AddFolder(archive.Folder{Path: p})
		for _, m := range mb.Messages(f.Path) {
			out.Add(p, archivetest.Msg{Flags: m.Flags, InternalDate: m.InternalDate, Body: m.Body})
		}
	}
	return out
}

// TestDovecotRestoreAcross: user A on a "."-separated Dovecot (testdata,
// corpus sample, nested, non-ASCII and special-use folders, keywords) is
// backed up and restored into user B on a "/"-separated Dovecot whose
// special-use folders are "Sent Items", "Deleted Items" and "Junk E-mail":
// every message lands with its bytes, flags and date, verify finds no
// difference, and a second restore appends nothing.
func TestDovecotRestoreAcross(t *testing.T) {
	d := imaptest.Shared(t)
	alt := imaptest.StartAlt(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	root := repoRoot(t)
	n := loadMaildir(t, c, filepath.Join(root, "testdata", "mail", "maildir"), "", 0)
	imaptest.Append(t, c, "Archiv.2024.Q1", imaptest.Generate("q1", 4))
	imaptest.Append(t, c, "Entwürfe.日本語", imaptest.Generate("ja", 3))
	imaptest.Append(t, c, "Sent", imaptest.Generate("sent", 3))
	imaptest.Append(t, c, "Trash", imaptest.Generate("trash", 2))
	imaptest.Append(t, c, "Drafts", []imaptest.Message{{Body: []byte("Subject: draft\r\n\r\nunfinished\r\n"), Flags: []string{`\Draft`, "$Keyword_with-Chars"}, Date: time.Date(1999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -5*3600))}})
	n += 4 + 3 + 3 + 2 + 1
	if corpus := filepath.Join(root, "..", "shared", "corpus"); dirExists(corpus) {
		n += loadMaildir(t, c, corpus, "Corpus", 40)
	}
	r := newRepo(t)
	snap := runBackup(t, r, dovecotSource(t, d, user, pw, nil))

	bUser, bPw := alt.NewUser(t)
	o := targetOptions(alt, bUser, bPw)
	rep := restoreTo(t, r, snap, o, nil)
	if rep.Appended != int64(n) || rep.Present != 0 || len(rep.Refused) != 0 {
		t.Errorf("restore report %+v, want %d appended", rep, n)
	}
	want := renamed(restored(t, r, snap), foldersOf(snap), map[string]string{
		"Sent": "Sent Items", "Trash": "Deleted Items", "Junk": "Junk E-mail",
		"Archiv/2024/Q1": "Archiv/2024/Q1",
	})
	bc := alt.Dial(t, bUser, bPw)
	got := serverState(t, bc)
	archivetest.EqualOpts(t, want, got, &archivetest.CompareOptions{IgnoreEmptyFolders: true, WireLineEnds: true})
	if got.Count() != n {
		t.Errorf("target holds %d messages, want %d", got.Count(), n)
	}
	if diffs := verifyAgainst(t, r, snap, o); len(diffs) != 0 {
		t.Errorf("verify: %d differences, want none: %+v", len(diffs), diffs)
	}
	rep2 := restoreTo(t, r, snap, o, nil)
	if rep2.Appended != 0 || rep2.Present != int64(n) {
		t.Errorf("second restore: %+v, want 0 appended, %d present", rep2, n)
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func foldersOf(snap *repo.Snapshot) []archive.Folder {
	var fs []archive.Folder
	for _, f := range snap.Folders {
		fs = append(fs, f.Folder)
	}
	return fs
}

// killSnapshot writes a snapshot with tricky messages into a local
// repository in dir: two without Message-ID, two different ones sharing
// one, two identical copies, and a few hundred ordinary ones.
func killSnapshot(t *testing.T, dir string) (*repo.Repository, *repo.Snapshot, int) {
	t.Helper()
	mb := archivetest.NewMailbox()
	date := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	tricky := []string{
		"Subject: no id one\r\n\r\nfirst body\r\n",
		"Subject: no id two\r\n\r\nsecond body\r\n",
		"Message-ID: <same@x>\r\nSubject: same id\r\n\r\nversion A\r\n",
		"Message-ID: <same@x>\r\nSubject: same id\r\n\r\nversion B\r\n",
		"Message-ID: <dup@x>\r\nSubject: twin\r\n\r\ntwin\r\n",
		"Message-ID: <dup@x>\r\nSubject: twin\r\n\r\ntwin\r\n",
	}
	n := 0
	for _, b := range tricky {
		mb.Add("INBOX", archivetest.Msg{Body: []byte(b), InternalDate: date, Flags: []string{`\Seen`}})
		n++
	}
	for i, m := range imaptest.Generate("kill", 1500) {
		folder := "INBOX"
		if i%2 == 1 {
			folder = "Projekte/Ölfass"
		}
		mb.Add(folder, archivetest.Msg{Body: m.Body, InternalDate: m.Date, Flags: m.Flags})
		n++
	}
	be, err := local.Create(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(t.Context(), be, repoPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, runBackup(t, r, mb), n
}

// killSettle is how long a run of TestDovecotRestoreKill after a killed
// one waits for the target to stop changing (SinkOptions.Settle): Dovecot
// on loopback stores a killed run's last APPENDs within some 50 ms.
const killSettle = 300 * time.Millisecond

// TestRestoreChild is the child process of TestDovecotRestoreKill.
func TestRestoreChild(t *testing.T) {
	env := os.Getenv("PLANB_TEST_RESTORE_CHILD")
	if env == "" {
		t.Skip("child process of TestDovecotRestoreKill")
	}
	var dir, host, ca, user, pw, journal string
	var port int
	fmt.Sscanf(env, "%s %s %d %s %s %s %s", &dir, &host, &port, &ca, &user, &pw, &journal)
	be, err := local.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(t.Context(), be, repoPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v %d", err, len(snaps))
	}
	o := &Options{Host: host, Port: port, User: user, Password: pw, TLS: TLSImplicit, InsecureSkipVerify: true, Connections: 1}
	restoreTo(t, r, snaps[0], o, &SinkOptions{Pipeline: 4, Journal: openJournal(t, journal, o), Settle: killSettle})
}

// TestDovecotRestoreKill: a restore killed (SIGKILL) at 10 random points
// and run again after each ends with every message exactly once,
// including messages without Message-ID, different messages sharing one
// and identical twins. The kill points are drawn from the restore's
// progress (the number of messages the target holds), not from time, so
// that they land mid-run however fast the restore is; at least 5 must.
func TestDovecotRestoreKill(t *testing.T) {
	d := imaptest.Shared(t)
	dir := filepath.Join(t.TempDir(), "repo")
	r, snap, n := killSnapshot(t, dir)
	user, pw := d.NewUser(t)
	// Every run keeps a journal of what it appended, as planb restore
	// does: two runs killed in a row, the first's last APPEND stored
	// after the second listed the folder, leave copies that only the
	// journal tells from the user's own (Sink.leftovers).
	journal := t.TempDir()
	env := fmt.Sprintf("%s %s %d %s %s %s %s", dir, d.Host, d.TLSPort, d.CertFile, user, pw, journal)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	watch := d.Dial(t, user, pw)
	held := func() int {
		total := 0
		for _, mb := range []string{"INBOX", "Projekte.Ölfass"} {
			st, err := watch.Status(mb, &goimap.StatusOptions{NumMessages: true}).Wait()
			if err == nil && st.NumMessages != nil {
				total += int(*st.NumMessages)
			}
		}
		return total
	}
	killed := 0
	for i := range 10 {
		before := held()
		if before >= n {
			break // the restore is complete: nothing left to interrupt
		}
		// Within the next 120 messages, so that the kills spread over
		// the whole restore (batches of up to 100 land at once).
		at := before + 1 + rng.IntN(min(120, n-before))
		cmd := exec.Command(os.Args[0], "-test.run=^TestRestoreChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "PLANB_TEST_RESTORE_CHILD="+env)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		tick := time.NewTicker(2 * time.Millisecond)
		deadline := time.After(2 * time.Minute)
	poll:
		for {
			select {
			case err := <-done:
				t.Logf("run %d finished before the kill at %d messages: %v", i, at, err)
				if err != nil {
					t.Fatalf("child: %v\n%s", err, out.String())
				}
				break poll
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("run %d: the target holds %d messages after 2 minutes, want %d", i, held(), at)
			case <-tick.C:
				if held() >= at {
					cmd.Process.Kill()
					<-done
					killed++
					t.Logf("run %d killed once the target held %d messages (from %d)", i, at, before)
					break poll
				}
			}
		}
		tick.Stop()
	}
	if killed < 5 {
		t.Errorf("only %d runs were killed before they finished, want at least 5", killed)
	}
	o := targetOptions(d, user, pw)
	rep := restoreTo(t, r, snap, o, &SinkOptions{Journal: openJournal(t, journal, o), Settle: killSettle})
	t.Logf("final run: %+v", rep)
	if rep.Appended+rep.Present != int64(n) {
		t.Errorf("final run: %d appended + %d present, want %d", rep.Appended, rep.Present, n)
	}
	if diffs := verifyAgainst(t, r, snap, o); len(diffs) != 0 {
		t.Errorf("verify: %d differences, want none: %+v", len(diffs), diffs)
	}
	c := d.Dial(t, user, pw)
	archivetest.EqualOpts(t, restored(t, r, snap), serverState(t, c), &archivetest.CompareOptions{IgnoreEmptyFolders: true, WireLineEnds: true})
}

// TestDovecotVerifyDetects: verify names an expunged message as missing,
// an added one as extra and one whose body changed (same date and
// Message-ID) as altered.
func TestDovecotVerifyDetects(t *testing.T) {
	d := imaptest.Shared(t)
	r, snap, n := killSnapshot(t, filepath.Join(t.TempDir(), "repo"))
	user, pw := d.NewUser(t)
	o := targetOptions(d, user, pw)
	if rep := restoreTo(t, r, snap, o, nil); rep.Appended != int64(n) {
		t.Fatalf("restore appended %d, want %d", rep.Appended, n)
	}
	if diffs := verifyAgainst(t, r, snap, o); len(diffs) != 0 {
		t.Fatalf("verify after restore: %+v", diffs)
	}
	c := d.Dial(t, user, pw)
	msgs := imaptest.Fetch(t, c, "Projekte.Ölfass")
	if len(msgs) < 3 {
		t.Fatalf("only %d messages", len(msgs))
	}
	imaptest.Expunge(t, c, "Projekte.Ölfass", []goimap.UID{msgs[0].UID, msgs[1].UID})
	altered := msgs[1]
	altered.Body = []byte(strings.Replace(string(altered.Body), "\r\n\r\n", "\r\n\r\nTAMPERED ", 1))
	imaptest.Append(t, c, "Projekte.Ölfass", []imaptest.Message{altered})
	imaptest.Append(t, c, "INBOX", []imaptest.Message{{Body: []byte("Subject: extra\r\n\r\nnot in the snapshot\r\n"), Date: time.Now()}})
	diffs := verifyAgainst(t, r, snap, o)
	kinds := map[string]int{}
	for _, df := range diffs {
		kinds[df.Class]++
	}
	if len(diffs) != 3 || kinds["missing"] != 1 || kinds["extra"] != 1 || kinds["altered"] != 1 {
		t.Errorf("verify = %+v, want one missing, one extra, one altered", diffs)
	}
}

// TestSinkGrow: connections that Grow adds (a plan lending an account the
// connections of accounts already done) log in and append alongside the
// sink's own; one the server refuses leaves the sink going on without
// it. Every message arrives once either way.
func TestSinkGrow(t *testing.T) {
	d := imaptest.Shared(t)
	mb := archivetest.NewMailbox()
	for _, f := range []string{"INBOX", "Archiv"} {
		mb.AddFolder(archive.Folder{Path: f})
		for i := range 300 {
			body := fmt.Sprintf("From: a@example.eu\r\nSubject: %s %d\r\nMessage-ID: <%s.%d@example.eu>\r\n\r\n%s", f, i, f, i, strings.Repeat("line of text\r\n", 300))
			mb.Add(f, archivetest.Msg{InternalDate: time.Date(2024, 5, 1, 0, 0, i, 0, time.UTC), Body: []byte(body)})
		}
	}
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	restoreVia := func(grow int, wrongPassword bool) *imaptest.Proxy {
		user, pw := d.NewUser(t)
		p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, d.TLSPort))
		if grow > 0 && !wrongPassword {
			p.Slow(1, imaptest.ToServer, 10*time.Millisecond)
		}
		o := targetOptions(d, user, pw)
		o.Host, o.Port, o.Connections = p.Host, p.Port, 1
		sink, err := NewSink(t.Context(), o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if wrongPassword {
			sink.opts.Password = "wrong" // for the connections added from now on
		}
		for range grow {
			if !sink.Grow() {
				t.Fatal("Grow before the start = false")
			}
		}
		if _, err := restore.Run(t.Context(), r, snap, sink, nil); err != nil {
			t.Fatalf("restore.Run: %v", err)
		}
		if sink.Grow() {
			t.Error("Grow after Close = true")
		}
		if got := sink.Report(); got.Appended != 600 {
			t.Errorf("appended %d, want 600", got.Appended)
		}
		archivetest.EqualOpts(t, mb, serverState(t, d.Dial(t, user, pw)), &archivetest.CompareOptions{IgnoreEmptyFolders: true})
		return p
	}
	n := restoreVia(0, false).Conns()
	grown := restoreVia(2, false)
	if got := grown.Conns(); got != n+2 {
		t.Fatalf("%d connections with 2 added, want %d", got, n+2)
	}
	// The connections are accepted in order: the two added come last
	// (they log in once the messages start) and carried messages. The
	// first connection is slowed down (restoreVia): on a loaded machine
	// the added ones logged in after it had sent all 2.5 MB.
	sent := grown.Sent(imaptest.ToServer)
	if added := sent[len(sent)-1] + sent[len(sent)-2]; added < 100<<10 {
		t.Errorf("the added connections sent %d bytes (%v), want some of the messages", added, sent)
	}
	if got := restoreVia(2, true).Conns(); got != n+2 {
		t.Errorf("%d connections with 2 refused, want %d tried", got, n+2)
	}
}

// TestSinkSharedConn: a sink of one connection appends on its target's
// connection (shareAppender), taking turns with the target's CREATE and
// SELECT of each next folder while the last one's messages are still
// being sent: one login, every message once, each in its folder, on each
// server; a second restore finds them all and appends none, again over
// one connection. A server that offers UTF8=ACCEPT gets an appender of
// its own (two connections).
func TestSinkSharedConn(t *testing.T) {
	mb := archivetest.NewMailbox()
	folders := []string{"INBOX", "Archiv", "Projekte/2024"}
	for _, f := range folders {
		mb.AddFolder(archive.Folder{Path: f})
		for i := range 150 {
			body := fmt.Sprintf("Date: Wed, 01 May 2024 00:00:%02d +0000\r\nFrom: a@example.eu\r\nSubject: %s %d\r\nMessage-ID: <%s.%d@example.eu>\r\n\r\n%s", i%60, f, i, f, i, strings.Repeat("line of text\r\n", 100+i))
			mb.Add(f, archivetest.Msg{InternalDate: time.Date(2024, 5, 1, 0, 0, i, 0, time.UTC), Flags: []string{`\Seen`}, Body: []byte(body)})
		}
	}
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	for _, k := range []imaptest.Kind{imaptest.KindDovecot, imaptest.KindCyrus, imaptest.KindBridge} {
		t.Run(k.Name, func(t *testing.T) {
			d := imaptest.SharedOf(t, k)
			user, pw := d.NewUser(t)
			port, mode := d.TLSPort, TLSImplicit
			if port == 0 {
				port, mode = d.Port, TLSStartTLS
			}
			p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, port))
			o := targetOptions(d, user, pw)
			o.Host, o.Port, o.TLS, o.Connections = p.Host, p.Port, mode, 1
			per := 1 // connections of one restore
			for run := 1; run <= 2; run++ {
				sink, err := NewSink(t.Context(), o, nil)
				if err != nil {
					t.Fatal(err)
				}
				if sink.shared == nil {
					if !sink.first.caps["UTF8=ACCEPT"] {
						t.Fatal("one connection, not shared with the target")
					}
					per = 2 // see errNoShare
				}
				if _, err := restore.Run(t.Context(), r, snap, sink, nil); err != nil {
					t.Fatalf("run %d: restore.Run: %v", run, err)
				}
				// The second run reads what the first stored on a
				// connection of its own (see fetcher).
				if got, want := p.Conns(), run*per+run-1; got != want {
					t.Errorf("run %d: %d connections in all, want %d", run, got, want)
				}
				rep := sink.Report()
				if wantApp, wantPresent := map[int]int64{1: 450, 2: 0}[run], map[int]int64{1: 0, 2: 450}[run]; rep.Appended != wantApp || rep.Present != wantPresent {
					t.Errorf("run %d: appended %d, present %d; want %d, %d (%+v)", run, rep.Appended, rep.Present, wantApp, wantPresent, rep)
				}
				c := d.Dial(t, user, pw)
				for _, f := range folders {
					mailbox := sink.Mailbox(archive.Folder{Path: f})
					got := imaptest.Fetch(t, c, mailbox)
					if len(got) != 150 {
						t.Errorf("%s: %d messages, want 150", mailbox, len(got))
						continue
					}
					for _, m := range got {
						if !strings.Contains(string(m.Body), "Subject: "+f+" ") {
							t.Errorf("%s holds a message of another folder:\n%.200s", mailbox, m.Body)
							break
						}
					}
				}
				if k == imaptest.KindDovecot {
					archivetest.EqualOpts(t, mb, serverState(t, c), &archivetest.CompareOptions{IgnoreEmptyFolders: true})
				}
			}
		})
	}
}

// openJournal opens the restore journal in dir for the account o, as
// planb restore keeps one in its cache.
func openJournal(t *testing.T, dir string, o *Options) *restore.Journal {
	t.Helper()
	j, err := restore.OpenJournal(dir, o.describe())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}
