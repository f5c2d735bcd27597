package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/graph/graphtest"
)

const (
	fakeTenant = "11111111-2222-3333-4444-555555555555"
	fakeClient = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	fakeSecret = "s3cret~value"
	fakePublic = "cccccccc-dddd-eeee-ffff-000000000000" // a public client app, for --device-code
)

// fakes holds each script's fake Graph, by $WORK.
var fakes sync.Map // string → *graphtest.Server

func fakeOf(ts *testscript.TestScript) *graphtest.Server {
	v, ok := fakes.Load(ts.Getenv("WORK"))
	if !ok {
		ts.Fatalf("no fake Graph server for this script")
	}
	return v.(*graphtest.Server)
}

// fakeMailbox finds a mailbox of the script's fake tenant.
var fakeMailboxes sync.Map // $WORK + " " + address → *graphtest.Mailbox

// TestGraphScripts runs the scripts of testdata/graph, each against a
// fresh fake tenant (graphtest) with three mailboxes: alice holds
// testdata/mail, bob two messages, carol one, henry none. The planb processes trust the fake through SSL_CERT_FILE
// and reach it through PLANB_GRAPH_ENDPOINT and PLANB_AUTHORITY_HOST.
func TestGraphScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/graph",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PLANB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("PLANB_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
			for _, k := range []string{"PLANB_REPOSITORY", "PLANB_PASSWORD", "PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND", "PLANB_GRAPH_CLIENT_SECRET"} {
				env.Setenv(k, "")
			}
			srv := graphtest.NewServer()
			env.Defer(srv.Close)
			fakes.Store(env.WorkDir, srv)
			tn := srv.AddTenant(fakeTenant, "contoso.onmicrosoft.com")
			tn.AddApp(fakeClient, fakeSecret)
			tn.AddPublicApp(fakePublic)
			boxes := map[string]*graphtest.Mailbox{
				"alice@contoso.eu": tn.AddMailbox("alice@contoso.eu", "Alice"),
				"bob@contoso.eu":   tn.AddMailbox("bob@contoso.eu", "Bob"),
				"carol@contoso.eu": tn.AddMailbox("carol@contoso.eu", "Carol"),
				"henry@contoso.eu": tn.AddMailbox("henry@contoso.eu", "Henry"),
			}
			for addr, mb := range boxes {
				fakeMailboxes.Store(env.WorkDir+" "+addr, mb)
			}
			if err := loadMaildir(boxes["alice@contoso.eu"], filepath.Join("..", "..", "testdata", "mail", "maildir")); err != nil {
				return err
			}
			bob := boxes["bob@contoso.eu"]
			sub := bob.AddFolder("inbox", "Receipts", false)
			bob.AddMessage("inbox", graphtest.Message{MIME: []byte("From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n"), IsRead: true,
				Received: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)})
			bob.AddMessage(sub, graphtest.Message{MIME: []byte("From: b@example.org\r\nSubject: two\r\n\r\nsecond\r\n"), Flagged: true,
				Categories: []string{"Blue category"}, Received: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)})
			boxes["carol@contoso.eu"].AddMessage("sentitems", graphtest.Message{MIME: []byte("From: carol@contoso.eu\r\nSubject: sent\r\n\r\nbye\r\n"), IsRead: true})

			if err := fakeGraphEnv(env, srv); err != nil {
				return err
			}
			env.Setenv("PUBLIC_CLIENT", fakePublic)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":     cmdStatus,
			"capture":    cmdCapture,
			"jsonlines":  cmdJSONLines,
			"graphfake":  cmdGraphFake,
			"graphcheck": cmdGraphCheck,
			"filemode":   cmdFileMode,
		},
	})
}

