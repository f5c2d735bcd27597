package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"codeberg.org/planb/planb/archive/backend/s3"
	"codeberg.org/planb/planb/archive/backend/s3/s3test"
	"codeberg.org/planb/planb/archive/repo"
)

// TestS3Scripts runs the scripts of testdata/s3 against one versitygw
// server (skipped when versitygw is not installed); each script has its
// own repository $S3_REPO under the bucket, and the server's root
// credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. The server
// keeps object versions and has a user without rights of its own, for
// append-only repositories: $S3_BACKUP_KEY, $S3_BACKUP_SECRET.
func TestS3Scripts(t *testing.T) {
	srv := s3test.StartWith(t, s3test.Config{IAM: true, Versioning: true})
	const backupKey, backupSecret = "planbbackup", "planbbackupsecret"
	srv.CreateUser(t, backupKey, backupSecret, "user")
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/s3",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PLANB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			for _, k := range []string{"PLANB_REPOSITORY", "PLANB_PASSWORD", "PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND",
				"AWS_SESSION_TOKEN", "AWS_PROFILE", "PLANB_S3_REGION", "PLANB_S3_PATH_STYLE", "PLANB_S3_ADMIN_PROFILE",
				"PLANB_ADMIN_AWS_ACCESS_KEY_ID", "PLANB_ADMIN_AWS_SECRET_ACCESS_KEY", "PLANB_ADMIN_AWS_SESSION_TOKEN"} {
				env.Setenv(k, "")
			}
			env.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
			env.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
			env.Setenv("AWS_SHARED_CREDENTIALS_FILE", "")
			env.Setenv("S3_HOST", srv.Host)
			env.Setenv("S3_BACKUP_KEY", backupKey)
			env.Setenv("S3_BACKUP_SECRET", backupSecret)
			env.Setenv("S3_REPO", "s3:http://"+srv.Host+"/"+srv.Bucket+"/"+filepath.Base(env.WorkDir))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"status":     cmdStatus,
			"capture":    cmdCapture,
			"genmaildir": cmdGenMaildir,
			"samemail":   cmdSameMail,
		},
	})
}

// cmdGenMaildir runs `genmaildir DIR N SEED`: it writes a Maildir of N
// distinct messages of 200 bytes to 40 KiB, a fifth of them in the
// sub-folder .Archive, some with flags.
func cmdGenMaildir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: genmaildir DIR N SEED")
	}
	n, err1 := strconv.Atoi(args[1])
	seed, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil {
		ts.Fatalf("genmaildir: bad N or SEED")
	}
	ts.Check(genMaildir(ts.MkAbs(args[0]), n, uint64(seed)))
}

