package imap

import (
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/imap/imaptest"
)

// memServer is go-imap's in-memory server (no CONDSTORE, no SPECIAL-USE,
// "/" delimiter) with injected faults.
type memServer struct {
	addr string

	mu             sync.Mutex
	throttleLogins int                 // answer this many logins with a throttling NO
	throttleFetch  int                 // answer this many body fetches with a throttling NO
	refuse         map[goimap.UID]bool // NO on a body fetch that includes these UIDs
	logins         int
	bodyFetches    atomic.Int64 // body FETCH commands
}

const throttleText = "Request is throttled. Suggested Backoff Time: 100 milliseconds"

func startMem(t *testing.T) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	mem.AddUser(imapmemserver.NewUser("alice", "secret"))
	ms := &memServer{refuse: make(map[goimap.UID]bool)}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &faultySession{Session: mem.NewSession(), ms: ms}, nil, nil
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
	ms.addr = ln.Addr().String()
	return ms
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

type faultySession struct {
	imapserver.Session
	ms *memServer
}

func (s *faultySession) Login(user, password string) error {
	s.ms.mu.Lock()
	s.ms.logins++
	throttle := s.ms.throttleLogins > 0
	if throttle {
		s.ms.throttleLogins--
	}
	s.ms.mu.Unlock()
	if throttle {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: throttleText}
	}
	return s.Session.Login(user, password)
}

func (s *faultySession) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) error {
	if len(options.BodySection) > 0 {
		s.ms.bodyFetches.Add(1)
		s.ms.mu.Lock()
		throttle := s.ms.throttleFetch > 0
		if throttle {
			s.ms.throttleFetch--
		}
		refused := false
		for uid := range s.ms.refuse {
			switch set := numSet.(type) {
			case goimap.UIDSet:
				refused = refused || set.Contains(uid)
			case goimap.SeqSet:
				// The tests that refuse messages expunge none: a
				// message's sequence number is its UID.
				refused = refused || set.Contains(uint32(uid))
			}
		}
		s.ms.mu.Unlock()
		if throttle {
			return &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: throttleText}
		}
		if refused {
			return &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "message unavailable"}
		}
	}
	return s.Session.Fetch(w, numSet, options)
}

