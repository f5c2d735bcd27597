package main

import (
	"bytes"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/graph/graphtest"
	"codeberg.org/planb/planb/imap"
	"codeberg.org/planb/planb/imap/imaptest"
)

// migrateTargets holds each script's Dovecot account, by $WORK.
var migrateTargets sync.Map // string → migrateTarget

type migrateTarget struct {
	d        *imaptest.Dovecot
	user, pw string
	tb       testing.TB // the script's test
}

// TestMigrateGraphScripts runs testdata/graph/migrate/*.txtar: planb
// migrate from a fake Microsoft 365 tenant (graphtest) into a real
// Dovecot. Each script gets a fresh tenant ($TENANT, app $CLIENT with
// secret $SECRET) whose mailbox bob@contoso.eu holds four messages in
// Inbox, Inbox/Receipts and Sent Items (flags, a category, a draft) and
// alice@contoso.eu holds testdata/mail; and an empty Dovecot account at
// $URL_TO (password in $WORK/pw-to). Skipped when Dovecot is unavailable,
// unless PLANB_REQUIRE_DOVECOT=1.
func TestMigrateGraphScripts(t *testing.T) {
	d := imaptest.Start(t)
	tb := func(env *testscript.Env) testing.TB { return env.T().(testing.TB) }
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/graph/migrate",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PLANB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("PLANB_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
			for _, k := range []string{"PLANB_REPOSITORY", "PLANB_PASSWORD", "PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND",
				"PLANB_GRAPH_CLIENT_SECRET", "PLANB_IMAP_PASSWORD", "PLANB_IMAP_PASSWORD_FILE"} {
				env.Setenv(k, "")
			}
			srv := graphtest.NewServer()
			env.Defer(srv.Close)
			fakes.Store(env.WorkDir, srv)
			tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
			tn.AddApp(fakeClient, fakeSecret)
			alice := tn.AddMailbox("alice@contoso.eu", "Alice")
			bob := tn.AddMailbox("bob@contoso.eu", "Bob")
			fakeMailboxes.Store(env.WorkDir+" alice@contoso.eu", alice)
			fakeMailboxes.Store(env.WorkDir+" bob@contoso.eu", bob)
			if err := loadMaildir(alice, filepath.Join("..", "..", "testdata", "mail", "maildir")); err != nil {
				return err
			}
			sub := bob.AddFolder(bob.WellKnown("inbox"), "Receipts", false)
			day := func(d int) time.Time { return time.Date(2026, 3, d, 9, 0, 0, 0, time.UTC) }
			bob.AddMessage("inbox", graphtest.Message{MIME: []byte("From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n"), IsRead: true, Received: day(1)})
			bob.AddMessage("inbox", graphtest.Message{MIME: []byte("From: c@example.org\r\nSubject: three\r\n\r\nthird, unread\r\n"), Received: day(3)})
			bob.AddMessage(sub, graphtest.Message{MIME: []byte("From: b@example.org\r\nSubject: two\r\n\r\nsecond\r\n"), Flagged: true,
				Categories: []string{"Blue category"}, Received: day(2)})
			bob.AddMessage("sentitems", graphtest.Message{MIME: []byte("From: bob@contoso.eu\r\nSubject: sent\r\n\r\nbye\r\n"), IsRead: true, Received: day(4)})

			if err := fakeGraphEnv(env, srv); err != nil {
				return err
			}

			user, pw := d.NewUser(tb(env))
			migrateTargets.Store(env.WorkDir, migrateTarget{d: d, user: user, pw: pw, tb: tb(env)})
			if err := os.WriteFile(filepath.Join(env.WorkDir, "pw-to"), []byte(pw+"\n"), 0o600); err != nil {
				return err
			}
			env.Setenv("URL_TO", "imaps://"+user+"@127.0.0.1:"+strconv.Itoa(d.TLSPort))
			env.Setenv("XDG_CACHE_HOME", filepath.Join(env.WorkDir, "cache"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":       cmdStatus,
			"jsonlines":    cmdJSONLines,
			"graphfake":    cmdGraphFake,
			"migratecheck": cmdMigrateCheck,
		},
	})
}

