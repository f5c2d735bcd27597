package imap

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func TestCursorRoundTrip(t *testing.T) {
	tests := []cursor{
		{},
		{UIDValidity: 1, UIDNext: 2, ModSeq: 3, Messages: 4},
		{UIDValidity: 1<<32 - 1, UIDNext: 1<<32 - 1, ModSeq: 1<<63 - 1, Messages: 1<<32 - 1},
		{UIDValidity: 1, UIDNext: 2, ModSeq: 3, Messages: 4, Labels: true},
	}
	for _, c := range tests {
		b := c.encode()
		got, err := parseCursor(b)
		if err != nil || got != c {
			t.Errorf("parseCursor(encode(%+v)) = %+v, %v", c, got, err)
		}
	}
	bad := [][]byte{nil, {}, {3, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {1, 0, 0, 0}, {1, 0, 0, 0, 0, 0}, {1, 0x80, 0, 0, 0, 0}, {1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0}}
	for _, b := range bad {
		if c, err := parseCursor(b); err == nil {
			t.Errorf("parseCursor(%x) = %+v, want an error", b, c)
		}
	}
}

func FuzzCursor(f *testing.F) {
	f.Add(cursor{UIDValidity: 7, UIDNext: 100, ModSeq: 12345, Messages: 99}.encode())
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add(cursor{UIDValidity: 7, UIDNext: 100, ModSeq: 12345, Messages: 99, Labels: true}.encode())
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCursor(b)
		if err != nil {
			return
		}
		if enc := c.encode(); !bytes.Equal(enc, b) {
			t.Errorf("encode(parseCursor(%x)) = %x", b, enc)
		}
	})
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url      string
		want     Options
		describe string
	}{
		{"imaps://alice@mail.example.org", Options{Host: "mail.example.org", User: "alice", TLS: TLSImplicit}, "imaps://alice@mail.example.org"},
		{"imap://bob@example.org:1143", Options{Host: "example.org", Port: 1143, User: "bob", TLS: TLSStartTLS}, "imap://bob@example.org:1143"},
		{"imaps://alice@example.org@outlook.office365.com:993/", Options{Host: "outlook.office365.com", Port: 993, User: "alice@example.org", TLS: TLSImplicit}, "imaps://alice@example.org@outlook.office365.com"},
		{"IMAPS://a%20b@[::1]:10993", Options{Host: "::1", Port: 10993, User: "a b", TLS: TLSImplicit}, "imaps://a b@[::1]:10993"},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.url)
		if err != nil || got.Host != tt.want.Host || got.Port != tt.want.Port || got.User != tt.want.User || got.TLS != tt.want.TLS {
			t.Errorf("ParseURL(%q) = %+v, %v, want %+v", tt.url, got, err, tt.want)
			continue
		}
		if d := got.describe(); d != tt.describe {
			t.Errorf("ParseURL(%q).describe() = %q, want %q", tt.url, d, tt.describe)
		}
	}
	for _, bad := range []string{"http://a@b", "imaps://host", "imaps://a:secret@host", "imaps://a@host/INBOX", "imaps://a@host:0", "imaps://a@:993"} {
		if o, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) = %+v, want an error", bad, o)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error %q repeats the password", bad, err)
		}
	}
}

