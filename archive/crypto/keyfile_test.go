package crypto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDefaultKDFIsStrong: new key files use one of the argon2id settings
// OWASP's Password Storage Cheat Sheet lists (m=9216, t=4, p=1).
func TestDefaultKDFIsStrong(t *testing.T) {
	want := KDFParams{Algorithm: "argon2id", Time: 4, MemoryKiB: 9 << 10, Threads: 1}
	if defaultKDF.Algorithm != want.Algorithm || defaultKDF.Time != want.Time || defaultKDF.MemoryKiB != want.MemoryKiB || defaultKDF.Threads != want.Threads {
		t.Errorf("DefaultKDF() outside tests = %+v, want %+v", defaultKDF, want)
	}
}

func testInfo() KeyInfo {
	return KeyInfo{Created: time.Date(2025, 6, 1, 12, 30, 0, 0, time.UTC), Host: "secret-host.example", Username: "alice-the-admin"}
}

func TestKeyFileRoundTrip(t *testing.T) {
	master := NewRandomKey()
	kf, err := NewKeyFile("pass word", master, testInfo())
	if err != nil {
		t.Fatal(err)
	}
	if kf.Version != 1 || kf.KDF.Algorithm != "argon2id" || len(kf.KDF.Salt) != 32 {
		t.Errorf("NewKeyFile = version %d, kdf %+v; want 1, argon2id with a 32-byte salt", kf.Version, kf.KDF)
	}
	b, err := kf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseKeyFile(b)
	if err != nil {
		t.Fatalf("ParseKeyFile(Marshal()) = %v", err)
	}
	b2, err := parsed.Marshal()
	if err != nil || !bytes.Equal(b, b2) {
		t.Errorf("Marshal(ParseKeyFile(b)) = %s, %v; want %s", b2, err, b)
	}
	for _, k := range []*KeyFile{kf, parsed} {
		got, err := k.Unlock("pass word")
		if err != nil {
			t.Fatalf("Unlock(right password) = %v", err)
		}
		if !bytes.Equal(got.Bytes(), master.Bytes()) {
			t.Error("Unlock returned another key than the master key")
		}
		info, err := k.InfoWith(got)
		if err != nil || !info.Created.Equal(testInfo().Created) || info.Host != testInfo().Host || info.Username != testInfo().Username {
			t.Errorf("InfoWith = %+v, %v; want %+v", info, err, testInfo())
		}
	}
	if _, err := kf.InfoWith(NewRandomKey()); !errors.Is(err, ErrAuth) {
		t.Errorf("InfoWith(another key) = %v, want ErrAuth", err)
	}

	// Two key files of the same password and key differ (salt, nonces).
	kf2, err := NewKeyFile("pass word", master, testInfo())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(kf.KDF.Salt, kf2.KDF.Salt) || bytes.Equal(kf.Data, kf2.Data) {
		t.Error("two key files share their salt or sealed key")
	}
}

func TestKeyFileWrongPassword(t *testing.T) {
	kf, err := NewKeyFile("right", NewRandomKey(), testInfo())
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"", "Right", "right ", "wrong"} {
		if k, err := kf.Unlock(pw); !errors.Is(err, ErrWrongPassword) || k != nil {
			t.Errorf("Unlock(%q) = %v, %v; want nil, ErrWrongPassword", pw, k, err)
		}
	}
	// A damaged sealed key looks like a wrong password too.
	kf.Data[len(kf.Data)-1] ^= 1
	if _, err := kf.Unlock("right"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("Unlock of a damaged key file = %v, want ErrWrongPassword", err)
	}
}

