package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
	"codeberg.org/planb/planb/imap/imaptest"
)

// TestServeDamagedPack: a frame of a large message is damaged in its pack.
// planb serve cuts the first client that asks for the message (the
// literal's size, from the snapshot, was already sent) and logs which
// message it is; a client that connects again gets every other message
// of the folder and NO [SERVERBUG] naming the damage for that one, so a
// client that syncs the folder is not stopped at it for good.
func TestServeDamagedPack(t *testing.T) {
	repoDir, repoPW := testRepo(t)
	args := []string{"--repo", repoDir, "--password-file", repoPW}
	maildir := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	noise := make([]byte, 1500<<10)
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(noise)
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	msgs := map[string]string{
		"1700000001.a.test:2,S": "From: a@example.org\nSubject: small one\nMessage-ID: <small-1@example.org>\n\nFirst.\n",
		"1700000002.b.test:2,S": "From: b@example.org\nSubject: large\nMessage-ID: <large@example.org>\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" + strings.Join(lines, "\n") + "\n",
		"1700000003.c.test:2,S": "From: c@example.org\nSubject: small two\nMessage-ID: <small-2@example.org>\n\nSecond.\n",
	}
	for name, m := range msgs {
		if err := os.WriteFile(filepath.Join(maildir, "cur", name), []byte(m), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, stderr := planbCLI(t, append(args, "backup", "maildir", "--path", maildir)...); code != 0 {
		t.Fatalf("planb backup = %d: %s", code, stderr)
	}

	// Damage a frame in the middle of the large message.
	r := openTestRepo(t, repoDir, repoPW)
	snaps, err := r.Snapshots(t.Context())
	if err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots = %d, %v", len(snaps), err)
	}
	var large *repo.Entry
	var others []dedup.ID // the chunks of the other messages
	if err := r.Entries(t.Context(), snaps[0], 0, func(e repo.Entry) error {
		if e.Size > 1<<20 {
			large = &e
		} else {
			others = append(others, e.ChunkIDs()...)
		}
		return nil
	}); err != nil || large == nil {
		t.Fatalf("entries: %v; large message found: %v", err, large != nil)
	}
	if err := r.EnsureIndex(t.Context()); err != nil {
		t.Fatal(err)
	}
	type frame struct{ pack, off uint32 }
	shared := map[frame]bool{}
	for _, c := range others {
		l, _ := r.Index().Lookup(c)
		shared[frame{l.Pack, l.FrameOffset}] = true
	}
	// A frame of the large message's own, past its first.
	var loc dedup.Location
	found := false
	for _, c := range large.ChunkIDs()[1:] {
		l, ok := r.Index().Lookup(c)
		if ok && !shared[frame{l.Pack, l.FrameOffset}] {
			loc, found = l, true
			break
		}
	}
	if !found {
		t.Fatalf("no frame holds only the large message's chunks (%d chunks)", len(large.ChunkIDs()))
	}
	flip(t, r, backend.Handle{Type: backend.PackFile, Name: r.Index().Pack(loc.Pack).String()}, int64(loc.FrameOffset+loc.FrameLength/2))
	r.Close()

	s := startServe(t, args, "--users", writeUsers(t, login{"alice", "alice-secret", []string{"*"}}))
	whole := &goimap.FetchItemBodySection{Peek: true}
	body := &goimap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*goimap.FetchItemBodySection{whole}}
	c := s.dial(t, "alice", "alice-secret")
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	sizes, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil || len(sizes) != 3 {
		t.Fatalf("FETCH 1:* RFC822.SIZE = %d messages, %v", len(sizes), err)
	}
	var largeUID goimap.UID
	for _, m := range sizes {
		if m.RFC822Size > 1<<20 {
			largeUID = m.UID
		}
	}
	c.Close()
	// Over a bare connection: go-imap's client races with itself when
	// a connection is cut inside a literal.
	if cut, answer := imaptest.FetchCut(t, s.addr, "alice", "alice-secret", uint32(largeUID)); !cut {
		t.Fatalf("first FETCH of the damaged message answered ...%q; want the connection cut", tail(answer, 300))
	}

	c = s.dial(t, "alice", "alice-secret")
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, body).Collect()
	var ie *goimap.Error
	if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeServerBug || !strings.Contains(ie.Text, "1 messages could not be read") || !strings.Contains(ie.Text, "damaged in the archive") {
		t.Fatalf("FETCH 1:* again = %v; want NO [SERVERBUG] naming the damage of one message", err)
	}
	wants := map[string]bool{}
	for _, m := range msgs {
		wants[string(mailform.CRLF([]byte(m)))] = true
	}
	for _, m := range got {
		b := m.FindBodySection(whole)
		if m.UID == largeUID || !wants[string(b)] {
			t.Errorf("FETCH 1:* again sent UID %d (%d bytes), want only the two small messages, byte for byte", m.UID, len(b))
		}
		delete(wants, string(b))
	}
	if len(got) != 2 {
		t.Errorf("FETCH 1:* again sent %d messages, want 2", len(got))
	}
	if logs := s.stderr.String(); !strings.Contains(logs, fmt.Sprint(largeUID)) || !strings.Contains(logs, "damaged in the archive") {
		t.Errorf("the server's log does not name the damaged message (UID %d):\n%s", largeUID, logs)
	}

	s.stop()

	// mbsync, against a server that has not met the damage yet: its
	// first run is cut at the damaged message; the next run gets the
	// folder's other messages and ends well.
	t.Run("mbsync", func(t *testing.T) {
		needTool(t, "mbsync")
		s := startServe(t, args, "--users", writeUsers(t, login{"alice", "alice-secret", []string{"*"}}))
		dir := t.TempDir()
		cfg := mbsyncConfig(t, s, "alice", "alice-secret", dir)
		if out, err := exec.Command("mbsync", "-c", cfg, "-a").CombinedOutput(); err == nil {
			t.Errorf("mbsync's first run ended well, want it cut at the damaged message:\n%s", out)
		}
		runMbsync(t, cfg)
		files, err := filepath.Glob(filepath.Join(dir, "INBOX", "*", "*"))
		if err != nil {
			t.Fatal(err)
		}
		small := map[string]bool{}
		for name, m := range msgs {
			if !strings.Contains(name, ".b.") {
				small[m] = true
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if k := string(dropTUID(b)); small[k] {
				delete(small, k)
			} else {
				t.Errorf("mbsync pulled %s (%d bytes), not one of the two small messages", filepath.Base(f), len(b))
			}
		}
		if len(small) != 0 || len(files) != 2 {
			t.Errorf("mbsync pulled %d messages; %d of the two small ones missing", len(files), len(small))
		}
	})
}
