package imap

import (
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/imap/imaptest"
)

// TestSettle: after an interrupted run, a sink reads no mailbox before
// every mailbox of the target has stopped changing for SinkOptions.Settle:
// while another connection goes on appending (as the server goes on
// storing a killed run's last APPENDs) settle waits, and it returns one
// quiet period after the last append.
func TestSettle(t *testing.T) {
	ms := startMem(t)
	c := ms.dial(t)
	for _, mb := range []string{"Archiv", "Projekte"} {
		if err := c.Create(mb, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	o := memSinkOptions(t, ms)
	tg, err := openTarget(t.Context(), o, MapOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()

	const quiet = 200 * time.Millisecond
	// Quiet from the start: settle takes about quiet.
	start := time.Now()
	if err := tg.settle(t.Context(), quiet); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < quiet {
		t.Errorf("settle on quiet mailboxes returned after %v, want at least %v", took, quiet)
	}

	// Appends into both mailboxes for a while.
	msgs := imaptest.Generate("late", 12)
	done := make(chan time.Time, 1)
	go func() {
		for i, m := range msgs {
			mb := "Projekte"
			if i%3 == 0 {
				mb = "Archiv"
			}
			cmd := c.Append(mb, int64(len(m.Body)), &goimap.AppendOptions{Time: m.Date})
			cmd.Write(m.Body)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				t.Error(err)
			}
			time.Sleep(quiet / 3)
		}
		done <- time.Now()
	}()
	time.Sleep(quiet / 4)
	if err := tg.settle(t.Context(), quiet); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	var last time.Time
	select {
	case last = <-done:
	default:
		t.Fatalf("settle returned while messages were still being appended")
	}
	if gap := returned.Sub(last); gap < quiet/2 {
		t.Errorf("settle returned %v after the last append, want about %v", gap, quiet)
	}
	counts, err := tg.counts()
	if err != nil {
		t.Fatal(err)
	}
	if got := counts["Archiv"][0] + counts["Projekte"][0]; got != uint32(len(msgs)) {
		t.Errorf("counts after settle: %v, want %d messages in all", counts, len(msgs))
	}
}
