package imap

import (
	"testing"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestUIDValidityReset deletes a folder and creates it again with the same
// messages, as Exchange and Proton Bridge do to their users: a new
// UIDVALIDITY and new UIDs. The next run fetches every body again, but the
// snapshot holds each message once and no message data is stored again.
func TestUIDValidityReset(t *testing.T) {
	ms := startMem(t)
	c := ms.dial(t)
	msgs := imaptest.Generate("uv", 12)
	imaptest.Append(t, c, "Projects", msgs)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("in", 3))
	r := newRepo(t)
	snap1 := runBackup(t, r, ms.source(t, nil))
	before := serverState(t, c)

	if err := c.Delete("Projects").Wait(); err != nil {
		t.Fatalf("DELETE Projects: %v", err)
	}
	imaptest.Append(t, c, "Projects", msgs)

	src := ms.source(t, nil)
	snap2 := runBackup(t, r, src)
	if got := src.Stats().Bodies; got != 12 {
		t.Errorf("run after the reset fetched %d bodies, want the folder's 12", got)
	}
	if snap2.Summary.Messages != 15 || snap2.Summary.NewMessages != 12 {
		t.Errorf("snapshot holds %d messages (%d new), want 15 (12 new)", snap2.Summary.Messages, snap2.Summary.NewMessages)
	}
	// Only the folder's list changes (new source IDs): no data blob.
	pages := 0
	for _, f := range snap2.Folders {
		if f.Path == "Projects" {
			pages = len(f.Pages)
		}
	}
	if snap2.Summary.AddedBlobs > int64(pages) {
		t.Errorf("run after the reset added %d blobs, want at most the folder's %d pages", snap2.Summary.AddedBlobs, pages)
	}
	archivetest.Equal(t, serverState(t, c), restored(t, r, snap2))
	archivetest.Equal(t, before, restored(t, r, snap1))
}
