package imap

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/imap/imaptest"
)

// padded returns n messages of about size bytes each.
func padded(prefix string, n, size int) []imaptest.Message {
	msgs := imaptest.Generate(prefix, n)
	for i := range msgs {
		line := fmt.Sprintf("%s %d: some text to make the message larger than it is.\r\n", prefix, i)
		msgs[i].Body = append(msgs[i].Body, bytes.Repeat([]byte(line), size/len(line))...)
	}
	return msgs
}

// TestSourceStall: a Dovecot behind a proxy that stops forwarding in the
// middle of a FETCH (the connection staying open) costs one I/O timeout:
// the folder is retried on a new connection and the backup ends complete,
// well within the bound.
func TestSourceStall(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", padded("inbox", 40, 40<<10))
	imaptest.Append(t, c, "Archiv", padded("archiv", 40, 40<<10))
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
