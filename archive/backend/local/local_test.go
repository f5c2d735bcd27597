package local_test

import (
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/backendtest"
	"codeberg.org/planb/planb/archive/backend/local"
)

func TestBackend(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		l, err := local.Create(t.Context(), t.TempDir())
		if err != nil {
			t.Fatalf("Create() = %v", err)
		}
		return l
	})
}
