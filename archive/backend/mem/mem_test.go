package mem_test

import (
	"bytes"
	"errors"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/backendtest"
	"codeberg.org/planb/planb/archive/backend/mem"
)

func TestBackend(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return mem.New()
	})
}

func TestCorrupt(t *testing.T) {
	m := mem.New()
	h := backend.Handle{Type: backend.PackFile, Name: "abcd"}
	data := []byte("hello world")
	if err := m.Save(t.Context(), h, bytes.NewReader(data)); err != nil {
		t.Fatalf("Save(%v) = %v", h, err)
	}
	before, err := m.Load(t.Context(), h, 0, 0)
	if err != nil {
		t.Fatalf("Load(%v) = %v", h, err)
	}
	defer before.Close()

	if err := m.Corrupt(h, 4); err != nil {
		t.Fatalf("Corrupt(%v, 4) = %v", h, err)
	}
	got, err := backend.ReadAll(t.Context(), m, h)
	want := []byte("hell\x90 world")
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadAll(%v) after Corrupt = %q, %v; want %q", h, got, err, want)
	}
	// A reader opened before still sees the old content.
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(before); err != nil || buf.String() != "hello world" {
		t.Errorf("reader opened before Corrupt read %q, %v; want %q", buf.String(), err, "hello world")
	}

	for _, tt := range []struct {
		h      backend.Handle
		offset int64
		want   error
	}{
		{h, -1, nil},
		{h, int64(len(data)), nil},
		{backend.Handle{Type: backend.PackFile, Name: "missing"}, 0, backend.ErrNotExist},
		{backend.Handle{Type: backend.PackFile, Name: "a/b"}, 0, backend.ErrInvalidHandle},
	} {
		err := m.Corrupt(tt.h, tt.offset)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("Corrupt(%v, %d) = %v, want error %v", tt.h, tt.offset, err, tt.want)
		}
	}
}

func TestContents(t *testing.T) {
	m := mem.New()
	files := map[backend.Handle]string{
		{Type: backend.ConfigFile}:                 "config",
		{Type: backend.KeyFile, Name: "k1"}:        "key",
		{Type: backend.PackFile, Name: "ab12"}:     "pack",
		{Type: backend.SnapshotFile, Name: "ab12"}: "snapshot",
	}
	for h, s := range files {
		if err := m.Save(t.Context(), h, bytes.NewReader([]byte(s))); err != nil {
			t.Fatalf("Save(%v) = %v", h, err)
		}
	}
	got := m.Contents()
	if len(got) != len(files) {
		t.Errorf("Contents() has %d files, want %d", len(got), len(files))
	}
	for h, s := range files {
		if string(got[h]) != s {
			t.Errorf("Contents()[%v] = %q, want %q", h, got[h], s)
		}
	}
	// The copy is the caller's.
	got[backend.Handle{Type: backend.KeyFile, Name: "k1"}][0] = 'X'
	data, err := backend.ReadAll(t.Context(), m, backend.Handle{Type: backend.KeyFile, Name: "k1"})
	if err != nil || string(data) != "key" {
		t.Errorf("ReadAll(keys/k1) after changing Contents() = %q, %v; want %q", data, err, "key")
	}
}
