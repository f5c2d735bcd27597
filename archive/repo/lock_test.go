package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/backend"
)

// deadPID returns the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatalf("run a child process: %v", err)
	}
	pid := cmd.ProcessState.Pid()
	if processAlive(pid) {
		t.Skipf("PID %d was reused already", pid)
	}
	return pid
}

func TestLocksStale(t *testing.T) {
	r, be := newTestRepo(t)
	ctx := t.Context()
	host, _ := hostUser()
	now := time.Now().UTC()
	dead := deadPID(t)
	tests := []struct {
		name      string
		info      LockInfo
		wantStale bool
	}{
		{"live here", LockInfo{Time: now, Host: host, PID: os.Getpid()}, false},
		{"dead here", LockInfo{Time: now, Host: host, PID: dead, Exclusive: true}, true},
		{"no PID here", LockInfo{Time: now, Host: host, PID: 0}, true},
		{"fresh elsewhere", LockInfo{Time: now.Add(-lockStale + time.Minute), Host: "elsewhere.example", PID: dead}, false},
		{"old elsewhere", LockInfo{Time: now.Add(-lockStale - time.Minute), Host: "elsewhere.example", PID: 1, Exclusive: true}, true},
		{"old here, alive", LockInfo{Time: now.Add(-lockStale - time.Minute), Host: host, PID: os.Getpid()}, true},
	}
	want := make(map[string]bool) // lock ID → stale
	names := make(map[string]string)
	for _, tt := range tests {
		id, err := r.writeLock(ctx, tt.info)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = tt.wantStale
		names[id] = tt.name
	}
	// A lock file that does not open is stale.
	garbage := "0000000000000000000000000000000000000000000000000000000000000000"
	if err := be.Save(ctx, backend.Handle{Type: backend.LockFile, Name: garbage}, bytes.NewReader([]byte("garbage"))); err != nil {
		t.Fatal(err)
	}
	want[garbage] = true
	names[garbage] = "garbage"

	locks, err := r.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != len(want) {
		t.Fatalf("Locks() returned %d locks, want %d", len(locks), len(want))
	}
	for _, l := range locks {
		if l.Stale != want[l.ID] {
			t.Errorf("lock %q: Stale = %v, want %v", names[l.ID], l.Stale, want[l.ID])
		}
	}
	if !locks[0].Time.IsZero() || locks[0].ID != garbage {
		t.Errorf("Locks()[0] = %+v, want the unreadable lock first with a zero time", locks[0])
	}
	if !slices.IsSortedFunc(locks, func(a, b LockInfo) int { return a.Time.Compare(b.Time) }) {
		t.Error("Locks() not sorted by time")
	}

	// An exclusive lock is refused while a live lock is held, whoever
	// holds it; stale locks do not count.
	if _, err := r.Lock(ctx, true); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "elsewhere.example") && !strings.Contains(err.Error(), host) {
		t.Errorf("Lock(exclusive) = %v, want ErrLocked naming the holder", err)
	}
	shared, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatalf("Lock(shared) with only shared live locks and stale exclusive ones = %v", err)
	}
	if err := shared.Unlock(); err != nil {
		t.Fatal(err)
	}

	n, err := r.RemoveLocks(ctx, false)
	if err != nil || n != 5 {
		t.Errorf("RemoveLocks(false) = %d, %v; want 5, nil", n, err)
	}
	locks, _ = r.Locks(ctx)
	var left []string
	for _, l := range locks {
		left = append(left, names[l.ID])
	}
	slices.Sort(left)
	if want := []string{"fresh elsewhere", "live here"}; !slices.Equal(left, want) {
		t.Errorf("after RemoveLocks(false): %v left, want %v", left, want)
	}
	n, err = r.RemoveLocks(ctx, true)
	if err != nil || n != 2 {
		t.Errorf("RemoveLocks(true) = %d, %v; want 2, nil", n, err)
	}
	if locks, _ := r.Locks(ctx); len(locks) != 0 {
		t.Errorf("after RemoveLocks(true): %d locks left", len(locks))
	}
	x, err := r.Lock(ctx, true)
	if err != nil {
		t.Fatalf("Lock(exclusive) on a repository without locks = %v", err)
	}
	x.Unlock()
}

func TestLockRefresh(t *testing.T) {
	r, _ := newTestRepo(t)
	ctx := t.Context()
	old := lockRefresh
	lockRefresh = 20 * time.Millisecond
	defer func() { lockRefresh = old }()

	l, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	first, err := r.Locks(ctx)
	if err != nil || len(first) != 1 {
		t.Fatalf("Locks() = %+v, %v; want 1 lock", first, err)
	}
	host, _ := hostUser()
	if first[0].PID != os.Getpid() || first[0].Host != host || first[0].Exclusive || first[0].Stale {
		t.Errorf("lock = %+v, want a live shared lock of PID %d on %s", first[0], os.Getpid(), host)
	}
	deadline := time.Now().Add(5 * time.Second)
	var now []LockInfo
	for time.Now().Before(deadline) {
		time.Sleep(30 * time.Millisecond)
		now, err = r.Locks(ctx)
		if err == nil && len(now) == 1 && now[0].ID != first[0].ID {
			break
		}
	}
	if len(now) != 1 || now[0].ID == first[0].ID || !now[0].Time.After(first[0].Time) {
		t.Fatalf("after refresh: locks %+v, want one new lock replacing %s", now, first[0].ID)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if locks, _ := r.Locks(ctx); len(locks) != 0 {
		t.Errorf("after Unlock: %+v left", locks)
	}
	var nilLock *Lock
	if err := nilLock.Unlock(); err != nil {
		t.Errorf("(*Lock)(nil).Unlock() = %v, want nil", err)
	}
}

func TestLockInfoString(t *testing.T) {
	l := LockInfo{Time: time.Date(2024, 2, 3, 4, 5, 6, 0, time.Local), Host: "h", PID: 42, Exclusive: true}
	if got, want := l.String(), "exclusive lock by PID 42 on h since 2024-02-03 04:05:06"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	l.Exclusive = false
	if got := l.String(); !strings.HasPrefix(got, "shared lock by PID 42") {
		t.Errorf("String() = %q, want a shared lock", got)
	}
}

func TestUnlockTwice(t *testing.T) {
	r, _ := newTestRepo(t)
	l, err := r.Lock(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock = %v, want nil", err)
	}
}

// cancelOnList cancels a context when lock files are listed, as a signal
// arriving while Lock looks at the other locks does.
type cancelOnList struct {
	backend.Backend
	cancel func()
}

func (c cancelOnList) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if t == backend.LockFile {
		c.cancel()
		return ctx.Err()
	}
	return c.Backend.List(ctx, t, fn)
}

// TestLockCancelledLeavesNoLock: a Lock whose context ends after it wrote
// its lock file fails and removes that file.
func TestLockCancelledLeavesNoLock(t *testing.T) {
	r, be := newTestRepo(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r.be = cancelOnList{Backend: be, cancel: cancel}
	if _, err := r.Lock(ctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with a context cancelled while listing = %v, want context.Canceled", err)
	}
	var left []string
	be.List(t.Context(), backend.LockFile, func(fi backend.FileInfo) error { left = append(left, fi.Name); return nil })
	if len(left) != 0 {
		t.Errorf("lock files left: %v, want none", left)
	}
}
