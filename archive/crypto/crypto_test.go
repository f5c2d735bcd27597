package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

// defaultKDF is what new key files use outside tests; it is read before
// TestMain switches to cheap parameters.
var defaultKDF = DefaultKDF()

func TestMain(m *testing.M) {
	SetTestKDF()
	os.Exit(m.Run())
}

// ciphers are the ciphers a key can seal with.
var ciphers = []Cipher{XChaCha20Poly1305, XAES256GCM}

func TestSealOpenRoundTrip(t *testing.T) {
	for _, c := range ciphers {
		t.Run(c.String(), func(t *testing.T) { testSealOpenRoundTrip(t, NewRandomKeyWith(c)) })
	}
}

func testSealOpenRoundTrip(t *testing.T, k *Key) {
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
			if len(got) > 0 && &got[0] != &inPlace[NonceSize] {
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
	for _, c := range ciphers {
		t.Run(c.String(), func(t *testing.T) { testSealRandomNonce(t, NewRandomKeyWith(c)) })
	}
}

func testSealRandomNonce(t *testing.T, k *Key) {
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
	for _, c := range ciphers {
		t.Run(c.String(), func(t *testing.T) { testOpenDetectsEveryFlippedByte(t, NewRandomKeyWith(c)) })
	}
}

func testOpenDetectsEveryFlippedByte(t *testing.T, k *Key) {
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
	for _, c := range ciphers {
		k1, k2 := NewRandomKeyWith(c), NewRandomKeyWith(c)
		if bytes.Equal(k1.Bytes(), k2.Bytes()) {
			t.Fatal("NewRandomKey returned the same key twice")
		}
		if _, err := k2.Open(nil, k1.Seal(nil, []byte("secret"))); !errors.Is(err, ErrAuth) {
			t.Errorf("%v: Open with another key = %v, want ErrAuth", c, err)
		}
	}
	// The same key bytes with the other cipher open nothing either.
	k := NewRandomKeyWith(XAES256GCM)
	other, err := KeyFromBytes(k.Bytes()[:KeySize])
	if err != nil || other.Cipher() != XChaCha20Poly1305 {
		t.Fatalf("KeyFromBytes(32 bytes) = %v, %v; want a key of %v", other, err, XChaCha20Poly1305)
	}
	if _, err := other.Open(nil, k.Seal(nil, []byte("secret"))); !errors.Is(err, ErrAuth) {
		t.Errorf("XChaCha20-Poly1305 opening an XAES-256-GCM seal = %v, want ErrAuth", err)
	}
	if _, err := k.Open(nil, other.Seal(nil, []byte("secret"))); !errors.Is(err, ErrAuth) {
		t.Errorf("XAES-256-GCM opening an XChaCha20-Poly1305 seal = %v, want ErrAuth", err)
	}
	if ErrAuth.Error() != "authentication failed: data damaged or wrong key" {
		t.Errorf("ErrAuth = %q", ErrAuth)
	}
}

func TestKeyFromBytes(t *testing.T) {
	for _, c := range ciphers {
		k := NewRandomKeyWith(c)
		raw := k.Bytes()
		raw[0] ^= 1 // Bytes returns a copy
		k2, err := KeyFromBytes(k.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if k2.Cipher() != c {
			t.Errorf("KeyFromBytes(Bytes()) of a key of %v: a key of %v", c, k2.Cipher())
		}
		if got, err := k2.Open(nil, k.Seal(nil, []byte("x"))); err != nil || string(got) != "x" {
			t.Errorf("%v: KeyFromBytes(k.Bytes()) does not open k's seals: %q, %v", c, got, err)
		}
	}
	// A key of XChaCha20-Poly1305 is its 32 bytes alone, as every key
	// was before XAES-256-GCM: older planb versions read it.
	if n := len(NewRandomKeyWith(XChaCha20Poly1305).Bytes()); n != KeySize {
		t.Errorf("Bytes of an XChaCha20-Poly1305 key: %d bytes, want %d", n, KeySize)
	}
	for _, n := range []int{0, 16, KeySize - 1, KeySize + 2} {
		if _, err := KeyFromBytes(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "want 32") {
			t.Errorf("KeyFromBytes(%d bytes) = %v, want a length error", n, err)
		}
	}
	for _, c := range []byte{byte(CipherAuto), 3, 0xff} {
		if _, err := KeyFromBytes(append(make([]byte, KeySize), c)); err == nil || !strings.Contains(err.Error(), "unknown cipher") {
			t.Errorf("KeyFromBytes(cipher %d) = %v, want an unknown cipher error", c, err)
		}
	}
}

// TestXAES256GCMVectors checks XAES-256-GCM against the test vectors of
// its specification (c2sp.org/XAES-256-GCM), which have additional data
// too: aead gives the AEAD that Seal and Open use.
func TestXAES256GCMVectors(t *testing.T) {
	for _, tc := range []struct {
		key        byte
		aad        string
		ciphertext string // and tag
	}{
		{0x01, "", "ce546ef63c9cc60765923609" + "b33a9a1974e96e52daf2fcf7075e2271"},
		{0x03, "c2sp.org/XAES-256-GCM", "986ec1832593df5443a17943" + "7fd083bf3fdb41abd740a21f71eb769d"},
	} {
		k, err := KeyFromBytes(append(bytes.Repeat([]byte{tc.key}, KeySize), byte(XAES256GCM)))
		if err != nil {
			t.Fatal(err)
		}
		nonce := []byte("ABCDEFGHIJKLMNOPQRSTUVWX")
		aead, sub := k.aead(nonce)
		got := aead.Seal(nil, sub, []byte("XAES-256-GCM"), []byte(tc.aad))
		if hex.EncodeToString(got) != tc.ciphertext {
			t.Errorf("key %#x: XAES-256-GCM = %x, want %s", tc.key, got, tc.ciphertext)
		}
		if tc.aad != "" {
			continue
		}
		// Without additional data, Seal's layout is the nonce and that.
		plain, err := k.Open(nil, append(nonce, got...))
		if err != nil || string(plain) != "XAES-256-GCM" {
			t.Errorf("Open(vector) = %q, %v", plain, err)
		}
	}
}

func TestDefaultCipher(t *testing.T) {
	c := DefaultCipher()
	if c != XChaCha20Poly1305 && c != XAES256GCM {
		t.Fatalf("DefaultCipher() = %v", c)
	}
	if got := NewRandomKey().Cipher(); got != c {
		t.Errorf("NewRandomKey().Cipher() = %v, want DefaultCipher() %v", got, c)
	}
	for c, want := range map[Cipher]string{CipherAuto: "auto", XChaCha20Poly1305: "xchacha20-poly1305", XAES256GCM: "xaes-256-gcm", 7: "cipher(7)"} {
		if c.String() != want {
			t.Errorf("Cipher(%d).String() = %q, want %q", c, c.String(), want)
		}
	}
}

// BenchmarkKey measures Open of a frame of 256 KiB with each cipher.
func BenchmarkKey(b *testing.B) {
	for _, c := range ciphers {
		b.Run(c.String(), func(b *testing.B) {
			k := NewRandomKeyWith(c)
			plain := bytes.Repeat([]byte("0123456789abcdef"), 16<<10)
			sealed := k.Seal(nil, plain)
			dst := make([]byte, 0, len(plain))
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				if _, err := k.Open(dst, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