// loadMaildir adds a Maildir's messages to mb: INBOX, Sent, Drafts, Trash,
// Junk and Archive to the well-known folders, other folders nested below
// the top, flags mapped to Graph's.
func loadMaildir(mb *graphtest.Mailbox, dir string) error {
	src, err := mailfile.NewMaildirSource(dir, nil)
	if err != nil {
		return err
	}
	box, err := archivetest.Collect(context.Background(), src)
	if err != nil {
		return err
	}
	folders, _ := box.Folders(context.Background())
	ids := map[string]string{"INBOX": mb.WellKnown("inbox")}
	for path, wk := range map[string]string{"Sent": "sentitems", "Drafts": "drafts", "Trash": "deleteditems", "Junk": "junkemail", "Archive": "archive"} {
		ids[path] = mb.WellKnown(wk)
	}
	var folderID func(path string) string
	folderID = func(path string) string {
		if id, ok := ids[path]; ok {
			return id
		}
		parent, name := "", path
		if i := strings.LastIndex(path, "/"); i >= 0 {
			parent, name = folderID(path[:i]), path[i+1:]
		}
		ids[path] = mb.AddFolder(parent, name, false)
		return ids[path]
	}
	for _, f := range folders {
		id := folderID(f.Path)
		for _, m := range box.Messages(f.Path) {
			gm := graphtest.Message{MIME: m.Body, Received: m.InternalDate.UTC().Truncate(time.Second)}
			for _, fl := range m.Flags {
				switch {
				case fl == archive.FlagSeen:
					gm.IsRead = true
				case fl == archive.FlagFlagged:
					gm.Flagged = true
				case fl == archive.FlagDraft:
					gm.IsDraft = true
				case !strings.HasPrefix(fl, `\`):
					gm.Categories = append(gm.Categories, fl)
				}
			}
			mb.AddMessage(id, gm)
		}
	}
	return nil
}

func mailboxOf(ts *testscript.TestScript, addr string) *graphtest.Mailbox {
	v, ok := fakeMailboxes.Load(ts.Getenv("WORK") + " " + addr)
	if !ok {
		ts.Fatalf("no mailbox %s in the fake", addr)
	}
	return v.(*graphtest.Mailbox)
}

// cmdGraphFake changes the fake:
//
//	graphfake add ADDR FOLDER FILE    add FILE's bytes to a folder (id or well-known name)
//	graphfake flag ADDR SUBJECT       flag the message with that Subject
//	graphfake remove ADDR SUBJECT     remove the message with that Subject
//	graphfake deny ADDR on|off        403 for the mailbox
//	graphfake expire                  expire every delta token
//	graphfake throttle RATE STATUS RETRYAFTER
//	graphfake values ADDR N           check that N $value calls were made since the last check
//	graphfake approve ADDR            wait for a device code sign-in (10 s at most) and approve it as ADDR
//	graphfake grants GRANT N          check that N token requests of grant_type GRANT were made
func cmdGraphFake(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: graphfake add|flag|remove|deny|expire|throttle|values|approve|grants ...")
	}
	srv := fakeOf(ts)
	bySubject := func(mb *graphtest.Mailbox, subject string) string {
		for _, msgs := range mb.Messages() {
			for _, m := range msgs {
				if strings.Contains(string(m.MIME), "Subject: "+subject+"\r\n") || strings.Contains(string(m.MIME), "Subject: "+subject+"\n") {
					return m.ID
				}
			}
		}
		ts.Fatalf("no message with Subject %q", subject)
		return ""
	}
	switch args[0] {
	case "add":
		mb := mailboxOf(ts, args[1])
		b, err := os.ReadFile(ts.MkAbs(args[3]))
		ts.Check(err)
		mb.AddMessage(args[2], graphtest.Message{MIME: b})
	case "flag":
		mb := mailboxOf(ts, args[1])
		mb.UpdateMessage(bySubject(mb, args[2]), func(m *graphtest.Message) { m.Flagged = true })
	case "remove":
		mb := mailboxOf(ts, args[1])
		mb.RemoveMessage(bySubject(mb, args[2]))
	case "deny":
		mailboxOf(ts, args[1]).Deny(args[2] == "on")
	case "expire":
		srv.ExpireDeltaTokens()
	case "throttle":
		rate, err := strconv.ParseFloat(args[1], 64)
		ts.Check(err)
		status, err := strconv.Atoi(args[2])
		ts.Check(err)
		srv.SetThrottle(rate, status, args[3])
	case "values":
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		if got := srv.Stats(args[1]).ValueCalls; got != n {
			ts.Fatalf("%s: %d $value calls, want %d", args[1], got, n)
		}
		srv.ResetStats()
	case "approve":
		deadline := time.Now().Add(10 * time.Second)
		for {
			if codes := srv.PendingDeviceCodes(); len(codes) > 0 {
				ts.Check(srv.ApproveDeviceCode(codes[0], args[1]))
				break
			}
			if time.Now().After(deadline) {
				ts.Fatalf("graphfake approve: no device code sign-in within 10 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "grants":
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		if got := srv.TokenGrants()[args[1]]; got != n {
			ts.Fatalf("%d %s token requests, want %d", got, args[1], n)
		}
	default:
		ts.Fatalf("graphfake: unknown operation %q", args[0])
	}
}

// cmdGraphCheck runs `graphcheck DIR ADDR`: the Maildir export in DIR must
// hold exactly the fake mailbox's messages: same bytes, folders (inbox as
// INBOX), flags, categories and dates.
func cmdGraphCheck(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: graphcheck DIR ADDR")
	}
	src, err := mailfile.NewMaildirSource(ts.MkAbs(args[0]), nil)
	ts.Check(err)
	got, err := archivetest.Collect(context.Background(), src)
	ts.Check(err)
	want := archivetest.NewMailbox()
	for path, msgs := range mailboxOf(ts, args[1]).Messages() {
		if path == "Inbox" {
			path = "INBOX"
		} else if p, ok := strings.CutPrefix(path, "Inbox/"); ok {
			path = "INBOX/" + p
		}
		for _, m := range msgs {
			fl := wantGraphFlags(m)
			want.Add(path, archivetest.Msg{Flags: fl, InternalDate: m.Received, Body: m.MIME})
		}
	}
	if diffs := archivetest.Compare(want, got, &archivetest.CompareOptions{IgnoreEmptyFolders: true, DateUnit: time.Second}); len(diffs) > 0 {
		ts.Fatalf("export %s differs from mailbox %s:\n%s", args[0], args[1], strings.Join(diffs, "\n"))
	}
}

// fakeGraphEnv points a script's planb at the fake Graph srv (its
// certificate trusted through SSL_CERT_FILE) and sets TENANT, CLIENT and
// SECRET to the fake tenant's application.
func fakeGraphEnv(env *testscript.Env, srv *graphtest.Server) error {
	cert, err := srv.WriteCertFile(env.WorkDir)
	if err != nil {
		return err
	}
	env.Setenv("SSL_CERT_FILE", cert)
	env.Setenv("PLANB_GRAPH_ENDPOINT", srv.URL())
	env.Setenv("PLANB_AUTHORITY_HOST", srv.URL())
	env.Setenv("TENANT", fakeTenant)
	env.Setenv("CLIENT", fakeClient)
	env.Setenv("SECRET", fakeSecret)
	return nil
}

// wantGraphFlags is what a fake Graph message's isRead, flag, isDraft and
// categories must become in a snapshot: \Seen, \Flagged, \Draft and keywords.
func wantGraphFlags(m graphtest.Message) []string {
	var fl []string
	if m.IsRead {
		fl = append(fl, archive.FlagSeen)
	}
	if m.Flagged {
		fl = append(fl, archive.FlagFlagged)
	}
	if m.IsDraft {
		fl = append(fl, archive.FlagDraft)
	}
	for _, c := range m.Categories {
		fl = append(fl, graph.Keyword(c))
	}
	return fl
}

// cmdFileMode runs `filemode MODE FILE`: FILE's permission bits must be
// MODE (octal).
func cmdFileMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: filemode MODE FILE")
	}
	want, err := strconv.ParseUint(args[0], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[1]))
	ts.Check(err)
	if got := fi.Mode().Perm(); got != os.FileMode(want) {
		ts.Fatalf("%s: mode %#o, want %#o", args[1], got, want)
	}
}
