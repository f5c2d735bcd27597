package imap

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
)

const allMail = "[Gmail]/All Mail"

func gmailSource(t *testing.T, s *gmailServer) *Source {
	t.Helper()
	return plainSource(t, s.addr, "alice@gmail.com", "app-password", nil)
}

// gmailBody is a message whose subject is subject.
func gmailBody(subject string) string {
	return fmt.Sprintf("From: Bob <bob@example.com>\nTo: alice@gmail.com\nSubject: %s\nDate: Sun, 1 Mar 2026 10:00:00 +0000\nMessage-ID: <%s@example.com>\n\nThe %s message.\n", subject, subject, subject)
}

// entriesOf returns the entries of a snapshot's folder by source ID.
func entriesOf(t *testing.T, r *repo.Repository, snap *repo.Snapshot, path string) map[string]repo.Entry {
	t.Helper()
	for i, f := range snap.Folders {
		if f.Path != path {
			continue
		}
		out := map[string]repo.Entry{}
		err := r.Entries(t.Context(), snap, i, func(e repo.Entry) error {
			out[e.SourceID] = e
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatalf("no folder %q in the snapshot", path)
	return nil
}

func folderPaths(snap *repo.Snapshot) []string {
	var out []string
	for _, f := range snap.Folders {
		out = append(out, f.Path)
	}
	return out
}

// subjects returns the sorted subjects of msgs.
func subjects(msgs [][]byte) []string {
	var out []string
	for _, b := range msgs {
		for _, l := range strings.Split(string(b), "\r\n") {
			if s, ok := strings.CutPrefix(l, "Subject: "); ok {
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestGmailLabels backs up a Gmail-shaped account: All Mail is read
// once, with each message's labels from X-GM-LABELS, and the label
// folders are not read at all; a restore with the default layout puts a
// copy in each label's folder and archived mail in Archive. A label added
// on the server reaches the next snapshot through CONDSTORE without the
// message's body being fetched again.
func TestGmailLabels(t *testing.T) {
	s := startGmail(t)
	idA := s.add(allMail, gmailBody("a"), []string{`\Inbox`, `\Important`, "Work"}, []string{`\Seen`})
	idB := s.add(allMail, gmailBody("b"), []string{`\Starred`, "Work/Receipts", "Re&AOc-us"}, []string{`\Seen`, `\Flagged`})
	idC := s.add(allMail, gmailBody("c"), []string{`\Sent`}, []string{`\Seen`})
	idD := s.add(allMail, gmailBody("d"), nil, nil) // archived: in All Mail only
	s.add("[Gmail]/Trash", gmailBody("e"), []string{`\Trash`}, []string{`\Seen`})

	r := newRepo(t)
	snap := runBackup(t, r, gmailSource(t, s))
	if snap.Partial {
		t.Fatalf("snapshot partial: %+v", snap.Skipped)
	}
	if got, want := folderPaths(snap), []string{allMail, "[Gmail]/Spam", "[Gmail]/Trash"}; !slices.Equal(got, want) {
		t.Errorf("snapshot folders = %q, want %q", got, want)
	}
	// Each message stored once: five bodies fetched, five new messages.
	if len(s.bodies) != 5 {
		t.Errorf("bodies fetched of %d messages, want 5", len(s.bodies))
	}
	for id, n := range s.bodies {
		if n != 1 {
			t.Errorf("body of message %d fetched %d times, want 1", id, n)
		}
	}
	if snap.Summary.NewMessages != 5 || snap.Summary.Messages != 5 {
		t.Errorf("snapshot summary: %d messages, %d new, want 5 and 5", snap.Summary.Messages, snap.Summary.NewMessages)
	}
	// Count the message blobs the snapshot names: one per message.
	blobs := map[string]bool{}
	entries := 0
	for i := range snap.Folders {
		err := r.Entries(t.Context(), snap, i, func(e repo.Entry) error {
			entries++
			for _, c := range e.ChunkIDs() {
				blobs[c.String()] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if entries != 5 || len(blobs) != 5 {
		t.Errorf("snapshot names %d entries and %d message blobs, want 5 and 5", entries, len(blobs))
	}
	id := func(n uint64) string { return strconv.FormatUint(n, 10) }
	want := map[string]struct{ labels, flags []string }{
		id(idA): {[]string{"Work", `\Important`, `\Inbox`}, []string{archive.FlagSeen}},
		id(idB): {[]string{"Reçus", "Work/Receipts", `\Starred`}, []string{archive.FlagFlagged, archive.FlagSeen}},
		id(idC): {[]string{`\Sent`}, []string{archive.FlagSeen}},
		id(idD): {nil, nil},
	}
	// Labels are kept sorted (byte order), system labels with their
	// backslash, user labels decoded from modified UTF-7.
	checkEntries := func(snap *repo.Snapshot) {
		t.Helper()
		entries := entriesOf(t, r, snap, allMail)
		if len(entries) != len(want) {
			t.Errorf("All Mail holds %d entries, want %d", len(entries), len(want))
		}
		for sid, w := range want {
			e, ok := entries[sid]
			if !ok {
				t.Errorf("no entry for X-GM-MSGID %s", sid)
				continue
			}
			if !slices.Equal(e.Labels, w.labels) {
				t.Errorf("labels of %s = %q, want %q", sid, e.Labels, w.labels)
			}
			if !slices.Equal(e.Flags, w.flags) {
				t.Errorf("flags of %s = %q, want %q", sid, e.Flags, w.flags)
			}
		}
	}
	checkEntries(snap)

	// Restored with the default layout (--labels copies).
	got := restored(t, r, snap)
	folders, _ := got.Folders(t.Context())
	layout := map[string][]string{}
	for _, f := range folders {
		var bodies [][]byte
		for _, m := range got.Messages(f.Path) {
			bodies = append(bodies, m.Body)
		}
		if len(bodies) > 0 {
			layout[f.Path] = subjects(bodies)
		}
	}
	wantLayout := map[string][]string{
		"INBOX": {"a"}, "Work": {"a"}, "Work/Receipts": {"b"}, "Reçus": {"b"}, "Sent": {"c"},
		"Archive": {"d"}, "[Gmail]/Trash": {"e"},
	}
	if fmt.Sprint(layout) != fmt.Sprint(wantLayout) {
		t.Errorf("restored layout = %v, want %v", layout, wantLayout)
	}

	// A label added on the server, and a new message.
	s.label(idD, "Later")
	idF := s.add(allMail, gmailBody("f"), []string{`\Inbox`}, nil)
	s.commands()
	snap2 := runBackup(t, r, gmailSource(t, s))
	if snap2.Partial {
		t.Fatalf("second snapshot partial: %+v", snap2.Skipped)
	}
	want[id(idD)] = struct{ labels, flags []string }{[]string{"Later"}, nil}
	want[id(idF)] = struct{ labels, flags []string }{[]string{`\Inbox`}, nil}
	checkEntries(snap2)
	if n := s.bodies[idD]; n != 1 {
		t.Errorf("body of the relabelled message fetched %d times, want once (the first backup)", n)
	}
	if n := s.bodies[idF]; n != 1 {
		t.Errorf("body of the new message fetched %d times, want 1", n)
	}
	if snap2.Summary.NewMessages != 1 {
		t.Errorf("second snapshot: %d new messages, want 1", snap2.Summary.NewMessages)
	}
	cmds := s.commands()
	if !slices.ContainsFunc(cmds, func(c string) bool { return strings.Contains(c, "X-GM-LABELS") && strings.Contains(c, "CHANGEDSINCE") }) {
		t.Errorf("no FETCH of labels with CHANGEDSINCE in %q", cmds)
	}

	// Unchanged: no FETCH at all.
	runBackup(t, r, gmailSource(t, s))
	for _, c := range s.commands() {
		if strings.Contains(strings.ToUpper(c), "FETCH") {
			t.Errorf("unchanged account: %q sent", c)
		}
	}
}

// TestGmailLabelsUTF8: on a connection that enabled UTF8=ACCEPT, labels
// come in UTF-8; a server that goes on sending them in modified UTF-7
// there is understood too, since the decoded name is a listed mailbox's.
func TestGmailLabelsUTF8(t *testing.T) {
	for _, utf8Labels := range []bool{true, false} {
		t.Run(fmt.Sprintf("utf8Labels=%v", utf8Labels), func(t *testing.T) {
			s := startGmail(t)
			s.utf8, s.utf8Labels = true, utf8Labels
			s.add(allMail, gmailBody("b"), []string{"Re&AOc-us", "Work", "R&-D"}, nil)
			r := newRepo(t)
			snap := runBackup(t, r, gmailSource(t, s))
			if !slices.ContainsFunc(s.commands(), func(c string) bool { return strings.EqualFold(c, "ENABLE UTF8=ACCEPT") }) {
				t.Fatal("the labels' connection did not enable UTF8=ACCEPT")
			}
			for _, e := range entriesOf(t, r, snap, allMail) {
				if want := []string{"R&D", "Reçus", "Work"}; !slices.Equal(e.Labels, want) {
					t.Errorf("labels = %q, want %q", e.Labels, want)
				}
			}
		})
	}
}

// TestGmailIncrementalCost: after a first backup of 2,000 messages, a
// run that finds one label added reads a few dozen bytes per message
// (their UIDs and X-GM-MSGIDs), not their bodies.
func TestGmailIncrementalCost(t *testing.T) {
	s := startGmail(t)
	filler := strings.Repeat("All work and no play makes Jack a dull boy.\n", 20)
	var first uint64
	for i := range 2000 {
		id := s.add(allMail, gmailBody("m"+strconv.Itoa(i))+filler, []string{`\Inbox`, "Work"}, []string{`\Seen`})
		if i == 0 {
			first = id
		}
	}
	r := newRepo(t)
	s.sent.Store(0)
	runBackup(t, r, gmailSource(t, s))
	full := s.sent.Load()
	s.label(first, "Later")
	s.sent.Store(0)
	snap := runBackup(t, r, gmailSource(t, s))
	incr := s.sent.Load()
	t.Logf("bytes sent by the server: first backup %d, incremental run with one label added %d (%.1f a message)", full, incr, float64(incr)/2000)
	if snap.Summary.NewMessages != 0 {
		t.Errorf("incremental run stored %d new messages, want 0", snap.Summary.NewMessages)
	}
	if incr > 100*2000 {
		t.Errorf("incremental run: the server sent %d bytes, want under 100 a message", incr)
	}
	if e := entriesOf(t, r, snap, allMail)[strconv.FormatUint(first, 10)]; !slices.Equal(e.Labels, []string{"Later", "Work", `\Inbox`}) {
		t.Errorf("labels = %q, want Later added", e.Labels)
	}
}

// TestGmailDownloadLimit: Gmail's download cap ends a first backup with
// an error wrapping ErrDownloadLimit and a checkpoint of what was stored;
// the next run fetches only the rest.
func TestGmailDownloadLimit(t *testing.T) {
	s := startGmail(t)
	var size int64
	for i := range 5 {
		b := gmailBody("m" + strconv.Itoa(i))
		s.add(allMail, b, []string{`\Inbox`}, nil)
		size = int64(len(strings.ReplaceAll(b, "\n", "\r\n")))
	}
	s.budget = 2*size + size/2 // room for two messages
	r := newRepo(t)
	ck, err := backup.Run(t.Context(), r, gmailSource(t, s), &backup.Options{Host: "test"})
	if !errors.Is(err, ErrDownloadLimit) || !errors.Is(err, archive.ErrLimit) {
		t.Fatalf("backup.Run: %v, want ErrDownloadLimit", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "OVERQUOTA") || !strings.Contains(msg, "checkpoint") {
		t.Errorf("error %q: want one line naming the server's answer and the checkpoint", msg)
	}
	if ck == nil || !ck.Checkpoint {
		t.Fatalf("backup.Run returned %+v, want a checkpoint", ck)
	}
	if n := len(entriesOf(t, r, ck, allMail)); n != 2 {
		t.Errorf("checkpoint holds %d messages of All Mail, want the 2 sent", n)
	}

	s.mu.Lock()
	s.budget = -1 // the next day
	s.mu.Unlock()
	snap := runBackup(t, r, gmailSource(t, s))
	if snap.Partial || snap.Checkpoint {
		t.Fatalf("second run: partial %v, checkpoint %v", snap.Partial, snap.Checkpoint)
	}
	if n := len(entriesOf(t, r, snap, allMail)); n != 5 {
		t.Errorf("snapshot holds %d messages of All Mail, want 5", n)
	}
	if snap.Summary.NewMessages != 3 {
		t.Errorf("second run stored %d new messages, want 3", snap.Summary.NewMessages)
	}
	if len(s.bodies) != 5 {
		t.Errorf("bodies of %d messages fetched, want 5", len(s.bodies))
	}
	for id, n := range s.bodies {
		if n != 1 {
			t.Errorf("body of message %d fetched %d times, want 1", id, n)
		}
	}
}

// TestGmailLimitAtLogin: a login refused for the download cap is not
// taken for wrong credentials, and stops the run at once.
func TestGmailLimitAtLogin(t *testing.T) {
	s := startGmail(t)
	s.add(allMail, gmailBody("a"), []string{`\Inbox`}, nil)
	s.loginRefusal = "NO [ALERT] Account exceeded command or bandwidth limits. (Failure)"
	_, err := backup.Run(t.Context(), newRepo(t), gmailSource(t, s), &backup.Options{Host: "test"})
	if !errors.Is(err, ErrDownloadLimit) || errors.Is(err, ErrAuth) {
		t.Fatalf("backup.Run: %v, want ErrDownloadLimit, not ErrAuth", err)
	}
	logins := 0
	for _, c := range s.commands() {
		if strings.HasPrefix(strings.ToUpper(c), "LOGIN") {
			logins++
		}
	}
	if logins != 1 {
		t.Errorf("%d logins, want 1 (no retry against the cap)", logins)
	}
}

// TestGmailThrottled: a [THROTTLED] refusal makes the source wait and
// try again; the backup completes.
func TestGmailThrottled(t *testing.T) {
	s := startGmail(t)
	s.add(allMail, gmailBody("a"), []string{`\Inbox`, "Work"}, nil)
	s.throttle = 1
	r := newRepo(t)
	snap := runBackup(t, r, gmailSource(t, s))
	if snap.Partial {
		t.Fatalf("snapshot partial: %+v", snap.Skipped)
	}
	entries := entriesOf(t, r, snap, allMail)
	if len(entries) != 1 {
		t.Fatalf("All Mail holds %d entries, want 1", len(entries))
	}
	for _, e := range entries {
		if want := []string{"Work", `\Inbox`}; !slices.Equal(e.Labels, want) {
			t.Errorf("labels = %q, want %q", e.Labels, want)
		}
	}
	n := 0
	for _, c := range s.commands() {
		if strings.Contains(c, "X-GM-LABELS") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d FETCH of labels, want 2 (one throttled)", n)
	}
}

func TestOverQuotaThrottled(t *testing.T) {
	tests := []struct {
		code, text      string
		quota, throttle bool
	}{
		{"OVERQUOTA", "Account exceeded command or bandwidth limits. (Failure)", true, false},
		{"", "[OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)", true, false},
		{"", "Account exceeded command or bandwidth limits. (Failure)", true, false},
		{"THROTTLED", "Account exceeded command or bandwidth limits. (Failure)", false, true},
		{"", "[THROTTLED] Account exceeded command or bandwidth limits.", false, true},
		{"THROTTLED", "Request throttled", false, true},
		{"UNAVAILABLE", "try again later", false, true},
		{"", "Invalid credentials (Failure)", false, false},
	}
	for _, tt := range tests {
		if got := overQuota(tt.code, tt.text); got != tt.quota {
			t.Errorf("overQuota(%q, %q) = %v, want %v", tt.code, tt.text, got, tt.quota)
		}
		if _, got := throttled(tt.code, tt.text); got != tt.throttle {
			t.Errorf("throttled(%q, %q) = %v, want %v", tt.code, tt.text, got, tt.throttle)
		}
	}
}

// FuzzGmailLabels: labels sent in X-GM-LABELS, as quoted strings or, for
// those a quoted string cannot hold, as literals, read back as sent,
// along with the items around them.
func FuzzGmailLabels(f *testing.F) {
	f.Add("\\Inbox\x00Work/Receipts\x00Re&AOc-us", uint64(1600000000000000017))
	f.Add("Muy Importante\x00\"quoted\"\x00back\\slash\x00(paren)", uint64(1))
	f.Add("line\r\nbreak\x00", uint64(0))
	f.Fuzz(func(t *testing.T, joined string, msgID uint64) {
		var labels []string
		if joined != "" {
			labels = strings.Split(joined, "\x00")
		}
		var b strings.Builder
		fmt.Fprintf(&b, "* 1 FETCH (UID 7 X-GM-MSGID %d X-GM-LABELS (", msgID)
		budget := maxLabelBytes
		for i, l := range labels {
			budget -= len(l) + 16
			if i > 0 {
				b.WriteByte(' ')
			}
			if strings.ContainsAny(l, "\r\n") {
				fmt.Fprintf(&b, "{%d}\r\n%s", len(l), l)
			} else {
				b.WriteString(`"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(l) + `"`)
			}
		}
		b.WriteString(") FLAGS (\\Seen))\r\nP1 OK done\r\n")
		var got []gmMessage
		err := scriptedFetcher([]byte(b.String())).command("UID FETCH 1:* (UID X-GM-MSGID X-GM-LABELS FLAGS)", func(p *itemParser) error {
			m, err := p.gmMessage()
			got = append(got, m)
			return err
		})
		if budget < 0 {
			if err == nil {
				t.Fatalf("labels of %d bytes read without an error", maxLabelBytes-budget)
			}
			return
		}
		if err != nil {
			t.Fatalf("command: %v in %q", err, b.String())
		}
		if len(got) != 1 {
			t.Fatalf("%d messages, want 1", len(got))
		}
		m := got[0]
		if m.UID != 7 || m.MsgID != msgID || !m.HasMsgID || !m.HasLabels || !slices.Equal(m.Flags, []string{`\Seen`}) {
			t.Errorf("message = %+v, want UID 7, X-GM-MSGID %d, FLAGS (\\Seen)", m, msgID)
		}
		if !slices.Equal(m.Labels, labels) {
			t.Errorf("labels = %q, want %q", m.Labels, labels)
		}
	})
}
