package crypto

import (
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of a master key in bytes.
const KeySize = chacha20poly1305.KeySize

// Overhead is the number of bytes Seal adds: the nonce and the tag.
const Overhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// ErrAuth means a sealed object failed authentication: it was damaged or
// sealed with another key.
var ErrAuth = errors.New("authentication failed: data damaged or wrong key")

// Key is a symmetric key. It is safe for concurrent use.
type Key struct {
	raw [KeySize]byte
}

// NewRandomKey returns a fresh random key.
func NewRandomKey() *Key {
	k := &Key{}
	if _, err := rand.Read(k.raw[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return k
}

// KeyFromBytes returns the key held in b, which must be KeySize long.
func KeyFromBytes(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("key has %d bytes, want %d", len(b), KeySize)
	}
	k := &Key{}
	copy(k.raw[:], b)
	return k, nil
}

// Bytes returns a copy of the raw key.
func (k *Key) Bytes() []byte { return append([]byte(nil), k.raw[:]...) }

// Seal appends nonce || ciphertext || tag of plaintext to dst and returns it.
func (k *Key) Seal(dst, plaintext []byte) []byte {
	aead, _ := chacha20poly1305.NewX(k.raw[:])
	n := len(dst)
	dst = append(dst, make([]byte, chacha20poly1305.NonceSizeX)...)
	nonce := dst[n:]
	if _, err := rand.Read(nonce); err != nil {
		panic(err)
	}
	return aead.Seal(dst, nonce, plaintext, nil)
}

// Open authenticates and decrypts sealed, appending the plaintext to dst.
// It returns ErrAuth if sealed was changed in any way.
func (k *Key) Open(dst, sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, ErrAuth
	}
	aead, _ := chacha20poly1305.NewX(k.raw[:])
	nonce, ct := sealed[:chacha20poly1305.NonceSizeX], sealed[chacha20poly1305.NonceSizeX:]
	out, err := aead.Open(dst, nonce, ct, nil)
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
	ct := sealed[chacha20poly1305.NonceSizeX:]
	return k.Open(ct[:0], sealed)
}
