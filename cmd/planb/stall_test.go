package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/imap"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestRestoreStall: a Dovecot behind a proxy that stops forwarding in the
// middle of an APPEND, one way or the other, the connection staying open:
// the restore notices within its I/O timeout, resumes, and ends with
// every message on the server once.
func TestRestoreStall(t *testing.T) {
	d := imaptest.Shared(t)
	mb := archivetest.NewMailbox()
	for i, m := range imaptest.Generate("stall", 600) {
		body := append(m.Body, bytes.Repeat([]byte("padding to make the message some kilobytes long\r\n"), 160)...)
		mb.Add([]string{"INBOX", "Projekte/Alt"}[i%2], archivetest.Msg{Body: body, InternalDate: m.Date, Flags: m.Flags})
	}
	r, snap := snapshotOf(t, mb)
	// Once the client has sent 1 MB on a connection (an appender, in the
	// middle of a literal), either what it sends next, or the server's
	// answers, are no longer forwarded.
	tests := []struct {
		name  string
		stall imaptest.Direction
	}{
		{"to server", imaptest.ToServer}, // a literal cut short
		{"to client", imaptest.ToClient}, // appended, answers lost
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, pw := d.NewUser(t)
			p := imaptest.StartProxy(t, fmt.Sprintf("%s:%d", d.Host, d.TLSPort))
			stalled := p.StallWhen(0, imaptest.ToServer, 1<<20, tt.stall)
			var stdout, stderr bytes.Buffer
			g := &globalOptions{stdout: &stdout, stderr: &stderr}
			g.setup()
			o := &imap.Options{Host: p.Host, Port: p.Port, User: user, Password: pw, TLS: imap.TLSImplicit, RootCAs: d.RootCAs,
				Connections: 2, IOTimeout: 3 * time.Second}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			err := runRestore(ctx, r, snap, o, &imap.SinkOptions{}, restoreScope{}, "restore", g)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("runRestore after %v: %v\n%s", elapsed, err, stderr.String())
			}
			select {
			case <-stalled:
			default:
				t.Fatal("the proxy never stalled")
			}
			t.Logf("restore through a stall %s: %v, %d connections (bytes to the server %v, to the client %v)\n%s%s",
				tt.name, elapsed, p.Conns(), p.Sent(imaptest.ToServer), p.Sent(imaptest.ToClient), stdout.String(), stderr.String())
			if !strings.Contains(stderr.String(), "resuming") {
				t.Errorf("the restore did not resume; stderr: %q", stderr.String())
			}
			if elapsed > time.Minute {
				t.Errorf("restore took %v, want well under a minute", elapsed)
			}
			o.Host, o.Port = d.Host, d.TLSPort
			checkRestored(t, d, o, r, snap, 600)
		})
	}
}
