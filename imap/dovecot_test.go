package imap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/imap/imaptest"
)

// loadMaildir appends every message of a Maildir tree below dir into the
// server, folder by folder under prefix (INBOX stays INBOX when prefix is
// empty). Messages the server refuses (empty ones) are counted, not
// loaded. It returns the number of messages loaded.
func loadMaildir(t *testing.T, c *imapclient.Client, dir, prefix string, perFolder int) int {
	t.Helper()
	src, err := mailfile.NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	folders, err := mb.Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	loaded := 0
	for _, f := range folders {
		name := strings.ReplaceAll(f.Path, "/", ".")
		if prefix != "" {
			name = prefix + "." + name
		}
		c.Create(name, nil).Wait()
		for i, m := range mb.Messages(f.Path) {
			if perFolder > 0 && i >= perFolder {
				break
			}
			if len(m.Body) == 0 {
				continue
			}
			err := imaptest.TryAppend(c, name, imaptest.Message{Flags: m.Flags, Date: m.InternalDate, Body: m.Body})
			if err != nil {
				t.Logf("server refused %s message %d: %v", f.Path, i, err)
				continue
			}
			loaded++
		}
	}
	return loaded
}

// TestDovecotBackup: nested, non-ASCII and special-use folders with our
// testdata and (when present) the shared corpus back up byte-identical,
// with flags, keywords and internal dates; an unchanged re-run fetches
// nothing and writes almost nothing.
func TestDovecotBackup(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	root := repoRoot(t)
	n := loadMaildir(t, c, filepath.Join(root, "testdata", "mail", "maildir"), "", 0)
	imaptest.Append(t, c, "Archiv.2024.Q1", imaptest.Generate("q1", 4))
	imaptest.Append(t, c, "Entwürfe.日本語", imaptest.Generate("ja", 3))
	imaptest.Append(t, c, "A&B Ordner", imaptest.Generate("amp", 2))
	imaptest.Append(t, c, "Sent", imaptest.Generate("sent", 3))
	imaptest.Append(t, c, "Drafts", []imaptest.Message{{Body: []byte("Subject: draft\r\n\r\nunfinished\r\n"), Flags: []string{`\Draft`, "$Keyword_with-Chars"}, Date: time.Date(1999, 12, 31, 23, 59, 59, 0, time.FixedZone("", -5*3600))}})
	n += 4 + 3 + 2 + 3 + 1
	corpus := filepath.Join(root, "..", "shared", "corpus")
	if _, err := os.Stat(corpus); err == nil {
		n += loadMaildir(t, c, corpus, "Corpus", 150)
	} else {
		t.Logf("shared corpus absent (%v): testdata only", err)
	}
	t.Logf("loaded %d messages", n)

	src := dovecotSource(t, d, user, pw, nil)
	folders, err := src.Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	special := map[string]string{}
	for _, f := range folders {
		special[f.Path] = f.SpecialUse + " " + f.Name
	}
	for p, want := range map[string]string{
		"Sent": `\Sent Sent`, "Trash": `\Trash Trash`, "Entwürfe/日本語": " Entw&APw-rfe.&ZeVnLIqe-",
		"Archiv/2024/Q1": " Archiv.2024.Q1", "A&B Ordner": " A&-B Ordner", "INBOX": " INBOX",
	} {
		if special[p] != want {
			t.Errorf("folder %q: special use and name %q, want %q", p, special[p], want)
		}
	}
	r := newRepo(t)
	snap := runBackup(t, r, src)
	if snap.Partial {
		t.Errorf("snapshot partial: %+v", snap.Skipped)
	}
	want := serverState(t, c)
	got := restored(t, r, snap)
	if got.Count() != n || want.Count() != n {
		t.Errorf("restored %d messages, server holds %d, loaded %d", got.Count(), want.Count(), n)
	}
	archivetest.Equal(t, want, got)

	src2 := dovecotSource(t, d, user, pw, nil)
	snap2 := runBackup(t, r, src2)
	if b := src2.Stats().Bodies; b != 0 || snap2.Summary.NewMessages != 0 {
		t.Errorf("unchanged re-run fetched %d bodies, %d new messages", b, snap2.Summary.NewMessages)
	}
	if s := snap2.Summary.AddedStored; s > 0 {
		t.Errorf("unchanged re-run stored %d bytes of data, want 0", s)
	}
	archivetest.Equal(t, want, restored(t, r, snap2))
}

