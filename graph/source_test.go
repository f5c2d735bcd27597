package graph_test

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/graph/graphtest"
)

// TestBackupTenant backs up every mailbox of a three-mailbox tenant and
// restores each snapshot: every message is byte-identical to the MIME the
// fake served, with flags, categories and dates mapped.
func TestBackupTenant(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	total := f.tenant3(t)
	c := f.client(t, nil)
	if err := c.Check(ctx); err != nil {
		t.Fatal(err)
	}
	users, err := c.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, u := range users {
		addrs = append(addrs, u.Mail)
	}
	if want := []string{"alice@contoso.eu", "bob@contoso.eu", "carol@contoso.eu"}; !slices.Equal(addrs, want) {
		t.Fatalf("Users() = %v, want %v", addrs, want)
	}

	r := newRepo(t)
	var restored int
	for _, mb := range f.boxes {
		snap, got := backupRestore(t, ctx, r, c.Source(mb.Address))
		if snap.Partial {
			t.Errorf("%s: partial snapshot: %v", mb.Address, snap.Skipped)
		}
		if want := "graph://" + tenantID + "/" + mb.Address; snap.Source != want {
			t.Errorf("snapshot source = %q, want %q", snap.Source, want)
		}
		check(t, mb, got)
		restored += got.Count()
		st := f.srv.Stats(mb.Address)
		if st.ValueCalls != got.Count() {
			t.Errorf("%s: %d $value calls for %d messages", mb.Address, st.ValueCalls, got.Count())
		}
		if st.MaxConcurrent > graphtest.ConcurrencyLimit || st.OverLimit > 0 {
			t.Errorf("%s: %d requests at once (%d over the limit), want at most 4", mb.Address, st.MaxConcurrent, st.OverLimit)
		}
	}
	if restored != total {
		t.Errorf("restored %d messages, want %d", restored, total)
	}
	if n, without := f.srv.Requests(); without != 0 {
		t.Errorf("%d of %d requests without Prefer: IdType=\"ImmutableId\"", without, n)
	}
}

