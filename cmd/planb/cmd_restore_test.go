package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestRestoreScripts runs testdata/imap/restore/*.txtar against two
// throwaway Dovecots: the usual one ("." separator, "Sent") and the "alt"
// one ("/" separator, "Sent Items"). Skipped when Dovecot is unavailable,
// unless PLANB_REQUIRE_DOVECOT=1.
func TestRestoreScripts(t *testing.T) {
	d := imaptest.Start(t)
	alt := imaptest.StartAlt(t)
	tb := func(env *testscript.Env) testing.TB { return env.T().(testing.TB) }
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/imap/restore",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PLANB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("PLANB_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
			for _, k := range []string{"PLANB_REPOSITORY", "PLANB_PASSWORD", "PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND", "PLANB_IMAP_PASSWORD", "PLANB_IMAP_PASSWORD_FILE"} {
				env.Setenv(k, "")
			}
			users := map[string]*imaptest.Dovecot{"A": d, "B": alt, "C": d, "D": alt}
			for _, name := range []string{"A", "B", "C", "D"} {
				srv := users[name]
				user, pw := srv.NewUser(tb(env))
				if name == "A" {
					c := srv.Dial(tb(env), user, pw)
					imaptest.Append(tb(env), c, "INBOX", imaptest.Generate("inbox", 4))
					imaptest.Append(tb(env), c, "Entwürfe.Tiefer", imaptest.Generate("entw", 2))
					imaptest.Append(tb(env), c, "Sent", []imaptest.Message{{
						Body:  []byte("Subject: sent\r\n\r\nkeyword and flags\r\n"),
						Flags: []string{`\Seen`, `\Answered`, "$Label1"},
						Date:  time.Date(2020, 2, 29, 10, 0, 0, 0, time.UTC),
					}})
				}
				if err := os.WriteFile(filepath.Join(env.WorkDir, "pw-"+name), []byte(pw+"\n"), 0o600); err != nil {
					return err
				}
				env.Setenv("URL_"+name, "imaps://"+user+"@127.0.0.1:"+strconv.Itoa(srv.TLSPort))
			}
			env.Setenv("MAILDIR", filepath.Join(root, "testdata", "mail", "maildir"))
			env.Setenv("XDG_CACHE_HOME", filepath.Join(env.WorkDir, "cache"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":    cmdStatus,
			"jsonlines": cmdJSONLines,
		},
	})
}

// TestRestoreServerCrash: the server dies in the middle of a restore and
// comes back; runRestore resumes and every message lands exactly once.
func TestRestoreServerCrash(t *testing.T) {
	d := imaptest.Start(t)
	user, pw := d.NewUser(t)
	mb := archivetest.NewMailbox()
	// 16 KiB each, so that the restore takes a while on any machine.
	pad := bytes.Repeat([]byte(strings.Repeat("0123456789abcdef", 4)+"\r\n"), 250)
	for i, m := range imaptest.Generate("crash", 3000) {
		mb.Add([]string{"INBOX", "Projekte/Alt"}[i%2], archivetest.Msg{Body: append(m.Body, pad...), InternalDate: m.Date, Flags: m.Flags})
	}
	r, snap := snapshotOf(t, mb)
	var stdout, stderr bytes.Buffer
	g := &globalOptions{stdout: &stdout, stderr: &stderr}
	g.setup()
	o := &imap.Options{Host: d.Host, Port: d.TLSPort, User: user, Password: pw, TLS: imap.TLSImplicit, RootCAs: d.RootCAs, Connections: 2}
	crashed := make(chan error, 1)
	watcher := d.Dial(t, user, pw)
	go func() {
		// The crash comes once 400 messages are in, however fast the
		// machine.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			n := 0
			for _, mb := range []string{"INBOX", "Projekte.Alt"} {
				if st, err := watcher.Status(mb, &goimap.StatusOptions{NumMessages: true}).Wait(); err == nil {
					n += int(*st.NumMessages)
				}
			}
			if n >= 400 {
				break
			}
		}
		crashed <- errors.Join(exec.Command("bash", "-c", `DOVECOT_DIR="$1" "$2" kill && sleep 0.3 && DOVECOT_DIR="$1" "$2" start`, "sh", d.Dir, scriptPath(t)).Run())
	}()
	if err := runRestore(t.Context(), r, snap, o, &imap.SinkOptions{}, restoreScope{}, "restore", g); err != nil {
		t.Fatalf("runRestore: %v\n%s", err, stderr.String())
	}
	if err := <-crashed; err != nil {
		t.Fatalf("kill and restart dovecot: %v", err)
	}
	if !strings.Contains(stderr.String(), "resuming") {
		t.Errorf("the restore did not notice the crash; stderr: %q", stderr.String())
	}
	t.Logf("%s%s", stdout.String(), stderr.String())
	if !strings.HasPrefix(stdout.String(), "appended ") {
		t.Errorf("stdout %q, want the summary", stdout.String())
	}
	checkRestored(t, d, o, r, snap, 3000)
}

// checkRestored checks that the account of o on d holds want messages in
// INBOX and Projekte.Alt, and that they verify against snap.
func checkRestored(t *testing.T, d *imaptest.Dovecot, o *imap.Options, r *repo.Repository, snap *repo.Snapshot, want int) {
	t.Helper()
	c := d.Dial(t, o.User, o.Password)
	got := 0
	for _, m := range []string{"INBOX", "Projekte.Alt"} {
		got += len(imaptest.Fetch(t, c, m))
	}
	if got != want {
		t.Errorf("server holds %d messages, want %d", got, want)
	}
	a, err := imap.OpenAccount(t.Context(), o, imap.MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if rep, err := restore.Verify(t.Context(), r, snap, a, nil); err != nil || len(rep.Differences) != 0 {
		t.Errorf("verify: %v, %+v", err, rep)
	}
}

// snapshotOf backs mb up into a new local repository, closed when the
// test ends.
func snapshotOf(t *testing.T, mb *archivetest.Mailbox) (*repo.Repository, *repo.Snapshot) {
	t.Helper()
	be, err := local.Create(t.Context(), filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(t.Context(), be, "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	snap, err := backup.Run(t.Context(), r, mb, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, snap
}

func scriptPath(t *testing.T) string {
	p, err := imaptest.Script()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
