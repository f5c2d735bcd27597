package main

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/imap/imaptest"
)

func TestMain(tm *testing.M) {
	var m testscript.TestingM = tm
	// Cheap key derivation for every test, including the planb processes
	// that testscript starts from this binary.
	crypto.SetTestKDF()
	// Restore journals and run state of the tests that call commands
	// directly go to a folder of their own, never to the user's.
	// So do the index caches (as root, testscript's HOME, /no-home,
	// could be made).
	c := cleanupM{TestingM: m, dirs: []string{tempDirEnv("PLANB_STATE_DIR", "planb-test-state-"), tempDirEnv("PLANB_CACHE_DIR", "planb-test-cache-")}}
	testscript.Main(c, map[string]func(){
		"planb": func() { os.Exit(run(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// tempDirEnv sets the environment variable key to a new temporary folder
// unless it is set already, and returns the folder ("" if it was set).
func tempDirEnv(key, pattern string) string {
	if os.Getenv(key) != "" {
		return ""
	}
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		panic(err)
	}
	os.Setenv(key, dir)
	return dir
}

// cleanupM stops the servers the tests shared and removes their
// directories (each run left some 300 MB in $TMPDIR before), and the
// state directory, once the tests have run.
type cleanupM struct {
	testscript.TestingM
	dirs []string
}

func (c cleanupM) Run() int {
	code := c.TestingM.Run()
	imaptest.StopShared()
	for _, dir := range c.dirs {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	return code
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PLANB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("PLANB_CACHE_DIR", filepath.Join(env.WorkDir, ".cache"))
			// No terminal, no inherited repository or password.
			for _, k := range []string{"PLANB_REPOSITORY", "PLANB_PASSWORD", "PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND"} {
				env.Setenv(k, "")
			}
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":    cmdStatus,
			"jsonlines": cmdJSONLines,
			"capture":   cmdCapture,
			"corrupt":   cmdCorrupt,
		},
	})
}

// cmdStatus runs `status N prog args...` and checks that prog exits with
// code N; its output is then checked with stdout and stderr as for exec.
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: status CODE program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("status: bad code %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("status: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}

// cmdJSONLines checks that every line of the last command's stdout is one
// JSON object, and that for each argument TYPE (or TYPE:N) some line (or
// exactly N lines) has that "type".
func cmdJSONLines(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! jsonlines")
	}
	out := ts.ReadFile("stdout")
	types := make(map[string]int)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var v struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			ts.Fatalf("stdout line %q is not a JSON object: %v", l, err)
		}
		types[v.Type]++
	}
	for _, a := range args {
		typ, n, counted := strings.Cut(a, ":")
		switch {
		case !counted && types[typ] == 0:
			ts.Fatalf("no JSON line of type %q in stdout", typ)
		case counted && strconv.Itoa(types[typ]) != n:
			ts.Fatalf("%d JSON lines of type %q in stdout, want %s", types[typ], typ, n)
		}
	}
}

// cmdCapture runs `capture NAME REGEXP`: it sets $NAME to the first
// submatch of REGEXP in the last command's stdout (IDs are random).
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture NAME REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	if err != nil {
		ts.Fatalf("capture: %v", err)
	}
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: no match for %q in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// cmdCorrupt runs `corrupt DIR`: it flips byte 30 of the largest file
// below DIR (in a pack, that is inside the first sealed frame).
func cmdCorrupt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: corrupt DIR")
	}
	var largest string
	var size int64
	err := filepath.WalkDir(ts.MkAbs(args[0]), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil && fi.Size() > size {
			largest, size = path, fi.Size()
		}
		return err
	})
	if err != nil {
		ts.Fatalf("corrupt: %v", err)
	}
	if size <= 30 {
		ts.Fatalf("corrupt: no file of more than 30 bytes below %s", args[0])
	}
	b, err := os.ReadFile(largest)
	ts.Check(err)
	b[30] ^= 0xff
	ts.Check(os.WriteFile(largest, b, 0o644))
}
