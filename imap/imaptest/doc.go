// Package imaptest runs throwaway IMAP servers for tests (Dovecot, Cyrus
// and a Proton Mail Bridge-shaped server, each started by its script in
// scripts/) and fills them with mail.
//
// Tests that call Shared, SharedOf, Start or StartOf are skipped with a
// message when the server cannot be installed or started, unless the
// environment variable PLANB_REQUIRE_<KIND> (PLANB_REQUIRE_DOVECOT,
// PLANB_REQUIRE_CYRUS, PLANB_REQUIRE_BRIDGE) is 1: then they fail.
package imaptest
