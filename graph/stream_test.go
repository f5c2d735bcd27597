package graph_test

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/graph/graphtest"
)

// hashChanges is an archive.Changes that reads each body through a hash in
// small pieces, as the backup's chunker does, and keeps nothing.
type hashChanges struct {
	sums map[string][sha256.Size]byte
	n    map[string]int64
}

func (h *hashChanges) Reset() error                    { return nil }
func (h *hashChanges) Have(string, string) bool        { return false }
func (h *hashChanges) Keep(string, []string) error     { return nil }
func (h *hashChanges) Delete(string) error             { return nil }
func (h *hashChanges) Skip(id string, err error) error { return err }
func (h *hashChanges) Put(m *archive.Message) error {
	d := sha256.New()
	n, err := io.CopyBuffer(d, m.Body, make([]byte, 32<<10))
	if err != nil {
		return err
	}
	h.n[m.SourceID] = n
	h.sums[m.SourceID] = [sha256.Size]byte(d.Sum(nil))
	return nil
}

// TestValueStreams backs up a 40 MB message and checks that its body is
// streamed from $value: the heap never grows by more than 16 MB while it
// is read (it would by 40 MB and more if the body were read whole).
func TestValueStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const size = 40 << 20
	f := newFixture(t)
	mb := f.tenant.AddMailbox("big@contoso.eu", "Big")
	big := make([]byte, size)
	copy(big, "From: big@example.org\r\nSubject: big\r\nContent-Type: application/octet-stream\r\n\r\n")
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(big[100:])
	id := mb.AddMessage("inbox", graphtest.Message{MIME: big})
	want := sha256.Sum256(big)
	c := f.client(t, nil)
	src := c.Source(mb.Address)
	folders, err := src.Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var inbox archive.Folder
	for _, fo := range folders {
		if fo.Path == "INBOX" {
			inbox = fo
		}
	}

	// Collect garbage early, so that the heap measures what is live.
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	})
	h := &hashChanges{sums: map[string][sha256.Size]byte{}, n: map[string]int64{}}
	_, err = src.Sync(t.Context(), inbox, nil, h)
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if got := h.sums[id]; h.n[id] != size || got != want {
		t.Fatalf("message read: %d bytes, sha256 %x; want %d bytes, %x", h.n[id], got[:8], size, want[:8])
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("heap grew by at most %.1f MB while a %d MB message was read", float64(grew)/1e6, size>>20)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d bytes while reading a %d byte message: not streamed", grew, size)
	}
}
