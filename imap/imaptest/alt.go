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

// StartGmail starts a Dovecot of the test's own in the "gmail" flavour of
// scripts/dovecot.sh: an account laid out as Gmail shows itself over
// IMAP. INBOX and labels are plain folders ("/" separator), a message with
// several labels a copy in each; "[Gmail]/All Mail" (\All) and
// "[Gmail]/Starred" (\Flagged) are virtual folders over them all;
// "[Gmail]/Sent Mail", "Drafts", "Spam" and "Trash" are views of the
// hidden folders "Store/Sent", "Store/Drafts", "Store/Spam" and
// "Store/Trash", which APPEND into the view stores into; archived mail
// (in All Mail only) is appended to "Store/Archived", which no LIST shows.
func StartGmail(t testing.TB) *Dovecot {
	t.Helper()
	return startFlavor(t, KindDovecot, "gmail")
}
