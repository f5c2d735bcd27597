package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/dedup"
)

// Sentinel errors of locking.
var (
	// ErrLocked is returned when a conflicting lock is held.
	ErrLocked = errors.New("repository is locked")
	// ErrLockLost is returned by an operation whose lock could not be
	// refreshed in time or whose lock file was removed: another process
	// may have taken a conflicting lock meanwhile, so the operation stopped
	// before it committed anything.
	ErrLockLost = errors.New("repository lock lost")
)

// lockTiming is how locks are kept alive and judged.
//
// A held lock is rewritten (refreshed) every refresh; a failed refresh is
// retried every retry. Its holder gives it up (Lock.Err) once it could not
// rewrite it for lost = stale − 1.5 × refresh, measured on its own clock,
// both monotonic and wall, so that a machine that slept counts the time
// it slept. Others judge the lock stale by the lock's own time only once
// that time is more than stale + skew behind their clock: the clocks of two
// hosts may differ by up to skew, and a holder never lets its lock go
// unrefreshed for longer than lost < stale. poll is how often a holder
// looks at the time between refreshes.
type lockTiming struct {
	refresh, retry, lost, stale, skew, poll time.Duration
}

// newLockTiming returns the timing that refreshes every refresh. With 5
// minutes (the default): retry after 30 s, lost after 22.5 minutes, stale
// after 30 minutes plus a skew margin of one hour.
func newLockTiming(refresh time.Duration) *lockTiming {
	stale := 6 * refresh
	return &lockTiming{
		refresh: refresh,
		retry:   refresh / 10,
		lost:    stale - refresh*3/2,
		stale:   stale,
		skew:    12 * refresh,
		poll:    min(time.Second, refresh/5),
	}
}

var timing atomic.Pointer[lockTiming]

func init() { timing.Store(newLockTiming(5 * time.Minute)) }

// SetTestLockTiming makes locks taken from now on refresh every refresh
// instead of every 5 minutes, and scales the other durations alike (lost
// after 4.5 × refresh, stale after 6 × refresh plus a skew margin of
// 12 × refresh). Only tests call it; it returns a function that restores
// the previous timing.
func SetTestLockTiming(refresh time.Duration) (restore func()) {
	old := timing.Swap(newLockTiming(refresh))
	return func() { timing.Store(old) }
}

// lockFile is the content of a lock file.
type lockFile struct {
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	Username  string    `json:"username,omitempty"`
	PID       int       `json:"pid"`
	Exclusive bool      `json:"exclusive"`
}

// LockInfo describes a lock file.
type LockInfo struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	Username  string    `json:"username,omitempty"`
	PID       int       `json:"pid"`
	Exclusive bool      `json:"exclusive"`
	// Stale means that nobody holds the lock any more: it is Dead, or its
	// time is far older than any holder lets it get (30 minutes plus a
	// margin of one hour for clocks that differ). RemoveLocks removes
	// stale locks; until then they block as live ones do, except Dead ones.
	Stale bool `json:"stale"`
	// Dead means that the lock was written on this host (same host name)
	// by a process that no longer exists. Lock ignores dead locks;
	// RemoveDeadLocks removes them.
	Dead bool `json:"dead,omitempty"`
	// Unreadable means that the lock file did not open; Err says why. It
	// may be anyone's lock, so it is not stale: it blocks every lock until
	// RemoveLocks(all) removes it.
	Unreadable bool   `json:"unreadable,omitempty"`
	Err        string `json:"error,omitempty"`
}

func (l LockInfo) String() string {
	if l.Unreadable {
		return fmt.Sprintf("unreadable lock %s (%s)", shortName(l.ID), l.Err)
	}
	kind := "shared"
	if l.Exclusive {
		kind = "exclusive"
	}
	s := fmt.Sprintf("%s lock by PID %d on %s since %s", kind, l.PID, l.Host, l.Time.Local().Format(time.DateTime))
	switch {
	case l.Dead:
		s += " (process gone)"
	case l.Stale:
		s += " (stale)"
	}
	return s
}

func shortName(name string) string { return name[:min(len(name), 8)] }

// Lock is a lock held by this process, refreshed in the background until
// Unlock. Its methods are safe for concurrent use. The operation holding
// it calls Check before each step that commits (a snapshot written, files
// removed) and gives up if the lock is lost.
type Lock struct {
	r      *Repository
	file   lockFile
	timing *lockTiming

	swap sync.Mutex // held while the lock file is replaced or checked

	mu    sync.Mutex // guards the fields below
	id    string     // the current lock file
	extra []string   // lock files of ours that could not be removed yet
	since time.Time  // when writing the current lock file began
	err   error      // why the lock was lost

	lost   chan struct{} // closed once err is set
	stop   chan struct{} // closed by Unlock
	done   chan struct{} // closed when the refresh goroutine ends
	unlock sync.Once
}

