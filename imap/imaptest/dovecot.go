package imaptest

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

// Kind is a family of test servers, each started by a script of
// scripts/ that follows one protocol: "SCRIPT start [USER:PASSWORD]...",
// "stop", "kill" and "status", run with PREFIX_DIR set to the server's
// directory; start writes PREFIX_DIR/env with the sourceable lines
// PREFIX_HOST, PREFIX_PORT (plaintext with STARTTLS), PREFIX_TLS_PORT
// (implicit TLS, 0 when the server has none) and PREFIX_CERT (the PEM
// certificate the server presents).
type Kind struct {
	Name   string // "dovecot"
	Script string // file name in scripts/: "dovecot.sh"
	Prefix string // environment prefix: "DOVECOT"

	// LoginCreates: the server makes a user's INBOX and special-use
	// folders during the user's first login (Cyrus's autocreate), and
	// connections that log in meanwhile see them half made. NewUser
	// then logs the user in once before handing it out.
	LoginCreates bool
}

// The servers of scripts/.
var (
	// KindDovecot is Dovecot, the kindest server there is.
	KindDovecot = Kind{Name: "dovecot", Script: "dovecot.sh", Prefix: "DOVECOT"}
	// KindCyrus is Cyrus IMAP from Debian's packages: strict about the
	// form of messages, "." as separator.
	KindCyrus = Kind{Name: "cyrus", Script: "cyrus.sh", Prefix: "CYRUS", LoginCreates: true}
	// KindBridge is a Proton Mail Bridge-shaped server on gluon.
	KindBridge = Kind{Name: "bridge", Script: "bridge.sh", Prefix: "BRIDGE"}
)

// requireVar is the environment variable that turns a skip into a
// failure: PLANB_REQUIRE_DOVECOT, PLANB_REQUIRE_CYRUS...
func (k Kind) requireVar() string { return "PLANB_REQUIRE_" + k.Prefix }

// Server is a running throwaway server. Its methods are safe for
// concurrent use.
type Server struct {
	Kind     Kind
	Dir      string
	Host     string
	Port     int // plaintext with STARTTLS
	TLSPort  int // implicit TLS, 0 if none
	CertFile string
	RootCAs  *x509.CertPool // trusts the server's self-signed certificate
	// MailUID and MailGID own the mail the server stores (PREFIX_MAIL_UID,
	// PREFIX_MAIL_GID; -1 when the script does not say).
	MailUID, MailGID int

	script   string
	nextUser atomic.Int64
}

// Dovecot is a running throwaway Dovecot.
type Dovecot = Server

// ScriptPath returns the path of scripts/NAME, found by walking up from
// the working directory to the module root.
func ScriptPath(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", name), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Script returns the path of scripts/dovecot.sh.
func Script() (string, error) { return ScriptPath(KindDovecot.Script) }

// unavailable skips the test, or fails it when PLANB_REQUIRE_<KIND>=1.
func (k Kind) unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(k.requireVar()) == "1" {
		t.Fatalf("%s required (%s=1) but unavailable: %v", k.Name, k.requireVar(), err)
	}
	t.Skipf("%s unavailable (set %s=1 to fail instead): %v", k.Name, k.requireVar(), err)
}

var (
	sharedMu  sync.Mutex
	shared    = map[string]*Server{}
	sharedErr = map[string]error{}
)

// Shared returns a Dovecot shared by the tests of a package, started on
// first use. Call StopShared from TestMain after m.Run.
func Shared(t testing.TB) *Dovecot { return SharedOf(t, KindDovecot) }

// SharedOf returns a server of kind k shared by the tests of a package,
// started on first use.
func SharedOf(t testing.TB, k Kind) *Server {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	s, err := shared[k.Name], sharedErr[k.Name]
	if s == nil && err == nil {
		s, err = start(k, "")
		shared[k.Name], sharedErr[k.Name] = s, err
	}
	if err != nil {
		k.unavailable(t, err)
	}
	return s
}

// StopShared stops the shared servers that were started and removes their
// directories.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for name, s := range shared {
		if s != nil {
			s.stop()
			removeDir(s.Dir)
		}
		delete(shared, name)
		delete(sharedErr, name)
	}
}

// Start starts a Dovecot of the test's own (for tests that stop and start
// it); it is stopped and removed when the test ends.
func Start(t testing.TB) *Dovecot { return StartOf(t, KindDovecot) }

// StartOf starts a server of kind k of the test's own; it is stopped and
// removed when the test ends.
func StartOf(t testing.TB, k Kind) *Server {
	t.Helper()
	return startFlavor(t, k, "")
}

// startFlavor starts a server of the test's own whose directory holds a
// file "flavor" with flavor (a variant the script knows), when not "".
func startFlavor(t testing.TB, k Kind, flavor string) *Server {
	t.Helper()
	s, err := start(k, flavor)
	if err != nil {
		k.unavailable(t, err)
	}
	t.Cleanup(func() {
		s.stop()
		removeDir(s.Dir)
	})
	return s
}

// maxUsers is how many users NewUser can hand out per server.
const maxUsers = 40

