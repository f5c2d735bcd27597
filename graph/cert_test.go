package graph_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/graph/graphtest"
)

// newCert makes a self-signed certificate and returns it with its PEM file
// (certificate and PKCS#8 key), as --client-certificate reads it.
func newCert(t *testing.T) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "planb"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	file = append(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})...)
	return cert, file
}

// TestCertificate signs in with a client assertion signed by the app's
// certificate; another certificate is refused.
func TestCertificate(t *testing.T) {
	f := newFixture(t)
	cert, file := newCert(t)
	_, other := newCert(t)
	f.tenant.AddCertApp("cert-app", cert)
	mb := f.tenant.AddMailbox("jane@contoso.eu", "Jane")
	mb.AddMessage("inbox", graphtest.Message{MIME: []byte("Subject: c\r\n\r\nd\r\n")})
	c := f.client(t, func(o *graph.Options) { o.ClientID, o.ClientSecret, o.Certificate = "cert-app", "", file })
	_, got := backupRestore(t, t.Context(), newRepo(t), c.Source(mb.Address))
	check(t, mb, got)

	c = f.client(t, func(o *graph.Options) { o.ClientID, o.ClientSecret, o.Certificate = "cert-app", "", other })
	if err := c.Check(t.Context()); !errors.Is(err, graph.ErrAuth) {
		t.Errorf("Check with a foreign certificate = %v, want ErrAuth", err)
	}
}
