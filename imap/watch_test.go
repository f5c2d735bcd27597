package imap

import (
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestIdleAndChanged follows a Dovecot INBOX: Idle wakes when another
// client appends, well before its wait is over; Changed tells a folder
// that moved past a cursor from one that did not.
func TestIdleAndChanged(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	other := d.Dial(t, user, pw)
	imaptest.Append(t, other, "INBOX", imaptest.Generate("first", 1))
	imaptest.Append(t, other, "Sent", imaptest.Generate("sent", 1))
	src := dovecotSource(t, d, user, pw, func(o *Options) { o.IOTimeout = 2 * time.Second })
	ctx := t.Context()
	folders, err := src.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cursors := map[string]archive.Cursor{}
	var inbox archive.Folder
	for _, f := range folders {
		if f.Path == "INBOX" {
			inbox = f
		}
		cur, err := src.Sync(ctx, f, nil, &archivetest.Changes{})
		if err != nil {
			t.Fatalf("Sync(%q) = %v", f.Path, err)
		}
		cursors[f.Path] = cur
	}
	for _, f := range folders {
		if ch, err := src.Changed(ctx, f, cursors[f.Path]); err != nil || ch {
			t.Errorf("Changed(%q) right after Sync = %v, %v; want false", f.Path, ch, err)
		}
	}

	// Nothing happens: Idle waits its wait (longer than the I/O timeout:
	// the silence of an IDLE is not a stall) and reports no change.
	if ch, err := src.Idle(ctx, inbox, cursors["INBOX"], 3*time.Second); err != nil || ch {
		t.Fatalf("Idle with no mail = %v, %v; want false, nil", ch, err)
	}

	type result struct {
		changed bool
		err     error
		took    time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		ch, err := src.Idle(ctx, inbox, cursors["INBOX"], 5*time.Minute)
		done <- result{ch, err, time.Since(start)}
	}()
	// Idle has its IDLE running once the server counts it; appending
	// before is also seen (the EXISTS comes with the end of EXAMINE or
	// during IDLE), so no wait is needed for correctness.
	imaptest.Append(t, other, "INBOX", imaptest.Generate("second", 1))
	select {
	case r := <-done:
		if r.err != nil || !r.changed {
			t.Fatalf("Idle after an APPEND = %v, %v; want true", r.changed, r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Idle did not wake within 60 s of an APPEND")
	}
	if ch, err := src.Changed(ctx, inbox, cursors["INBOX"]); err != nil || !ch {
		t.Errorf("Changed(INBOX) after an APPEND = %v, %v; want true", ch, err)
	}
	// A connection that starts after the APPEND compares with the
	// cursor: the message is not missed.
	late := dovecotSource(t, d, user, pw, nil)
	if ch, err := late.Idle(ctx, inbox, cursors["INBOX"], 5*time.Minute); err != nil || !ch {
		t.Errorf("Idle on a new connection with a stale cursor = %v, %v; want true at once", ch, err)
	}
	if ch, err := src.Changed(ctx, inbox, nil); err != nil || !ch {
		t.Errorf("Changed with no cursor = %v, %v; want true", ch, err)
	}
}
