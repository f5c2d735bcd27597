package imaptest

import "testing"

// StartAlt starts a Dovecot of the test's own in the "alt" flavour of
// scripts/dovecot.sh: "/" as the hierarchy separator and special-use
// folders named "Sent Items", "Deleted Items" and "Junk E-mail". It is
// stopped and removed when the test ends.
func StartAlt(t testing.TB) *Dovecot {
	t.Helper()
	return startFlavor(t, KindDovecot, "alt")
}