// TestFolders checks the folder tree: hidden folders, nesting, INBOX and
// the special-use attributes of the well-known folders.
func TestFolders(t *testing.T) {
	f := newFixture(t)
	f.srv.SetPageSizes(0, 3, 0) // folder lists come in several pages
	mb := f.tenant.AddMailbox("dave@contoso.eu", "Dave")
	sub := mb.AddFolder("inbox", "Receipts", false)
	mb.AddFolder(sub, "2026", false)
	mb.AddFolder("", "a/b", false)
	mb.AddFolder("sentitems", "Old sent", true)
	folders, err := f.client(t, nil).Source(mb.Address).Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, fo := range folders {
		got[fo.Path] = fo.SpecialUse
	}
	want := map[string]string{
		"INBOX": "", "INBOX/Receipts": "", "INBOX/Receipts/2026": "",
		"Drafts": archive.Drafts, "Sent Items": archive.Sent, "Sent Items/Old sent": "",
		"Deleted Items": archive.Trash, "Junk Email": archive.Junk, "Archive": archive.Archive,
		"Outbox": "", "Conversation History": "", "Sync Issues": "", "a\u2215b": "",
	}
	for p, use := range want {
		if g, ok := got[p]; !ok || g != use {
			t.Errorf("folder %q: special use %q (present %v), want %q", p, g, ok, use)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Folders() = %v, want %d folders", got, len(want))
	}
	for _, fo := range folders {
		if fo.Path == "a\u2215b" && fo.Name != "a/b" {
			t.Errorf("folder %q: Name = %q, want %q", fo.Path, fo.Name, "a/b")
		}
	}
}

// TestIncremental changes the mailbox between runs: the next run reads
// only the new and changed messages ($value calls), the snapshot matches;
// an unchanged run reads nothing; an expired delta token costs a listing
// but no body and loses nothing.
func TestIncremental(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.srv.SetPageSizes(0, 0, 10)
	mb := f.tenant.AddMailbox("erin@contoso.eu", "Erin")
	sub := mb.AddFolder("inbox", "Sub", false)
	var ids []string
	for i := range 30 {
		folder := "inbox"
		if i%3 == 0 {
			folder = sub
		}
		ids = append(ids, mb.AddMessage(folder, graphtest.Message{
			MIME:     []byte("Subject: m" + string(rune('a'+i%26)) + "\r\n\r\nbody " + strings.Repeat("x", i) + "\r\n"),
			Received: time.Date(2026, 1, 1+i, 10, 0, 0, 0, time.UTC),
		}))
	}
	c := f.client(t, func(o *graph.Options) { o.PageSize = 7 })
	src := c.Source(mb.Address)
	r := newRepo(t)
	_, got := backupRestore(t, ctx, r, src)
	check(t, mb, got)

	// 3 new, 3 changed (flags, categories, read), 2 removed, 1 moved.
	f.srv.ResetStats()
	for i := range 3 {
		mb.AddMessage(sub, graphtest.Message{MIME: []byte("Subject: new " + string(rune('0'+i)) + "\r\n\r\nnew\r\n")})
	}
	mb.UpdateMessage(ids[1], func(m *graphtest.Message) { m.Flagged = true })
	mb.UpdateMessage(ids[2], func(m *graphtest.Message) { m.Categories = []string{"Red category", "Project X"} })
	mb.UpdateMessage(ids[4], func(m *graphtest.Message) { m.IsRead = true })
	mb.RemoveMessage(ids[5])
	mb.RemoveMessage(ids[6])
	mb.MoveMessage(ids[7], "archive")
	snap, got := backupRestore(t, ctx, r, src)
	check(t, mb, got)
	if st := f.srv.Stats(mb.Address); st.ValueCalls != 7 {
		t.Errorf("incremental run: %d $value calls, want 7 (3 new, 3 changed, 1 moved)", st.ValueCalls)
	}
	if snap.Summary.Messages != 31 || snap.Summary.NewMessages != 7 {
		t.Errorf("summary: %d messages (%d new), want 31 (7 new)", snap.Summary.Messages, snap.Summary.NewMessages)
	}

	f.srv.ResetStats()
	backupRestore(t, ctx, r, src)
	if st := f.srv.Stats(mb.Address); st.ValueCalls != 0 {
		t.Errorf("unchanged run: %d $value calls, want 0", st.ValueCalls)
	}

	// Expired delta tokens: the folders are listed again; only the new
	// message is read.
	f.srv.ExpireDeltaTokens()
	f.srv.ResetStats()
	mb.AddMessage("inbox", graphtest.Message{MIME: []byte("Subject: after expiry\r\n\r\nx\r\n")})
	mb.RemoveMessage(ids[8])
	snap, got = backupRestore(t, ctx, r, src)
	check(t, mb, got)
	if st := f.srv.Stats(mb.Address); st.ValueCalls != 1 {
		t.Errorf("run after expiry: %d $value calls, want 1", st.ValueCalls)
	}
	if snap.Partial || snap.Summary.Messages != 31 {
		t.Errorf("run after expiry: %d messages (partial %v), want 31", snap.Summary.Messages, snap.Partial)
	}
}

// TestThrottled answers 30% of requests 429 or 503 with Retry-After: the
// backup still completes, loses nothing and never has more than 4 requests
// in flight for a mailbox. The whole tenant runs with a Retry-After of
// 0.01 s (fast); a small mailbox with the real 1 s.
func TestThrottled(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		small      bool
	}{
		{"429 tenant", http.StatusTooManyRequests, "0.002", false},
		{"503 tenant", http.StatusServiceUnavailable, "0.002", false},
		{"429 1s", http.StatusTooManyRequests, "1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && !tt.small {
				t.Skip("short")
			}
			ctx := t.Context()
			f := newFixture(t)
			f.srv.SetPageSizes(0, 0, 20)
			if tt.small {
				mb := f.tenant.AddMailbox("small@contoso.eu", "Small")
				f.boxes = []*graphtest.Mailbox{mb}
				for i := range 12 {
					mb.AddMessage("inbox", graphtest.Message{MIME: []byte("Subject: " + strings.Repeat("s", i) + "\r\n\r\nz\r\n")})
				}
			} else {
				f.tenant3(t)
			}
			f.srv.SetThrottle(0.3, tt.status, tt.retryAfter)
			// With 30% of requests throttled at random, a request fails
			// all of 1+MaxRetries tries with probability 0.3^(1+MaxRetries):
			// 2e-5 with the default 8, about one message in eight runs of
			// ~6,600 requests. 16 makes it 8e-10.
			c := f.client(t, func(o *graph.Options) { o.PageSize = 25; o.MaxRetries = 16 })
			r := newRepo(t)
			start := time.Now()
			for _, mb := range f.boxes {
				snap, got := backupRestore(t, ctx, r, c.Source(mb.Address))
				if snap.Partial {
					t.Errorf("%s: partial: %v", mb.Address, snap.Skipped)
				}
				check(t, mb, got)
				st := f.srv.Stats(mb.Address)
				if st.Throttled == 0 {
					t.Errorf("%s: no request throttled", mb.Address)
				}
				if st.MaxConcurrent > graphtest.ConcurrencyLimit || st.OverLimit > 0 {
					t.Errorf("%s: %d requests at once (%d over the limit), want at most 4", mb.Address, st.MaxConcurrent, st.OverLimit)
				}
				t.Logf("%s: %d requests, %d throttled, at most %d at once", mb.Address, st.Requests, st.Throttled, st.MaxConcurrent)
			}
			if tt.small && time.Since(start) < time.Second {
				t.Errorf("backup took %v despite Retry-After: 1", time.Since(start))
			}
		})
	}
}