func TestThrottleDelay(t *testing.T) {
	tests := []struct {
		text string
		want time.Duration
		ok   bool
	}{
		{"Request is throttled. Suggested Backoff Time: 125 milliseconds", 125 * time.Millisecond, true},
		{"[THROTTLED] request is throttled. suggested backoff time: 3000 Milliseconds.", 3 * time.Second, true},
		{"Suggested Backoff Time: 99999999999 milliseconds", 10 * time.Minute, true},
		{"Authentication failed.", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := throttleDelay(tt.text)
		if got != tt.want || ok != tt.ok {
			t.Errorf("throttleDelay(%q) = %v, %v, want %v, %v", tt.text, got, ok, tt.want, tt.ok)
		}
	}
}

func TestConvertFlags(t *testing.T) {
	in := []goimap.Flag{`\SEEN`, `\Recent`, `\answered`, `$Forwarded`, `Custom`, `\Draft`, `\Deleted`, `\Flagged`, `\Unknown`}
	want := []string{`\Seen`, `\Answered`, `$Forwarded`, `Custom`, `\Draft`, `\Deleted`, `\Flagged`, `\Unknown`}
	if got := convertFlags(in); !slices.Equal(got, want) {
		t.Errorf("convertFlags(%v) = %v, want %v", in, got, want)
	}
	if got := convertFlags(nil); got == nil || len(got) != 0 {
		t.Errorf("convertFlags(nil) = %#v, want an empty non-nil slice", got)
	}
}

func TestWanted(t *testing.T) {
	tests := []struct {
		include, exclude []string
		path             string
		want             bool
	}{
		{nil, nil, "INBOX", true},
		{[]string{"INBOX"}, nil, "INBOX", true},
		{[]string{"INBOX"}, nil, "INBOX/Sub", true},
		{[]string{"INBOX"}, nil, "Sent", false},
		{[]string{"Arch*"}, nil, "Archive/2024", true},
		{nil, []string{"Junk"}, "Junk", false},
		{nil, []string{"Archive"}, "Archive/2024/Q1", false},
		{nil, []string{"Archive/*"}, "Archive", true},
		{[]string{"*"}, []string{"Trash"}, "Trash", false},
		{nil, []string{"Entw?rfe"}, "Entwürfe", false},
	}
	for _, tt := range tests {
		s, err := New(&Options{Host: "h", User: "u", Folders: tt.include, Exclude: tt.exclude})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.wanted(tt.path); got != tt.want {
			t.Errorf("wanted(%q) with include %q, exclude %q = %v, want %v", tt.path, tt.include, tt.exclude, got, tt.want)
		}
	}
	if _, err := New(&Options{Host: "h", User: "u", Exclude: []string{"["}}); err == nil {
		t.Errorf("New with glob %q: no error", "[")
	}
}

func TestFolderOf(t *testing.T) {
	tests := []struct {
		list goimap.ListData
		want string // path, name, delimiter, special use; "" for skipped
	}{
		{goimap.ListData{Mailbox: "INBOX", Delim: '.'}, "INBOX|INBOX|.|"},
		{goimap.ListData{Mailbox: "inbox", Delim: '/'}, "INBOX|INBOX|/|"},
		{goimap.ListData{Mailbox: "INBOX.Sub", Delim: '.'}, "INBOX/Sub|INBOX.Sub|.|"},
		{goimap.ListData{Mailbox: "Archiv.2024.Q1", Delim: '.'}, "Archiv/2024/Q1|Archiv.2024.Q1|.|"},
		{goimap.ListData{Mailbox: "Entwürfe", Delim: '/', Attrs: []goimap.MailboxAttr{`\drafts`}}, `Entwürfe|Entw&APw-rfe|/|\Drafts`},
		{goimap.ListData{Mailbox: "[Gmail]/Sent Mail", Delim: '/', Attrs: []goimap.MailboxAttr{`\HasNoChildren`, `\Sent`}}, `[Gmail]/Sent Mail|[Gmail]/Sent Mail|/|\Sent`},
		{goimap.ListData{Mailbox: "[Gmail]", Delim: '/', Attrs: []goimap.MailboxAttr{`\Noselect`}}, ""},
		{goimap.ListData{Mailbox: "Gone", Delim: '/', Attrs: []goimap.MailboxAttr{`\NonExistent`}}, ""},
		{goimap.ListData{Mailbox: "Flat"}, "Flat|Flat||"},
	}
	for _, tt := range tests {
		f, ok := folderOf(&tt.list)
		got := ""
		if ok {
			got = f.Path + "|" + f.Name + "|" + f.Delimiter + "|" + f.SpecialUse
		}
		if got != tt.want {
			t.Errorf("folderOf(%+v) = %q, want %q", tt.list, got, tt.want)
		}
	}
}

func TestTailConn(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	tc := &tailConn{Conn: client}
	go func() {
		server.Write([]byte(strings.Repeat("x", 1000)))
		server.Write([]byte("* BYE Request is throttled. "))
		server.Write([]byte("Suggested Backoff Time: 42 milliseconds\r\n"))
		server.Close()
	}()
	if _, err := io.Copy(io.Discard, tc); err != nil {
		t.Fatal(err)
	}
	last := tc.last()
	if len(last) != len(tc.buf) || !strings.HasSuffix(last, "x* BYE Request is throttled. Suggested Backoff Time: 42 milliseconds\r\n") {
		t.Errorf("last() = %q", last)
	}
	if d, ok := throttleDelay(last); !ok || d != 42*time.Millisecond {
		t.Errorf("throttleDelay(last()) = %v, %v", d, ok)
	}
}

func TestReadBody(t *testing.T) {
	errRead := errors.New("disk gone")
	tests := []struct {
		name        string
		body        string
		size, limit int64
		want        string
		wantErr     error
	}{
		{"exact", "hello", 5, 10, "hello", nil},
		{"unknown size", "hello", -1, 10, "hello", nil},
		{"shorter than announced", "hel", 5, 10, "hel", nil},
		{"longer than announced", "hello world", 5, 20, "hello world", nil},
		{"longer than the limit", "hello world", 5, 8, "hello wo", nil},
		{"announced over the limit", "hello world", 11, 8, "hello wo", nil},
		{"empty", "", 0, 10, "", nil},
	}
	for _, tt := range tests {
		got, err := readBody(strings.NewReader(tt.body), tt.size, tt.limit)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: readBody(%q, %d, %d) = %q, %v; want %q", tt.name, tt.body, tt.size, tt.limit, got, err, tt.want)
		}
	}
	r := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errRead))
	if _, err := readBody(r, 5, 10); !errors.Is(err, errRead) {
		t.Errorf("readBody(failing reader) error = %v, want %v", err, errRead)
	}
}

// TestConnFailed: go-imap hands its reader's error to the pending command
// as text ("in response: cannot read tag: ... i/o timeout") a moment
// before it marks its client closed. conn.failed must still call that a
// failed connection (TestSourceLiteralCutShort once skipped a folder,
// partial snapshot, for want of it), and must not call the server's NO
// one, nor an error on a client that stays open.
func TestConnFailed(t *testing.T) {
	readerErr := errors.New("in response: cannot read tag: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout")
	for _, tt := range []struct {
		name       string
		err        error
		closeAfter time.Duration // 0: the client stays open
		want       bool
	}{
		{"reader's error, client closed a moment later", readerErr, 50 * time.Millisecond, true},
		{"reader's error, client open", readerErr, 0, false},
		{"server's NO", &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "no"}, 50 * time.Millisecond, false},
		{"socket closed", net.ErrClosed, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			go server.Write([]byte("* OK ready\r\n"))
			c := &conn{c: imapclient.New(client, nil)}
			defer c.close()
			if err := c.c.WaitGreeting(); err != nil {
				t.Fatal(err)
			}
			if tt.closeAfter > 0 {
				time.AfterFunc(tt.closeAfter, c.close)
			}
			if got := c.failed(tt.err); got != tt.want {
				t.Errorf("failed(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
