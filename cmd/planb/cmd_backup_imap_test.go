package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/imap/imaptest"
)

// TestIMAPScripts runs testdata/imap/*.txtar against a throwaway Dovecot
// (skipped when Dovecot is unavailable, unless PLANB_REQUIRE_DOVECOT=1).
func TestIMAPScripts(t *testing.T) {
	d := imaptest.Start(t)
	tb := func(env *testscript.Env) testing.TB { return env.T().(testing.TB) }
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/imap",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PLANB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("PLANB_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
			for _, k := range []string{"PLANB_REPOSITORY", "PLANB_PASSWORD", "PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND", "PLANB_IMAP_PASSWORD", "PLANB_IMAP_PASSWORD_FILE"} {
				env.Setenv(k, "")
			}
			user, pw := d.NewUser(tb(env))
			c := d.Dial(tb(env), user, pw)
			inbox := imaptest.Generate("inbox", 4)
			imaptest.Append(tb(env), c, "INBOX", inbox)
			imaptest.Append(tb(env), c, "Entwürfe", imaptest.Generate("entw", 2))
			imaptest.Append(tb(env), c, "Sent", imaptest.Generate("sent", 1))
			// What the server holds, for cmp after export.
			held := imaptest.Fetch(tb(env), c, "INBOX")
			if err := os.MkdirAll(filepath.Join(env.WorkDir, "want"), 0o700); err != nil {
				return err
			}
			for i, m := range held {
				name := filepath.Join(env.WorkDir, "want", "INBOX-"+strconv.Itoa(i+1)+".eml")
				if err := os.WriteFile(name, m.Body, 0o600); err != nil {
					return err
				}
			}
			if err := os.WriteFile(filepath.Join(env.WorkDir, "imap-password"), []byte(pw+"\n"), 0o600); err != nil {
				return err
			}
			env.Setenv("IMAP_USER", user)
			env.Setenv("DOVECOT_PORT", strconv.Itoa(d.Port))
			env.Setenv("DOVECOT_TLS_PORT", strconv.Itoa(d.TLSPort))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":    cmdStatus,
			"jsonlines": cmdJSONLines,
			"capture":   cmdCapture,
		},
	})
}
