package crypto

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// ErrWrongPassword is returned when no key file opens with the password.
var ErrWrongPassword = errors.New("wrong password")

// KDFParams are argon2id parameters; they are stored in clear in a key file.
type KDFParams struct {
	Algorithm string `json:"algorithm"` // "argon2id"
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// DefaultKDF returns the argon2id parameters for new key files: 9 MiB,
// 4 passes, 1 lane, one of the equivalent settings OWASP's Password
// Storage Cheat Sheet lists (m=9216, t=4, p=1). Every command derives the
// key once, so the derivation's memory is the floor of every command's
// peak: at 64 MiB (the default until December 2026) `planb snapshots`
// on a million-message repository needed 92-97 MiB and a second on a
// machine with slow page faults, at 9 MiB 38 MiB and 0.13 s. Key files
// keep their own parameters; `planb init --kdf` and `planb key
// add|passwd --kdf` choose others (see ParseKDF).
var DefaultKDF = func() KDFParams {
	return KDFParams{Algorithm: "argon2id", Time: 4, MemoryKiB: 9 << 10, Threads: 1}
}

// kdfSyntax is ParseKDF's error for a value it cannot read.
const kdfSyntax = "key derivation %q: want m=MEMORY_KIB,t=PASSES,p=LANES, as m=9216,t=4,p=1"

// ParseKDF reads argon2id parameters written as in a PHC hash string,
// "m=MEMORY_KIB,t=PASSES,p=LANES" (the order is free, all three are
// needed), and checks them against the bounds key files must keep.
func ParseKDF(s string) (KDFParams, error) {
	p := KDFParams{Algorithm: "argon2id"}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(value, 10, 32)
		if !ok || err != nil || seen[name] {
			return p, fmt.Errorf(kdfSyntax, s)
		}
		seen[name] = true
		switch name {
		case "m":
			p.MemoryKiB = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				n = 255 // out of bounds either way; check says so
			}
			p.Threads = uint8(n)
		default:
			return p, fmt.Errorf("key derivation %q: unknown parameter %q; want m=MEMORY_KIB,t=PASSES,p=LANES", s, name)
		}
	}
	if len(seen) != 3 {
		return p, fmt.Errorf(kdfSyntax, s)
	}
	// check wants a salt; new key files get theirs when they are made.
	q := p
	q.Salt = make([]byte, 16)
	if err := q.check(); err != nil {
		return p, err
	}
	return p, nil
}

// String writes the parameters as ParseKDF reads them.
func (p KDFParams) String() string {
	return fmt.Sprintf("m=%d,t=%d,p=%d", p.MemoryKiB, p.Time, p.Threads)
}

// SetTestKDF makes new key files use very cheap parameters. Only tests call
// it (from TestMain); it is never a default.
func SetTestKDF() {
	DefaultKDF = func() KDFParams {
		return KDFParams{Algorithm: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1}
	}
}

// The most a key file may ask of a key derivation: a few times the
// 64 MiB, 3 passes and 2 lanes of the key files written until December
// 2026. The parameters are stored in clear, so whoever can write to
// the repository can plant a key file; without these bounds it could make
// every opening allocate 64 GiB or run for hours.
const (
	MaxKDFTime      = 10        // passes (default 4)
	MaxKDFMemoryKiB = 256 << 10 // 256 MiB (default 9 MiB)
	MaxKDFThreads   = 16        // lanes (default 1)
	maxKDFSalt      = 1024      // bytes (new key files: 32)
)

