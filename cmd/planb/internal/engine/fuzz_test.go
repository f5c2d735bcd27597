package engine

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzConfig loads arbitrary bytes as the config file of planb run:
// the loader ends with a config or with its problems, one non-empty line
// each, the same problems in the same order every time; a config without
// problems is complete (every source's repository exists, concurrency at
// least 1).
func FuzzConfig(f *testing.F) {
	for _, s := range []string{
		`concurrency = 2
state_dir = "state"
[repository.local]
path = "repo"
password_file = "pw"
keep = { last = 3, daily = 7 }
prune_every = "7d"
check_sample = "5%"
[repository.cloud]
path = "s3:https://s3.example.eu/bucket/prefix"
password_command = "pass planb"
[[source]]
name = "m"
kind = "mbox"
path = "mail/archive.mbox"
repository = "local"
tags = ["nightly"]
[[source]]
name = "i"
kind = "imap"
url = "imaps://alice@mail.example.org"
password_env = "PLANB_FUZZ_UNSET"
folders = ["INBOX"]
repository = "cloud"
`,
		`[[source]]
name = "g"
kind = "graph"
tenant = "t"
client_id = "c"
client_secret_file = "secret"
all_mailboxes = true
mailboxes = ["a@b"]
cloud = "mars"
path = "x"
repository = "nope"
bogus = 1
`,
		"[repository.a]\n[repository.b]\n[repository.c]\n",
		"concurrency = -1\n[[source]]\n[[source]]\nname = \"x\"\nkind = \"maildir\"\n",
		"x = \n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		name := filepath.Join(dir, "planb.toml")
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		load := func() (*Config, Problems, error) {
			cfg, err := Load(name)
			var probs Problems
			if errors.As(err, &probs) {
				if len(probs) == 0 {
					t.Fatalf("Load = empty problems")
				}
				for _, p := range probs {
					if strings.TrimSpace(p) == "" {
						t.Fatalf("Load: an empty problem in %q", probs)
					}
				}
				return cfg, probs, nil
			}
			return cfg, nil, err
		}
		cfg, probs, err := load()
		if err != nil {
			return
		}
		// The TOML decoder reports one type mismatch of several in map
		// order, which varies; the loader's own problems do not.
		_, again, _ := load()
		if len(probs) == 1 && strings.Contains(probs[0], ": toml: ") {
			return
		}
		if !reflect.DeepEqual(probs, again) {
			t.Fatalf("two loads, two answers:\n%q\n%q", probs, again)
		}
		if probs != nil {
			return
		}
		if cfg.Concurrency < 1 || !slices.IsSorted(cfg.names) || len(cfg.names) != len(cfg.Repository) {
			t.Fatalf("config without problems: concurrency %d, repositories %q", cfg.Concurrency, cfg.names)
		}
		for _, sc := range cfg.Source {
			if cfg.Repository[sc.Repository] == nil {
				t.Fatalf("config without problems: source %q names repository %q, which it lacks", sc.Name, sc.Repository)
			}
		}
	})
}