func start(k Kind, flavor string) (*Server, error) {
	script, err := ScriptPath(k.Script)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "planb-"+k.Name+"-")
	if err != nil {
		return nil, err
	}
	if flavor != "" {
		if err := os.WriteFile(filepath.Join(dir, "flavor"), []byte(flavor+"\n"), 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	s := &Server{Kind: k, Dir: dir, script: script}
	// Dovecot re-reads its passwd-file at most once a second, and other
	// servers need their users made before they start: users are made up
	// front and handed out by NewUser.
	users := []string{"planb:planb"}
	for i := 1; i <= maxUsers; i++ {
		users = append(users, fmt.Sprintf("t%d:pw-t%d", i, i))
	}
	if err := s.run(append([]string{"start"}, users...)...); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.readEnv(); err != nil {
		s.stop()
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) run(args ...string) error {
	cmd := exec.Command("bash", append([]string{s.script}, args...)...)
	cmd.Env = append(os.Environ(), s.Kind.Prefix+"_DIR="+s.Dir)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", s.Kind.Script, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (s *Server) readEnv() error {
	b, err := os.ReadFile(filepath.Join(s.Dir, "env"))
	if err != nil {
		return err
	}
	p := s.Kind.Prefix + "_"
	s.MailUID, s.MailGID = -1, -1
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch strings.TrimPrefix(k, p) {
		case "HOST":
			s.Host = v
		case "PORT":
			s.Port, _ = strconv.Atoi(v)
		case "TLS_PORT":
			s.TLSPort, _ = strconv.Atoi(v)
		case "CERT":
			s.CertFile = v
		case "MAIL_UID":
			s.MailUID, _ = strconv.Atoi(v)
		case "MAIL_GID":
			s.MailGID, _ = strconv.Atoi(v)
		}
	}
	if s.Host == "" || s.Port == 0 || s.CertFile == "" {
		return fmt.Errorf("%s start: incomplete env file %s", s.Kind.Script, filepath.Join(s.Dir, "env"))
	}
	pem, err := os.ReadFile(s.CertFile)
	if err != nil {
		return err
	}
	s.RootCAs = x509.NewCertPool()
	if !s.RootCAs.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in %s", s.CertFile)
	}
	return nil
}

func (s *Server) stop() { _ = s.run("stop") }

// Stop stops the server (its mail stays).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.run("stop"); err != nil {
		t.Fatal(err)
	}
}

// Restart starts a stopped server again, on the same ports when they are
// still free.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.run("start"); err != nil {
		t.Fatal(err)
	}
	if err := s.readEnv(); err != nil {
		t.Fatal(err)
	}
}

// NewUser returns the name and password of a user with an empty mailbox
// that no other test uses.
func (s *Server) NewUser(t testing.TB) (user, password string) {
	t.Helper()
	n := s.nextUser.Add(1)
	if n > maxUsers {
		t.Fatalf("imaptest: more than %d users on one server", maxUsers)
	}
	user, password = fmt.Sprintf("t%d", n), fmt.Sprintf("pw-t%d", n)
	if s.Kind.LoginCreates {
		c := s.Dial(t, user, password)
		if err := c.Logout().Wait(); err != nil {
			t.Fatalf("logout %s: %v", user, err)
		}
	}
	return user, password
}

// LoadMaildir copies the Maildir++ tree src into the mail of user, a
// Dovecot user that has not logged in yet, as files the server finds on
// its own (without APPEND): Dovecot then serves them as they are stored.
func (s *Server) LoadMaildir(t testing.TB, user, src string) {
	t.Helper()
	if s.Kind.Name != KindDovecot.Name {
		t.Fatalf("imaptest: LoadMaildir on %s: only Dovecot stores Maildir", s.Kind.Name)
	}
	dst := filepath.Join(s.Dir, "mail", user, "Maildir")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("imaptest: load %s into %s: %v", src, dst, err)
	}
	if s.MailUID < 0 {
		return
	}
	err := filepath.WalkDir(dst, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, s.MailUID, s.MailGID)
	})
	if err != nil {
		t.Fatalf("imaptest: load %s: %v", src, err)
	}
}

// Kill kills the server at once, as a crash would.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.run("kill"); err != nil {
		t.Fatal(err)
	}
}

// Dial returns a logged-in client, closed when the test ends: over
// implicit TLS when the server has a TLS port, else with STARTTLS.
func (s *Server) Dial(t testing.TB, user, password string) *imapclient.Client {
	t.Helper()
	var (
		c   *imapclient.Client
		err error
	)
	opts := &imapclient.Options{TLSConfig: tlsConfig(s.RootCAs)}
	if s.TLSPort != 0 {
		c, err = imapclient.DialTLS(fmt.Sprintf("%s:%d", s.Host, s.TLSPort), opts)
	} else {
		c, err = imapclient.DialStartTLS(fmt.Sprintf("%s:%d", s.Host, s.Port), opts)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", s.Kind.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// removeDir removes a server's directory unless PLANB_KEEP_DOVECOT=1 (to
// read its logs after a failure).
func removeDir(dir string) {
	if os.Getenv("PLANB_KEEP_DOVECOT") == "1" {
		fmt.Fprintf(os.Stderr, "imaptest: keeping %s\n", dir)
		return
	}
	os.RemoveAll(dir)
}