// writeLock writes a new lock file and returns its name, even on error:
// a failed write may have stored the file all the same, and the caller
// removes it.
func (r *Repository) writeLock(ctx context.Context, info LockInfo) (string, error) {
	b, err := json.Marshal(lockFile{Time: info.Time, Host: info.Host, Username: info.Username, PID: info.PID, Exclusive: info.Exclusive})
	if err != nil {
		return "", err
	}
	id := dedup.RandomID().String()
	if err := r.saveSealed(ctx, backend.Handle{Type: backend.LockFile, Name: id}, b); err != nil {
		return id, fmt.Errorf("write lock: %w", err)
	}
	return id, nil
}

// removeDetached removes h even when ctx has ended (a signal, a deadline),
// waiting at most a minute, and ignores failure: it cleans up after an
// error that is reported anyway.
func (r *Repository) removeDetached(ctx context.Context, h backend.Handle) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_ = r.be.Remove(dctx, h)
}

// Lock takes a shared (backup, check, restore) or exclusive (prune,
// forget) lock. Every other lock blocks as usual, stale ones included,
// except dead ones (Dead: this host, process gone); an unreadable lock
// blocks both kinds. A conflict is an error wrapping ErrLocked.
func (r *Repository) Lock(ctx context.Context, exclusive bool) (*Lock, error) {
	host, user := hostUser()
	start := time.Now()
	info := LockInfo{Time: start.UTC(), Host: host, Username: user, PID: os.Getpid(), Exclusive: exclusive}
	id, err := r.writeLock(ctx, info)
	// Our lock is (maybe) written: remove it on failure even when ctx has
	// ended (a signal while the others are listed), or it stays behind.
	drop := func() {
		if id != "" {
			r.removeDetached(ctx, backend.Handle{Type: backend.LockFile, Name: id})
		}
	}
	if err != nil {
		drop()
		return nil, err
	}
	locks, err := r.Locks(ctx)
	if err != nil {
		drop()
		return nil, err
	}
	for _, other := range locks {
		if other.ID == id || other.Dead {
			continue
		}
		if exclusive || other.Exclusive || other.Unreadable {
			drop()
			return nil, fmt.Errorf("%w: %s", ErrLocked, other)
		}
	}
	l := &Lock{
		r:      r,
		file:   lockFile{Time: info.Time, Host: host, Username: user, PID: info.PID, Exclusive: exclusive},
		timing: timing.Load(),
		id:     id,
		since:  start,
		lost:   make(chan struct{}),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go l.refreshLoop()
	return l, nil
}

// refreshLoop refreshes the lock every refresh interval, retries failed
// refreshes, and marks the lock lost when its time is up.
func (l *Lock) refreshLoop() {
	defer close(l.done)
	next := time.NewTimer(l.timing.refresh)
	defer next.Stop()
	// Timers stop while the machine sleeps: look at the clock often.
	poll := time.NewTicker(l.timing.poll)
	defer poll.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-poll.C:
			if l.Err() != nil {
				return
			}
			continue
		case <-next.C:
		}
		if l.Err() != nil {
			return
		}
		err := l.refresh()
		switch {
		case err == nil:
			next.Reset(l.timing.refresh)
		case errors.Is(err, ErrLockLost):
			l.lose(err)
			return
		default:
			l.r.log.Warn("refresh lock failed, will retry", "err", err)
			next.Reset(l.timing.retry)
		}
	}
}

// refresh writes a new lock file, checks that the current one is still
// there, and removes it. The new file then is the lock.
func (l *Lock) refresh() error {
	l.swap.Lock()
	defer l.swap.Unlock()
	l.mu.Lock()
	cur, left := l.id, l.timing.lost-l.ageLocked()
	l.mu.Unlock()
	// No backend call may outlast the lock.
	ctx, cancel := context.WithTimeout(context.Background(), left)
	defer cancel()
	start := time.Now()
	f := l.file
	id, err := l.r.writeLock(ctx, LockInfo{Time: start.UTC(), Host: f.Host, Username: f.Username, PID: f.PID, Exclusive: f.Exclusive})
	if err != nil {
		if id != "" {
			l.removeFiles(ctx, []string{id})
		}
		return fmt.Errorf("refresh lock: %w", err)
	}
	// The current file must have lived until the new one existed: if
	// someone removed it, someone else may hold a conflicting lock.
	if err := l.exists(ctx, cur); err != nil {
		l.removeFiles(ctx, []string{id})
		return err
	}
	l.mu.Lock()
	l.id, l.since = id, start
	old := append(l.extra, cur)
	l.extra = nil
	l.mu.Unlock()
	l.removeFiles(ctx, old)
	return nil
}

// exists returns nil if lock file id exists, an error wrapping ErrLockLost
// if it does not, another error if that cannot be told.
func (l *Lock) exists(ctx context.Context, id string) error {
	_, err := l.r.be.Stat(ctx, backend.Handle{Type: backend.LockFile, Name: id})
	switch {
	case errors.Is(err, backend.ErrNotExist):
		return fmt.Errorf("%w: lock file %s was removed by someone else", ErrLockLost, shortName(id))
	case err != nil:
		return fmt.Errorf("check lock: %w", err)
	}
	return nil
}