func genMaildir(dir string, n int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, d := range []string{"cur", "new", "tmp", ".Archive/cur", ".Archive/new", ".Archive/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 "
	for i := range n {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: sender%d@example.eu\r\nTo: box%d@example.eu\r\nSubject: message %d of set %d\r\n"+
			"Message-ID: <%d.%d@example.eu>\r\nDate: Mon, 2 Mar 2026 09:%02d:00 +0100\r\n\r\n", i%17, seed, i, seed, seed, i, i%60)
		size := 200 + rng.IntN(40<<10)
		for b.Len() < size {
			line := make([]byte, 72)
			for j := range line {
				line[j] = alphabet[rng.IntN(len(alphabet))]
			}
			b.Write(line)
			b.WriteString("\r\n")
		}
		folder := ""
		if i%5 == 4 {
			folder = ".Archive"
		}
		name := fmt.Sprintf("%d.M%dP%d.gen:2,", 1700000000+i, i, seed)
		if i%3 == 0 {
			name += "S"
		}
		if err := os.WriteFile(filepath.Join(dir, folder, "cur", name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cmdSameMail runs `samemail DIR1 DIR2`: it checks that the two trees hold
// the same messages, byte for byte: for each folder (the path of a cur or
// new folder without that last element) the same multiset of contents.
func cmdSameMail(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: samemail DIR1 DIR2")
	}
	a, err := mailDigests(ts.MkAbs(args[0]))
	ts.Check(err)
	b, err := mailDigests(ts.MkAbs(args[1]))
	ts.Check(err)
	if len(a) == 0 {
		ts.Fatalf("samemail: no messages in %s", args[0])
	}
	if !slices.Equal(a, b) {
		ts.Fatalf("samemail: %s holds %d messages, %s %d, and they differ", args[0], len(a), args[1], len(b))
	}
	ts.Logf("samemail: %d messages equal", len(a))
}

// mailDigests returns the sorted "FOLDER SHA256" of every file in a cur or
// new folder below dir.
func mailDigests(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		parent := filepath.Dir(path)
		if b := filepath.Base(parent); b != "cur" && b != "new" {
			return nil
		}
		rel, err := filepath.Rel(dir, filepath.Dir(parent))
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out = append(out, rel+" "+hex.EncodeToString(sum[:]))
		return nil
	})
	slices.Sort(out)
	return out, err
}

// runPlanb runs the CLI in this process and returns its exit code, stdout
// and stderr.
func runPlanb(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), append([]string{"planb"}, args...), nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestS3PruneWhileLocked holds the shared lock a backup takes, through the
// repository API, and checks that prune refuses to run and that
// `planb locks` shows the lock and its age; once the lock is released,
// prune runs.
func TestS3PruneWhileLocked(t *testing.T) {
	srv := s3test.Start(t)
	loc := "s3:http://" + srv.Host + "/" + srv.Bucket + "/locked"
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("PLANB_PASSWORD", "secret")
	t.Setenv("PLANB_PASSWORD_FILE", "")
	t.Setenv("PLANB_PASSWORD_COMMAND", "")
	t.Setenv("PLANB_REPOSITORY", loc)
	if code, _, stderr := runPlanb(t, "--s3-insecure-plaintext", "init"); code != 0 {
		t.Fatalf("planb init = %d: %s", code, stderr)
	}

	ctx := t.Context()
	opts := srv.Options("locked")
	be, err := s3.Open(ctx, opts)
	if err != nil {
		t.Fatalf("s3.Open(%q) = %v", opts.Location, err)
	}
	r, err := repo.Open(ctx, be, "secret", nil)
	if err != nil {
		t.Fatalf("repo.Open = %v", err)
	}
	lock, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatalf("Lock(shared) = %v", err)
	}
	held := true
	defer func() {
		if held {
			lock.Unlock()
		}
	}()

	code, _, stderr := runPlanb(t, "--s3-insecure-plaintext", "prune")
	if code != exitFailed || !strings.Contains(stderr, "lock") || strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
		t.Errorf("planb prune while locked = %d, %q; want %d and a lock error with a hint", code, stderr, exitFailed)
	}
	code, stdout, stderr := runPlanb(t, "--s3-insecure-plaintext", "locks")
	if code != 0 {
		t.Fatalf("planb locks = %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "AGE") {
		t.Fatalf("planb locks printed %q, want a header and one lock", stdout)
	}
	host, _ := os.Hostname()
	fields := strings.Fields(lines[1])
	if len(fields) < 5 || fields[1] != "shared" || fields[2] != host || fields[3] != strconv.Itoa(os.Getpid()) || !strings.HasSuffix(fields[4], "s") {
		t.Errorf("planb locks line = %q, want shared, %s, pid %d and an age in seconds", lines[1], host, os.Getpid())
	}

	held = false
	if err := lock.Unlock(); err != nil {
		t.Fatalf("Unlock = %v", err)
	}
	if code, _, stderr := runPlanb(t, "--s3-insecure-plaintext", "prune"); code != 0 {
		t.Errorf("planb prune after unlock = %d: %s", code, stderr)
	}
}

