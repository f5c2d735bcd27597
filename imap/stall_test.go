package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestSourceStall: a Dovecot behind a proxy that stops forwarding in the
// middle of a FETCH (the connection staying open) costs one I/O timeout:
// the folder is retried on a new connection and the backup ends complete,
// well within the bound.
func TestSourceStall(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", bigMessages("inbox", 40, 40<<10))
	imaptest.Append(t, c, "Archiv", bigMessages("archiv", 40, 40<<10))
	p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, d.TLSPort))
	stalled := p.StallAfter(imaptest.ToClient, 1<<20)
	var logs bytes.Buffer
	src := dovecotSource(t, d, user, pw, func(o *Options) {
		o.Host, o.Port = p.Host, p.Port
		o.Connections = 2
		o.IOTimeout = 2 * time.Second
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	r := newRepo(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	start := time.Now()
	snap, err := backup.Run(ctx, r, src, &backup.Options{Workers: 2, Host: "test"})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("backup.Run after %v: %v", elapsed, err)
	}
	select {
	case <-stalled:
	default:
		t.Fatal("the proxy never stalled")
	}
	t.Logf("backup through a stall: %v, %d connections\n%s", elapsed, p.Conns(), logs.String())
	if !strings.Contains(logs.String(), "retrying") || !strings.Contains(logs.String(), "i/o timeout") {
		t.Errorf("no folder retried after an I/O timeout; log:\n%s", logs.String())
	}
	if snap.Partial {
		t.Errorf("snapshot partial: %+v", snap.Skipped)
	}
	if elapsed > time.Minute {
		t.Errorf("backup took %v, want well under a minute", elapsed)
	}
	archivetest.Equal(t, serverState(t, c), restored(t, r, snap))
}

// TestSourceLoginDropped: a connection that drops during the login of a
// new connection in the middle of a run (the server restarting, or a
// stall past the dial timeout) is retried like any dropped connection.
func TestSourceLoginDropped(t *testing.T) {
	var (
		mu      sync.Mutex
		logins  int
		selects int
	)
	f := &fakeServer{pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: "IMAP4rev1"}
	f.handle = func(tag, cmd string, c *fakeConn) []string {
		mu.Lock()
		defer mu.Unlock()
		verb, _, _ := strings.Cut(cmd, " ")
		switch strings.ToUpper(verb) {
		case "AUTHENTICATE":
			logins++
			if logins == 2 {
				return []string{"<close>"}
			}
			return []string{tag + " OK in"}
		case "LIST":
			return []string{`* LIST () "/" INBOX`, tag + " OK done"}
		case "EXAMINE":
			selects++
			if selects == 1 {
				return []string{"* BYE going away", "<close>"}
			}
			return []string{"* 0 EXISTS", "* OK [UIDVALIDITY 7] ok", "* OK [UIDNEXT 1] ok", tag + " OK [READ-ONLY] done"}
		}
		return []string{tag + " OK done"}
	}
	o := startFake(t, f)
	o.RetryDelay = 10 * time.Millisecond
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	folders, err := s.Folders(t.Context())
	if err != nil || len(folders) != 1 {
		t.Fatalf("Folders() = %v, %v", folders, err)
	}
	if _, err := s.Sync(t.Context(), folders[0], nil, &archivetest.Changes{}); err != nil {
		t.Fatalf("Sync with a login dropped on the way = %v, want it retried", err)
	}
	if logins != 3 {
		t.Errorf("%d logins, want 3 (one dropped)", logins)
	}
}

// TestRestoreCanceledInStall: a restore whose context ends while an
// APPEND is stalled returns at once, not after the I/O timeout.
func TestRestoreCanceledInStall(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	mb := archivetest.NewMailbox()
	for _, m := range bigMessages("cancel", 200, 8<<10) {
		mb.Add("INBOX", archivetest.Msg{Body: m.Body, InternalDate: m.Date, Flags: m.Flags})
	}
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, d.TLSPort))
	stalled := p.StallAfter(imaptest.ToServer, 512<<10)
	o := targetOptions(d, user, pw)
	o.Host, o.Port = p.Host, p.Port
	o.IOTimeout = time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sink, err := NewSink(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-stalled
		cancel()
	}()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := restore.Run(ctx, r, snap, sink, nil) // closes sink
		done <- err
	}()
	select {
	case err := <-done:
		t.Logf("restore canceled in a stall: %v after %v", err, time.Since(start))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("restore canceled in a stall = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("restore canceled in a stall still runs after 30s")
	}
}

// TestSourceCanceledInLiteral: a sync canceled while a body's literal is
// half read (the server stalled in the middle of it) ends with the
// context's error, at once. (The data race of that path shows only when
// less than go-imap's 4 KiB read buffer is left of the literal:
// TestSourceLiteralCutShort.)
func TestSourceCanceledInLiteral(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", bigMessages("inbox", 8, 256<<10))
	for i := range 3 {
		p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, d.TLSPort))
		stalled := p.StallAfter(imaptest.ToClient, int64(300<<10+i*50<<10))
		src := dovecotSource(t, d, user, pw, func(o *Options) {
			o.Host, o.Port = p.Host, p.Port
			o.Connections = 1
		})
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			select {
			case <-stalled:
				time.Sleep(100 * time.Millisecond)
			case <-time.After(30 * time.Second):
			}
			cancel()
		}()
		folders, err := src.Folders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range folders {
			if f.Path != "INBOX" {
				continue
			}
			_, err := src.Sync(ctx, f, nil, &archivetest.Changes{})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("run %d: Sync canceled in a literal = %v, want context.Canceled", i, err)
			}
		}
		src.Close()
	}
}

// TestSourceLiteralCutShort: a server that stops in the middle of a
// small body's literal (less than go-imap's 4 KiB read buffer left of
// it) costs one I/O timeout, and the folder is fetched again complete.
// Once the literal has failed, go-imap's reader has the connection again;
// draining the FETCH command then read the rest of the literal beside it
// (the data race -race showed in TestWatchSignalDuringBurst): readBatch
// closes the connection instead. Under -race, this test reported that
// race on the code before that change (go-imap's reader read the buffer's
// bounds while the drain, reading less than the buffer's size, reset
// them). A stall point in the middle of a small literal is what it takes:
// the messages here are 3,000 bytes, and four points are tried.
func TestSourceLiteralCutShort(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", bigMessages("short", 60, 3000))
	want := serverState(t, c)
	for i := range 4 {
		p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, d.TLSPort))
		stalled := p.StallAfter(imaptest.ToClient, int64(24<<10+i*5000))
		src := dovecotSource(t, d, user, pw, func(o *Options) {
			o.Host, o.Port = p.Host, p.Port
			o.Connections = 1
			o.IOTimeout = 500 * time.Millisecond
		})
		r := newRepo(t)
		snap, err := backup.Run(t.Context(), r, src, &backup.Options{Workers: 2, Host: "test"})
		if err != nil {
			t.Fatalf("run %d: backup.Run = %v", i, err)
		}
		select {
		case <-stalled:
		default:
			t.Fatalf("run %d: the proxy never stalled", i)
		}
		if snap.Partial {
			t.Errorf("run %d: snapshot partial: %+v", i, snap.Skipped)
		}
		archivetest.Equal(t, want, restored(t, r, snap))
		src.Close()
	}
}
