// Package imaptest runs a throwaway Dovecot (scripts/dovecot.sh) for tests
// and fills it with mail.
//
// Tests that call Shared or Start are skipped with a message when Dovecot
// cannot be installed or started, unless the environment variable
// PLANB_REQUIRE_DOVECOT is 1: then they fail.
package imaptest
