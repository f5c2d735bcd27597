package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPasswordPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prompt := func(string) (string, error) { return "from-prompt", nil }
	tests := []struct {
		name string
		opts passwordOptions
		want string
	}{
		{"file wins", passwordOptions{File: file, Command: "echo from-command", Env: "from-env", Prompt: prompt}, "from-file"},
		{"command before env", passwordOptions{Command: "echo from-command", Env: "from-env", Prompt: prompt}, "from-command"},
		{"env before prompt", passwordOptions{Env: "from-env", Prompt: prompt}, "from-env"},
		{"prompt last", passwordOptions{Prompt: prompt}, "from-prompt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.get(t.Context(), "password", false)
			if err != nil || got != tt.want {
				t.Errorf("get() = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestPasswordNone(t *testing.T) {
	_, err := passwordOptions{}.get(t.Context(), "password", false)
	if !errors.Is(err, errNoPassword) {
		t.Fatalf("get() error = %v, want errNoPassword", err)
	}
	want := "no repository password: set PLANB_PASSWORD_FILE, --password-file, --password-command or PLANB_PASSWORD"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestPasswordFileNewline(t *testing.T) {
	tests := []struct{ content, want string }{
		{"secret", "secret"},
		{"secret\n", "secret"},
		{"secret\r\n", "secret"},
		{"secret\n\n", "secret\n"}, // only one newline is stripped
		{" spaced secret \n", " spaced secret "},
	}
	for _, tt := range tests {
		file := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(file, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := passwordOptions{File: file}.get(t.Context(), "password", false)
		if err != nil || got != tt.want {
			t.Errorf("password file %q: get() = %q, %v, want %q", tt.content, got, err, tt.want)
		}
	}
}

func TestPasswordErrors(t *testing.T) {
	tests := []struct {
		name string
		opts passwordOptions
		want string
	}{
		{"missing file", passwordOptions{File: filepath.Join(t.TempDir(), "nope")}, "read password file:"},
		{"empty file", passwordOptions{File: os.DevNull}, "empty password"},
		{"failing command", passwordOptions{Command: "echo secret; exit 3"}, "password command: exit status 3"},
		{"empty command output", passwordOptions{Command: "true"}, "empty password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.get(t.Context(), "password", false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("get() = %q, %v, want error containing %q", got, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q repeats the password", err)
			}
		})
	}
}

func TestPasswordPromptConfirm(t *testing.T) {
	answers := func(a ...string) func(string) (string, error) {
		return func(string) (string, error) {
			s := a[0]
			a = a[1:]
			return s, nil
		}
	}
	got, err := passwordOptions{Prompt: answers("one", "one")}.get(t.Context(), "password", true)
	if err != nil || got != "one" {
		t.Errorf("matching prompts: get() = %q, %v, want %q", got, err, "one")
	}
	_, err = passwordOptions{Prompt: answers("one", "two")}.get(t.Context(), "password", true)
	if err == nil || err.Error() != "passwords do not match" {
		t.Errorf("different prompts: get() error = %v, want %q", err, "passwords do not match")
	}
}

// TestPasswordFileReadableByOthers: a password file that group or others
// may read works, with the warning planb run gives for such a secret
// file (once, on standard error or as a --json warning line); a file only
// its owner may read gets none.
func TestPasswordFileReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	for _, k := range []string{"PLANB_PASSWORD", "PLANB_PASSWORD_COMMAND", "PLANB_PASSWORD_FILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("PLANB_REPOSITORY", filepath.Join(dir, "repo"))
	loose := filepath.Join(dir, "loose")
	tight := filepath.Join(dir, "tight")
	for name, mode := range map[string]os.FileMode{loose: 0o644, tight: 0o600} {
		if err := os.WriteFile(name, []byte("secret\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(name, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
	want := "planb: warning: secret file " + loose + " is readable by group or others (mode 0644); run chmod go-r " + loose + "\n"
	code, _, stderr := runPlanb(t, "--password-file", loose, "init")
	if code != 0 || strings.Count(stderr, "warning") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("planb init --password-file (mode 0644) = %d, stderr %q; want success and the one warning %q", code, stderr, want)
	}
	code, _, stderr = runPlanb(t, "--password-file", tight, "snapshots")
	if code != 0 || strings.Contains(stderr, "warning") {
		t.Errorf("planb snapshots --password-file (mode 0600) = %d, stderr %q; want 0 and no warning", code, stderr)
	}
	t.Setenv("PLANB_PASSWORD_FILE", loose)
	code, stdout, _ := runPlanb(t, "--json", "snapshots")
	if code != 0 || !strings.Contains(stdout, `"type":"warning"`) || !strings.Contains(stdout, "readable by group or others (mode 0644)") {
		t.Errorf("planb --json snapshots with PLANB_PASSWORD_FILE of mode 0644 = %d, %q; want a warning line", code, stdout)
	}
}
