package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive/mailform"
)

// TestServeSizes: every served message's RFC822.SIZE is the length of its
// BODY[], and BODY[] is the exported message with CRLF line ends, in a
// repository made today (whose entries hold the messages' wire sizes) and
// in the frozen repository of format v1 (whose entries do not: there the
// server measures each message). Today's also gives each folder's STATUS
// SIZE exactly, before any message was read.
func TestServeSizes(t *testing.T) {
	today, _ := interopRepo(t)
	frozenDir := filepath.Join(t.TempDir(), "repo-v1")
	// A copy: the server's lock must not touch testdata.
	if err := os.CopyFS(frozenDir, os.DirFS(filepath.Join("..", "..", "testdata", "repo-v1"))); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "frozen-pw")
	if err := os.WriteFile(pw, []byte("planb-frozen-v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	frozen := []string{"--repo", frozenDir, "--password-file", pw}
	for _, tc := range []struct {
		name      string
		repoFlags []string
		stored    bool
	}{{"today", today, true}, {"frozen v1", frozen, false}} {
		t.Run(tc.name, func(t *testing.T) {
			folders := exportedFolders(t, tc.repoFlags)
			s := startServe(t, tc.repoFlags, "--users", writeUsers(t, login{"alice", "alice-secret", []string{"*"}}))
			c := s.dial(t, "alice", "alice-secret")
			total := 0
			for path, msgs := range folders {
				var want int64
				for _, m := range msgs {
					want += int64(len(mailform.CRLF(m.data)))
				}
				st, err := c.Status(path, &goimap.StatusOptions{Size: true}).Wait()
				if err != nil {
					t.Fatalf("status %s: %v", path, err)
				}
				if tc.stored && (st.Size == nil || *st.Size != want) {
					t.Errorf("%s: STATUS SIZE = %v, want %d", path, st.Size, want)
				}
				if _, err := c.Select(path, &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
					t.Fatalf("select %s: %v", path, err)
				}
				if len(msgs) == 0 {
					continue
				}
				body := &goimap.FetchItemBodySection{Peek: true}
				got, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, RFC822Size: true,
					BodySection: []*goimap.FetchItemBodySection{body}}).Collect()
				if err != nil {
					t.Fatalf("fetch %s: %v", path, err)
				}
				if len(got) != len(msgs) {
					t.Fatalf("%s: %d messages fetched, %d exported", path, len(got), len(msgs))
				}
				for _, g := range got {
					m := msgs[g.UID-1]
					b := g.FindBodySection(body)
					// In CRLF, and each NUL as 0x80: no literal of BODY[]
					// carries NUL.
					if wire := bytes.ReplaceAll(mailform.CRLF(m.data), []byte{0}, []byte{0x80}); string(b) != string(wire) {
						t.Errorf("%s: UID %d: BODY[] is %d bytes, not the exported message's %d in CRLF", path, g.UID, len(b), len(wire))
					}
					if g.RFC822Size != int64(len(b)) {
						t.Errorf("%s: UID %d: RFC822.SIZE %d, BODY[] %d bytes", path, g.UID, g.RFC822Size, len(b))
					}
					total++
				}
			}
			if total == 0 {
				t.Fatal("no message served")
			}
			t.Logf("%d messages in %d folders", total, len(folders))
		})
	}
}