func TestKeyFileNothingInClear(t *testing.T) {
	master := NewRandomKey()
	info := testInfo()
	const password = "my pass phrase"
	kf, err := NewKeyFile(password, master, info)
	if err != nil {
		t.Fatal(err)
	}
	b, err := kf.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "kdf", "data", "info"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("key file JSON %s has no %q field", b, k)
		}
	}
	if len(fields) != 4 {
		t.Errorf("key file JSON has %d fields, want 4: %s", len(fields), b)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, secret := range []string{info.Host, info.Username, "secret", "alice", "2025-06-01", password, string(master.Bytes()), b64(string(master.Bytes()))} {
		if strings.Contains(string(b), secret) {
			t.Errorf("key file JSON contains %q in clear: %s", secret, b)
		}
	}
	for _, secret := range []string{info.Host, info.Username} {
		if strings.Contains(string(b), b64(secret)[:12]) {
			t.Errorf("key file JSON contains %q in base64", secret)
		}
	}
	// The KDF parameters are in clear, as a reader needs them.
	var kdf KDFParams
	if err := json.Unmarshal(fields["kdf"], &kdf); err != nil || kdf.Algorithm != "argon2id" || kdf.Time != kf.KDF.Time || !bytes.Equal(kdf.Salt, kf.KDF.Salt) {
		t.Errorf("kdf field = %+v, %v; want %+v", kdf, err, kf.KDF)
	}
}

func TestKeyFileKDFOutOfRange(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*KDFParams)
		wantErr string
	}{
		{"scrypt", func(p *KDFParams) { p.Algorithm = "scrypt" }, `unknown key derivation "scrypt"`},
		{"empty algorithm", func(p *KDFParams) { p.Algorithm = "" }, `unknown key derivation ""`},
		{"time 0", func(p *KDFParams) { p.Time = 0 }, "out of range"},
		{"time 11", func(p *KDFParams) { p.Time = MaxKDFTime + 1 }, "asks for 11 passes, more than the 10 planb allows"},
		{"memory 7 KiB", func(p *KDFParams) { p.MemoryKiB = 7 }, "out of range"},
		{"memory above 256 MiB", func(p *KDFParams) { p.MemoryKiB = MaxKDFMemoryKiB + 1<<10 }, "asks for 257 MiB of memory, more than the 256 MiB planb allows"},
		{"threads 0", func(p *KDFParams) { p.Threads = 0 }, "out of range"},
		{"salt 15 bytes", func(p *KDFParams) { p.Salt = p.Salt[:15] }, "out of range"},
		{"no salt", func(p *KDFParams) { p.Salt = nil }, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kf, err := NewKeyFile("pw", NewRandomKey(), testInfo())
			if err != nil {
				t.Fatal(err)
			}
			tt.mod(&kf.KDF)
			// Through the JSON form, as a key file is read.
			b, err := kf.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if parsed, err := ParseKeyFile(b); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseKeyFile with %+v = %v, %v; want an error containing %q", kf.KDF, parsed, err, tt.wantErr)
			}
			// Unlock checks too, for a key file not read by ParseKeyFile.
			k, err := kf.Unlock("pw")
			if err == nil || errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Unlock with %+v = %v, %v; want an error containing %q", kf.KDF, k, err, tt.wantErr)
			}
		})
	}
}

func TestParseKeyFileErrors(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "parse key file: unexpected end of JSON input"},
		{"not json", "PBKEY", "parse key file: invalid character"},
		{"version 0", `{"kdf":{}}`, "parse key file: unsupported version 0"},
		{"version 2", `{"version":2}`, "parse key file: unsupported version 2"},
		{"bad data", `{"version":1,"data":"***"}`, "parse key file: illegal base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kf, err := ParseKeyFile([]byte(tt.in))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("ParseKeyFile(%q) = %+v, %v; want error %q...", tt.in, kf, err, tt.wantErr)
			}
		})
	}
}

