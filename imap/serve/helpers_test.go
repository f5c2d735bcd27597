package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// memStore is a Store held in memory: logins with passwords, and the
// mailboxes each reads.
type memStore struct {
	mu    sync.Mutex
	users map[string]*memUser
	opens int // messages opened
}

type memUser struct {
	store    *memStore
	password string
	boxes    []*memMailbox
}

type memMailbox struct {
	store       *memStore
	info        MailboxInfo
	uidValidity uint32
	msgs        []Message
	data        [][]byte
	fail        map[int]failure // message index → how its reads fail
}

// failure makes a message's reader give err once after bytes of it.
type failure struct {
	after int64
	err   error
}

func newMemStore() *memStore { return &memStore{users: map[string]*memUser{}} }

func (s *memStore) addUser(name, password string) *memUser {
	u := &memUser{store: s, password: password}
	s.users[name] = u
	return u
}

// add adds a mailbox of messages (UIDs 1..n, no flags, a fixed date).
func (u *memUser) add(info MailboxInfo, uidValidity uint32, msgs ...string) *memMailbox {
	mb := &memMailbox{store: u.store, info: info, uidValidity: uidValidity}
	for i, m := range msgs {
		mb.msgs = append(mb.msgs, Message{
			UID: uint32(i + 1), Size: int64(len(m)), ID: sha256.Sum256([]byte(m)),
			Date: time.Date(2024, 3, 1+i%28, 8, 0, 0, 0, time.FixedZone("", 3600)),
		})
		mb.data = append(mb.data, []byte(m))
	}
	u.boxes = append(u.boxes, mb)
	return mb
}

// storeWire gives every message its wire size, as a repository's entries
// do, off by lie bytes.
func (s *memStore) storeWire(lie int64) {
	for _, u := range s.users {
		for _, mb := range u.boxes {
			for i := range mb.msgs {
				mb.msgs[i].Wire = int64(len(crlf(string(mb.data[i])))) + lie
			}
		}
	}
}

func (s *memStore) Login(_ context.Context, name, password string) (User, error) {
	u := s.users[name]
	if u == nil || u.password != password {
		return nil, ErrLogin
	}
	return u, nil
}

func (u *memUser) Mailboxes(context.Context) ([]MailboxInfo, error) {
	var out []MailboxInfo
	for _, mb := range u.boxes {
		out = append(out, mb.info)
	}
	return out, nil
}

func (u *memUser) Mailbox(_ context.Context, name string) (Mailbox, error) {
	for _, mb := range u.boxes {
		if mb.info.Name == name {
			return mb, nil
		}
	}
	return nil, ErrNoMailbox
}

func (mb *memMailbox) Info() MailboxInfo   { return mb.info }
func (mb *memMailbox) UIDValidity() uint32 { return mb.uidValidity }
func (mb *memMailbox) Messages() []Message { return mb.msgs }

func (mb *memMailbox) Open(_ context.Context, i int) (io.ReadSeekCloser, error) {
	mb.store.mu.Lock()
	mb.store.opens++
	f, failing := mb.fail[i]
	mb.store.mu.Unlock()
	if failing {
		return &failingReader{r: bytes.NewReader(mb.data[i]), f: f}, nil
	}
	return &halfReader{r: bytes.NewReader(mb.data[i])}, nil
}

// failingReader reads a message until its failure's offset, then gives
// the failure's error.
type failingReader struct {
	r *bytes.Reader
	f failure
}

func (fr *failingReader) Read(p []byte) (int, error) {
	pos := fr.r.Size() - int64(fr.r.Len())
	if pos >= fr.f.after {
		return 0, fr.f.err
	}
	return fr.r.Read(p[:min(int64(len(p)), fr.f.after-pos)])
}

func (fr *failingReader) Seek(off int64, whence int) (int64, error) { return fr.r.Seek(off, whence) }
func (fr *failingReader) Close() error                              { return nil }

// halfReader gives half of what each Read asks for, as a stream does.
type halfReader struct{ r *bytes.Reader }

func (h *halfReader) Read(p []byte) (int, error)                { return iotest.HalfReader(h.r).Read(p) }
func (h *halfReader) Seek(off int64, whence int) (int64, error) { return h.r.Seek(off, whence) }
func (h *halfReader) Close() error                              { return nil }

// startServer serves store on 127.0.0.1 and returns its address.
func startServer(t *testing.T, store Store) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, store, ln)
	return ln.Addr().String()
}

// serveOn serves store on ln until the test ends.
func serveOn(t *testing.T, store Store, ln net.Listener) {
	t.Helper()
	srv := New(store, &Options{InsecureAuth: true, LoginFailDelay: -1})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
}

// login connects to addr and logs in.
func login(t *testing.T, addr, user, password string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("Login(%q) = %v", user, err)
	}
	return c
}

// crlf is what a message looks like on the wire.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// plainAuth is a SASL PLAIN client.
func plainAuth(user, password string) sasl.Client { return sasl.NewPlainClient("", user, password) }
