package serve

import (
	"reflect"
	"testing"

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
		{"bob@example.org (Bob)", []goimap.Address{a("Bob", "bob", "example.org")}},
		{"<@route.example:carol@example.org>", []goimap.Address{a("", "carol", "example.org")}},
		{"undisclosed-recipients", []goimap.Address{a("", "undisclosed-recipients", missingDomain)}},
		{"Name <>", []goimap.Address{a("Name", missingMailbox, missingDomain)}},
	}
	for _, tt := range tests {
		if got := addressList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("addressList(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
