package graph_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/graph/graphtest"
)

// TestStall: a Graph that stops answering, before a response's headers
// or in the middle of its body, the connection staying open, costs one
// I/O timeout: the request is made again, or, when a message's body was
// already streaming into the repository, the message is named skipped
// (the next run stores it).
func TestStall(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		after   int
		skipped bool
	}{
		{"folder headers", "/mailFolders", -1, false},
		{"folder body", "/mailFolders", 20, false},
		{"delta headers", "/delta", -1, false},
		{"delta body", "/delta", 100, false},
		{"message headers", "/$value", -1, false},
		{"message body", "/$value", 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			mb := f.tenant.AddMailbox("stall@contoso.eu", "Stall")
			for i := range 30 {
				mb.AddMessage("inbox", graphtest.Message{MIME: []byte(fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat("text ", 100)))})
			}
			c := f.client(t, func(o *graph.Options) { o.IOTimeout = 500 * time.Millisecond })
			if err := c.Check(t.Context()); err != nil {
				t.Fatal(err)
			}
			stalled := f.srv.Stall(tt.path, 1, tt.after)
			r := newRepo(t)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			start := time.Now()
			snap, got := backupRestore(t, ctx, r, c.Source(mb.Address))
			elapsed := time.Since(start)
			t.Logf("backup through a stall: %v", elapsed)
			if n := stalled(); n != 1 {
				t.Fatalf("%d requests stalled, want 1", n)
			}
			if elapsed > 15*time.Second {
				t.Errorf("backup took %v, want about one timeout", elapsed)
			}
			if !tt.skipped {
				if snap.Partial {
					t.Errorf("snapshot partial: %+v", snap.Skipped)
				}
				check(t, mb, got)
				return
			}
			if !snap.Partial || len(snap.Skipped) != 1 || !strings.Contains(snap.Skipped[0].Error, "stalled") {
				t.Fatalf("snapshot partial=%v skipped=%+v, want one message skipped, its body stalled", snap.Partial, snap.Skipped)
			}
			snap, got = backupRestore(t, t.Context(), r, c.Source(mb.Address))
			if snap.Partial {
				t.Errorf("second snapshot partial: %+v", snap.Skipped)
			}
			check(t, mb, got)
		})
	}
}