// TestParseKeyFileCostlyKDF: a key file is stored in clear, so whoever can
// write to the repository can plant one that asks for a key derivation
// costly enough to stop the machine (64 GiB of memory, thousands of
// passes). ParseKeyFile refuses parameters far above the defaults before
// any derivation runs, saying which one.
func TestParseKeyFileCostlyKDF(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*KDFParams)
		wantErr string
	}{
		{"64 GiB", func(p *KDFParams) { p.MemoryKiB = 64 << 20 }, "asks for 65536 MiB of memory"},
		{"4 GiB", func(p *KDFParams) { p.MemoryKiB = 4 << 20 }, "asks for 4096 MiB of memory"},
		{"1000 passes", func(p *KDFParams) { p.Time = 1000 }, "asks for 1000 passes"},
		{"100 passes", func(p *KDFParams) { p.Time = 100 }, "asks for 100 passes"},
		{"255 threads", func(p *KDFParams) { p.Threads = 255 }, "asks for 255 threads"},
		{"salt of 1 MiB", func(p *KDFParams) { p.Salt = make([]byte, 1<<20) }, "salt of 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kf, err := NewKeyFile("pw", NewRandomKey(), testInfo())
			if err != nil {
				t.Fatal(err)
			}
			tt.mod(&kf.KDF)
			b, err := kf.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseKeyFile(b); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseKeyFile(%s) = %v; want an error containing %q", tt.name, err, tt.wantErr)
			}
		})
	}
	// The defaults, and a few times them, are fine.
	for _, p := range []KDFParams{defaultKDF, {Algorithm: "argon2id", Time: 10, MemoryKiB: 256 << 10, Threads: 16}} {
		kf := &KeyFile{Version: 1, KDF: p}
		kf.KDF.Salt = make([]byte, 32)
		b, _ := kf.Marshal()
		if _, err := ParseKeyFile(b); err != nil {
			t.Errorf("ParseKeyFile(kdf %+v) = %v", p, err)
		}
	}
}

