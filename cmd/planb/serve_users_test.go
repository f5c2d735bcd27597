package main

import (
	"sync"
	"testing"
)

// TestVerifierChecksOnce: logins that arrive together with the same
// password, right or wrong, cost one argon2id check between them, and a
// password checked once is answered without another.
func TestVerifierChecksOnce(t *testing.T) {
	h, err := hashPassword("right")
	if err != nil {
		t.Fatal(err)
	}
	ph, err := parsePasswordHash(h)
	if err != nil {
		t.Fatal(err)
	}
	alice := &serveUser{Name: "alice", hash: ph}
	v := newVerifier()
	together := func(name string, u *serveUser, password string, want bool, runs int64) {
		t.Helper()
		var wg sync.WaitGroup
		got := make([]bool, 16)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = v.check(name, u, password)
			}()
		}
		wg.Wait()
		for i, ok := range got {
			if ok != want {
				t.Errorf("login %d of %s with %q = %v, want %v", i, name, password, ok, want)
			}
		}
		if n := v.runs.Load(); n != runs {
			t.Errorf("after 16 logins of %s with %q: %d argon2id checks in all, want %d", name, password, n, runs)
		}
	}
	together("alice", alice, "right", true, 1)
	together("alice", alice, "wrong", false, 2)
	together("alice", alice, "right", true, 2)
	together("alice", alice, "other", false, 3)
	together("mallory", nil, "right", false, 4) // unknown user: the dummy hash, once
	together("alice", alice, "wrong", false, 4)
	// The HMAC binds user and password: alice's password is not bob's.
	bob := &serveUser{Name: "bob", hash: ph}
	together("bob", bob, "wrong", false, 5)
	together("bob", bob, "right", true, 6)
}
