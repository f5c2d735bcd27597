package repo

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/crypto"
)

// TestKeysKDF: Init and AddKey write key files with Options.KDF, else
// the default; ListKeys names each file's parameters, and every file
// opens with its own.
func TestKeysKDF(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	custom := crypto.KDFParams{Algorithm: "argon2id", Time: 2, MemoryKiB: 16, Threads: 1}
	r, err := Init(ctx, be, "first", &Options{KDF: &custom})
	if err != nil {
		t.Fatal(err)
	}
	second := crypto.KDFParams{Algorithm: "argon2id", Time: 1, MemoryKiB: 24, Threads: 2}
	r.kdf = &second
	if _, err := r.AddKey(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be, "second", nil) // no KDF: the default
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.AddKey(ctx, "third"); err != nil {
		t.Fatal(err)
	}
	keys, err := r2.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		got = append(got, k.KDF)
	}
	want := []string{"argon2id m=16,t=2,p=1", "argon2id m=24,t=1,p=2", "argon2id " + crypto.DefaultKDF().String()}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ListKeys() KDFs = %q, want %q", got, want)
	}
	for _, pw := range []string{"first", "second", "third"} {
		if _, err := Open(ctx, be, pw, nil); err != nil {
			t.Errorf("Open(%s) = %v", pw, err)
		}
	}
}

func TestKeys(t *testing.T) {
	start := time.Now().Add(-time.Second)
	r, be := newTestRepo(t)
	ctx := t.Context()
	id2, err := r.AddKey(ctx, "second password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddKey(ctx, ""); err == nil || err.Error() != "add key: empty password" {
		t.Errorf("AddKey(\"\") = %v, want add key: empty password", err)
	}

	keys, err := r.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("ListKeys() = %d keys, want 2", len(keys))
	}
	host, user := hostUser()
	for i, k := range keys {
		if k.Host != host || k.Username != user || k.Created.Before(start) || k.Created.After(time.Now()) {
			t.Errorf("key %d = %+v, want host %q, user %q, created now", i, k, host, user)
		}
	}
	// Oldest first: the key of Init, which the repository is open with.
	if !keys[0].Current || keys[1].Current || keys[1].ID != id2 {
		t.Errorf("ListKeys() = %+v, want the init key current, then %s", keys, id2)
	}
	current := keys[0].ID

	// The second password opens the repository, and its key is current.
	r2, err := Open(ctx, be, "second password", nil)
	if err != nil {
		t.Fatalf("Open(second password) = %v", err)
	}
	if keys2, _ := r2.ListKeys(ctx); len(keys2) != 2 || keys2[0].Current || !keys2[1].Current {
		t.Errorf("ListKeys() opened with the second key = %+v, want the second current", keys2)
	}

	if err := r.RemoveKey(ctx, current[:10]); err == nil || !strings.Contains(err.Error(), "key in use") {
		t.Errorf("RemoveKey(current) = %v, want a refusal", err)
	}
	tests := []struct {
		id, wantErr string
	}{
		{"", "no such key"},
		{"zz", "no such key"},
		{current + "0", "no such key"},
	}
	for _, tt := range tests {
		if err := r.RemoveKey(ctx, tt.id); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("RemoveKey(%q) = %v, want an error containing %q", tt.id, err, tt.wantErr)
		}
	}
	if err := r.RemoveKey(ctx, id2[:8]); err != nil {
		t.Fatalf("RemoveKey(second key) = %v", err)
	}
	if keys, _ := r.ListKeys(ctx); len(keys) != 1 || keys[0].ID != current {
		t.Errorf("after RemoveKey: %+v, want only %s", keys, current)
	}
	if _, err := Open(ctx, be, "second password", nil); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("Open(removed password) = %v, want ErrWrongPassword", err)
	}
}

func TestRemoveKeyAmbiguous(t *testing.T) {
	r, _ := newTestRepo(t)
	ctx := t.Context()
	// 17 key files: two share their first hex digit.
	seen := make(map[byte]bool)
	var prefix string
	for len(prefix) == 0 {
		id, err := r.AddKey(ctx, "pw")
		if err != nil {
			t.Fatal(err)
		}
		if seen[id[0]] {
			prefix = id[:1]
		}
		seen[id[0]] = true
	}
	before, _ := r.ListKeys(ctx)
	if err := r.RemoveKey(ctx, prefix); err == nil || !strings.Contains(err.Error(), "prefix is ambiguous") {
		t.Errorf("RemoveKey(%q) = %v, want ambiguous", prefix, err)
	}
	if after, _ := r.ListKeys(ctx); len(after) != len(before) {
		t.Errorf("an ambiguous RemoveKey removed %d keys", len(before)-len(after))
	}
}

