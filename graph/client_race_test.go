package graph_test

import (
	"testing"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
)

// TestNewClientWhileInUse: a run signs in to one tenant while it backs
// up another, so a client is made while the SDK makes models for the
// other. Under -race (scripts/test.sh --race) this failed: each new
// client stored the SDK's global backing store factory again, which every
// model's constructor reads.
func TestNewClientWhileInUse(t *testing.T) {
	f := newFixture(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			if models.NewMessage().GetBackingStore() == nil {
				t.Error("a model without its backing store")
				return
			}
		}
	}()
	for range 5 {
		f.client(t, nil)
	}
	<-done
}
