package imap

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/imap/imaptest"
)

// noKeywordsSession is go-imap's memory server made into a server that
// keeps no keywords but the ones it lists: SELECT announces PERMANENTFLAGS
// without \* (the system flags and allowed only), and an APPEND with any
// other keyword is refused, as a strict server would.
type noKeywordsSession struct {
	imapserver.Session
	allowed []goimap.Flag
}

var systemFlags = []goimap.Flag{goimap.FlagSeen, goimap.FlagAnswered, goimap.FlagFlagged, goimap.FlagDeleted, goimap.FlagDraft}

func (s *noKeywordsSession) Select(name string, options *goimap.SelectOptions) (*goimap.SelectData, error) {
	data, err := s.Session.Select(name, options)
	if err != nil {
		return nil, err
	}
	data.PermanentFlags = append(slices.Clone(systemFlags), s.allowed...)
	return data, nil
}

func (s *noKeywordsSession) Append(mailbox string, r goimap.LiteralReader, options *goimap.AppendOptions) (*goimap.AppendData, error) {
	for _, f := range options.Flags {
		if !strings.HasPrefix(string(f), `\`) && !slices.Contains(s.allowed, f) {
			return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "keyword " + string(f) + " not allowed"}
		}
	}
	return s.Session.Append(mailbox, r, options)
}

// startNoKeywords starts a memory server whose folders keep only the
// allowed keywords; it returns the address and a logged-in client.
func startNoKeywords(t *testing.T, allowed ...goimap.Flag) (*Options, *imapclient.Client) {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser("alice", "secret"))
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &noKeywordsSession{Session: mem.NewSession(), allowed: allowed}, nil, nil
		},
		Caps:         goimap.CapSet{goimap.CapIMAP4rev1: {}},
		InsecureAuth: true,
		Logger:       nopLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	o := &Options{Host: host, Port: atoiPort(t, port), User: "alice", Password: "secret", TLS: TLSNone, RetryDelay: 20 * time.Millisecond, Connections: 2}
	c, err := imapclient.DialInsecure(ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	// The memory server starts without an INBOX.
	if err := c.Create("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return o, c
}

// syncBuffer is a bytes.Buffer for a logger that several goroutines use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// keywordMailbox returns a mailbox whose messages carry system flags and
// the given keywords in turn, in INBOX and Work.
func keywordMailbox(n int, keywords ...string) *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	system := [][]string{{`\Seen`}, {`\Seen`, `\Answered`}, {`\Flagged`}, {`\Draft`}, {}}
	base := time.Date(2024, 2, 29, 23, 59, 58, 0, time.FixedZone("", -5*3600))
	for i := range n {
		fl := slices.Clone(system[i%len(system)])
		if len(keywords) > 0 {
			fl = append(fl, keywords[i%len(keywords)])
		}
		if i%4 == 0 && len(keywords) > 1 {
			fl = append(fl, keywords[(i+1)%len(keywords)])
		}
		body := fmt.Sprintf("From: k%d@example.org\r\nSubject: keywords %d\r\n\r\nflags %v\r\n", i, i, fl)
		mb.Add([]string{"INBOX", "Work"}[i%2], archivetest.Msg{Flags: fl, InternalDate: base.Add(time.Duration(i) * time.Hour), Body: []byte(body)})
	}
	return mb
}

// without returns the messages of mb with the keywords for which keep is
// false removed: what a target that drops them must hold.
func without(t *testing.T, mb *archivetest.Mailbox, keep func(kw string) bool) *archivetest.Mailbox {
	t.Helper()
	want := archivetest.NewMailbox()
	folders, err := mb.Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range folders {
		for _, m := range mb.Messages(f.Path) {
			var fl []string
			for _, x := range m.Flags {
				if strings.HasPrefix(x, `\`) || keep(x) {
					fl = append(fl, x)
				}
			}
			want.Add(f.Path, archivetest.Msg{Flags: fl, InternalDate: m.InternalDate, Body: m.Body})
		}
	}
	return want
}

// restoreKeywords backs mb up and restores the snapshot into the account
// o with a sink that logs into log; it returns the sink's report.
func restoreKeywords(t *testing.T, r *repo.Repository, snap *repo.Snapshot, o *Options, log *syncBuffer) SinkReport {
	t.Helper()
	oo := *o
	oo.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sink, err := NewSink(t.Context(), &oo, &SinkOptions{Pipeline: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Run(t.Context(), r, snap, sink, nil); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return sink.Report()
}

// verifyClean checks that verify finds the target folders of snap hold
// exactly the snapshot's messages.
func verifyClean(t *testing.T, r *repo.Repository, snap *repo.Snapshot, o *Options) {
	t.Helper()
	if diffs := verifyAgainst(t, r, snap, o); len(diffs) != 0 {
		t.Errorf("verify = %+v; want no difference", diffs)
	}
}

// accountState reads INBOX and Work of an account.
func accountState(t *testing.T, c *imapclient.Client, folders map[string]string) *archivetest.Mailbox {
	t.Helper()
	got := archivetest.NewMailbox()
	for path, mailbox := range folders {
		got.AddFolder(archive.Folder{Path: path})
		for _, m := range imaptest.Fetch(t, c, mailbox) {
			got.Add(path, archivetest.Msg{Flags: m.Flags, InternalDate: m.Date, Body: m.Body})
		}
	}
	return got
}

// TestKeywordsNotPermanent restores into folders whose PERMANENTFLAGS
// lack \* (keywords other than $Forwarded would be refused): every message
// is appended exactly once, with its system flags, the $Forwarded keyword
// the folder allows, and its date; the other keywords are dropped with a
// warning, not refused; verify finds nothing missing or altered; a second
// restore appends nothing.
func TestKeywordsNotPermanent(t *testing.T) {
	o, c := startNoKeywords(t, "$Forwarded")
	mb := keywordMailbox(20, "$Label1", "$Forwarded", "todo")
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	var log syncBuffer

	rep := restoreKeywords(t, r, snap, o, &log)
	if rep.Appended != 20 || rep.Present != 0 || len(rep.Refused) != 0 {
		t.Errorf("report = %+v, want 20 appended, none present or refused", rep)
	}
	want := without(t, mb, func(kw string) bool { return kw == "$Forwarded" })
	got := accountState(t, c, map[string]string{"INBOX": "INBOX", "Work": "Work"})
	if diffs := archivetest.Compare(want, got, &archivetest.CompareOptions{DateUnit: time.Second, WireLineEnds: true}); len(diffs) > 0 {
		t.Errorf("the server holds, against the snapshot without its keywords:\n%s", strings.Join(diffs, "\n"))
	}
	logged := log.String()
	if !strings.Contains(logged, `level=WARN msg="the target does not keep keywords: dropping them" folder=`) {
		t.Errorf("log = %q, want a warning that keywords are dropped", logged)
	}
	if strings.Contains(logged, "level=ERROR") || strings.Contains(logged, "refused") {
		t.Errorf("log = %q, want no error and no refusal", logged)
	}
	verifyClean(t, r, snap, o)

	rep = restoreKeywords(t, r, snap, o, &log)
	if rep.Appended != 0 || rep.Present != 20 || len(rep.Refused) != 0 {
		t.Errorf("second restore: report = %+v, want 0 appended, 20 present", rep)
	}
	if n := len(imaptest.Fetch(t, c, "INBOX")) + len(imaptest.Fetch(t, c, "Work")); n != 20 {
		t.Errorf("after a second restore the server holds %d messages, want 20", n)
	}
}

// TestKeywordsDovecotMany: Dovecot's Maildir names only 26 keywords in a
// file name (letters a-z), but it keeps more in its index and announces
// \*: 30 keywords in one folder all arrive.
func TestKeywordsDovecotMany(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	var kws []string
	for i := range 30 {
		kws = append(kws, fmt.Sprintf("kw%02d", i))
	}
	mb := keywordMailbox(40, kws...)
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	o := &Options{Host: d.Host, Port: d.TLSPort, User: user, Password: pw, TLS: TLSImplicit, RootCAs: d.RootCAs, RetryDelay: 50 * time.Millisecond, Connections: 2}
	var log syncBuffer
	rep := restoreKeywords(t, r, snap, o, &log)
	if rep.Appended != 40 || len(rep.Refused) != 0 {
		t.Errorf("report = %+v, want 40 appended, none refused", rep)
	}
	if log.String() != "" {
		t.Errorf("log = %q, want nothing", log.String())
	}
	got := accountState(t, d.Dial(t, user, pw), map[string]string{"INBOX": "INBOX", "Work": "Work"})
	if diffs := archivetest.Compare(mb, got, &archivetest.CompareOptions{DateUnit: time.Second, WireLineEnds: true}); len(diffs) > 0 {
		t.Errorf("the server holds, against the snapshot:\n%s", strings.Join(diffs, "\n"))
	}
	verifyClean(t, r, snap, o)
}

// TestKeywordsDovecotRefused: Dovecot announces \* but refuses a keyword
// longer than mail_max_keyword_length (50): "NO [CANNOT] Keyword length
// too long". The message must still arrive, once, with its system flags,
// its other keywords and its date; the keyword is dropped with a warning.
func TestKeywordsDovecotRefused(t *testing.T) {
	d := imaptest.Shared(t)
	user, pw := d.NewUser(t)
	long := "Category-" + strings.Repeat("x", 60) // a long Outlook category name
	mb := keywordMailbox(6, "$Label1", long)
	r := newRepo(t)
	snap := runBackup(t, r, mb)
	o := &Options{Host: d.Host, Port: d.TLSPort, User: user, Password: pw, TLS: TLSImplicit, RootCAs: d.RootCAs, RetryDelay: 50 * time.Millisecond, Connections: 2}
	var log syncBuffer
	rep := restoreKeywords(t, r, snap, o, &log)
	if rep.Appended != 6 || len(rep.Refused) != 0 {
		t.Errorf("report = %+v, want 6 appended, none refused", rep)
	}
	want := without(t, mb, func(kw string) bool { return kw != long })
	got := accountState(t, d.Dial(t, user, pw), map[string]string{"INBOX": "INBOX", "Work": "Work"})
	if diffs := archivetest.Compare(want, got, &archivetest.CompareOptions{DateUnit: time.Second, WireLineEnds: true}); len(diffs) > 0 {
		t.Errorf("the server holds, against the snapshot without the long keyword:\n%s", strings.Join(diffs, "\n"))
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), long) {
		t.Errorf("log = %q, want a warning naming the dropped keyword", log.String())
	}
	verifyClean(t, r, snap, o)
}
