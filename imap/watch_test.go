package imap

import (
	"errors"
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

// TestNotifyDovecot follows every folder of a Dovecot account with
// NOTIFY: a new connection reports everything as changed; then a message
// appended by another client into a subfolder and into INBOX wakes Notify
// with that folder (not all), well before its wait is over; a new folder
// is reported as "all"; with nothing happening Notify waits its wait (past
// the I/O timeout) and reports nothing. On a server without NOTIFY (go-imap's
// in-memory one) it says ErrNoNotify.
func TestNotifyDovecot(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	other := d.Dial(t, user, pw)
	imaptest.Append(t, other, "INBOX", imaptest.Generate("first", 1))
	if err := other.Create("Projets Été", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	src := dovecotSource(t, d, user, pw, func(o *Options) { o.IOTimeout = 2 * time.Second })
	ctx := t.Context()
	if _, err := src.Folders(ctx); err != nil {
		t.Fatal(err)
	}
	if fs, all, err := src.Notify(ctx, time.Minute); err != nil || !all || len(fs) != 0 {
		t.Fatalf("first Notify = %q, %v, %v; want all at once", fs, all, err)
	}
	if fs, all, err := src.Notify(ctx, 3*time.Second); err != nil || all || len(fs) != 0 {
		t.Fatalf("Notify with no mail = %q, %v, %v; want nothing", fs, all, err)
	}
	for _, folder := range []string{"Projets Été", "INBOX"} {
		type result struct {
			folders []string
			all     bool
			err     error
		}
		done := make(chan result, 1)
		go func() {
			fs, all, err := src.Notify(ctx, 5*time.Minute)
			done <- result{fs, all, err}
		}()
		time.Sleep(200 * time.Millisecond)
		imaptest.Append(t, other, folder, imaptest.Generate("new "+folder, 1))
		select {
		case r := <-done:
			if r.err != nil || r.all || len(r.folders) != 1 || r.folders[0] != folder {
				t.Fatalf("Notify after an APPEND into %q = %q, %v, %v; want [%q]", folder, r.folders, r.all, r.err, folder)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("Notify did not wake within 60 s of an APPEND into %q", folder)
		}
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		other.Create("Brand new", nil).Wait()
	}()
	if fs, all, err := src.Notify(ctx, time.Minute); err != nil || !all {
		t.Fatalf("Notify after a CREATE = %q, %v, %v; want all", fs, all, err)
	}

	ms := startMem(t)
	mem, err := New(memSinkOptions(t, ms))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if _, _, err := mem.Notify(ctx, time.Second); !errors.Is(err, ErrNoNotify) {
		t.Errorf("Notify on a server without NOTIFY = %v, want ErrNoNotify", err)
	}
}

// TestStatusMailbox: the mailbox of an event's STATUS, in every form
// servers send it.
func TestStatusMailbox(t *testing.T) {
	for _, tc := range []struct {
		rest string
		utf8 bool
		want string
		ok   bool
	}{
		{"Sent (MESSAGES 1)", false, "Sent", true},
		{"inbox (MESSAGES 1)", false, "INBOX", true},
		{`"Projets &AMk-t&AOk-" (MESSAGES 1)`, false, "Projets Été", true},
		{`"a \"b\" \\ c" (UIDNEXT 2)`, false, `a "b" \ c`, true},
		{"{13}\r\nProjets Été (MESSAGES 1 UIDNEXT 2)\r\n", false, "Projets Été", true}, // Dovecot 2.3
		{`"Projets Été" (MESSAGES 1)`, true, "Projets Été", true},
		{`"&-" (MESSAGES 1)`, true, "&-", true}, // UTF8=ACCEPT: no modified UTF-7
		{`"unterminated`, false, "", false},
		{"{99}\r\nshort", false, "", false},
	} {
		got, ok := statusMailbox(tc.rest, tc.utf8)
		if got != tc.want || ok != tc.ok {
			t.Errorf("statusMailbox(%q, %v) = %q, %v; want %q, %v", tc.rest, tc.utf8, got, ok, tc.want, tc.ok)
		}
	}
}
