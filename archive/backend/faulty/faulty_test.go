package faulty_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/backendtest"
	"codeberg.org/planb/planb/archive/backend/faulty"
	"codeberg.org/planb/planb/archive/backend/mem"
)

func TestRateZero(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return faulty.New(mem.New(), faulty.Options{Seed: 1, Rate: 0})
	})
}

// trace runs a fixed sequence of calls and describes their outcomes.
func trace(t *testing.T, f *faulty.Faulty) []string {
	t.Helper()
	ctx := t.Context()
	var out []string
	for i := range 200 {
		h := backend.Handle{Type: backend.PackFile, Name: fmt.Sprintf("p%03d", i)}
		data := bytes.Repeat([]byte{byte(i)}, 70000)
		err := f.Save(ctx, h, bytes.NewReader(data))
		out = append(out, fmt.Sprint("save ", err))
		rd, err := f.Load(ctx, h, 0, 0)
		if err != nil {
			out = append(out, fmt.Sprint("load ", err))
			continue
		}
		n, err := io.Copy(io.Discard, rd)
		rd.Close()
		out = append(out, fmt.Sprint("read ", n, err))
	}
	return out
}

func TestDeterministic(t *testing.T) {
	a := trace(t, faulty.New(mem.New(), faulty.Options{Seed: 7, Rate: 0.3}))
	b := trace(t, faulty.New(mem.New(), faulty.Options{Seed: 7, Rate: 0.3}))
	c := trace(t, faulty.New(mem.New(), faulty.Options{Seed: 8, Rate: 0.3}))
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("two runs with seed 7 differ:\n%v\n%v", a, b)
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Errorf("runs with seeds 7 and 8 are the same: %v", a)
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		rate     float64
		min, max int
	}{
		{0, 0, 0},
		{0.2, 150, 250},
		{1, 1000, 1000},
	}
	for _, tt := range tests {
		m := mem.New()
		h := backend.Handle{Type: backend.IndexFile, Name: "i"}
		if err := m.Save(t.Context(), h, bytes.NewReader([]byte("index"))); err != nil {
			t.Fatal(err)
		}
		f := faulty.New(m, faulty.Options{Seed: 3, Rate: tt.rate})
		failed := 0
		for range 1000 {
			_, err := f.Stat(t.Context(), h)
			if err != nil {
				if !errors.Is(err, faulty.ErrInjected) {
					t.Fatalf("Stat(%v) = %v, want nil or ErrInjected", h, err)
				}
				failed++
			}
		}
		if failed < tt.min || failed > tt.max || f.Injected() != int64(failed) {
			t.Errorf("rate %v: %d of 1000 Stat calls failed (Injected() = %d), want %d to %d",
				tt.rate, failed, f.Injected(), tt.min, tt.max)
		}
	}
}

// TestKinds checks that every kind of fault happens and does what it
// says: a Save failing after storing has stored the file, one failing
// before has not, and a Load may fail midway.
func TestKinds(t *testing.T) {
	ctx := t.Context()
	m := mem.New()
	f := faulty.New(m, faulty.Options{Seed: 5, Rate: 1})
	seen := map[string]int{}
	for i := range 300 {
		h := backend.Handle{Type: backend.SnapshotFile, Name: fmt.Sprintf("s%03d", i)}
		data := bytes.Repeat([]byte{'x'}, 100000)
		err := f.Save(ctx, h, bytes.NewReader(data))
		if !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("Save(%v) at rate 1 = %v, want ErrInjected", h, err)
		}
		_, serr := m.Stat(ctx, h)
		switch {
		case bytes.Contains([]byte(err.Error()), []byte("after storing")):
			seen["save after"]++
			if serr != nil {
				t.Errorf("Save(%v) = %v, but the file was not stored: %v", h, err, serr)
			}
		case serr == nil:
			t.Errorf("Save(%v) = %v, but the file was stored", h, err)
		case bytes.Contains([]byte(err.Error()), []byte("before sending")):
			seen["save before"]++
		default:
			seen["save midway"]++
		}
	}
	h := backend.Handle{Type: backend.SnapshotFile, Name: "whole"}
	if err := m.Save(ctx, h, bytes.NewReader(bytes.Repeat([]byte{'y'}, 1<<17))); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		rd, err := f.Load(ctx, h, 0, 0)
		if err != nil {
			seen["load before"]++
			continue
		}
		n, err := io.Copy(io.Discard, rd)
		rd.Close()
		if !errors.Is(err, faulty.ErrInjected) || n >= 1<<17 {
			t.Errorf("reading %v at rate 1 = %d bytes, %v; want fewer than %d bytes and ErrInjected", h, n, err, 1<<17)
		}
		seen["load midway"]++
	}
	for _, k := range []string{"save before", "save midway", "save after", "load before", "load midway"} {
		if seen[k] == 0 {
			t.Errorf("no fault of kind %q in %v", k, seen)
		}
	}
}

// TestTypesAndSetRate: with Types, only calls on those file types fail;
// SetRate turns the faults on and off.
func TestTypesAndSetRate(t *testing.T) {
	ctx := t.Context()
	f := faulty.New(mem.New(), faulty.Options{Seed: 1, Types: []backend.FileType{backend.LockFile}})
	save := func(ft backend.FileType, name string) error {
		return f.Save(ctx, backend.Handle{Type: ft, Name: name}, bytes.NewReader([]byte("x")))
	}
	if err := save(backend.LockFile, "a"); err != nil {
		t.Errorf("Save(lock) at rate 0 = %v", err)
	}
	f.SetRate(1)
	tests := []struct {
		ft   backend.FileType
		fail bool
	}{
		{backend.LockFile, true},
		{backend.PackFile, false},
		{backend.SnapshotFile, false},
	}
	for i, tt := range tests {
		err := save(tt.ft, fmt.Sprint("b", i))
		if got := errors.Is(err, faulty.ErrInjected); got != tt.fail {
			t.Errorf("Save(%v) at rate 1 = %v, want a fault: %v", tt.ft, err, tt.fail)
		}
		_, err = f.Stat(ctx, backend.Handle{Type: tt.ft, Name: "a"})
		if got := errors.Is(err, faulty.ErrInjected); got != tt.fail {
			t.Errorf("Stat(%v) at rate 1 = %v, want a fault: %v", tt.ft, err, tt.fail)
		}
	}
	f.SetRate(0)
	if err := save(backend.LockFile, "c"); err != nil {
		t.Errorf("Save(lock) back at rate 0 = %v", err)
	}
}