// check reports parameters that are unknown or out of range, before any
// derivation runs.
func (p KDFParams) check() error {
	switch {
	case p.Algorithm != "argon2id":
		return fmt.Errorf("unknown key derivation %q", p.Algorithm)
	case p.Time == 0 || p.MemoryKiB < 8 || p.Threads == 0 || len(p.Salt) < 16:
		return fmt.Errorf("key derivation parameters out of range (time %d, memory %d KiB, threads %d, salt of %d bytes)",
			p.Time, p.MemoryKiB, p.Threads, len(p.Salt))
	case p.MemoryKiB > MaxKDFMemoryKiB:
		return fmt.Errorf("key derivation asks for %d MiB of memory, more than the %d MiB planb allows", p.MemoryKiB>>10, MaxKDFMemoryKiB>>10)
	case p.Time > MaxKDFTime:
		return fmt.Errorf("key derivation asks for %d passes, more than the %d planb allows", p.Time, MaxKDFTime)
	case p.Threads > MaxKDFThreads:
		return fmt.Errorf("key derivation asks for %d threads, more than the %d planb allows", p.Threads, MaxKDFThreads)
	case len(p.Salt) > maxKDFSalt:
		return fmt.Errorf("key derivation salt of %d bytes, more than the %d planb allows", len(p.Salt), maxKDFSalt)
	}
	return nil
}

func (p KDFParams) derive(password string) (*Key, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	raw := argon2.IDKey([]byte(password), p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
	if p.MemoryKiB >= 1<<10 {
		// The derivation's memory is garbage now. Collecting it at once
		// lets what the command allocates next reuse those pages, where
		// the heap would otherwise grow past them before its next
		// collection: the derivation stays the command's peak.
		runtime.GC()
	}
	return KeyFromBytes(raw)
}

// KeyInfo describes a key file; it is sealed with the master key so that
// anyone holding any password can list the keys, and nobody else can.
type KeyInfo struct {
	Created  time.Time `json:"created"`
	Host     string    `json:"host"`
	Username string    `json:"username"`
}

// KeyFile is the on-disk form of one password's access to the master key.
type KeyFile struct {
	Version int       `json:"version"`
	KDF     KDFParams `json:"kdf"`
	// Data is the master key sealed with the password-derived key.
	Data []byte `json:"data"`
	// Info is a KeyInfo (JSON) sealed with the master key.
	Info []byte `json:"info"`
}

// NewKeyFile seals master under password, with DefaultKDF's parameters.
func NewKeyFile(password string, master *Key, info KeyInfo) (*KeyFile, error) {
	return NewKeyFileWith(password, master, info, DefaultKDF())
}

// NewKeyFileWith seals master under password, with the key derivation
// parameters p (a fresh salt replaces p's).
func NewKeyFileWith(password string, master *Key, info KeyInfo, p KDFParams) (*KeyFile, error) {
	p.Salt = make([]byte, 32)
	if _, err := rand.Read(p.Salt); err != nil {
		return nil, err
	}
	pk, err := p.derive(password)
	if err != nil {
		return nil, err
	}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	return &KeyFile{
		Version: 1,
		KDF:     p,
		Data:    pk.Seal(nil, master.Bytes()),
		Info:    master.Seal(nil, infoJSON),
	}, nil
}

// ParseKeyFile decodes a key file. It refuses a key file whose key
// derivation is unknown or would cost more than the Max* bounds allow.
func ParseKeyFile(b []byte) (*KeyFile, error) {
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("parse key file: %w", err)
	}
	if kf.Version != 1 {
		return nil, fmt.Errorf("parse key file: unsupported version %d", kf.Version)
	}
	if err := kf.KDF.check(); err != nil {
		return nil, fmt.Errorf("parse key file: %w", err)
	}
	return &kf, nil
}

// Marshal encodes the key file.
func (kf *KeyFile) Marshal() ([]byte, error) { return json.Marshal(kf) }

// Unlock returns the master key if password opens this key file, or
// ErrWrongPassword.
func (kf *KeyFile) Unlock(password string) (*Key, error) {
	pk, err := kf.KDF.derive(password)
	if err != nil {
		return nil, err
	}
	raw, err := pk.Open(nil, kf.Data)
	if err != nil {
		return nil, ErrWrongPassword
	}
	return KeyFromBytes(raw)
}

// InfoWith decrypts the key file's description with the master key.
func (kf *KeyFile) InfoWith(master *Key) (KeyInfo, error) {
	var info KeyInfo
	b, err := master.Open(nil, kf.Info)
	if err != nil {
		return info, err
	}
	err = json.Unmarshal(b, &info)
	return info, err
}
