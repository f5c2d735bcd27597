package repo

import (
	"os"
	"testing"

	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/crypto"
)

// TestMain serves the internal and the external tests of the package.
func TestMain(m *testing.M) {
	crypto.SetTestKDF()
	os.Exit(m.Run())
}

const testPassword = "correct horse battery staple"

func newTestRepo(t *testing.T) (*Repository, *mem.Mem) {
	t.Helper()
	be := mem.New()
	r, err := Init(t.Context(), be, testPassword, nil)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return r, be
}
