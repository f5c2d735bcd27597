package crypto

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// defaultKDF is what new key files use outside tests; it is read before
// TestMain switches to cheap parameters.
var defaultKDF = DefaultKDF()

func TestMain(m *testing.M) {
	SetTestKDF()
	os.Exit(m.Run())
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := NewRandomKey()
	tests := []struct {
		name  string
		plain []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"text", []byte("Subject: secret\r\n\r\nhello")},
		{"64 KiB", bytes.Repeat([]byte{0xa5, 0x00, 0xff}, 64<<10/3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed := k.Seal(nil, tt.plain)
			if len(sealed) != len(tt.plain)+Overhead {
				t.Errorf("Seal: %d bytes, want %d", len(sealed), len(tt.plain)+Overhead)
			}
			if len(tt.plain) >= 4 && bytes.Contains(sealed, tt.plain) {
				t.Error("sealed bytes contain the plaintext")
			}
			got, err := k.Open(nil, sealed)
			if err != nil || !bytes.Equal(got, tt.plain) {
				t.Errorf("Open(Seal(%q)) = %q, %v", tt.plain, got, err)
			}

			// Seal and Open append to dst.
			prefix := []byte("prefix")
			sealed2 := k.Seal(bytes.Clone(prefix), tt.plain)
			if !bytes.HasPrefix(sealed2, prefix) {
				t.Fatalf("Seal(dst) = %q..., want it to start with %q", sealed2[:min(len(sealed2), 6)], prefix)
			}
			got, err = k.Open(bytes.Clone(prefix), sealed2[len(prefix):])
			if err != nil || !bytes.Equal(got, append(bytes.Clone(prefix), tt.plain...)) {
				t.Errorf("Open(dst) = %q, %v; want %q + plaintext", got, err, prefix)
			}

			// OpenInPlace returns the plaintext inside sealed's own bytes.
			inPlace := bytes.Clone(sealed)
			got, err = k.OpenInPlace(inPlace)
			if err != nil || !bytes.Equal(got, tt.plain) {
				t.Errorf("OpenInPlace(Seal(%q)) = %q, %v", tt.plain, got, err)
			}
			if len(got) > 0 && &got[0] != &inPlace[chacha20poly1305.NonceSizeX] {
				t.Errorf("OpenInPlace returned a new slice, want one inside its argument")
			}
			bad := bytes.Clone(sealed)
			bad[len(bad)-1] ^= 1
			if _, err := k.OpenInPlace(bad); !errors.Is(err, ErrAuth) {
				t.Errorf("OpenInPlace of a damaged frame = %v, want ErrAuth", err)
			}
		})
	}
}

func TestSealRandomNonce(t *testing.T) {
	k := NewRandomKey()
	plain := []byte("the same plaintext")
	seen := make(map[string]bool)
	nonces := make(map[string]bool)
	for range 50 {
		s := k.Seal(nil, plain)
		if seen[string(s)] || nonces[string(s[:24])] {
			t.Fatalf("two seals of the same plaintext share their bytes or nonce: %x", s[:24])
		}
		seen[string(s)] = true
		nonces[string(s[:24])] = true
	}
}

func TestOpenDetectsEveryFlippedByte(t *testing.T) {
	k := NewRandomKey()
	plain := []byte("From: alice@example.eu\r\n")
	sealed := k.Seal(nil, plain)
	for i := range sealed {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(sealed)
			bad[i] ^= mask
			if got, err := k.Open(nil, bad); !errors.Is(err, ErrAuth) {
				t.Errorf("Open with byte %d ^ %#x = %q, %v; want ErrAuth", i, mask, got, err)
			}
		}
	}
	// Truncated, extended and short inputs fail too.
	for _, bad := range [][]byte{nil, sealed[:Overhead-1], sealed[:Overhead], sealed[:len(sealed)-1], append(bytes.Clone(sealed), 0)} {
		if _, err := k.Open(nil, bad); !errors.Is(err, ErrAuth) {
			t.Errorf("Open(%d of %d bytes) = %v, want ErrAuth", len(bad), len(sealed), err)
		}
	}
}

func TestOpenWrongKey(t *testing.T) {
	k1, k2 := NewRandomKey(), NewRandomKey()
	if bytes.Equal(k1.Bytes(), k2.Bytes()) {
		t.Fatal("NewRandomKey returned the same key twice")
	}
	if _, err := k2.Open(nil, k1.Seal(nil, []byte("secret"))); !errors.Is(err, ErrAuth) {
		t.Errorf("Open with another key = %v, want ErrAuth", err)
	}
	if ErrAuth.Error() != "authentication failed: data damaged or wrong key" {
		t.Errorf("ErrAuth = %q", ErrAuth)
	}
}

func TestKeyFromBytes(t *testing.T) {
	k := NewRandomKey()
	raw := k.Bytes()
	raw[0] ^= 1 // Bytes returns a copy
	k2, err := KeyFromBytes(k.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.Open(nil, k.Seal(nil, []byte("x"))); err != nil || string(got) != "x" {
		t.Errorf("KeyFromBytes(k.Bytes()) does not open k's seals: %q, %v", got, err)
	}
	for _, n := range []int{0, 16, KeySize - 1, KeySize + 1} {
		if _, err := KeyFromBytes(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "want 32") {
			t.Errorf("KeyFromBytes(%d bytes) = %v, want a length error", n, err)
		}
	}
}