func TestChangePassword(t *testing.T) {
	r, be := newTestRepo(t)
	ctx := t.Context()
	other, err := r.AddKey(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ChangePassword(ctx, "new password"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, testPassword, nil); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("Open(old password) = %v, want ErrWrongPassword", err)
	}
	r2, err := Open(ctx, be, "new password", nil)
	if err != nil {
		t.Fatalf("Open(new password) = %v", err)
	}
	if r2.Config().ID != r.Config().ID {
		t.Errorf("new password opens repository %s, want %s", r2.Config().ID, r.Config().ID)
	}
	keys, err := r.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != other || keys[0].Current || !keys[1].Current {
		t.Errorf("keys after ChangePassword = %+v, want %s and the new current key", keys, other)
	}
	// The other password still works: the master key did not change.
	if _, err := Open(ctx, be, "other", nil); err != nil {
		t.Errorf("Open(other) = %v", err)
	}
	if err := r.ChangePassword(ctx, ""); err == nil {
		t.Error("ChangePassword(\"\") = nil, want an error")
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	if _, err := Open(ctx, mem.New(), "x", nil); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Open(empty backend) = %v, want ErrNotExist", err)
	}
	r, be := newTestRepo(t)
	if _, err := Init(ctx, be, "x", nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Init over a repository = %v, want already exists", err)
	}
	if _, err := Init(ctx, mem.New(), "", nil); err == nil {
		t.Error("Init with an empty password = nil error")
	}
	// A config without key files.
	noKeys := mem.New()
	for h, data := range be.Contents() {
		if h.Type != backend.KeyFile {
			noKeys.Save(ctx, h, bytes.NewReader(data))
		}
	}
	if _, err := Open(ctx, noKeys, testPassword, nil); !errors.Is(err, ErrNoKey) {
		t.Errorf("Open without key files = %v, want ErrNoKey", err)
	}
	// An unparsable key file is skipped; the good one still opens.
	if err := be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: "00"}, bytes.NewReader([]byte("{"))); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, testPassword, nil); err != nil {
		t.Errorf("Open with a damaged extra key file = %v", err)
	}
	// A damaged config.
	if err := be.Corrupt(backend.Handle{Type: backend.ConfigFile}, 30); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, testPassword, nil); err == nil || !strings.Contains(err.Error(), "config") {
		t.Errorf("Open with a damaged config = %v, want a config error", err)
	}
	cfg := r.Config()
	if cfg.Version != Version || cfg.PackSize != 16<<20 || len(cfg.ID) != 64 || cfg.Chunker.Validate() != nil {
		t.Errorf("Config() = %+v", cfg)
	}
}

// TestOpenPlantedKeyFiles: whoever can write to keys/ can plant files
// there. Files that are not key files, or key files asking for a costly
// key derivation, cost no try of the password: 40 junk files sorting
// before the real key do not lock it out, and a key file asking for 64
// GiB is refused before any derivation, the error naming it.
func TestOpenPlantedKeyFiles(t *testing.T) {
	ctx := t.Context()
	_, be := newTestRepo(t)
	save := func(name string, b []byte) {
		t.Helper()
		if err := be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: name}, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		save(fmt.Sprintf("00junk%02d", i), []byte("not a key file"))
	}
	save("00huge", bytes.Repeat([]byte(" "), 1<<20))
	if _, err := Open(ctx, be, testPassword, nil); err != nil {
		t.Fatalf("Open with 41 junk key files = %v, want the real key to open", err)
	}

	hostile := fmt.Sprintf(`{"version":1,"kdf":{"algorithm":"argon2id","time":3,"memory_kib":%d,"threads":4,"salt":"%s"},"data":"AAAA","info":"AAAA"}`,
		64<<20, base64.StdEncoding.EncodeToString(make([]byte, 32)))
	save("00hostile", []byte(hostile))
	if _, err := Open(ctx, be, testPassword, nil); err != nil {
		t.Fatalf("Open with a key file asking for 64 GiB = %v, want the real key to open", err)
	}
	_, err := Open(ctx, be, "wrong", nil)
	if !errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), "key 00hostile") || !strings.Contains(err.Error(), "65536 MiB of memory") {
		t.Errorf("Open(wrong password) = %v, want ErrWrongPassword naming key 00hostile and its 65536 MiB of memory", err)
	}
}
