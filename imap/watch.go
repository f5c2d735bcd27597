package imap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive"
)

// ErrNoIdle is the error of Idle on a server without the IDLE extension.
var ErrNoIdle = errors.New("the server does not offer IDLE")

// Idle waits on a connection of its own, outside the pool, until folder f
// changes (a message arrives, is expunged or flagged) or until wait has
// passed, and reports whether it changed. The connection stays open
// between calls, EXAMINE-ing f, and Close logs it out; a call on a
// connection that dropped dials a new one, once (the caller paces its
// retries). Idle must not be called concurrently with itself; Sync and
// Changed may run meanwhile.
//
// When Idle (re)selects f, it compares what EXAMINE says with since (the
// cursor of f's last Sync; nil: no comparison) and reports a difference
// at once: mail that came while no connection watched is not missed.
// Between calls on the same connection, what the server announced after
// the last IDLE counts as a change (at worst a wake-up for nothing).
func (s *Source) Idle(ctx context.Context, f archive.Folder, since archive.Cursor, wait time.Duration) (bool, error) {
	c, moved, err := s.idleConn(ctx, f, since)
	if err != nil || moved {
		return moved, err
	}
	if !c.c.Caps().Has(goimap.CapIdle) && !c.c.Caps().Has(goimap.CapIMAP4rev2) {
		return false, ErrNoIdle
	}
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	c.io.quiet(time.Now().Add(wait))
	defer c.io.quiet(time.Time{})
	cmd, err := c.c.Idle()
	if err != nil {
		s.dropIdle(c)
		return false, s.idleErr(ctx, "idle", f, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	changed := false
	select {
	case <-c.changes:
		changed = true
	case <-timer.C:
	case <-ctx.Done():
	case <-c.c.Closed():
	}
	if err := cmd.Close(); err != nil {
		s.dropIdle(c)
		return changed, s.idleErr(ctx, "idle", f, err)
	}
	if err := cmd.Wait(); err != nil {
		s.dropIdle(c)
		return changed, s.idleErr(ctx, "idle", f, err)
	}
	// What came with the end of the IDLE counts too.
	select {
	case <-c.changes:
		changed = true
	default:
	}
	return changed, nil
}

// idleConn returns the connection of Idle, dialled and EXAMINE-ing f, and
// whether f moved past since when it was (re)selected.
func (s *Source) idleConn(ctx context.Context, f archive.Folder, since archive.Cursor) (*conn, bool, error) {
	s.mu.Lock()
	c, selected := s.idler, s.idleFolder
	s.mu.Unlock()
	if c != nil && c.broken() {
		s.dropIdle(c)
		c = nil
	}
	if c == nil {
		var err error
		c, err = dial(ctx, &s.opts)
		if err != nil {
			return nil, false, fmt.Errorf("idle: %w", err)
		}
		s.pool.connected.Store(true)
		selected = ""
		s.mu.Lock()
		s.idler, s.idleFolder = c, ""
		s.mu.Unlock()
	}
	moved := false
	if selected != f.Path {
		mailbox := s.mailbox(f)
		sel, err := c.c.Select(mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			s.dropIdle(c)
			return nil, false, s.idleErr(ctx, "examine", f, err)
		}
		if prev, err := parseCursor(since); err == nil {
			moved = sel.UIDValidity != prev.UIDValidity || uint32(sel.UIDNext) != prev.UIDNext || sel.NumMessages != prev.Messages
		}
		// What came with EXAMINE is accounted for.
		select {
		case <-c.changes:
		default:
		}
		s.mu.Lock()
		s.idleFolder = f.Path
		s.mu.Unlock()
	}
	return c, moved, nil
}

func (s *Source) idleErr(ctx context.Context, op string, f archive.Folder, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return fmt.Errorf("%s %s: %w", op, strconv.Quote(f.Path), err)
}

// dropIdle closes the connection of Idle.
func (s *Source) dropIdle(c *conn) {
	s.mu.Lock()
	if s.idler == c {
		s.idler, s.idleFolder = nil, ""
	}
	s.mu.Unlock()
	c.close()
}

// Changed reports whether folder f differs from what cursor since (one
// Sync returned) says of it, by a STATUS command: new messages (UIDNEXT),
// expunged ones (MESSAGES), a new UIDVALIDITY, and with CONDSTORE any
// change of flags (HIGHESTMODSEQ). An empty or unreadable cursor is
// reported as changed. It retries as Sync does.
func (s *Source) Changed(ctx context.Context, f archive.Folder, since archive.Cursor) (bool, error) {
	prev, err := parseCursor(since)
	if err != nil {
		return true, nil
	}
	changed := false
	err = s.withConn(ctx, "status "+strconv.Quote(f.Path), func(c *conn) error {
		// STATUS of the selected mailbox may answer what the session last
		// saw (RFC 3501 6.3.10): leave the mailbox a folder run selected.
		if c.c.Mailbox() != nil && c.c.Caps().Has(goimap.CapUnselect) {
			if err := c.c.Unselect().Wait(); err != nil {
				return err
			}
		}
		opts := &goimap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, HighestModSeq: c.condstore}
		st, err := c.c.Status(s.mailbox(f), opts).Wait()
		if err != nil {
			return err
		}
		n := uint32(0)
		if st.NumMessages != nil {
			n = *st.NumMessages
		}
		changed = st.UIDValidity != prev.UIDValidity || uint32(st.UIDNext) != prev.UIDNext || n != prev.Messages ||
			(c.condstore && prev.ModSeq != 0 && st.HighestModSeq != prev.ModSeq)
		return nil
	})
	return changed, err
}