// TestRetryAfter checks that a Retry-After of 1 second is honoured.
func TestRetryAfter(t *testing.T) {
	f := newFixture(t)
	mb := f.tenant.AddMailbox("frank@contoso.eu", "Frank")
	mb.AddMessage("inbox", graphtest.Message{MIME: []byte("Subject: x\r\n\r\ny\r\n")})
	c := f.client(t, nil)
	src := c.Source(mb.Address)
	if err := c.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.srv.SetThrottle(1, http.StatusTooManyRequests, "1")
	f.srv.SetThrottleLimit(1)
	start := time.Now()
	if _, err := src.Folders(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("Folders after a 429 with Retry-After: 1 took %v, want at least 1s", d)
	}
	if st := f.srv.Stats(mb.Address); st.Throttled != 1 {
		t.Errorf("%d throttled answers, want 1", st.Throttled)
	}
}

// TestSkip: a message whose $value keeps failing (503 after every retry,
// or 500) is skipped and named; the rest is backed up, and the next run
// retries it.
func TestSkip(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	mb := f.tenant.AddMailbox("gina@contoso.eu", "Gina")
	var ids []string
	for i := range 6 {
		ids = append(ids, mb.AddMessage("inbox", graphtest.Message{MIME: []byte("Subject: " + string(rune('a'+i)) + "\r\n\r\nz\r\n")}))
	}
	mb.FailValue(ids[1], http.StatusServiceUnavailable)
	mb.FailValue(ids[4], http.StatusInternalServerError)
	c := f.client(t, func(o *graph.Options) { o.MaxRetries = 2 })
	src := c.Source(mb.Address)
	r := newRepo(t)
	snap, got := backupRestore(t, ctx, r, src)
	var skipped []string
	for _, s := range snap.Skipped {
		skipped = append(skipped, s.SourceID)
		if !strings.Contains(s.Error, "message "+s.SourceID+": ") {
			t.Errorf("skip error %q does not name the message", s.Error)
		}
	}
	if want := sorted([]string{ids[1], ids[4]}); !snap.Partial || !slices.Equal(sorted(skipped), want) {
		t.Fatalf("skipped %v (partial %v), want %v", skipped, snap.Partial, want)
	}
	if got.Count() != 4 {
		t.Errorf("restored %d messages, want 4", got.Count())
	}
	if st := f.srv.Stats(mb.Address); st.Throttled != 0 {
		t.Errorf("%d throttled", st.Throttled)
	}
	mb.FailValue(ids[1], 0)
	mb.FailValue(ids[4], 0)
	snap, got = backupRestore(t, ctx, r, src)
	if snap.Partial {
		t.Errorf("second run partial: %v", snap.Skipped)
	}
	check(t, mb, got)
}