// TestAppendOnlyLocal checks the advisory append-only mode of a repository
// on a local disk: init says that it is advisory, backups and reads work,
// forget, prune, key remove, key passwd and unlock --remove-all are refused
// with one line, and work with --admin. The S3 options of init are
// refused for it.
func TestAppendOnlyLocal(t *testing.T) {
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	mail := filepath.Join(dir, "mail")
	if err := genMaildir(mail, 12, 3); err != nil {
		t.Fatal(err)
	}
	pw2 := filepath.Join(dir, "pw2")
	if err := os.WriteFile(pw2, []byte("second password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"PLANB_PASSWORD_FILE", "PLANB_PASSWORD_COMMAND"} {
		t.Setenv(k, "")
	}
	t.Setenv("PLANB_PASSWORD", "secret")
	t.Setenv("PLANB_REPOSITORY", repoDir)

	code, _, stderr := runPlanb(t, "init", "--append-only", "--s3-backup-principal", "backup")
	if want := "planb: error: init: --s3-backup-principal needs an S3 repository\n"; code != exitUsage || !strings.HasPrefix(stderr, want) {
		t.Errorf("init --s3-backup-principal on a local disk = %d, %q; want %d, %q", code, stderr, exitUsage, want)
	}
	code, stdout, stderr := runPlanb(t, "init", "--append-only")
	if code != 0 {
		t.Fatalf("init --append-only = %d: %s", code, stderr)
	}
	if want := "\nappend-only: advisory on a local disk: planb refuses forget, prune and key changes without --admin, nothing else does\n"; !strings.Contains(stdout, want) {
		t.Errorf("init --append-only printed %q, want the line %q", stdout, strings.TrimSpace(want))
	}
	for range 2 {
		if code, _, stderr := runPlanb(t, "backup", "maildir", "--path", mail); code != 0 {
			t.Fatalf("backup = %d: %s", code, stderr)
		}
	}
	code, stdout, stderr = runPlanb(t, "key", "add", "--admin", "--new-password-file", pw2)
	if code != 0 {
		t.Fatalf("key add --admin = %d: %s", code, stderr)
	}
	key2 := strings.TrimSpace(strings.TrimPrefix(stdout, "added key "))

	refused := []struct {
		args []string
		op   string
	}{
		{[]string{"forget", "--keep-last", "1"}, "forget"},
		{[]string{"forget", "--keep-last", "1", "--prune"}, "forget"},
		{[]string{"prune"}, "prune"},
		{[]string{"key", "add", "--new-password-file", pw2}, "key add"},
		{[]string{"key", "remove", key2}, "key remove"},
		{[]string{"key", "passwd", "--new-password-file", pw2}, "key passwd"},
		{[]string{"unlock", "--remove-all"}, "unlock --remove-all"},
	}
	for _, tt := range refused {
		code, stdout, stderr := runPlanb(t, tt.args...)
		want := "planb: error: repository is append-only: " + tt.op + " needs --admin\n"
		if code != exitFailed || stderr != want || stdout != "" {
			t.Errorf("planb %s = %d, %q, %q; want %d, no output and %q", strings.Join(tt.args, " "), code, stdout, stderr, exitFailed, want)
		}
	}
	for _, args := range [][]string{{"unlock"}, {"forget", "--keep-last", "1", "--dry-run"}, {"check", "--read-data"}} {
		if code, _, stderr := runPlanb(t, args...); code != 0 {
			t.Errorf("planb %s = %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	if _, stdout, _ := runPlanb(t, "snapshots"); !strings.Contains(stdout, "2 snapshots") {
		t.Fatalf("snapshots after the refusals printed %q, want 2 snapshots", stdout)
	}

	for _, args := range [][]string{
		{"forget", "--admin", "--keep-last", "1", "--prune"},
		{"key", "remove", "--admin", key2},
		{"unlock", "--remove-all", "--admin"},
		{"key", "passwd", "--admin", "--new-password-file", pw2},
	} {
		if code, _, stderr := runPlanb(t, args...); code != 0 {
			t.Errorf("planb %s = %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	t.Setenv("PLANB_PASSWORD", "second password")
	if _, stdout, _ := runPlanb(t, "snapshots"); !strings.Contains(stdout, "1 snapshots") {
		t.Errorf("snapshots after forget --admin printed %q, want 1 snapshots", stdout)
	}
	if code, stdout, stderr := runPlanb(t, "check", "--read-data"); code != 0 || !strings.Contains(stdout, "no errors found") {
		t.Errorf("check --read-data = %d, %q, %q; want clean", code, stdout, stderr)
	}
}
