package mutf7

import (
	"errors"
	"testing"
	"unicode/utf8"
)

func TestMUTF7(t *testing.T) {
	tests := []struct{ enc, dec string }{
		{"INBOX", "INBOX"},
		{"Entw&APw-rfe", "Entwürfe"},
		{"&ZeVnLIqe-", "日本語"},
		{"&-", "&"},
		{"R&-D", "R&D"},
		{"Old Mail", "Old Mail"},
		{"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"},
		{"&2D3eAA-", "\U0001F600"}, // a surrogate pair
		{"a&AAA-b", "a\x00b"},
		{"&AAkACg-", "\t\n"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Encode(tt.dec); got != tt.enc {
			t.Errorf("Encode(%q) = %q, want %q", tt.dec, got, tt.enc)
		}
		got, err := Decode(tt.enc)
		if err != nil || got != tt.dec {
			t.Errorf("Decode(%q) = %q, %v, want %q", tt.enc, got, err, tt.dec)
		}
	}
}

func TestDecodeInvalid(t *testing.T) {
	for _, s := range []string{
		"&",          // unterminated
		"&ZeVnLIqe",  // unterminated run
		"a&Z!-",      // not BASE64
		"&AGE-",      // "a" encoded
		"&AOR-",      // non-zero padding bits (&AOQ- is "ä")
		"&2D0-",      // lone high surrogate
		"&3gA-",      // lone low surrogate
		"&2D0AYQ-",   // high surrogate then "a"
		"Entwürfe",   // raw 8-bit
		"tab\there",  // raw control character
		"&Z-",        // too short
		"&ZeVn/Iqe-", // "/" is not in the modified alphabet
	} {
		if got, err := Decode(s); !errors.Is(err, errMUTF7) {
			t.Errorf("Decode(%q) = %q, %v, want an invalid modified UTF-7 error", s, got, err)
		}
	}
}

func FuzzMUTF7(f *testing.F) {
	for _, s := range []string{"INBOX", "Entwürfe", "日本語", "&", "&-", "R&D", "\U0001F600x", "a\x00b", "&ZeVnLIqe-", "&AGE-", "&2D0-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if utf8.ValidString(s) {
			enc := Encode(s)
			dec, err := Decode(enc)
			if err != nil || dec != s {
				t.Fatalf("Decode(Encode(%q) = %q) = %q, %v", s, enc, dec, err)
			}
			for i := range len(enc) {
				if enc[i] < 0x20 || enc[i] > 0x7e {
					t.Fatalf("Encode(%q) = %q: byte %#x outside printable ASCII", s, enc, enc[i])
				}
			}
		}
		// Whatever decodes is valid UTF-8 and survives a second round.
		if dec, err := Decode(s); err == nil {
			if !utf8.ValidString(dec) {
				t.Fatalf("Decode(%q) = %q, not UTF-8", s, dec)
			}
			if again, err := Decode(Encode(dec)); err != nil || again != dec {
				t.Fatalf("round trip of Decode(%q) = %q gave %q, %v", s, dec, again, err)
			}
		}
	})
}