// cmdMigrateCheck runs `migratecheck ADDR`: the script's Dovecot account
// must hold exactly the fake mailbox's messages, with the same bytes,
// flags (a category as its keyword), and dates; Inbox is INBOX, Sent
// Items the server's \Sent folder "Sent", and "." the separator. Line
// ends compare as CRLF, as IMAP returns them.
func cmdMigrateCheck(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: migratecheck ADDR")
	}
	v, ok := migrateTargets.Load(ts.Getenv("WORK"))
	if !ok {
		ts.Fatalf("no Dovecot account for this script")
	}
	tg := v.(migrateTarget)
	want := archivetest.NewMailbox()
	for path, msgs := range mailboxOf(ts, args[0]).Messages() {
		switch {
		case path == "Inbox":
			path = "INBOX"
		case strings.HasPrefix(path, "Inbox/"):
			path = "INBOX/" + strings.TrimPrefix(path, "Inbox/")
		case path == "Sent Items":
			path = "Sent"
		}
		for _, m := range msgs {
			fl := wantGraphFlags(m)
			// IMAP gives CRLF line ends back, whatever was appended.
			body := bytes.ReplaceAll(bytes.ReplaceAll(m.MIME, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
			want.Add(path, archivetest.Msg{Flags: fl, InternalDate: m.Received, Body: body})
		}
	}
	c := tg.d.Dial(tg.tb, tg.user, tg.pw)
	list, err := c.List("", "*", nil).Collect()
	ts.Check(err)
	got := archivetest.NewMailbox()
	for _, l := range list {
		if slices.Contains(l.Attrs, goimap.MailboxAttrNoSelect) {
			continue
		}
		path := strings.ReplaceAll(l.Mailbox, string(l.Delim), "/")
		got.AddFolder(archive.Folder{Path: path})
		for _, m := range imaptest.Fetch(tg.tb, c, l.Mailbox) {
			got.Add(path, archivetest.Msg{Flags: m.Flags, InternalDate: m.Date, Body: m.Body})
		}
	}
	if diffs := archivetest.Compare(want, got, &archivetest.CompareOptions{IgnoreEmptyFolders: true, DateUnit: time.Second, WireLineEnds: true}); len(diffs) > 0 {
		ts.Fatalf("account %s differs from mailbox %s:\n%s", tg.user, args[0], strings.Join(diffs, "\n"))
	}
}

// keywordlessSession is go-imap's memory server as a target that keeps no
// keywords: PERMANENTFLAGS without \*, and an APPEND with a keyword is
// refused.
type keywordlessSession struct{ imapserver.Session }

func (s keywordlessSession) Select(name string, options *goimap.SelectOptions) (*goimap.SelectData, error) {
	data, err := s.Session.Select(name, options)
	if err == nil {
		data.PermanentFlags = []goimap.Flag{goimap.FlagSeen, goimap.FlagAnswered, goimap.FlagFlagged, goimap.FlagDeleted, goimap.FlagDraft}
	}
	return data, err
}

func (s keywordlessSession) Append(mailbox string, r goimap.LiteralReader, options *goimap.AppendOptions) (*goimap.AppendData, error) {
	for _, f := range options.Flags {
		if !strings.HasPrefix(string(f), `\`) {
			return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "no keywords here"}
		}
	}
	return s.Session.Append(mailbox, r, options)
}

// TestRestoreDropsKeywords: into a target that keeps no keywords, a
// restore appends every message with its system flags, says on stderr
// that keywords are dropped (a warning, without --verbose), and ends
// well (exit 0); with --json the warning is a JSON line.
func TestRestoreDropsKeywords(t *testing.T) {
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser("alice", "secret"))
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return keywordlessSession{mem.NewSession()}, nil, nil
		},
		Caps:         goimap.CapSet{goimap.CapIMAP4rev1: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	mb := archivetest.NewMailbox()
	date := time.Date(2025, 12, 24, 18, 0, 0, 0, time.UTC)
	mb.Add("INBOX", archivetest.Msg{Flags: []string{`\Seen`, "$Label1"}, InternalDate: date, Body: []byte("Subject: a\r\n\r\none\r\n")})
	mb.Add("INBOX", archivetest.Msg{Flags: []string{`\Flagged`, "todo", "$Forwarded"}, InternalDate: date.Add(time.Hour), Body: []byte("Subject: b\r\n\r\ntwo\r\n")})
	mb.Add("INBOX", archivetest.Msg{Flags: []string{`\Answered`}, InternalDate: date.Add(2 * time.Hour), Body: []byte("Subject: c\r\n\r\nthree\r\n")})
	r := repotest.New(t, nil)
	snap, err := backup.Run(t.Context(), r, mb, nil)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	pn, _ := strconv.Atoi(port)
	o := &imap.Options{Host: host, Port: pn, User: "alice", Password: "secret", TLS: imap.TLSNone, Connections: 2}

	var stdout, stderr bytes.Buffer
	g := &globalOptions{stdout: &stdout, stderr: &stderr}
	g.setup()
	if err := runRestore(t.Context(), r, snap, o, &imap.SinkOptions{}, restoreScope{}, "restore", g); err != nil {
		t.Fatalf("runRestore = %v, want success\n%s", err, stderr.String())
	}
	if want := "planb: warning: the target does not keep keywords: dropping them (folder=INBOX)\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}
	if !strings.HasPrefix(stdout.String(), "appended 3 messages ") {
		t.Errorf("stdout = %q, want appended 3 messages", stdout.String())
	}
	got := imaptest.Fetch(t, c, "INBOX")
	if len(got) != 3 {
		t.Fatalf("INBOX holds %d messages, want 3", len(got))
	}
	slices.SortFunc(got, func(a, b imaptest.Message) int { return a.Date.Compare(b.Date) })
	wantFlags := [][]string{{`\Seen`}, {`\Flagged`}, {`\Answered`}}
	for i, m := range got {
		if !slices.Equal(m.Flags, wantFlags[i]) || !m.Date.Equal(date.Add(time.Duration(i)*time.Hour)) {
			t.Errorf("message %d: flags %v, date %v; want %v, %v", i, m.Flags, m.Date, wantFlags[i], date.Add(time.Duration(i)*time.Hour))
		}
	}

	// With --json, into another folder: the warning is a JSON line.
	stdout.Reset()
	stderr.Reset()
	g = &globalOptions{stdout: &stdout, stderr: &stderr, JSON: true}
	g.setup()
	so := &imap.SinkOptions{MapOptions: imap.MapOptions{Map: map[string]string{"INBOX": "Copy"}}}
	if err := runRestore(t.Context(), r, snap, o, so, restoreScope{}, "restore", g); err != nil {
		t.Fatalf("runRestore --json = %v, want success", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("--json: stderr = %q, want nothing", stderr.String())
	}
	if !strings.Contains(stdout.String(), `{"type":"warning","op":"restore","folder":"INBOX","message":"the target does not keep keywords: dropping them (folder=INBOX)"}`+"\n") ||
		!strings.Contains(stdout.String(), `"appended":3,"present":0,`) {
		t.Errorf("--json: stdout = %q, want a warning line and 3 appended", stdout.String())
	}
}
