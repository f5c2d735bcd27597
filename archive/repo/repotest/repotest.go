// Package repotest helps tests that need a repository: a new one in memory
// (or on a given backend), and a snapshot read back whole into an
// archivetest.Mailbox. Tests that use it call crypto.SetTestKDF in their
// TestMain, so that key derivation is cheap.
package repotest

import (
	"testing"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
)

// Password is the password of the repositories New creates.
const Password = "correct horse battery staple"

// New creates a repository on be, or on a new in-memory backend if be is
// nil.
func New(t testing.TB, be backend.Backend) *repo.Repository {
	t.Helper()
	if be == nil {
		be = mem.New()
	}
	r, err := repo.Init(t.Context(), be, Password, nil)
	if err != nil {
		t.Fatalf("repo.Init: %v", err)
	}
	return r
}

// Restore reads snap back into a new in-memory mailbox. A message it
// cannot read fails the test.
func Restore(t testing.TB, r *repo.Repository, snap *repo.Snapshot) *archivetest.Mailbox {
	t.Helper()
	got := archivetest.NewMailbox()
	rep, err := restore.Run(t.Context(), r, snap, got, nil)
	if err != nil {
		t.Fatalf("restore.Run: %v", err)
	}
	if len(rep.Skipped) != 0 {
		t.Fatalf("restore skipped %v", rep.Skipped)
	}
	return got
}
