package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// KeySize is the size of a master key in bytes.
const KeySize = chacha20poly1305.KeySize

// NonceSize is the size of the random nonce that starts every sealed
// object, with either cipher.
const NonceSize = chacha20poly1305.NonceSizeX

// Overhead is the number of bytes Seal adds: the nonce and the tag.
const Overhead = NonceSize + chacha20poly1305.Overhead

// Cipher names the authenticated encryption a key seals with. Both take a
// 256-bit key and a random 192-bit nonce and add a 128-bit tag, so that
// sealed objects have the same layout with either.
type Cipher uint8

const (
	// CipherAuto, for a new key: XAES256GCM where the processor has
	// AES and carry-less multiplication instructions, else
	// XChaCha20Poly1305 (DefaultCipher).
	CipherAuto Cipher = iota
	// XChaCha20Poly1305 is the cipher of every repository made before
	// XAES256GCM was added, and of the keys derived from passwords.
	XChaCha20Poly1305
	// XAES256GCM is AES-256-GCM with a 192-bit nonce (c2sp.org/XAES-256-GCM):
	// each nonce derives a key of its own from the master key, so that
	// random nonces stay as safe as XChaCha20-Poly1305's, and with the
	// processor's AES instructions it opens frames about 2.5 times as
	// fast (BenchmarkKey).
	XAES256GCM
)

func (c Cipher) String() string {
	switch c {
	case CipherAuto:
		return "auto"
	case XChaCha20Poly1305:
		return "xchacha20-poly1305"
	case XAES256GCM:
		return "xaes-256-gcm"
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

// DefaultCipher returns the cipher of a new repository on this machine:
// XAES256GCM where AES-GCM runs in hardware (Go's AES without it is slow
// and XChaCha20-Poly1305 is not), else XChaCha20Poly1305.
func DefaultCipher() Cipher {
	switch runtime.GOARCH {
	case "amd64":
		if cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ {
			return XAES256GCM
		}
	case "arm64":
		if cpu.ARM64.HasAES && cpu.ARM64.HasPMULL {
			return XAES256GCM
		}
	}
	return XChaCha20Poly1305
}

// ErrAuth means a sealed object failed authentication: it was damaged or
// sealed with another key.
var ErrAuth = errors.New("authentication failed: data damaged or wrong key")

// Key is a symmetric key and the cipher it seals with. It is safe for
// concurrent use.
type Key struct {
	raw    [KeySize]byte
	cipher Cipher
	blk    cipher.Block // XAES256GCM: AES-256 under raw
	k1     [aes.BlockSize]byte
}

// NewRandomKey returns a fresh random key sealing with DefaultCipher.
func NewRandomKey() *Key { return NewRandomKeyWith(CipherAuto) }

// NewRandomKeyWith returns a fresh random key sealing with c (CipherAuto:
// DefaultCipher).
func NewRandomKeyWith(c Cipher) *Key {
	var raw [KeySize]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	if c == CipherAuto {
		c = DefaultCipher()
	}
	k, err := newKey(raw[:], c)
	if err != nil {
		panic(err) // only for an unknown cipher
	}
	return k
}

// KeyFromBytes returns the key that Bytes gave: KeySize bytes for a key of
// XChaCha20Poly1305, as every key was before there was a choice, or those
// and a byte naming its cipher.
func KeyFromBytes(b []byte) (*Key, error) {
	switch len(b) {
	case KeySize:
		return newKey(b, XChaCha20Poly1305)
	case KeySize + 1:
		return newKey(b[:KeySize], Cipher(b[KeySize]))
	}
	return nil, fmt.Errorf("key has %d bytes, want %d", len(b), KeySize)
}

func newKey(raw []byte, c Cipher) (*Key, error) {
	k := &Key{cipher: c}
	copy(k.raw[:], raw)
	switch c {
	case XChaCha20Poly1305:
	case XAES256GCM:
		k.blk, _ = aes.NewCipher(k.raw[:]) // never fails for 32 bytes
		// K1 = L << 1 in GF(2^128), L the encryption of the zero block
		// (the CMAC subkey of NIST SP 800-38B).
		var l [aes.BlockSize]byte
		k.blk.Encrypt(l[:], l[:])
		for i := range l {
			k.k1[i] = l[i] << 1
			if i+1 < len(l) {
				k.k1[i] |= l[i+1] >> 7
			}
		}
		if l[0]&0x80 != 0 {
			k.k1[len(k.k1)-1] ^= 0x87
		}
	default:
		return nil, fmt.Errorf("key: unknown cipher %d", uint8(c))
	}
	return k, nil
}

// Bytes returns a copy of the raw key and its cipher, as KeyFromBytes
// takes them: a key of XChaCha20Poly1305 as its KeySize bytes alone.
func (k *Key) Bytes() []byte {
	b := append([]byte(nil), k.raw[:]...)
	if k.cipher != XChaCha20Poly1305 {
		b = append(b, byte(k.cipher))
	}
	return b
}

// Cipher returns the cipher the key seals with.
func (k *Key) Cipher() Cipher { return k.cipher }

// aead returns the AEAD that seals with nonce, the first NonceSize bytes
// of a sealed object, and the part of nonce it takes.
func (k *Key) aead(nonce []byte) (cipher.AEAD, []byte) {
	if k.cipher == XAES256GCM {
		// c2sp.org/XAES-256-GCM: the nonce's first 12 bytes derive a
		// key (NIST SP 800-108r1 in counter mode, CMAC-AES-256 as its
		// function), its last 12 are the nonce of AES-256-GCM under it.
		var m, kx [2 * aes.BlockSize]byte
		for i, ctr := range []byte{1, 2} {
			b := m[i*aes.BlockSize : (i+1)*aes.BlockSize]
			b[0], b[1], b[2], b[3] = 0, ctr, 'X', 0
			copy(b[4:], nonce[:12])
			for j := range b {
				b[j] ^= k.k1[j]
			}
			k.blk.Encrypt(kx[i*aes.BlockSize:], b)
		}
		blk, _ := aes.NewCipher(kx[:])
		gcm, _ := cipher.NewGCM(blk)
		return gcm, nonce[12:NonceSize]
	}
	aead, _ := chacha20poly1305.NewX(k.raw[:])
	return aead, nonce[:NonceSize]
}

// Seal appends nonce || ciphertext || tag of plaintext to dst and returns it.
func (k *Key) Seal(dst, plaintext []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, NonceSize)...)
	nonce := dst[n:]
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	aead, sub := k.aead(nonce)
	return aead.Seal(dst, sub, plaintext, nil)
}

// Open authenticates and decrypts sealed, appending the plaintext to dst.
// It returns ErrAuth if sealed was changed in any way.
func (k *Key) Open(dst, sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, ErrAuth
	}
	aead, sub := k.aead(sealed[:NonceSize])
	out, err := aead.Open(dst, sub, sealed[NonceSize:], nil)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// OpenInPlace is Open writing the plaintext over sealed's own bytes: it
// returns a part of sealed.
func (k *Key) OpenInPlace(sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, ErrAuth
	}
	ct := sealed[NonceSize:]
	return k.Open(ct[:0], sealed)
}
