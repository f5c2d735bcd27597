package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive/crypto"
)

// TestKeyKDF: init, key add and key passwd write their key file with
// --kdf's parameters (the default without it), key list names each
// file's, and a bad --kdf is a one-line usage error that writes nothing.
func TestKeyKDF(t *testing.T) {
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	pw := func(name, secret string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	pw1, pw2, pw3 := pw("pw1", "first"), pw("pw2", "second"), pw("pw3", "third")
	g := []string{"--repo", repoDir, "--password-file", pw1}
	cli := func(wantCode int, args ...string) string {
		t.Helper()
		code, stdout, stderr := planbCLI(t, append(append([]string{}, g...), args...)...)
		if code != wantCode {
			t.Fatalf("planb %s = exit %d, want %d; stderr:\n%s", strings.Join(args, " "), code, wantCode, stderr)
		}
		if code != 0 {
			return stderr
		}
		return stdout
	}
	kdfs := func() []string {
		t.Helper()
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(cli(0, "--json", "key", "list")), "\n") {
			var k struct {
				Type, KDF string
				Current   bool
			}
			if err := json.Unmarshal([]byte(line), &k); err != nil || k.Type != "key" {
				t.Fatalf("key list --json line %q: %v", line, err)
			}
			mark := ""
			if k.Current {
				mark = "*"
			}
			out = append(out, mark+k.KDF)
		}
		return out
	}

	const usageLine = "planb: error: %s: --kdf: key derivation \"m=9216,t=4\": want m=MEMORY_KIB,t=PASSES,p=LANES, as m=9216,t=4,p=1\n"
	if got, want := cli(2, "init", "--kdf", "m=9216,t=4"), usageLine; !strings.HasPrefix(got, strings.ReplaceAll(want, "%s", "planb init")) {
		t.Errorf("init --kdf m=9216,t=4: stderr %q, want %q", got, strings.ReplaceAll(want, "%s", "planb init"))
	}
	if _, err := os.Stat(repoDir); !os.IsNotExist(err) {
		t.Fatalf("a refused init left %s (%v)", repoDir, err)
	}
	cli(0, "--quiet", "init", "--kdf", "m=16,t=2,p=1")
	cli(0, "--quiet", "key", "add", "--new-password-file", pw2, "--kdf", "p=2,t=1,m=24")
	if got, want := kdfs(), []string{"*argon2id m=16,t=2,p=1", "argon2id m=24,t=1,p=2"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("key list KDFs = %q, want %q", got, want)
	}
	got := cli(2, "key", "passwd", "--new-password-file", pw3, "--kdf", "m=524288,t=3,p=1")
	if want := "planb: error: planb key passwd: --kdf: key derivation asks for 512 MiB of memory, more than the 256 MiB planb allows\n"; !strings.HasPrefix(got, want) {
		t.Errorf("key passwd --kdf m=524288: stderr %q, want %q", got, want)
	}
	// No --kdf: the default.
	cli(0, "--quiet", "key", "passwd", "--new-password-file", pw3)
	g[3] = pw3
	if got, want := kdfs(), []string{"argon2id m=24,t=1,p=2", "*argon2id " + crypto.DefaultKDF().String()}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("key list KDFs after passwd = %q, want %q", got, want)
	}
	if out := cli(0, "key", "list"); !strings.Contains(out, "KDF") || !strings.Contains(out, "argon2id m=24,t=1,p=2") {
		t.Errorf("key list:\n%s\nwant a KDF column", out)
	}
	g[3] = pw1
	if got := cli(1, "snapshots"); !strings.Contains(got, "wrong password") {
		t.Errorf("the replaced password: %q, want wrong password", got)
	}
}
