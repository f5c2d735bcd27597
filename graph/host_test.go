package graph_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/graph/graphtest"
)

// recorder is an HTTPS server on another port than the fake Graph (so
// another host as far as a URL goes) that records every request it gets
// and answers with an empty last delta page.
type recorder struct {
	ts *httptest.Server

	mu   sync.Mutex
	seen []string // "PATH Authorization"
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.ts = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.URL.Path+" "+r.Header.Get("Authorization"))
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"value":[],"@odata.deltaLink":"https://` + r.Host + `/v1.0/x?$deltatoken=1"}`))
	}))
	t.Cleanup(rec.ts.Close)
	return rec
}

func (rec *recorder) host() string { return strings.TrimPrefix(rec.ts.URL, "https://") }

func (rec *recorder) requests() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.seen...)
}

// TestTokenStaysHome: the links a Graph server hands out (@odata.nextLink
// of delta pages, folder lists and user lists, @odata.deltaLink) are
// followed only to the configured Graph endpoint's host: a link to any
// other host (here a second HTTPS server the client would trust) ends the
// run with an error naming it. A delta link stored in a cursor that names
// another host is not followed either: the folder is listed again. That
// host gets no request at all, so never the bearer token.
func TestTokenStaysHome(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.srv.SetPageSizes(1, 2, 2)
	mb := f.tenant.AddMailbox("alice@"+domain, "Alice")
	f.tenant.AddMailbox("bob@"+domain, "Bob")
	for i := range 5 {
		mb.AddMessage("inbox", graphtest.Message{MIME: []byte("Subject: m" + string(rune('a'+i)) + "\r\n\r\nbody\r\n")})
	}
	rec := newRecorder(t)
	pool := f.srv.CertPool()
	pool.AddCert(rec.ts.Certificate())
	c := f.client(t, func(o *graph.Options) {
		o.PageSize = 2
		o.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: f.srv.TLSConfig()}}
		o.HTTPClient.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool
	})
	src := c.Source(mb.Address)
	folders, err := src.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var inbox archive.Folder
	for _, fo := range folders {
		if fo.Path == "INBOX" {
			inbox = fo
		}
	}
	// A first run, with links home, gives a cursor.
	cursor, err := src.Sync(ctx, inbox, nil, &archivetest.Changes{})
	if err != nil {
		t.Fatal(err)
	}
	home := strings.TrimPrefix(f.srv.URL(), "https://")
	if !bytes.Contains(cursor, []byte("https://"+home+"/")) {
		t.Fatalf("cursor %q does not hold a delta link to %s", cursor, home)
	}

	wantRefused := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), rec.host()) || !strings.Contains(err.Error(), "not the Graph endpoint") {
			t.Errorf("%s with links to %s = %v, want an error naming that host as not the Graph endpoint", what, rec.host(), err)
		}
	}
	// The server points its links elsewhere.
	f.srv.SetLinkHost(rec.host())
	_, err = src.Sync(ctx, inbox, nil, &archivetest.Changes{})
	wantRefused("Sync from scratch (nextLink)", err)
	_, err = src.Sync(ctx, inbox, cursor, &archivetest.Changes{})
	wantRefused("Sync from the cursor (nextLink or deltaLink)", err)
	_, err = src.Folders(ctx)
	wantRefused("Folders (nextLink of a folder list)", err)
	_, err = c.Users(ctx)
	wantRefused("Users (nextLink of the user list)", err)
	// A cursor whose stored delta link names another host (as after a
	// change of endpoint) is not followed: the folder is listed again.
	f.srv.SetLinkHost("")
	evil := bytes.Replace(cursor, []byte("https://"+home+"/"), []byte("https://"+rec.host()+"/"), 1)
	changes := &archivetest.Changes{}
	if _, err := src.Sync(ctx, inbox, evil, changes); err != nil || changes.Resets != 1 || len(changes.Puts) != 5 {
		t.Errorf("Sync from a cursor naming another host = %v, %d resets, %d messages; want the folder listed again (1 reset, 5 messages)", err, changes.Resets, len(changes.Puts))
	}
	if got := rec.requests(); len(got) > 0 {
		t.Errorf("the other host got %d requests: %q", len(got), got)
	}
}