func TestParseKDF(t *testing.T) {
	good := []struct {
		in   string
		want KDFParams
	}{
		{"m=9216,t=4,p=1", KDFParams{Algorithm: "argon2id", Time: 4, MemoryKiB: 9216, Threads: 1}},
		{"m=65536,t=3,p=2", KDFParams{Algorithm: "argon2id", Time: 3, MemoryKiB: 65536, Threads: 2}},
		{"p=1, t=10 ,m=8", KDFParams{Algorithm: "argon2id", Time: 10, MemoryKiB: 8, Threads: 1}},
	}
	for _, tt := range good {
		got, err := ParseKDF(tt.in)
		if err != nil || got.Algorithm != tt.want.Algorithm || got.Time != tt.want.Time || got.MemoryKiB != tt.want.MemoryKiB ||
			got.Threads != tt.want.Threads || got.Salt != nil {
			t.Errorf("ParseKDF(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if again, err := ParseKDF(got.String()); err != nil || again.String() != got.String() {
			t.Errorf("ParseKDF(%q) = %+v, %v; want it to read back its String()", got.String(), again, err)
		}
	}
	if got := defaultKDF.String(); got != "m=9216,t=4,p=1" {
		t.Errorf("DefaultKDF().String() = %q", got)
	}
	bad := []struct{ in, wantErr string }{
		{"", `key derivation "": want m=MEMORY_KIB,t=PASSES,p=LANES, as m=9216,t=4,p=1`},
		{"m=9216,t=4", `key derivation "m=9216,t=4": want m=MEMORY_KIB,t=PASSES,p=LANES, as m=9216,t=4,p=1`},
		{"m=9216,t=4,p=1,m=8", `key derivation "m=9216,t=4,p=1,m=8": want m=MEMORY_KIB,t=PASSES,p=LANES, as m=9216,t=4,p=1`},
		{"m=9MiB,t=4,p=1", `key derivation "m=9MiB,t=4,p=1": want m=MEMORY_KIB,t=PASSES,p=LANES, as m=9216,t=4,p=1`},
		{"m=9216,t=4,x=1", `key derivation "m=9216,t=4,x=1": unknown parameter "x"; want m=MEMORY_KIB,t=PASSES,p=LANES`},
		{"m=9216,t=0,p=1", "key derivation parameters out of range (time 0, memory 9216 KiB, threads 1, salt of 16 bytes)"},
		{"m=4,t=3,p=1", "key derivation parameters out of range (time 3, memory 4 KiB, threads 1, salt of 16 bytes)"},
		{"m=524288,t=3,p=1", "key derivation asks for 512 MiB of memory, more than the 256 MiB planb allows"},
		{"m=9216,t=11,p=1", "key derivation asks for 11 passes, more than the 10 planb allows"},
		{"m=9216,t=4,p=300", "key derivation asks for 255 threads, more than the 16 planb allows"},
	}
	for _, tt := range bad {
		if _, err := ParseKDF(tt.in); err == nil || err.Error() != tt.wantErr {
			t.Errorf("ParseKDF(%q) = %v; want %q", tt.in, err, tt.wantErr)
		}
	}
}

// TestNewKeyFileWith: a key file records the parameters it was made with
// and opens with them alone.
func TestNewKeyFileWith(t *testing.T) {
	master := NewRandomKey()
	p := KDFParams{Algorithm: "argon2id", Time: 2, MemoryKiB: 32, Threads: 1, Salt: []byte("ignored, a fresh salt replaces it")}
	kf, err := NewKeyFileWith("pw", master, testInfo(), p)
	if err != nil {
		t.Fatal(err)
	}
	if kf.KDF.String() != "m=32,t=2,p=1" || len(kf.KDF.Salt) != 32 || bytes.Equal(kf.KDF.Salt, p.Salt) {
		t.Errorf("NewKeyFileWith(m=32,t=2,p=1) = kdf %+v, want those parameters and a fresh 32-byte salt", kf.KDF)
	}
	b, _ := kf.Marshal()
	parsed, err := ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsed.Unlock("pw")
	if err != nil || !bytes.Equal(got.raw[:], master.raw[:]) {
		t.Errorf("Unlock = %v, want the master key", err)
	}
	parsed.KDF.Time = 3 // other parameters derive another key
	if _, err := parsed.Unlock("pw"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("Unlock with t=3 = %v, want ErrWrongPassword", err)
	}
	if _, err := NewKeyFileWith("pw", master, testInfo(), KDFParams{Algorithm: "argon2id", Time: 1, MemoryKiB: 1 << 30, Threads: 1}); err == nil {
		t.Error("NewKeyFileWith(1 TiB) succeeded, want the bounds' error")
	}
}

// TestOldDefaultKeyFileOpens: key files written before the default became
// 9 MiB (argon2id m=65536,t=3,p=2) keep opening, with their own
// parameters.
func TestOldDefaultKeyFileOpens(t *testing.T) {
	old, err := ParseKDF("m=65536,t=3,p=2")
	if err != nil {
		t.Fatal(err)
	}
	master := NewRandomKey()
	kf, err := NewKeyFileWith("pw", master, testInfo(), old)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := kf.Marshal()
	if !strings.Contains(string(b), `"kdf":{"algorithm":"argon2id","time":3,"memory_kib":65536,"threads":2,`) {
		t.Fatalf("key file %s, want the old parameters in clear", b)
	}
	parsed, err := ParseKeyFile(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsed.Unlock("pw")
	if err != nil || !bytes.Equal(got.raw[:], master.raw[:]) {
		t.Errorf("Unlock(old default key file) = %v, want the master key", err)
	}
}

// TestKeyFileKeepsCipher: a key file gives back its master key's cipher.
// One of XChaCha20-Poly1305 holds the 32 key bytes alone, as key files
// did before there was a choice, so that those open as they did.
func TestKeyFileKeepsCipher(t *testing.T) {
	for _, c := range ciphers {
		master := NewRandomKeyWith(c)
		kf, err := NewKeyFile("pw", master, testInfo())
		if err != nil {
			t.Fatal(err)
		}
		pk, err := kf.KDF.derive("pw")
		if err != nil {
			t.Fatal(err)
		}
		if pk.Cipher() != XChaCha20Poly1305 {
			t.Errorf("password key seals with %v, want %v", pk.Cipher(), XChaCha20Poly1305)
		}
		raw, err := pk.Open(nil, kf.Data)
		want := KeySize
		if c != XChaCha20Poly1305 {
			want++
		}
		if err != nil || len(raw) != want {
			t.Errorf("%v: key file holds %d bytes (%v), want %d", c, len(raw), err, want)
		}
		got, err := kf.Unlock("pw")
		if err != nil || got.Cipher() != c || !bytes.Equal(got.raw[:], master.raw[:]) {
			t.Fatalf("%v: Unlock = %v, %v; want the master key", c, got, err)
		}
		if plain, err := got.Open(nil, master.Seal(nil, []byte("config"))); err != nil || string(plain) != "config" {
			t.Errorf("%v: the unlocked key opens %q, %v", c, plain, err)
		}
	}
}
