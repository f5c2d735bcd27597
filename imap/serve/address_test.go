package serve

import (
	"reflect"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// TestAddressList: ENVELOPE's addresses keep every address of a list
// that RFC 5322 would refuse as a whole, and show groups as RFC 3501 does.
func TestAddressList(t *testing.T) {
	a := func(name, mailbox, host string) goimap.Address {
		return goimap.Address{Name: name, Mailbox: mailbox, Host: host}
	}
	tests := []struct {
		in   string
		want []goimap.Address
	}{
		{"", nil},
		{"alice@example.org", []goimap.Address{a("", "alice", "example.org")}},
		{"Alice Doe <alice@example.org>, bob@example.org", []goimap.Address{a("Alice Doe", "alice", "example.org"), a("", "bob", "example.org")}},
		// Two dots: net/mail refuses the whole list.
		{"a.b@example.com, f..x@example.com", []goimap.Address{a("", "a.b", "example.com"), a("", "f..x", "example.com")}},
		{`"Doe, John" <john@example.org>`, []goimap.Address{a("Doe, John", "john", "example.org")}},
		{"=?utf-8?q?J=C3=B6rg?= <j@example.de>", []goimap.Address{a("Jörg", "j", "example.de")}},
		{"undisclosed-recipients:;", []goimap.Address{{Mailbox: "undisclosed-recipients"}, {}}},
		{"team: a@x.org, b@x.org; c@y.org", []goimap.Address{{Mailbox: "team"}, a("", "a", "x.org"), a("", "b", "x.org"), {}, a("", "c", "y.org")}},
		// A group's name as written, as Dovecot sends it (decoded, it
		// would go out as a mailbox holding a NUL).
		{"=?utf-8?q?Gr=C3=BCppe_x=00y?=: c@d;", []goimap.Address{{Mailbox: "=?utf-8?q?Gr=C3=BCppe_x=00y?="}, a("", "c", "d"), {}}},
		{"bob@example.org (Bob)", []goimap.Address{a("Bob", "bob", "example.org")}},
		{"<@route.example:carol@example.org>", []goimap.Address{a("", "carol", "example.org")}},
		{"undisclosed-recipients", []goimap.Address{a("", "undisclosed-recipients", missingDomain)}},
		{"Name <>", []goimap.Address{a("Name", missingMailbox, missingDomain)}},
		{`"Q" <a@b>, Just Name, c@d`, []goimap.Address{a("Q", "a", "b"), a("Just Name", missingMailbox, missingDomain), a("", "c", "d")}},
		{"<a@b> (comment)", []goimap.Address{a("", "a", "b")}},
	}
	for _, tt := range tests {
		if got := addressList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("addressList(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestEnvelopeDate: of several Date fields, the last that parses.
func TestEnvelopeDate(t *testing.T) {
	fs := []field{{"Date", "Tue, 7 Apr 2026 10:00:t <x@example.test>"}, {"Subject", "s"}, {"Date", "Tue, 7 Apr 2026 10:00:01 +0000"}}
	if got := envelope(fs).Date.UTC().Format(time.RFC3339); got != "2026-04-07T10:00:01Z" {
		t.Errorf("ENVELOPE date = %s, want 2026-04-07T10:00:01Z", got)
	}
}
