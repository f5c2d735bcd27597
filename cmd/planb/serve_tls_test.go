package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

// TestServeTLS: a login's hash made by `planb serve hash-password` lets
// it in; off the loopback interface planb serve speaks TLS with a
// self-signed certificate whose fingerprint it prints; with --tls-cert
// and --tls-key it speaks TLS with that certificate, loopback or not;
// a users file with a hash that is not one is refused at start.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	repoFlags := sampleRepo(t, dir)

	// hash-password reads the password from standard input.
	in := filepath.Join(dir, "login-pw")
	if err := os.WriteFile(in, []byte("tls-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stdout, stderr syncBuffer
	if code := run(t.Context(), []string{"planb", "serve", "hash-password"}, f, &stdout, &stderr); code != 0 {
		t.Fatalf("serve hash-password = %d: %s", code, stderr.String())
	}
	hash := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(hash, "$argon2id$v=19$") {
		t.Fatalf("serve hash-password printed %q", hash)
	}
	users := filepath.Join(dir, "users.toml")
	if err := os.WriteFile(users, []byte(fmt.Sprintf("[[user]]\nname = \"alice\"\npassword_hash = %q\nsources = [\"*\"]\n", hash)), 0o600); err != nil {
		t.Fatal(err)
	}

	login := func(addr string, cfg *tls.Config) {
		t.Helper()
		c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: cfg})
		if err != nil {
			t.Fatalf("TLS to %s: %v", addr, err)
		}
		defer c.Close()
		if err := c.Login("alice", "tls-secret").Wait(); err != nil {
			t.Fatalf("login over TLS: %v", err)
		}
		if names := mailboxNames(t, c); len(names) == 0 {
			t.Errorf("no mailboxes over TLS")
		}
	}

	// Off loopback: a self-signed certificate, its fingerprint printed.
	s := startServe(t, repoFlags, "--users", users, "--listen", "0.0.0.0:0")
	if !s.line.TLS || s.line.Fingerprint == "" {
		t.Fatalf("serving on %s: %+v, want TLS with a fingerprint", s.addr, s.line)
	}
	var seen string
	login(net.JoinHostPort("127.0.0.1", s.port), &tls.Config{
		InsecureSkipVerify: true, // checked by its fingerprint, as a user would
		VerifyConnection: func(cs tls.ConnectionState) error {
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			seen = strings.ToUpper(strings.ReplaceAll(fmt.Sprintf("% x", sum[:]), " ", ":"))
			return nil
		},
	})
	if seen != s.line.Fingerprint {
		t.Errorf("the certificate's fingerprint is %s, planb serve printed %s", seen, s.line.Fingerprint)
	}
	s.stop()

	// --tls-cert and --tls-key, on loopback too.
	certFile, keyFile := certPair(t)
	s = startServe(t, repoFlags, "--users", users, "--tls-cert", certFile, "--tls-key", keyFile)
	if !s.line.TLS || s.line.Fingerprint != "" {
		t.Errorf("serving with --tls-cert: %+v, want TLS and no fingerprint", s.line)
	}
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("no certificate in %s", certFile)
	}
	login(s.addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	s.stop()

	// A users file whose hash is not one.
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[[user]]\nname = \"alice\"\npassword_hash = \"tls-secret\"\nsources = [\"*\"]\n"), 0o600)
	code, _, errOut := runPlanb(t, append(repoFlags, "serve", "--listen", "127.0.0.1:0", "--users", bad)...)
	if code == 0 || !strings.Contains(errOut, "hash-password") {
		t.Errorf("serve with a clear password in the users file = %d: %s", code, errOut)
	}
}

// certPair writes a self-signed certificate for localhost and its key as
// PEM files, for --tls-cert and --tls-key.
func certPair(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	cert, _, err := selfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