// removeFiles removes lock files of ours; those it cannot remove are
// tried again at the next refresh and at Unlock.
func (l *Lock) removeFiles(ctx context.Context, ids []string) {
	var failed []string
	for _, id := range ids {
		err := l.r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: id})
		if err != nil && !errors.Is(err, backend.ErrNotExist) {
			failed = append(failed, id)
		}
	}
	l.mu.Lock()
	l.extra = append(l.extra, failed...)
	l.mu.Unlock()
}

// ageLocked returns how long ago writing the current lock file began, by
// the monotonic clock or the wall clock, whichever says longer. The
// caller holds l.mu.
func (l *Lock) ageLocked() time.Duration {
	return max(time.Since(l.since), time.Now().Round(0).Sub(l.since.Round(0)))
}

func (l *Lock) lose(err error) {
	l.mu.Lock()
	l.loseLocked(err)
	l.mu.Unlock()
}

func (l *Lock) loseLocked(err error) {
	if l.err == nil {
		l.err = err
		close(l.lost)
	}
}

// Err returns nil while the lock is held, or an error wrapping ErrLockLost
// once it is lost: it could not be refreshed for longer than its holder
// may let it go (22.5 minutes by default), or its file was found removed.
// A nil *Lock has no error.
func (l *Lock) Err() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		if age := l.ageLocked(); age > l.timing.lost {
			l.loseLocked(fmt.Errorf("%w: could not refresh it for %v", ErrLockLost, age.Round(time.Millisecond)))
		}
	}
	return l.err
}

// Check returns Err, and when the lock is not known to be lost, makes sure
// that its file still exists. Operations call it right before they commit.
// A nil *Lock passes.
func (l *Lock) Check(ctx context.Context) error {
	if l == nil {
		return nil
	}
	if err := l.Err(); err != nil {
		return err
	}
	l.swap.Lock()
	defer l.swap.Unlock()
	l.mu.Lock()
	cur := l.id
	l.mu.Unlock()
	if err := l.exists(ctx, cur); err != nil {
		if errors.Is(err, ErrLockLost) {
			l.lose(err)
		}
		return err
	}
	return l.Err()
}

// Done returns a channel that is closed once the lock is lost.
func (l *Lock) Done() <-chan struct{} { return l.lost }

// Context returns a context derived from ctx that is cancelled, with Err
// as its cause, once the lock is lost, and in any case at Unlock. An
// operation runs under it so that it stops soon after its lock is lost;
// it still calls Check before it commits.
func (l *Lock) Context(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-l.lost:
			cancel(l.Err())
		case <-l.stop:
			cancel(nil)
		case <-ctx.Done():
		}
	}()
	return ctx
}

// Unlock releases the lock: it stops refreshing and removes the lock
// files. Calling it again does nothing; so does calling it on nil.
func (l *Lock) Unlock() error {
	if l == nil {
		return nil
	}
	var err error
	l.unlock.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l.mu.Lock()
		files := append(l.extra, l.id)
		l.extra = nil
		l.mu.Unlock()
		for _, id := range files {
			e := l.r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: id})
			if e != nil && !errors.Is(e, backend.ErrNotExist) && err == nil {
				err = fmt.Errorf("unlock: %w", e)
			}
		}
	})
	return err
}

// Locks lists the locks, oldest first (unreadable ones, with a zero time,
// before all), marking dead, stale and unreadable ones.
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	var names []string
	if err := r.be.List(ctx, backend.LockFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	host, _ := hostUser()
	tm := timing.Load()
	var out []LockInfo
	for _, name := range names {
		b, err := r.loadSealed(ctx, backend.Handle{Type: backend.LockFile, Name: name})
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		var f lockFile
		if err == nil {
			err = json.Unmarshal(b, &f)
		}
		if err != nil {
			out = append(out, LockInfo{ID: name, Unreadable: true, Err: err.Error()})
			continue
		}
		li := LockInfo{ID: name, Time: f.Time, Host: f.Host, Username: f.Username, PID: f.PID, Exclusive: f.Exclusive}
		li.Dead = li.Host == host && !processAlive(li.PID)
		li.Stale = li.Dead || time.Since(li.Time) > tm.stale+tm.skew
		out = append(out, li)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// RemoveLocks removes stale locks, or every lock (unreadable ones too) if
// all is set, and returns how many it removed.
func (r *Repository) RemoveLocks(ctx context.Context, all bool) (int, error) {
	removed, err := r.removeLocks(ctx, func(l LockInfo) bool { return all || l.Stale })
	return len(removed), err
}

// RemoveDeadLocks removes the locks written on this host by processes
// that no longer exist, the only ones that are certainly nobody's, and
// returns them. Unattended runs call it; stale locks of other hosts are a
// human's decision (RemoveLocks).
func (r *Repository) RemoveDeadLocks(ctx context.Context) ([]LockInfo, error) {
	return r.removeLocks(ctx, func(l LockInfo) bool { return l.Dead })
}

func (r *Repository) removeLocks(ctx context.Context, which func(LockInfo) bool) ([]LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	var removed []LockInfo
	for _, l := range locks {
		if !which(l) {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: l.ID}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return removed, fmt.Errorf("remove lock %s: %w", shortName(l.ID), err)
		}
		removed = append(removed, l)
	}
	return removed, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
