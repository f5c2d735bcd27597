package imap

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive/archivetest"

	"codeberg.org/planb/planb/imap/imaptest"
)

// TestSourceBodyBeforeUID: a server that sends BODY[] before UID in its
// FETCH answers (RFC 3501 fixes no order) still has every body stored,
// a large one included.
func TestSourceBodyBeforeUID(t *testing.T) {
	ms := startMem(t)
	c := ms.dial(t)
	msgs := imaptest.Generate("order", 10)
	big := bytes.Repeat([]byte("a long line of a large message, which must not be held in memory\r\n"), 100000)
	msgs[4].Body = append([]byte("Subject: large\r\n\r\n"), big...)
	imaptest.Append(t, c, "INBOX", msgs)
	p := startEditProxy(t, ms.memDial, bodyFirst)
	r := newRepo(t)
	src := proxySource(t, p, "alice", "secret", nil)
	snap := runBackup(t, r, src)
	if snap.Partial {
		t.Errorf("snapshot partial: %+v", snap.Skipped)
	}
	if got := src.Stats().Bodies; got != 10 {
		t.Errorf("stored %d bodies, want 10", got)
	}
	archivetest.Equal(t, serverState(t, c), restored(t, r, snap))
}

// TestSourceUnsentMessages: a server that leaves messages out of its
// answer to a body FETCH (and ends it with OK) gets each named: skipped
// when it still holds the message, left out when it was expunged
// meanwhile. Never silently left out.
func TestSourceUnsentMessages(t *testing.T) {
	ms := startMem(t)
	c := ms.dial(t)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("unsent", 10))
	other := ms.dial(t)
	var once sync.Once
	drop := func(resp []byte) []byte {
		_, uid, _, _, ok := bodyFetch(resp)
		switch {
		case !ok:
			return resp
		case uid == "3":
			return nil
		case uid == "4":
			// Expunged while the FETCH runs: the server cannot send it.
			once.Do(func() { imaptest.Expunge(t, other, "INBOX", []goimap.UID{4}) })
			return nil
		}
		return resp
	}
	p := startEditProxy(t, ms.memDial, drop)
	r := newRepo(t)
	snap := runBackup(t, r, proxySource(t, p, "alice", "secret", nil))
	if !snap.Partial || len(snap.Skipped) != 1 || snap.Skipped[0].SourceID != "3" || snap.Skipped[0].Folder != "INBOX" {
		t.Fatalf("snapshot partial=%v skipped=%+v, want uid 3 of INBOX skipped (uid 4 expunged)", snap.Partial, snap.Skipped)
	}
	if got := restored(t, r, snap).Count(); got != 8 {
		t.Errorf("snapshot holds %d messages, want 8", got)
	}
	// The server sends everything again: the next run is complete.
	p.setEdit(nil)
	snap2 := runBackup(t, r, proxySource(t, p, "alice", "secret", nil))
	if snap2.Partial {
		t.Errorf("second snapshot partial: %+v", snap2.Skipped)
	}
	archivetest.Equal(t, serverState(t, c), restored(t, r, snap2))
}

var esearchAllRE = regexp.MustCompile(`^(\* ESEARCH \(TAG "[^"]*"\) UID) ALL [0-9:,]+\r\n$`)

// TestSourceSearchWithoutUIDs: an incremental run whose UID SEARCH answer
// holds no UIDs while the folder has messages fails the folder (it keeps
// its last state, named in the snapshot) instead of storing it empty.
func TestSourceSearchWithoutUIDs(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("search", 10))
	p := startEditProxy(t, dovecotDial(d), nil)
	r := newRepo(t)
	snap1 := runBackup(t, r, proxySource(t, p, user, pw, nil))
	if snap1.Partial {
		t.Fatalf("first snapshot partial: %+v", snap1.Skipped)
	}
	imaptest.Append(t, c, "INBOX", imaptest.Generate("more", 2))
	var edited int
	var mu sync.Mutex
	p.setEdit(func(resp []byte) []byte {
		if m := esearchAllRE.FindSubmatch(resp); m != nil {
			mu.Lock()
			edited++
			mu.Unlock()
			return append(m[1], "\r\n"...)
		}
		return resp
	})
	snap2 := runBackup(t, r, proxySource(t, p, user, pw, nil))
	mu.Lock()
	n := edited
	mu.Unlock()
	if n == 0 {
		t.Fatal("no ESEARCH answer went through the proxy: the run was not incremental")
	}
	if !snap2.Partial || len(snap2.Skipped) != 1 || snap2.Skipped[0].Folder != "INBOX" || snap2.Skipped[0].SourceID != "" ||
		!strings.Contains(snap2.Skipped[0].Error, "search") {
		t.Fatalf("snapshot partial=%v skipped=%+v, want folder INBOX failed by its search", snap2.Partial, snap2.Skipped)
	}
	archivetest.Equal(t, restored(t, r, snap1), restored(t, r, snap2))
}
