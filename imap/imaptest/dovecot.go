package imaptest

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Dovecot is a running throwaway server. Its methods are safe for
// concurrent use.
type Dovecot struct {
	Dir      string
	Host     string
	Port     int // plaintext with STARTTLS
	TLSPort  int // implicit TLS
	CertFile string
	RootCAs  *x509.CertPool // trusts the server's self-signed certificate

	script   string
	nextUser atomic.Int64
}

// Script returns the path of scripts/dovecot.sh, found by walking up from
// the working directory to the module root.
func Script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "scripts", "dovecot.sh"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// unavailable skips the test, or fails it when PLANB_REQUIRE_DOVECOT=1.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("PLANB_REQUIRE_DOVECOT") == "1" {
		t.Fatalf("dovecot required (PLANB_REQUIRE_DOVECOT=1) but unavailable: %v", err)
	}
	t.Skipf("dovecot unavailable (set PLANB_REQUIRE_DOVECOT=1 to fail instead): %v", err)
}

var (
	sharedMu  sync.Mutex
	shared    *Dovecot
	sharedErr error
)

// Shared returns a server shared by the tests of a package, started on
// first use. Call StopShared from TestMain after m.Run.
func Shared(t testing.TB) *Dovecot {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = start()
	}
	if sharedErr != nil {
		unavailable(t, sharedErr)
	}
	return shared
}

// StopShared stops the shared server, if one was started, and removes
// its directory.
func StopShared() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.stop()
		removeDir(shared.Dir)
		shared = nil
	}
}

// Start starts a server of the test's own (for tests that stop and start
// it); it is stopped and removed when the test ends.
func Start(t testing.TB) *Dovecot {
	t.Helper()
	d, err := start()
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() {
		d.stop()
		removeDir(d.Dir)
	})
	return d
}

func start() (*Dovecot, error) {
	script, err := Script()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "planb-dovecot-")
	if err != nil {
		return nil, err
	}
	d := &Dovecot{Dir: dir, script: script}
	// Dovecot re-reads its passwd-file at most once a second: users are
	// made up front and handed out by NewUser.
	users := []string{"planb:planb"}
	for i := 1; i <= maxUsers; i++ {
		users = append(users, fmt.Sprintf("t%d:pw-t%d", i, i))
	}
	if err := d.run(append([]string{"start"}, users...)...); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.readEnv(); err != nil {
		d.stop()
		os.RemoveAll(dir)
		return nil, err
	}
	return d, nil
}

func (d *Dovecot) run(args ...string) error {
	cmd := exec.Command("bash", append([]string{d.script}, args...)...)
	cmd.Env = append(os.Environ(), "DOVECOT_DIR="+d.Dir)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("dovecot.sh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (d *Dovecot) readEnv() error {
	b, err := os.ReadFile(filepath.Join(d.Dir, "env"))
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "DOVECOT_HOST":
			d.Host = v
		case "DOVECOT_PORT":
			d.Port, _ = strconv.Atoi(v)
		case "DOVECOT_TLS_PORT":
			d.TLSPort, _ = strconv.Atoi(v)
		case "DOVECOT_CERT":
			d.CertFile = v
		}
	}
	if d.Port == 0 || d.TLSPort == 0 || d.CertFile == "" {
		return fmt.Errorf("dovecot.sh start: incomplete env file %s", filepath.Join(d.Dir, "env"))
	}
	pem, err := os.ReadFile(d.CertFile)
	if err != nil {
		return err
	}
	d.RootCAs = x509.NewCertPool()
	if !d.RootCAs.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in %s", d.CertFile)
	}
	return nil
}

func (d *Dovecot) stop() { _ = d.run("stop") }

// Stop stops the server (its mail stays).
func (d *Dovecot) Stop(t testing.TB) {
	t.Helper()
	if err := d.run("stop"); err != nil {
		t.Fatal(err)
	}
}

// Restart starts a stopped server again, on the same ports when they are
// still free.
func (d *Dovecot) Restart(t testing.TB) {
	t.Helper()
	if err := d.run("start"); err != nil {
		t.Fatal(err)
	}
	if err := d.readEnv(); err != nil {
		t.Fatal(err)
	}
}

// maxUsers is how many users NewUser can hand out per server.
const maxUsers = 40

// NewUser returns the name and password of a user with an empty mailbox
// that no other test uses.
func (d *Dovecot) NewUser(t testing.TB) (user, password string) {
	t.Helper()
	n := d.nextUser.Add(1)
	if n > maxUsers {
		t.Fatalf("imaptest: more than %d users on one server", maxUsers)
	}
	return fmt.Sprintf("t%d", n), fmt.Sprintf("pw-t%d", n)
}

// Kill kills the server at once, as a crash would.
func (d *Dovecot) Kill(t testing.TB) {
	t.Helper()
	if err := d.run("kill"); err != nil {
		t.Fatal(err)
	}
}

// Dial returns a logged-in client over implicit TLS, closed when the test
// ends.
func (d *Dovecot) Dial(t testing.TB, user, password string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(fmt.Sprintf("%s:%d", d.Host, d.TLSPort), &imapclient.Options{
		TLSConfig: tlsConfig(d.RootCAs),
	})
	if err != nil {
		t.Fatalf("dial dovecot: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

var _ = goimap.CapIMAP4rev1

// removeDir removes a server's directory unless PLANB_KEEP_DOVECOT=1 (to
// read its log/dovecot.log after a failure).
func removeDir(dir string) {
	if os.Getenv("PLANB_KEEP_DOVECOT") == "1" {
		fmt.Fprintf(os.Stderr, "imaptest: keeping %s\n", dir)
		return
	}
	os.RemoveAll(dir)
}
