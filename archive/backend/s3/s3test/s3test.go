package s3test

import (
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backend/s3"
)

// Install is the command that installs the server.
const Install = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Binary returns the path of versitygw: on PATH, else in GOPATH/bin.
func Binary() (string, bool) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, true
	}
	for _, dir := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(dir, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, true
		}
	}
	return "", false
}

// Server is a running versitygw serving one empty bucket.
type Server struct {
	Host      string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Bucket    string
	Dir       string // the folder served; Dir/Bucket is the bucket

	bin    string
	cfg    Config
	cmd    *exec.Cmd
	exited chan struct{}
}

// Config chooses optional features of a server.
type Config struct {
	// IAM runs the server's internal IAM service (in a folder next to
	// Dir), so that CreateUser can add users with their own credentials.
	// The server's own credentials are its root account's.
	IAM bool
	// Versioning lets the server keep object versions (in a folder next
	// to Dir); a bucket keeps them once versioning is enabled on it, and
	// only then can it have object lock.
	Versioning bool
}

// Start starts a server for the duration of the test (it is stopped by
// t.Cleanup). It skips the test if versitygw is not installed, or fails
// it if PLANB_REQUIRE_S3=1.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Config{})
}

// StartWith is Start with the optional features of cfg.
func StartWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin, ok := Binary()
	if !ok {
		msg := "versitygw is neither on PATH nor in GOPATH/bin; install it with `" + Install + "`"
		if os.Getenv("PLANB_REQUIRE_S3") == "1" {
			t.Fatal(msg + " (PLANB_REQUIRE_S3=1)")
		}
		t.Skip(msg)
	}
	s := &Server{AccessKey: "planbtest", SecretKey: "planbtestsecret", Bucket: "planb", Dir: t.TempDir(), bin: bin, cfg: cfg}
	if err := os.Mkdir(filepath.Join(s.Dir, s.Bucket), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{s.iamDir(), s.versioningDir()} {
		if dir == "" {
			continue
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Try a few ports: another process may take the one found free.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		s.Host = fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start versitygw: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs the server on s.Host and waits until it accepts connections.
func (s *Server) start(bin string) error {
	out := &syncBuffer{}
	args := []string{"--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Host, "--quiet"}
	if dir := s.iamDir(); dir != "" {
		args = append(args, "--iam-dir", dir)
	}
	args = append(args, "posix")
	if dir := s.versioningDir(); dir != "" {
		args = append(args, "--versioning-dir", dir)
	}
	cmd := exec.Command(bin, append(args, s.Dir)...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited (%v): %s", cmd.ProcessState, out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Host, time.Second); err == nil {
			c.Close()
			s.cmd, s.exited = cmd, exited
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-exited
	return fmt.Errorf("versitygw did not listen on %s: %s", s.Host, out.String())
}

// iamDir and versioningDir return the folders of the optional features,
// or "" if they are off. They are beside Dir, not in it, where they would
// be buckets.
func (s *Server) iamDir() string {
	if !s.cfg.IAM {
		return ""
	}
	return s.Dir + ".iam"
}

func (s *Server) versioningDir() string {
	if !s.cfg.Versioning {
		return ""
	}
	return s.Dir + ".versions"
}

// CreateUser adds a user with the given credentials and role ("user": no
// rights but those that bucket policies grant; "userplus": may also create
// buckets; "admin": every right) through the server's admin API. The
// server must have been started with Config.IAM.
func (s *Server) CreateUser(t testing.TB, access, secret, role string) {
	t.Helper()
	if !s.cfg.IAM {
		t.Fatal("CreateUser: the server runs without IAM")
	}
	out, err := exec.Command(s.bin, "admin", "--access", s.AccessKey, "--secret", s.SecretKey,
		"--endpoint-url", "http://"+s.Host, "create-user",
		"--access", access, "--secret", secret, "--role", role).CombinedOutput()
	if err != nil {
		t.Fatalf("versitygw admin create-user %s: %v: %s", access, err, out)
	}
}

// Stop stops the server (it is safe to call more than once).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Options returns the options of a repository under prefix in the
// server's bucket.
func (s *Server) Options(prefix string) s3.Options {
	loc := "s3:http://" + s.Host + "/" + s.Bucket
	if prefix != "" {
		loc += "/" + prefix
	}
	return s3.Options{
		Location:          loc,
		AccessKeyID:       s.AccessKey,
		SecretAccessKey:   s.SecretKey,
		Addressing:        s3.AddressingPath,
		InsecurePlaintext: true,
	}
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
