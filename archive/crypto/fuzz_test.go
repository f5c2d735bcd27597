package crypto

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParseKeyFile parses arbitrary bytes as a key file, which anyone who
// can write to the repository can plant: what parses asks for a key
// derivation within bounds, encodes and parses again to the same key
// file, and (when its derivation is cheap enough to try here) opens with
// no key or a wrong-password error, never a panic.
func FuzzParseKeyFile(f *testing.F) {
	kf, err := NewKeyFile("pw", NewRandomKey(), testInfo())
	if err != nil {
		f.Fatal(err)
	}
	b, err := kf.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, "pw")
	f.Add([]byte(`{"version":1,"kdf":{"algorithm":"argon2id","time":3,"memory_kib":67108864,"threads":4,"salt":"AAAAAAAAAAAAAAAAAAAAAA=="},"data":"AAAA","info":null}`), "x")
	f.Add([]byte(`{"version":1,"kdf":{"algorithm":"argon2id","time":1,"memory_kib":8,"threads":1,"salt":"AAAAAAAAAAAAAAAAAAAAAA=="},"data":"","info":""}`), "")
	f.Add([]byte(`{"version":1,"kdf":{"algorithm":"scrypt"}}`), "pw")
	f.Fuzz(func(t *testing.T, b []byte, password string) {
		kf, err := ParseKeyFile(b)
		if err != nil {
			return
		}
		if err := kf.KDF.check(); err != nil {
			t.Fatalf("ParseKeyFile accepted %+v: %v", kf.KDF, err)
		}
		enc, err := kf.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseKeyFile(enc)
		if err != nil || !reflect.DeepEqual(kf, again) {
			t.Fatalf("ParseKeyFile(Marshal(%+v)) = %+v, %v", kf, again, err)
		}
		if kf.KDF.MemoryKiB > 1024 || kf.KDF.Time > 2 {
			return
		}
		if k, err := kf.Unlock(password); err == nil {
			if _, err := kf.InfoWith(k); err != nil && !errors.Is(err, ErrAuth) {
				t.Fatalf("InfoWith = %v", err)
			}
		} else if !errors.Is(err, ErrWrongPassword) && k != nil {
			t.Fatalf("Unlock = %v, %v", k, err)
		}
	})
}
