package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/dedup"
)

// ErrLocked is returned when a conflicting lock is held.
var ErrLocked = errors.New("repository is locked")

// Lock timing: a held lock is refreshed every lockRefresh; a lock not
// refreshed for lockStale is stale, as is one whose process is gone.
var (
	lockRefresh = 5 * time.Minute
	lockStale   = 30 * time.Minute
)

// LockInfo describes a lock file.
type LockInfo struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	Username  string    `json:"username,omitempty"`
	PID       int       `json:"pid"`
	Exclusive bool      `json:"exclusive"`
	Stale     bool      `json:"stale"`
}

func (l LockInfo) String() string {
	kind := "shared"
	if l.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("%s lock by PID %d on %s since %s", kind, l.PID, l.Host, l.Time.Local().Format(time.DateTime))
}

// Lock is a lock held by this process. Unlock releases it.
type Lock struct {
	r    *Repository
	info LockInfo
	mu   sync.Mutex
	once sync.Once
	id   string
	stop chan struct{}
	done chan struct{}
}

func (r *Repository) writeLock(ctx context.Context, info LockInfo) (string, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return "", err
	}
	id := dedup.RandomID().String()
	if err := r.saveSealed(ctx, backend.Handle{Type: backend.LockFile, Name: id}, b); err != nil {
		return "", fmt.Errorf("write lock: %w", err)
	}
	return id, nil
}

// Lock takes a shared (backup) or exclusive (prune, forget) lock. A stale
// lock does not block; it is reported by Locks and removed by RemoveLocks.
func (r *Repository) Lock(ctx context.Context, exclusive bool) (*Lock, error) {
	host, user := hostUser()
	info := LockInfo{Time: time.Now().UTC(), Host: host, Username: user, PID: os.Getpid(), Exclusive: exclusive}
	id, err := r.writeLock(ctx, info)
	if err != nil {
		return nil, err
	}
	// Our lock is written: remove it on failure even when ctx has ended
	// (a signal while the others are listed), or it stays behind.
	drop := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = r.be.Remove(dctx, backend.Handle{Type: backend.LockFile, Name: id})
	}
	locks, err := r.Locks(ctx)
	if err != nil {
		drop()
		return nil, err
	}
	for _, other := range locks {
		if other.ID == id || other.Stale {
			continue
		}
		if exclusive || other.Exclusive {
			drop()
			return nil, fmt.Errorf("%w: %s", ErrLocked, other)
		}
	}
	l := &Lock{r: r, info: info, id: id, stop: make(chan struct{}), done: make(chan struct{})}
	go l.refresh()
	return l, nil
}

func (l *Lock) refresh() {
	defer close(l.done)
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			info := l.info
			info.Time = time.Now().UTC()
			id, err := l.r.writeLock(context.Background(), info)
			if err != nil {
				l.r.log.Warn("refresh lock", "err", err)
				continue
			}
			l.mu.Lock()
			old := l.id
			l.id = id
			l.mu.Unlock()
			_ = l.r.be.Remove(context.Background(), backend.Handle{Type: backend.LockFile, Name: old})
		}
	}
}

// Unlock releases the lock. Calling it again does nothing.
func (l *Lock) Unlock() error {
	if l == nil {
		return nil
	}
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		err = l.r.be.Remove(context.Background(), backend.Handle{Type: backend.LockFile, Name: l.id})
	})
	return err
}

// Locks lists the locks, marking stale ones. An unreadable lock file is
// listed as stale with a zero time.
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	var names []string
	if err := r.be.List(ctx, backend.LockFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	host, _ := hostUser()
	var out []LockInfo
	for _, name := range names {
		b, err := r.loadSealed(ctx, backend.Handle{Type: backend.LockFile, Name: name})
		if errors.Is(err, backend.ErrNotExist) {
			continue // released meanwhile
		}
		var li LockInfo
		if err != nil || json.Unmarshal(b, &li) != nil {
			out = append(out, LockInfo{ID: name, Stale: true})
			continue
		}
		li.ID = name
		li.Stale = time.Since(li.Time) > lockStale || (li.Host == host && !processAlive(li.PID))
		out = append(out, li)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// RemoveLocks removes stale locks, or every lock if all is set, and
// returns how many it removed.
func (r *Repository) RemoveLocks(ctx context.Context, all bool) (int, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range locks {
		if !all && !l.Stale {
			continue
		}
		if err := r.be.Remove(ctx, backend.Handle{Type: backend.LockFile, Name: l.ID}); err != nil && !errors.Is(err, backend.ErrNotExist) {
			return n, fmt.Errorf("remove lock %s: %w", l.ID[:8], err)
		}
		n++
	}
	return n, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
