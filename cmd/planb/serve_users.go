package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/BurntSushi/toml"
	"golang.org/x/crypto/argon2"

	"codeberg.org/planb/planb/archive/crypto"
)

// The users file of planb serve: who may log in, and which sources each
// login reads.
//
//	[[user]]
//	name = "alice"
//	password_hash = "$argon2id$v=19$m=9216,t=4,p=1$..."  # planb serve hash-password
//	sources = ["imaps://alice@*", "graph://contoso.eu/alice@contoso.eu"]
type usersFile struct {
	User []serveUser `toml:"user"`
}

// serveUser is one login.
type serveUser struct {
	Name         string   `toml:"name"`
	PasswordHash string   `toml:"password_hash"`
	Sources      []string `toml:"sources"`

	hash    passwordHash
	sources []*regexp.Regexp
}

// readUsers parses a users file.
func readUsers(data []byte, file string) (map[string]*serveUser, error) {
	var uf usersFile
	md, err := toml.Decode(string(data), &uf)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", file, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return nil, fmt.Errorf("users file %s: unknown setting %q", file, keys[0].String())
	}
	users := map[string]*serveUser{}
	for i := range uf.User {
		u := &uf.User[i]
		if u.Name == "" {
			return nil, fmt.Errorf("users file %s: user %d has no name", file, i+1)
		}
		if users[u.Name] != nil {
			return nil, fmt.Errorf("users file %s: user %q appears twice", file, u.Name)
		}
		if u.hash, err = parsePasswordHash(u.PasswordHash); err != nil {
			return nil, fmt.Errorf("users file %s: user %q: %w", file, u.Name, err)
		}
		if len(u.Sources) == 0 {
			return nil, fmt.Errorf("users file %s: user %q has no sources", file, u.Name)
		}
		for _, p := range u.Sources {
			re, err := globRegexp(p)
			if err != nil {
				return nil, fmt.Errorf("users file %s: user %q: source %q: %v", file, u.Name, p, err)
			}
			u.sources = append(u.sources, re)
		}
		users[u.Name] = u
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("users file %s: no [[user]]", file)
	}
	return users, nil
}

// reads reports whether the user may read source.
func (u *serveUser) reads(source string) bool {
	return slices.ContainsFunc(u.sources, func(re *regexp.Regexp) bool { return re.MatchString(source) })
}

// passwordHash is an argon2id hash in the PHC string format:
// $argon2id$v=19$m=MEMORY_KIB,t=TIME,p=THREADS$SALT$HASH (unpadded
// base64).
type passwordHash struct {
	time, memory uint32
	threads      uint8
	salt, key    []byte
}

// hashPassword hashes a password with the parameters of new key files
// (crypto.DefaultKDF: 9 MiB, 4 passes, 1 lane) and a random salt. Hashes
// made with other parameters verify with their own.
func hashPassword(password string) (string, error) {
	p := crypto.DefaultKDF()
	h := passwordHash{time: p.Time, memory: p.MemoryKiB, threads: p.Threads, salt: make([]byte, 16)}
	if _, err := rand.Read(h.salt); err != nil {
		return "", err
	}
	h.key = argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, h.memory, h.time, h.threads,
		enc.EncodeToString(h.salt), enc.EncodeToString(h.key)), nil
}

func parsePasswordHash(s string) (passwordHash, error) {
	var h passwordHash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, fmt.Errorf("password_hash is not an argon2id hash ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH): make one with `planb serve hash-password`")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return h, fmt.Errorf("password_hash: argon2 version %q, want v=%d", parts[2], argon2.Version)
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &h.threads); err != nil {
		return h, fmt.Errorf("password_hash: parameters %q: %v", parts[3], err)
	}
	if h.time == 0 || h.time > 100 || h.memory < 8 || h.memory > 4<<20 || h.threads == 0 {
		return h, fmt.Errorf("password_hash: parameters %q out of range", parts[3])
	}
	var err error
	enc := base64.RawStdEncoding
	if h.salt, err = enc.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return h, fmt.Errorf("password_hash: bad salt")
	}
	if h.key, err = enc.DecodeString(parts[5]); err != nil || len(h.key) < 16 {
		return h, fmt.Errorf("password_hash: bad hash")
	}
	return h, nil
}

func (h passwordHash) matches(password string) bool {
	k := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}

// verifier checks passwords against their hashes. An argon2id check takes
// its memory (64 MiB by default) and a fraction of a second: one runs at a
// time. A password checked once is recognised afterwards by an HMAC under a
// key of this process, right or wrong, as clients log in again and again:
// the staff of a whole organisation opening their mail at once, or a client
// that retries an old password every minute, costs one check per password.
type verifier struct {
	sem  chan struct{}
	key  []byte
	mu   sync.Mutex
	good map[string][]byte   // user → HMAC of the password that matched
	bad  map[string]struct{} // HMACs of user and password that did not
	runs atomic.Int64        // argon2id checks run (for tests)
	// waiting counts the checks running or waiting for the one at a time.
	waiting atomic.Int64
	// dummy is checked for an unknown user, so that a login takes as
	// long whether the user exists or not.
	dummy passwordHash
}

// rememberedFailures bounds the set of wrong passwords remembered; when it
// is full it starts again empty.
const rememberedFailures = 4096

func newVerifier() *verifier {
	v := &verifier{sem: make(chan struct{}, 1), key: make([]byte, 32), good: map[string][]byte{}, bad: map[string]struct{}{}}
	rand.Read(v.key)
	p := crypto.DefaultKDF()
	v.dummy = passwordHash{time: p.Time, memory: p.MemoryKiB, threads: p.Threads, salt: make([]byte, 16), key: make([]byte, 32)}
	return v
}

// check reports whether password is u's (u nil: an unknown user, never).
func (v *verifier) check(name string, u *serveUser, password string) bool {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(name + "\x00" + password))
	mac := m.Sum(nil)
	if ok, known := v.known(name, u, mac); known {
		return ok
	}
	v.waiting.Add(1)
	v.sem <- struct{}{}
	defer func() {
		// Free argon2's memory at once, so that the next check takes
		// the same 64 MiB rather than 64 more. Give it back to the
		// system once no other check waits for it: planb serve runs
		// for weeks, mostly idle, in little memory, and a check that
		// finds the memory still mapped is spared faulting in 64 MiB
		// again (as slow as the check itself on some virtual machines).
		if v.waiting.Add(-1) == 0 {
			debug.FreeOSMemory()
		} else {
			runtime.GC()
		}
		<-v.sem
	}()
	// Logins that waited here for the same password find it checked.
	if ok, known := v.known(name, u, mac); known {
		return ok
	}
	v.runs.Add(1)
	ok := false
	if u == nil {
		v.dummy.matches(password)
	} else {
		ok = u.hash.matches(password)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if ok {
		v.good[name] = mac
	} else {
		if len(v.bad) >= rememberedFailures {
			clear(v.bad)
		}
		v.bad[string(mac)] = struct{}{}
	}
	return ok
}

// known reports what an earlier check found for mac, if one did.
func (v *verifier) known(name string, u *serveUser, mac []byte) (ok, known bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if u != nil {
		if good := v.good[name]; good != nil && hmac.Equal(good, mac) {
			return true, true
		}
	}
	_, bad := v.bad[string(mac)]
	return false, bad
}
