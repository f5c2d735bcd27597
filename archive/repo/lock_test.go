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
	"codeberg.org/planb/planb/archive/backend/faulty"
	"codeberg.org/planb/planb/archive/backend/mem"
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
	r, _ := newTestRepo(t)
	ctx := t.Context()
	host, _ := hostUser()
	now := time.Now().UTC()
	tm := timing.Load()
	dead := deadPID(t)
	tests := []struct {
		name            string
		info            LockInfo
		wantStale, dead bool
	}{
		{"live here", LockInfo{Time: now, Host: host, PID: os.Getpid()}, false, false},
		{"dead here", LockInfo{Time: now, Host: host, PID: dead, Exclusive: true}, true, true},
		{"no PID here", LockInfo{Time: now, Host: host, PID: 0}, true, true},
		{"fresh elsewhere", LockInfo{Time: now.Add(-tm.stale + time.Minute), Host: "elsewhere.example", PID: dead}, false, false},
		{"skewed elsewhere", LockInfo{Time: now.Add(-tm.stale - tm.skew/2), Host: "elsewhere.example", PID: 1}, false, false},
		{"old elsewhere", LockInfo{Time: now.Add(-tm.stale - tm.skew - time.Minute), Host: "elsewhere.example", PID: 1, Exclusive: true}, true, false},
		{"old here, alive", LockInfo{Time: now.Add(-tm.stale - tm.skew - time.Minute), Host: host, PID: os.Getpid()}, true, false},
	}
	want := make(map[string]int) // lock ID → index in tests
	names := make(map[string]string)
	for i, tt := range tests {
		id, err := r.writeLock(ctx, tt.info)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = i
		names[id] = tt.name
	}

	locks, err := r.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != len(want) {
		t.Fatalf("Locks() returned %d locks, want %d", len(locks), len(want))
	}
	for _, l := range locks {
		tt := tests[want[l.ID]]
		if l.Stale != tt.wantStale || l.Dead != tt.dead {
			t.Errorf("lock %q: Stale, Dead = %v, %v; want %v, %v", tt.name, l.Stale, l.Dead, tt.wantStale, tt.dead)
		}
	}
	if !slices.IsSortedFunc(locks, func(a, b LockInfo) int { return a.Time.Compare(b.Time) }) {
		t.Error("Locks() not sorted by time")
	}

	// An exclusive lock is refused while a live lock is held, whoever
	// holds it; a shared one while a stale exclusive lock (not dead) is
	// there: only dead locks do not count.
	if _, err := r.Lock(ctx, true); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock(exclusive) = %v, want ErrLocked", err)
	}
	if _, err := r.Lock(ctx, false); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "elsewhere.example") {
		t.Errorf("Lock(shared) with a stale exclusive lock = %v, want ErrLocked naming its host", err)
	}

	n, err := r.RemoveLocks(ctx, false)
	if err != nil || n != 4 {
		t.Errorf("RemoveLocks(false) = %d, %v; want 4, nil", n, err)
	}
	locks, _ = r.Locks(ctx)
	var left []string
	for _, l := range locks {
		left = append(left, names[l.ID])
	}
	slices.Sort(left)
	if want := []string{"fresh elsewhere", "live here", "skewed elsewhere"}; !slices.Equal(left, want) {
		t.Errorf("after RemoveLocks(false): %v left, want %v", left, want)
	}
	shared, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatalf("Lock(shared) with only shared live locks = %v", err)
	}
	if err := shared.Unlock(); err != nil {
		t.Fatal(err)
	}
	n, err = r.RemoveLocks(ctx, true)
	if err != nil || n != 3 {
		t.Errorf("RemoveLocks(true) = %d, %v; want 3, nil", n, err)
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

// TestRemoveDeadLocks: only the locks of dead processes on this host go;
// an exclusive dead lock does not block.
func TestRemoveDeadLocks(t *testing.T) {
	r, _ := newTestRepo(t)
	ctx := t.Context()
	host, _ := hostUser()
	tm := timing.Load()
	now := time.Now().UTC()
	deadID, err := r.writeLock(ctx, LockInfo{Time: now, Host: host, PID: deadPID(t), Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatalf("Lock(shared) with a dead exclusive lock = %v, want nil", err)
	}
	l.Unlock()
	for _, info := range []LockInfo{
		{Time: now.Add(-tm.stale - tm.skew - time.Hour), Host: "elsewhere.example", PID: 1},
		{Time: now.Add(-40 * time.Minute), Host: "elsewhere.example", PID: 2},
		{Time: now, Host: host, PID: os.Getpid()},
	} {
		if _, err := r.writeLock(ctx, info); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := r.RemoveDeadLocks(ctx)
	if err != nil || len(removed) != 1 || removed[0].ID != deadID {
		t.Errorf("RemoveDeadLocks() = %+v, %v; want the dead lock %s", removed, err, deadID[:8])
	}
	if locks, _ := r.Locks(ctx); len(locks) != 3 {
		t.Errorf("after RemoveDeadLocks: %d locks, want 3", len(locks))
	}
}

func TestLockRefresh(t *testing.T) {
	r, _ := newTestRepo(t)
	ctx := t.Context()
	defer SetTestLockTiming(50 * time.Millisecond)()

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

// TestLockClockSkew: a live lock written by a host whose clock is 40
// minutes off (behind or ahead) is not stale: it blocks an exclusive
// lock and a prune, and unlock leaves it.
func TestLockClockSkew(t *testing.T) {
	for _, skew := range []time.Duration{-40 * time.Minute, 40 * time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			r, be := newTestRepo(t)
			ctx := t.Context()
			id, err := r.writeLock(ctx, LockInfo{Time: time.Now().Add(skew).UTC(), Host: "elsewhere.example", PID: 4242})
			if err != nil {
				t.Fatal(err)
			}
			locks, err := r.Locks(ctx)
			if err != nil || len(locks) != 1 || locks[0].Stale {
				t.Errorf("Locks() = %+v, %v; want the one lock, not stale", locks, err)
			}
			if l, err := r.Lock(ctx, true); !errors.Is(err, ErrLocked) {
				l.Unlock()
				t.Errorf("Lock(exclusive) = %v, want ErrLocked", err)
			}
			if _, err := r.Prune(ctx, nil); !errors.Is(err, ErrLocked) {
				t.Errorf("Prune() = %v, want ErrLocked", err)
			}
			if n, err := r.RemoveLocks(ctx, false); n != 0 || err != nil {
				t.Errorf("RemoveLocks(false) = %d, %v; want 0, nil", n, err)
			}
			if _, err := be.Stat(ctx, backend.Handle{Type: backend.LockFile, Name: id}); err != nil {
				t.Errorf("the skewed lock file: %v, want it kept", err)
			}
		})
	}
}

// TestLockUnreadable: a lock file that does not open is not stale: it
// may be anyone's. It blocks every lock, unlock leaves it, unlock
// --remove-all removes it.
func TestLockUnreadable(t *testing.T) {
	r, be := newTestRepo(t)
	ctx := t.Context()
	garbage := "0000000000000000000000000000000000000000000000000000000000000000"
	if err := be.Save(ctx, backend.Handle{Type: backend.LockFile, Name: garbage}, bytes.NewReader([]byte("garbage"))); err != nil {
		t.Fatal(err)
	}
	locks, err := r.Locks(ctx)
	if err != nil || len(locks) != 1 || locks[0].Stale {
		t.Errorf("Locks() = %+v, %v; want the unreadable lock, not stale", locks, err)
	}
	for _, exclusive := range []bool{false, true} {
		if l, err := r.Lock(ctx, exclusive); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "unreadable") {
			l.Unlock()
			t.Errorf("Lock(exclusive=%v) = %v, want ErrLocked naming the unreadable lock", exclusive, err)
		}
	}
	if n, err := r.RemoveLocks(ctx, false); n != 0 || err != nil {
		t.Errorf("RemoveLocks(false) = %d, %v; want 0, nil", n, err)
	}
	if n, err := r.RemoveLocks(ctx, true); n != 1 || err != nil {
		t.Errorf("RemoveLocks(true) = %d, %v; want 1, nil", n, err)
	}
}

// TestLockRefreshFails: a lock whose refreshes keep failing is retried,
// then lost before it could be judged stale: Err and Check say so, Done
// is closed, and Unlock still cleans up.
func TestLockRefreshFails(t *testing.T) {
	defer SetTestLockTiming(50 * time.Millisecond)()
	fb := faulty.New(mem.New(), faulty.Options{Seed: 1, Types: []backend.FileType{backend.LockFile}})
	r, err := Init(t.Context(), fb, testPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	l, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Check(ctx); err != nil {
		t.Fatalf("Check() of a fresh lock = %v", err)
	}
	fb.SetRate(1)
	select {
	case <-l.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("lock not lost after 10s of failing refreshes (%d faults)", fb.Injected())
	}
	if err := l.Err(); !errors.Is(err, ErrLockLost) {
		t.Errorf("Err() = %v, want ErrLockLost", err)
	}
	if err := l.Check(ctx); !errors.Is(err, ErrLockLost) {
		t.Errorf("Check() = %v, want ErrLockLost", err)
	}
	if n := fb.Injected(); n < 2 {
		t.Errorf("%d refresh attempts failed, want the refresh retried", n)
	}
	fb.SetRate(0)
	if err := l.Unlock(); err != nil {
		t.Errorf("Unlock() = %v", err)
	}
	if locks, _ := r.Locks(ctx); len(locks) != 0 {
		t.Errorf("after Unlock: %+v left", locks)
	}
}

// TestLockRefreshRetried: a refresh that fails a few times and then
// succeeds keeps the lock.
func TestLockRefreshRetried(t *testing.T) {
	defer SetTestLockTiming(100 * time.Millisecond)()
	fb := faulty.New(mem.New(), faulty.Options{Seed: 1, Types: []backend.FileType{backend.LockFile}})
	r, err := Init(t.Context(), fb, testPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	l, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	first, _ := r.Locks(ctx)
	fb.SetRate(1)
	waitFor(t, "two failed refreshes", func() bool { return fb.Injected() >= 2 })
	fb.SetRate(0)
	waitFor(t, "a successful refresh", func() bool {
		now, err := r.Locks(ctx)
		return err == nil && !slices.ContainsFunc(now, func(l LockInfo) bool { return l.ID == first[0].ID })
	})
	if err := l.Check(ctx); err != nil {
		t.Errorf("Check() after %d failed and then a successful refresh = %v, want nil", fb.Injected(), err)
	}
}

// waitFor polls cond until it holds, or fails the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10s", what)
		}
		<-tick.C
	}
}