// TestDovecotIncremental: after 100 new messages, flag changes on 50 and
// 20 expunged, the next run fetches exactly the 100 new bodies, the new
// snapshot equals the server and the previous one is unchanged.
func TestDovecotIncremental(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("inbox", 300))
	imaptest.Append(t, c, "Projekte.Alt", imaptest.Generate("alt", 100))
	imaptest.Append(t, c, "Sent", imaptest.Generate("sent", 50))
	r := newRepo(t)
	src1 := dovecotSource(t, d, user, pw, nil)
	snap1 := runBackup(t, r, src1)
	state1 := serverState(t, c)
	if b := src1.Stats().Bodies; b != 450 {
		t.Errorf("first run fetched %d bodies, want 450", b)
	}

	imaptest.Append(t, c, "INBOX", imaptest.Generate("new-inbox", 70))
	imaptest.Append(t, c, "Projekte.Alt", imaptest.Generate("new-alt", 30))
	inbox := imaptest.Fetch(t, c, "INBOX")
	alt := imaptest.Fetch(t, c, "Projekte.Alt")
	imaptest.Store(t, c, "INBOX", uidsOf(inbox[10:40]), goimap.StoreFlagsAdd, goimap.FlagAnswered, "$Label7")
	imaptest.Store(t, c, "Projekte.Alt", uidsOf(alt[0:20]), goimap.StoreFlagsSet)
	imaptest.Expunge(t, c, "INBOX", uidsOf(inbox[100:115]))
	imaptest.Expunge(t, c, "Projekte.Alt", uidsOf(alt[50:55]))
	state2 := serverState(t, c)

	src2 := dovecotSource(t, d, user, pw, nil)
	snap2 := runBackup(t, r, src2)
	if b := src2.Stats().Bodies; b != 100 {
		t.Errorf("incremental run fetched %d bodies, want 100", b)
	}
	if got, want := snap2.Summary.Messages, int64(450+100-20); got != want {
		t.Errorf("incremental snapshot has %d messages, want %d", got, want)
	}
	archivetest.Equal(t, state2, restored(t, r, snap2))
	archivetest.Equal(t, state1, restored(t, r, snap1))

	// No change at all: nothing fetched, the cursors do the work.
	src3 := dovecotSource(t, d, user, pw, nil)
	snap3 := runBackup(t, r, src3)
	if b := src3.Stats().Bodies; b != 0 || snap3.Summary.NewMessages != 0 || snap3.Summary.AddedStored != 0 {
		t.Errorf("unchanged run: %d bodies, %d new messages, %d bytes stored", b, snap3.Summary.NewMessages, snap3.Summary.AddedStored)
	}
	archivetest.Equal(t, state2, restored(t, r, snap3))
}

// bigMessages returns n messages of about size bytes each.
func bigMessages(prefix string, n, size int) []imaptest.Message {
	msgs := imaptest.Generate(prefix, n)
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/", 1) + "\r\n"
	for i := range msgs {
		var b strings.Builder
		b.Write(msgs[i].Body)
		for j := 0; b.Len() < size; j++ {
			// Distinct lines, so that dedup cannot hide anything.
			b.WriteString(prefix)
			b.WriteString(strings.Repeat("x", i%17+j%13))
			b.WriteString(line)
		}
		msgs[i].Body = []byte(b.String())
	}
	return msgs
}

