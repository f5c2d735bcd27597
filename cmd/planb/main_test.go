package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/imap"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err      error
		code     int
		msg      string
		wantHint bool
	}{
		{nil, exitOK, "", false},
		{errors.New("open maildir \"x\": boom"), exitFailed, "open maildir \"x\": boom", false},
		{fmt.Errorf("open repository: %w", repo.ErrWrongPassword), exitFailed, "wrong password", false},
		{fmt.Errorf("backup: lock: %w", repo.ErrLocked), exitFailed, "backup: lock: repository is locked", true},
		{fmt.Errorf("backup: %w: could not refresh it for 22m30s", repo.ErrLockLost), exitFailed, "backup: repository lock lost: could not refresh it for 22m30s", true},
		{fmt.Errorf("%w: unreadable lock 00000000 (bad magic)", repo.ErrLocked), exitFailed, "repository is locked: unreadable lock 00000000 (bad magic)", true},
		{fmt.Errorf("%w: /tmp/r", errNoRepository), exitFailed, "repository does not exist: /tmp/r", true},
		{errNoPassword, exitFailed, errNoPassword.Error(), false},
		{fmt.Errorf("backup: %w", &errPartial{Messages: 2}), exitPartial, "backup: 2 messages skipped", false},
		{&errPartial{Messages: 1, Folders: 2}, exitPartial, "1 message and 2 folders skipped", false},
		{&errPartial{Folders: 1}, exitPartial, "1 folder skipped", false},
		{usageErrorf("usage: planb ls SNAPSHOT [FOLDER]"), exitUsage, "usage: planb ls SNAPSHOT [FOLDER]", true},
		{cli.Exit("No help topic for 'x'", 3), exitUsage, "No help topic for 'x'", true},
		{fmt.Errorf("backup: %w", context.Canceled), exitFailed, "interrupted", false},
		{fmt.Errorf("backup: folder \"[Gmail]/All Mail\": %w: the server sends no more mail for now ([OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)) (checkpoint 1a2b3c4d saved)", imap.ErrDownloadLimit), exitFailed,
			"backup: folder \"[Gmail]/All Mail\": download limit reached: the server sends no more mail for now ([OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)) (checkpoint 1a2b3c4d saved)", true},
		{errors.New("first line\n  second line\n"), exitFailed, "first line; second line", false},
	}
	for _, tt := range tests {
		code, msg, hint := classify(tt.err)
		if code != tt.code || msg != tt.msg || (hint != "") != tt.wantHint {
			t.Errorf("classify(%v) = %d, %q, %q; want %d, %q, hint %v", tt.err, code, msg, hint, tt.code, tt.msg, tt.wantHint)
		}
	}
}

func TestReport(t *testing.T) {
	tests := []struct {
		err  error
		code int
		want string
	}{
		{nil, 0, ""},
		{repo.ErrWrongPassword, 1, "planb: error: wrong password\n"},
		{repo.ErrLocked, 1, "planb: error: repository is locked\nplanb: hint: if no other planb process uses the repository, remove stale locks with `planb unlock`\n"},
		{&errPartial{Messages: 3}, 3, "planb: warning: 3 messages skipped\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if code := report(&buf, tt.err); code != tt.code || buf.String() != tt.want {
			t.Errorf("report(%v) = %d, %q; want %d, %q", tt.err, code, buf.String(), tt.code, tt.want)
		}
	}
}

func TestNewPartial(t *testing.T) {
	if err := newPartial(nil); err != nil {
		t.Errorf("newPartial(nil) = %v, want nil", err)
	}
	err := newPartial([]repo.Skipped{{Folder: "INBOX", SourceID: "1"}, {Folder: "INBOX", SourceID: "2"}, {Folder: "Junk"}})
	if got, want := err.Error(), "2 messages and 1 folder skipped"; got != want {
		t.Errorf("newPartial(...) = %q, want %q", got, want)
	}
}

func TestRunExitCodes(t *testing.T) {
	t.Setenv("PLANB_REPOSITORY", "")
	t.Setenv("PLANB_PASSWORD", "")
	t.Setenv("PLANB_PASSWORD_FILE", "")
	t.Setenv("PLANB_PASSWORD_COMMAND", "")
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"planb", "help"}, exitOK, ""},
		{[]string{"planb", "nosuch"}, exitUsage, "planb: error: unknown command \"nosuch\"\nplanb: hint: see `planb help`\n"},
		{[]string{"planb", "forget", "--keep-last", "x"}, exitUsage, ""},
		{[]string{"planb", "--repo", t.TempDir(), "snapshots"}, exitFailed, ""},
		{[]string{"planb", "--repo", t.TempDir(), "init"}, exitFailed, "planb: error: " + errNoPassword.Error() + "\n"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tt.args, nil, &stdout, &stderr)
		if code != tt.code || (tt.stderr != "" && stderr.String() != tt.stderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d, stderr %q", tt.args, code, stderr.String(), tt.code, tt.stderr)
		}
	}
}