// TestThrottledForever: with every request throttled, Sync gives up after
// the retries with ErrThrottled.
func TestThrottledForever(t *testing.T) {
	f := newFixture(t)
	mb := f.tenant.AddMailbox("ivan@contoso.eu", "Ivan")
	c := f.client(t, func(o *graph.Options) { o.MaxRetries = 2 })
	src := c.Source(mb.Address)
	folders, err := src.Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	f.srv.SetThrottle(1, http.StatusTooManyRequests, "0.001")
	_, err = src.Sync(t.Context(), folders[0], nil, &archivetest.Changes{})
	if !errors.Is(err, graph.ErrThrottled) {
		t.Fatalf("Sync with every request throttled = %v, want ErrThrottled", err)
	}
	if st := f.srv.Stats(mb.Address); st.Throttled != 3 {
		t.Errorf("%d throttled answers, want 3 (a try and 2 retries)", st.Throttled)
	}
}

// TestErrors: a wrong secret, an unknown tenant and a mailbox without
// permission each give one clear line.
func TestErrors(t *testing.T) {
	f := newFixture(t)
	mb := f.tenant.AddMailbox("henry@contoso.eu", "Henry")
	mb.Deny(true)
	tests := []struct {
		name string
		mod  func(*graph.Options)
		is   error
		want string
	}{
		{"wrong secret", func(o *graph.Options) { o.ClientSecret = "nope" }, graph.ErrAuth,
			`sign in to tenant "` + tenantID + `" as app ` + clientID + `: AADSTS7000215: Invalid client secret provided.`},
		{"unknown tenant", func(o *graph.Options) { o.Tenant = "fabrikam.onmicrosoft.com" }, graph.ErrAuth,
			`sign in to tenant "fabrikam.onmicrosoft.com" as app ` + clientID + `: AADSTS90002: Tenant 'fabrikam.onmicrosoft.com' not found.`},
		{"unknown app", func(o *graph.Options) { o.ClientID = "00000000-0000-0000-0000-000000000000" }, graph.ErrAuth,
			`AADSTS700016: Application with identifier '00000000-0000-0000-0000-000000000000' was not found`},
		{"no permission", nil, graph.ErrAccessDenied,
			`mailbox henry@contoso.eu: folder inbox: Access is denied. Check credentials and try again (403 ErrorAccessDenied)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.client(t, tt.mod)
			_, err := c.Source(mb.Address).Folders(t.Context())
			if !errors.Is(err, tt.is) {
				t.Fatalf("Folders() = %v, want %v", err, tt.is)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) || len(msg) > 400 {
				t.Errorf("error = %q, want one line containing %q", msg, tt.want)
			}
		})
	}
}

// logTransport records, in order, whether each request was for a delta
// page of the folder whose path holds folder ("delta") or a message body
// ("value").
type logTransport struct {
	base   http.RoundTripper
	folder string
	mu     sync.Mutex
	log    []string
}

func (l *logTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := "other"
	switch {
	case strings.HasSuffix(r.URL.Path, "/delta") && strings.Contains(r.URL.Path, l.folder):
		kind = "delta"
	case strings.HasSuffix(r.URL.Path, "/$value"):
		kind = "value"
	}
	l.mu.Lock()
	l.log = append(l.log, kind)
	l.mu.Unlock()
	return l.base.RoundTrip(r)
}

// TestNextPageAhead checks that the next delta page is asked for while the
// bodies of the page before are still being fetched, and that this extra
// request stays within the mailbox's four requests in flight.
func TestNextPageAhead(t *testing.T) {
	f := newFixture(t)
	f.srv.SetPageSizes(0, 0, 10)
	mb := f.tenant.AddMailbox("frank@contoso.eu", "Frank")
	for i := range 30 {
		mb.AddMessage("inbox", graphtest.Message{
			MIME:     []byte("Subject: m" + strconv.Itoa(i) + "\r\n\r\nbody\r\n"),
			Received: time.Date(2026, 1, 1+i, 10, 0, 0, 0, time.UTC),
		})
	}
	lt := &logTransport{base: f.srv.Client().Transport, folder: "/mailFolders/" + mb.WellKnown("inbox") + "/"}
	c := f.client(t, func(o *graph.Options) { o.PageSize = 10; o.HTTPClient = &http.Client{Transport: lt} })
	_, got := backupRestore(t, t.Context(), newRepo(t), c.Source(mb.Address))
	check(t, mb, got)

	var seq []string
	for _, k := range lt.log {
		if k != "other" {
			seq = append(seq, k)
		}
	}
	pages, values := 0, 0
	for _, k := range seq {
		if k == "delta" {
			pages++
			// Page p+1 is asked for before the last body of page p (10 each).
			if pages > 1 && values >= 10*(pages-1) {
				t.Errorf("delta page %d asked for after %d bodies, want before body %d: %v", pages, values, 10*(pages-1), seq)
			}
			continue
		}
		values++
	}
	if values != 30 {
		t.Errorf("%d $value requests, want 30", values)
	}
	st := f.srv.Stats(mb.Address)
	if st.MaxConcurrent > graphtest.ConcurrencyLimit || st.OverLimit > 0 {
		t.Errorf("%d requests at once (%d over the limit), want at most 4", st.MaxConcurrent, st.OverLimit)
	}
}

// TestRequestBudget backs up a mailbox under a budget of requests per
// window, as Exchange Online allows an app 10,000 requests per mailbox in
// 10 minutes: the budget runs out several times, every wait is the one the
// server names, and with the default retries nothing is lost.
func TestRequestBudget(t *testing.T) {
	f := newFixture(t)
	mb := f.tenant.AddMailbox("judy@contoso.eu", "Judy")
	for i := range 100 {
		mb.AddMessage("inbox", graphtest.Message{
			MIME:     []byte("Subject: budget " + strconv.Itoa(i) + "\r\n\r\n" + strings.Repeat("b", i) + "\r\n"),
			Received: time.Date(2026, 2, 1, 0, i, 0, 0, time.UTC),
		})
	}
	f.srv.SetBudget(30, time.Second)
	c := f.client(t, func(o *graph.Options) { o.PageSize = 40 })
	snap, got := backupRestore(t, t.Context(), newRepo(t), c.Source(mb.Address))
	if snap.Partial {
		t.Errorf("partial: %v", snap.Skipped)
	}
	check(t, mb, got)
	st := f.srv.Stats(mb.Address)
	if st.ValueCalls != 100 {
		t.Errorf("%d $value calls, want 100", st.ValueCalls)
	}
	// About 120 requests against 30 a second: the budget runs out at
	// least three times. Each time, the (at most 4) requests then in
	// flight are answered 429 and wait for the refill the Retry-After
	// names; a client retrying sooner would be refused again and again.
	served := st.Requests - st.Throttled
	refills := (served + 29) / 30
	if st.OverBudget < 3 || st.OverBudget > 4*refills {
		t.Errorf("%d requests over the budget in %d windows, want 3 to %d", st.OverBudget, refills, 4*refills)
	}
	if st.MaxConcurrent > graphtest.ConcurrencyLimit || st.OverLimit > 0 {
		t.Errorf("%d requests at once (%d over the limit), want at most 4", st.MaxConcurrent, st.OverLimit)
	}
}
