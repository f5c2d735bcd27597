package dedup

import (
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseIDRoundTrip(t *testing.T) {
	for _, data := range []string{"", "a", "hello, world", strings.Repeat("x", 1000)} {
		id := Hash([]byte(data))
		if want := ID(sha256.Sum256([]byte(data))); id != want {
			t.Fatalf("Hash(%q) = %s, want %s", data, id, want)
		}
		s := id.String()
		if len(s) != 64 || strings.ToLower(s) != s {
			t.Errorf("String() = %q, want 64 lowercase hex digits", s)
		}
		got, err := ParseID(s)
		if err != nil || got != id {
			t.Errorf("ParseID(%q) = %s, %v; want %s, nil", s, got, err, id)
		}
		// Upper case parses to the same ID.
		if got, err := ParseID(strings.ToUpper(s)); err != nil || got != id {
			t.Errorf("ParseID(upper %q) = %s, %v; want %s, nil", s, got, err, id)
		}
		if short := id.Short(); short != s[:8] {
			t.Errorf("Short() = %q, want %q", short, s[:8])
		}
	}
}

func TestParseIDErrors(t *testing.T) {
	valid := Hash([]byte("x")).String()
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "want 64 hex digits"},
		{"short", valid[:63], "want 64 hex digits"},
		{"long", valid + "0", "want 64 hex digits"},
		{"prefix", valid[:8], "want 64 hex digits"},
		{"non-hex", "g" + valid[1:], "invalid byte"},
		{"space", " " + valid[1:], "invalid byte"},
		{"multibyte", "é" + valid[2:], "invalid byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseID(tt.in)
			if err == nil {
				t.Fatalf("ParseID(%q) = %s, nil; want an error", tt.in, id)
			}
			if !strings.HasPrefix(err.Error(), "invalid id ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseID(%q) error = %q, want \"invalid id ...%s...\"", tt.in, err, tt.wantErr)
			}
			var u ID
			if err := u.UnmarshalText([]byte(tt.in)); err == nil {
				t.Errorf("UnmarshalText(%q) = nil, want an error", tt.in)
			}
		})
	}
}

func TestIDJSON(t *testing.T) {
	type doc struct {
		ID  ID   `json:"id"`
		IDs []ID `json:"ids"`
	}
	in := doc{ID: Hash([]byte("a")), IDs: []ID{Hash([]byte("b")), {}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"` + in.ID.String() + `","ids":["` + in.IDs[0].String() + `","` + strings.Repeat("0", 64) + `"]}`
	if string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || len(out.IDs) != 2 || out.IDs[0] != in.IDs[0] || !out.IDs[1].IsNull() {
		t.Errorf("json round trip = %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"id":"abc"}`), &out); err == nil {
		t.Error(`json.Unmarshal of a 3-digit id = nil, want an error`)
	}
}

func TestRandomIDAndIsNull(t *testing.T) {
	var zero ID
	if !zero.IsNull() {
		t.Error("zero ID: IsNull() = false, want true")
	}
	seen := make(map[ID]bool)
	for range 100 {
		id := RandomID()
		if id.IsNull() || seen[id] {
			t.Fatalf("RandomID() = %s: null or repeated", id)
		}
		seen[id] = true
	}
}
