package local

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
)

// openFDs returns how many file descriptors this process has open (Linux).
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

func packHandle(i int) backend.Handle {
	return backend.Handle{Type: backend.PackFile, Name: fmt.Sprintf("%02x%062x", i, i)}
}

func loadAll(t *testing.T, l *Local, h backend.Handle, off, n int64) []byte {
	t.Helper()
	rd, err := l.Load(t.Context(), h, off, n)
	if err != nil {
		t.Fatalf("Load(%v) = %v", h, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		t.Fatalf("read %v: %v", h, err)
	}
	return b
}

// TestPackFilesKeptOpen: Load keeps at most maxOpenPacks pack files open,
// serves every section right from them (also concurrently), a reader
// keeps its file while it is evicted, Remove and Save drop the open file,
// and Close closes them all.
func TestPackFilesKeptOpen(t *testing.T) {
	l, err := Create(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * maxOpenPacks
	content := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf("pack %03d;", i), 100)) }
	for i := range n {
		if err := l.Save(t.Context(), packHandle(i), bytes.NewReader(content(i))); err != nil {
			t.Fatal(err)
		}
	}
	fds0 := openFDs(t)

	// A reader of pack 0, left open while every other pack is read.
	held, err := l.Load(t.Context(), packHandle(0), 9, 18)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for g := range 4 {
		wg.Go(func() {
			for i := range n {
				i := (i + g*7) % n
				rd, err := l.Load(t.Context(), packHandle(i), 10, 9)
				if err != nil {
					errs <- err
					continue
				}
				b, err := io.ReadAll(rd)
				rd.Close()
				if want := content(i)[10:19]; err != nil || !bytes.Equal(b, want) {
					errs <- fmt.Errorf("pack %d: read %q, %v; want %q", i, b, err, want)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := l.packs.openCount(); got > maxOpenPacks {
		t.Errorf("%d pack files open, want at most %d", got, maxOpenPacks)
	}
	// Pack 0 was evicted (the others were used later) but its reader goes on.
	b, err := io.ReadAll(held)
	if want := content(0)[9:27]; err != nil || !bytes.Equal(b, want) {
		t.Errorf("held reader: %q, %v; want %q", b, err, want)
	}
	held.Close()
	held.Close() // twice is harmless
	if got, max := openFDs(t), fds0+maxOpenPacks; got > max {
		t.Errorf("%d file descriptors open, want at most %d", got, max)
	}

	// Remove drops the open file: the pack is gone, not served from it.
	last := packHandle(n - 1)
	loadAll(t, l, last, 0, 0)
	if err := l.Remove(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Load(t.Context(), last, 0, 0); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Load of a removed pack = %v, want ErrNotExist", err)
	}
	// Save over an open pack: Load reads the new file.
	h := packHandle(n - 2)
	loadAll(t, l, h, 0, 0)
	if err := l.Save(t.Context(), h, strings.NewReader("replaced")); err != nil {
		t.Fatal(err)
	}
	if got := loadAll(t, l, h, 0, 0); string(got) != "replaced" {
		t.Errorf("after Save, Load = %q, want %q", got, "replaced")
	}
	// Beyond the end, as before.
	if _, err := l.Load(t.Context(), h, 100, 0); err == nil {
		t.Errorf("Load beyond the end = nil error")
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := l.packs.openCount(); got != 0 {
		t.Errorf("after Close %d pack files open, want 0", got)
	}
	if got := openFDs(t); got > fds0 {
		t.Errorf("after Close %d file descriptors open, want at most %d", got, fds0)
	}
}