func (ms *memServer) dial(t *testing.T) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(ms.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (ms *memServer) source(t *testing.T, edit func(*Options)) *Source {
	t.Helper()
	return plainSource(t, ms.addr, "alice", "secret", edit)
}

// plainSource returns a Source for the server at addr (host:port) in
// plaintext, closed when the test ends.
func plainSource(t *testing.T, addr, user, password string, edit func(*Options)) *Source {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	o := &Options{Host: host, Port: atoiPort(t, port), User: user, Password: password, TLS: TLSNone, RetryDelay: 20 * time.Millisecond}
	if edit != nil {
		edit(o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func atoiPort(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func uidsOf(msgs []imaptest.Message) []goimap.UID {
	var out []goimap.UID
	for _, m := range msgs {
		out = append(out, m.UID)
	}
	return out
}

// TestMemServerIncremental runs the fallbacks: no CONDSTORE (every run is
// one FETCH FLAGS pass), no SPECIAL-USE (plain LIST).
func TestMemServerIncremental(t *testing.T) {
	ms := startMem(t)
	c := ms.dial(t)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("inbox", 20))
	imaptest.Append(t, c, "Archive", imaptest.Generate("archive", 3))
	imaptest.Append(t, c, "Archive/2024", imaptest.Generate("a2024", 4))
	imaptest.Append(t, c, "Entwürfe", imaptest.Generate("entw", 2))
	r := newRepo(t)

	src := ms.source(t, nil)
	folders, err := src.Folders(t.Context())
	if err != nil {
		t.Fatalf("Folders: %v", err)
	}
	var names []string
	for _, f := range folders {
		names = append(names, f.Path+"="+f.Name+"|"+f.Delimiter)
	}
	want := []string{"Archive=Archive|/", "Archive/2024=Archive/2024|/", "Entwürfe=Entw&APw-rfe|/", "INBOX=INBOX|/"}
	if !slices.Equal(names, want) {
		t.Errorf("Folders() = %q, want %q", names, want)
	}
	snap1 := runBackup(t, r, src)
	state1 := serverState(t, c)
	archivetest.Equal(t, state1, restored(t, r, snap1))
	if got := src.Stats().Bodies; got != 29 {
		t.Errorf("first run fetched %d bodies, want 29", got)
	}

	// Changes: 5 new, flags on 3, 2 expunged.
	imaptest.Append(t, c, "INBOX", imaptest.Generate("new", 5))
	inbox := imaptest.Fetch(t, c, "INBOX")
	imaptest.Store(t, c, "INBOX", uidsOf(inbox[0:3]), goimap.StoreFlagsAdd, goimap.FlagFlagged, "$Important")
	imaptest.Expunge(t, c, "INBOX", uidsOf(inbox[5:7]))

	src2 := ms.source(t, nil)
	before := ms.bodyFetches.Load()
	snap2 := runBackup(t, r, src2)
	if got := src2.Stats().Bodies; got != 5 {
		t.Errorf("second run fetched %d bodies, want 5", got)
	}
	if got := ms.bodyFetches.Load() - before; got != 1 {
		t.Errorf("second run sent %d body FETCH commands, want 1 (one batch)", got)
	}
	archivetest.Equal(t, serverState(t, c), restored(t, r, snap2))
	archivetest.Equal(t, state1, restored(t, r, snap1))

	src3 := ms.source(t, nil)
	snap3 := runBackup(t, r, src3)
	if got := src3.Stats().Bodies; got != 0 || snap3.Summary.NewMessages != 0 {
		t.Errorf("unchanged run fetched %d bodies, %d new messages, want 0, 0", got, snap3.Summary.NewMessages)
	}
}

func TestMemServerRefusedMessage(t *testing.T) {
	ms := startMem(t)
	c := ms.dial(t)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("inbox", 10))
	ms.refuse[4] = true
	r := newRepo(t)
	snap := runBackup(t, r, ms.source(t, nil))
	if !snap.Partial || len(snap.Skipped) != 1 || snap.Skipped[0].SourceID != "4" || snap.Skipped[0].Folder != "INBOX" {
		t.Fatalf("snapshot partial=%v skipped=%+v, want uid 4 of INBOX skipped", snap.Partial, snap.Skipped)
	}
	if !strings.Contains(snap.Skipped[0].Error, "message unavailable") {
		t.Errorf("skip reason %q does not quote the server", snap.Skipped[0].Error)
	}
	if got := restored(t, r, snap).Count(); got != 9 {
		t.Errorf("partial snapshot holds %d messages, want 9", got)
	}
	// The server recovers: the next run completes the folder.
	ms.mu.Lock()
	delete(ms.refuse, 4)
	ms.mu.Unlock()
	snap2 := runBackup(t, r, ms.source(t, nil))
	if snap2.Partial {
		t.Errorf("second snapshot partial: %+v", snap2.Skipped)
	}
	archivetest.Equal(t, serverState(t, c), restored(t, r, snap2))
}

func TestMemServerThrottled(t *testing.T) {
	ms := startMem(t)
	c := ms.dial(t)
	imaptest.Append(t, c, "INBOX", imaptest.Generate("inbox", 10))
	ms.mu.Lock()
	ms.logins = 0
	ms.throttleLogins = 2
	ms.throttleFetch = 1
	ms.mu.Unlock()
	r := newRepo(t)
	start := time.Now()
	// RetryDelay is long: only the server's suggestion can make it quick.
	src := ms.source(t, func(o *Options) { o.RetryDelay = time.Minute; o.Connections = 1 })
	snap := runBackup(t, r, src)
	elapsed := time.Since(start)
	if snap.Partial {
		t.Errorf("snapshot partial: %+v", snap.Skipped)
	}
	if elapsed < 300*time.Millisecond || elapsed > 20*time.Second {
		t.Errorf("throttled backup took %v, want the 3 suggested pauses of 100ms", elapsed)
	}
	if ms.logins != 3 {
		t.Errorf("%d logins, want 3 (two throttled)", ms.logins)
	}
	archivetest.Equal(t, serverState(t, c), restored(t, r, snap))
}

func TestMemServerErrors(t *testing.T) {
	ms := startMem(t)
	_, err := ms.source(t, func(o *Options) { o.Password = "wrong" }).Folders(t.Context())
	if !errors.Is(err, ErrAuth) {
		t.Errorf("Folders with a wrong password = %v, want ErrAuth", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q repeats the password", err)
	}

	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	start := time.Now()
	s, err := New(&Options{Host: "127.0.0.1", Port: addr.Port, User: "alice", Password: "x", TLS: TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Folders(t.Context())
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("Folders on a closed port = %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Folders on a closed port took %v: a first connection must fail fast", d)
	}

	// STARTTLS required but not offered.
	_, err = ms.source(t, func(o *Options) { o.TLS = TLSStartTLS }).Folders(t.Context())
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("Folders with STARTTLS against a server without it = %v, want a STARTTLS error", err)
	}
}

func TestSASL(t *testing.T) {
	mech, ir, err := (&xoauth2Client{user: "alice@example.org", token: "ya29.tok"}).Start()
	if mech != "XOAUTH2" || string(ir) != "user=alice@example.org\x01auth=Bearer ya29.tok\x01\x01" || err != nil {
		t.Errorf("xoauth2 Start() = %q, %q, %v", mech, ir, err)
	}
	// On failure the server sends a JSON challenge; the answer is empty.
	if resp, err := (&xoauth2Client{}).Next([]byte(`{"status":"401"}`)); resp == nil || len(resp) != 0 || err != nil {
		t.Errorf("xoauth2 Next() = %q, %v, want an empty response", resp, err)
	}
	mech, ir, err = (&plainClient{user: "bob", password: "pw"}).Start()
	if mech != "PLAIN" || string(ir) != "\x00bob\x00pw" || err != nil {
		t.Errorf("plain Start() = %q, %q, %v", mech, ir, err)
	}
}
