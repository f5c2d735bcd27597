package graph

import (
	"bytes"
	"testing"
)

func TestKeyword(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Red category", "Red_category"},
		{"work", "work"},
		{` (odd) {x} % * "q" \ ] `, `_odd___x}______q_____`},
		{"Wichtig ✓", "Wichtig_✓"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Keyword(tt.in); got != tt.want {
			t.Errorf("Keyword(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCursor(t *testing.T) {
	c := encodeCursor("AAMkF123", "https://graph.microsoft.com/v1.0/users/a/mailFolders/AAMkF123/messages/delta()?$deltatoken=xyz")
	id, link, ok := decodeCursor(c)
	if !ok || id != "AAMkF123" || link != "https://graph.microsoft.com/v1.0/users/a/mailFolders/AAMkF123/messages/delta()?$deltatoken=xyz" {
		t.Errorf("decodeCursor(encodeCursor(...)) = %q, %q, %v", id, link, ok)
	}
	for _, bad := range []string{"", "\x01", "mem:3", "\x02\x01ahttps://x", "\x01\x05ab", "\x01\x01ahttp://x"} {
		if _, _, ok := decodeCursor([]byte(bad)); ok {
			t.Errorf("decodeCursor(%q) accepted", bad)
		}
	}
}

func FuzzCursor(f *testing.F) {
	f.Add("AAMkF123", "https://graph.microsoft.com/v1.0/x?$deltatoken=1")
	f.Add("", "https://")
	f.Fuzz(func(t *testing.T, id, link string) {
		c := encodeCursor(id, link)
		gid, glink, ok := decodeCursor(c)
		if ok != (len(link) >= 8 && link[:8] == "https://") {
			t.Fatalf("decodeCursor(%q) ok = %v", c, ok)
		}
		if ok && (gid != id || glink != link) {
			t.Fatalf("round trip (%q, %q) = (%q, %q)", id, link, gid, glink)
		}
		// Arbitrary bytes never panic.
		decodeCursor(bytes.Repeat(c, 2))
	})
}