// TestDovecotKilled stops the server in the middle of a backup: the run
// fails or is partial; after a restart the next run is complete, with no
// message missing or doubled. A server that comes back while the source
// still retries lets the same run finish.
func TestDovecotKilled(t *testing.T) {
	d := imaptest.Start(t)
	user, pw := d.NewUser(t)
	c := d.Dial(t, user, pw)
	imaptest.Append(t, c, "INBOX", bigMessages("inbox", 300, 10<<10))
	imaptest.Append(t, c, "Other", bigMessages("other", 300, 10<<10))
	want := serverState(t, c)
	c.Close()
	r := newRepo(t)

	// 1. Killed for good: the folders in progress are skipped (or the run
	// fails); nothing is invented.
	src := dovecotSource(t, d, user, pw, func(o *Options) { o.Retries = 2; o.RetryDelay = 100 * time.Millisecond; o.Connections = 2 })
	done := make(chan error, 1)
	var snap1Partial bool
	go func() {
		snap, err := backup.Run(t.Context(), r, src, &backup.Options{Workers: 2, Host: "test", Progress: slow{}})
		if err == nil {
			snap1Partial = snap.Partial
			if !snap.Partial {
				err = errors.New("backup completed although the server was stopped")
			}
		}
		done <- err
	}()
	waitBodies(t, src, 50)
	d.Kill(t)
	err := <-done
	t.Logf("backup with the server stopped: err=%v partial=%v", err, snap1Partial)
	if err != nil && !snap1Partial {
		t.Errorf("backup with the server stopped for good: %v, want a partial snapshot", err)
	}

	// 2. Restarted: the next run is complete.
	d.Restart(t)
	src2 := dovecotSource(t, d, user, pw, nil)
	snap2 := runBackup(t, r, src2)
	if snap2.Partial {
		t.Errorf("snapshot after restart partial: %+v", snap2.Skipped)
	}
	archivetest.Equal(t, want, restored(t, r, snap2))

	// 3. A stop during a run, and a start before the retries run out: the
	// same run completes.
	r3 := newRepo(t)
	src3 := dovecotSource(t, d, user, pw, func(o *Options) { o.Retries = 8; o.RetryDelay = 200 * time.Millisecond })
	go func() {
		snap, err := backup.Run(t.Context(), r3, src3, &backup.Options{Workers: 4, Host: "test", Progress: slow{}})
		if err == nil && snap.Partial {
			err = errors.New("partial snapshot: " + snap.Skipped[0].Error)
		}
		if err == nil {
			archivetest.Equal(t, want, restored(t, r3, snap))
		}
		done <- err
	}()
	waitBodies(t, src3, 50)
	d.Kill(t)
	time.Sleep(300 * time.Millisecond)
	d.Restart(t)
	if err := <-done; err != nil {
		t.Errorf("backup across a server restart: %v", err)
	}
}

// slow makes a backup take a few seconds: 5ms per message stored.
type slow struct{ archive.Progress }

func (slow) Start(archive.Counts) {}
func (slow) Event(archive.Event)  {}
func (slow) Add(c archive.Counts) {
	if c.Messages > 0 {
		time.Sleep(5 * time.Millisecond)
	}
}

func waitBodies(t *testing.T, s *Source, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Bodies < n {
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %d bodies fetched", s.Stats().Bodies)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDovecotErrors: wrong password, untrusted certificate, STARTTLS and
// plaintext.
func TestDovecotErrors(t *testing.T) {
	// Its own server: Dovecot slows down logins from an address that
	// failed one, which would slow the other tests.
	d := imaptest.Start(t)
	user, pw := d.NewUser(t)
	tests := []struct {
		name  string
		edit  func(*Options)
		want  error
		match string
	}{
		{"self-signed", func(o *Options) { o.RootCAs = nil }, ErrCertificate, "certificate"},
		{"skip verify", func(o *Options) { o.RootCAs = nil; o.InsecureSkipVerify = true }, nil, ""},
		{"starttls", func(o *Options) { o.TLS = TLSStartTLS; o.Port = d.Port }, nil, ""},
		{"starttls self-signed", func(o *Options) { o.TLS = TLSStartTLS; o.Port = d.Port; o.RootCAs = nil }, ErrCertificate, "certificate"},
		{"plaintext", func(o *Options) { o.TLS = TLSNone; o.Port = d.Port }, nil, ""},
		// Last: Dovecot slows down the next logins after a failed one.
		{"wrong password", func(o *Options) { o.Password = "nope" }, ErrAuth, "authentication failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dovecotSource(t, d, user, pw, tt.edit).Folders(t.Context())
			if tt.want == nil {
				if err != nil {
					t.Errorf("Folders() = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.match) {
				t.Errorf("Folders() = %v, want %v", err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "nope")) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}
