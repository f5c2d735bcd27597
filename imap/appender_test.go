package imap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

func TestParseTagged(t *testing.T) {
	tests := []struct {
		line         string
		tag          string
		want         answer
		wantErr      bool
		literal      int64
		literalFound bool
	}{
		{line: "P1 OK done\r\n", tag: "P1", want: answer{status: "OK", text: "done"}},
		{line: "P2 ok [APPENDUID 38505 3955:3957] APPEND completed\r\n", tag: "P2", want: answer{status: "OK", code: "APPENDUID", text: "APPEND completed"}},
		{line: "P3 NO [OVERQUOTA] Quota exceeded\r\n", tag: "P3", want: answer{status: "NO", code: "OVERQUOTA", text: "Quota exceeded"}},
		{line: "P4 BAD\r\n", tag: "P4", want: answer{status: "BAD"}},
		{line: "P5 MAYBE x\r\n", wantErr: true},
		{line: "P6\r\n", wantErr: true},
	}
	for _, tt := range tests {
		tag, ans, err := parseTagged(tt.line)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseTagged(%q) = %q, %+v, want an error", tt.line, tag, ans)
			}
			continue
		}
		if err != nil || tag != tt.tag || ans.status != tt.want.status || ans.code != tt.want.code || ans.text != tt.want.text {
			t.Errorf("parseTagged(%q) = %q, %+v, %v; want %q, %+v", tt.line, tag, ans, err, tt.tag, tt.want)
		}
	}
	_, ans, _ := parseTagged("A1 OK [APPENDUID 38505 3955:3957,4000] done\r\n")
	if ans.uidValidity != 38505 || fmt.Sprint(ans.uids) != "[3955 3956 3957 4000]" {
		t.Errorf("APPENDUID: validity %d, uids %v", ans.uidValidity, ans.uids)
	}
	for _, bad := range []string{"A1 OK [APPENDUID 1 x] y", "A1 OK [APPENDUID 1 1:999999] y", "A1 OK [APPENDUID x 1] y", "A1 OK [APPENDUID 1 0] y"} {
		if _, ans, _ := parseTagged(bad); ans.uids != nil {
			t.Errorf("parseTagged(%q): uids %v, want none", bad, ans.uids)
		}
	}
	lits := []struct {
		line string
		n    int64
		ok   bool
	}{
		{"* 1 FETCH (BODY[] {12}\r\n", 12, true},
		{"* OK {x}\r\n", 0, false},
		{"* OK fine\r\n", 0, false},
		{"* LIST () \"/\" {5+}\r\n", 5, true},
	}
	for _, l := range lits {
		if n, ok := literalAtEnd(l.line); n != l.n || ok != l.ok {
			t.Errorf("literalAtEnd(%q) = %d, %v; want %d, %v", l.line, n, ok, l.n, l.ok)
		}
	}
}

func TestQuotedAndFlags(t *testing.T) {
	quotes := []struct {
		in, out string
		ok      bool
	}{
		{"INBOX", `"INBOX"`, true},
		{`a"b\c`, `"a\"b\\c"`, true},
		{"Entw&APw-rfe", `"Entw&APw-rfe"`, true},
		{"a\r\nb", "", false},
		{"caf\xc3\xa9", "", false},
	}
	for _, q := range quotes {
		if out, ok := quoted(q.in); out != q.out || ok != q.ok {
			t.Errorf("quoted(%q) = %q, %v; want %q, %v", q.in, out, ok, q.out, q.ok)
		}
	}
	flags := map[string]bool{
		`\Seen`: true, "$Forwarded": true, "Junk_2": true, `\`: false, "": false,
		"two words": false, "a(b": false, `x"y`: false, "a]": false, "caf\xc3\xa9": false, `\\Seen`: false,
	}
	for f, want := range flags {
		if got := validFlag(f); got != want {
			t.Errorf("validFlag(%q) = %v, want %v", f, got, want)
		}
	}
}

// fakeServer is a scripted IMAP server for one connection at a time: it
// reads commands (with their literals) and answers through handle.
type fakeServer struct {
	ln net.Listener
	// refuse, when set, refuses a synchronizing literal announced at the
	// end of what the command has sent so far.
	refuse func(soFar string) bool
	caps   string // after login
	pre    string // before login
	// handle answers one command (its line with the literals' contents
	// inline); it returns the lines to send.
	handle func(tag, cmd string, c *fakeConn) []string

	mu       sync.Mutex
	commands []string
}

type fakeConn struct {
	r *bufio.Reader
	w io.Writer
}

func startFake(t *testing.T, f *fakeServer) *Options {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	host, port, _ := strings.Cut(ln.Addr().String(), ":")
	return &Options{Host: host, Port: atoiPort(t, port), User: "alice", Password: "pw", TLS: TLSNone}
}

// readCommand reads one command with its literals inline, answering a
// synchronizing literal's announcement with a continuation request
// (unless refuse, when set, refuses it: the command then ends there).
func readCommand(r *bufio.Reader, w io.Writer, refuse func(line string) bool) (string, error) {
	var b strings.Builder
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		b.WriteString(l)
		n, ok := literalAtEnd(l)
		if !ok {
			return b.String(), nil
		}
		if !strings.HasSuffix(strings.TrimRight(l, "\r\n"), "+}") {
			if refuse != nil && refuse(b.String()) {
				return b.String(), nil
			}
			io.WriteString(w, "+ ready\r\n")
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(r, lit); err != nil {
			return "", err
		}
		b.Write(lit)
	}
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	fc := &fakeConn{r: bufio.NewReader(c), w: c}
	io.WriteString(c, "* OK fake ready\r\n")
	loggedIn := false
	for {
		cmd, err := readCommand(fc.r, c, f.refuse)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.commands = append(f.commands, cmd)
		f.mu.Unlock()
		tag, rest, _ := strings.Cut(strings.TrimRight(cmd, "\r\n"), " ")
		verb, _, _ := strings.Cut(rest, " ")
		var out []string
		switch strings.ToUpper(verb) {
		case "CAPABILITY":
			caps := f.pre
			if loggedIn {
				caps = f.caps
			}
			out = []string{"* CAPABILITY " + caps, tag + " OK done"}
		case "LOGOUT":
			out = []string{"* BYE bye", tag + " OK done"}
		default:
			out = f.handle(tag, rest, fc)
			if strings.HasPrefix(strings.ToUpper(verb), "LOGIN") || strings.HasPrefix(strings.ToUpper(verb), "AUTHENTICATE") {
				loggedIn = len(out) > 0 && strings.HasPrefix(out[len(out)-1], tag+" OK")
			}
		}
		for _, l := range out {
			if l == "<close>" {
				return
			}
			io.WriteString(c, l+"\r\n")
		}
	}
}

func (f *fakeServer) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

// TestAppenderLogin: LOGIN with quoted strings or literals, AUTHENTICATE
// PLAIN with and without SASL-IR, XOAUTH2 with its JSON error challenge,
// refusals (ErrAuth), and a server without MULTIAPPEND.
func TestAppenderLogin(t *testing.T) {
	const full = "IMAP4rev1 LITERAL+ MULTIAPPEND"
	tests := []struct {
		name     string
		pre      string
		caps     string
		token    string
		password string
		handle   func(tag, cmd string, c *fakeConn) []string
		want     []string // commands the server receives, after the first CAPABILITY
		wantErr  error
	}{
		{
			name: "login", pre: "IMAP4rev1", caps: full, password: `p"w\`,
			handle: func(tag, cmd string, c *fakeConn) []string { return []string{tag + " OK logged in"} },
			want:   []string{`P2 LOGIN "alice" "p\"w\\"`, "P3 CAPABILITY"},
		},
		{
			name: "plain with SASL-IR", pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: full, password: "pw",
			handle: func(tag, cmd string, c *fakeConn) []string { return []string{tag + " OK logged in"} },
			want:   []string{"P2 AUTHENTICATE PLAIN AGFsaWNlAHB3", "P3 CAPABILITY"},
		},
		{
			name: "plain with a continuation", pre: "IMAP4rev1 AUTH=PLAIN", caps: full, password: "pw",
			handle: func(tag, cmd string, c *fakeConn) []string {
				io.WriteString(c.w, "+ \r\n")
				l, _ := c.r.ReadString('\n')
				if l != "AGFsaWNlAHB3\r\n" {
					return []string{tag + " BAD wrong response " + strconv.Quote(l)}
				}
				return []string{tag + " OK logged in"}
			},
			want: []string{"P2 AUTHENTICATE PLAIN", "P3 CAPABILITY"},
		},
		{
			name: "xoauth2 refused", pre: "IMAP4rev1 AUTH=XOAUTH2 SASL-IR", caps: full, token: "tok",
			handle: func(tag, cmd string, c *fakeConn) []string {
				io.WriteString(c.w, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
				if l, _ := c.r.ReadString('\n'); l != "\r\n" {
					return []string{tag + " BAD want an empty response"}
				}
				return []string{tag + " NO [AUTHENTICATIONFAILED] invalid token"}
			},
			want:    []string{"P2 AUTHENTICATE XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sBAQ=="},
			wantErr: ErrAuth,
		},
		{
			name: "wrong password", pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: full, password: "pw",
			handle: func(tag, cmd string, c *fakeConn) []string { return []string{tag + " NO [AUTHENTICATIONFAILED] no"} },
			want:   []string{"P2 AUTHENTICATE PLAIN AGFsaWNlAHB3"}, wantErr: ErrAuth,
		},
		{
			name: "no MULTIAPPEND", pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: "IMAP4rev1 LITERAL+", password: "pw",
			handle: func(tag, cmd string, c *fakeConn) []string { return []string{tag + " OK logged in"} },
			want:   []string{"P2 AUTHENTICATE PLAIN AGFsaWNlAHB3", "P3 CAPABILITY"},
		},
		{
			name: "password in a synchronizing literal", pre: "IMAP4rev1", caps: full, password: "p\xc3\xa4ss",
			handle: func(tag, cmd string, c *fakeConn) []string { return []string{tag + " OK logged in"} },
			want:   []string{"P2 LOGIN \"alice\" {5}\r\np\xc3\xa4ss", "P3 CAPABILITY"},
		},
		{
			name: "password in a non-synchronizing literal", pre: "IMAP4rev1 LITERAL+", caps: full, password: "p\xc3\xa4ss",
			handle: func(tag, cmd string, c *fakeConn) []string { return []string{tag + " OK logged in"} },
			want:   []string{"P2 LOGIN \"alice\" {5+}\r\np\xc3\xa4ss", "P3 CAPABILITY"},
		},
	}
	for _, tt := range tests {
		f := &fakeServer{pre: tt.pre, caps: tt.caps, handle: tt.handle}
		o := startFake(t, f)
		o.Password = tt.password
		if tt.token != "" {
			o.Token = func(context.Context) (string, error) { return tt.token, nil }
		}
		a, err := dialAppender(t.Context(), o)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: dialAppender = %v, want %v", tt.name, err, tt.wantErr)
			}
		} else if err != nil {
			t.Errorf("%s: dialAppender = %v", tt.name, err)
		} else {
			a.logout()
		}
		time.Sleep(20 * time.Millisecond) // let the server log LOGOUT
		got := f.log()
		if len(got) == 0 || strings.TrimRight(got[0], "\r\n") != "P1 CAPABILITY" {
			t.Errorf("%s: first command %q, want P1 CAPABILITY", tt.name, got)
			continue
		}
		got = got[1:]
		for i := range got {
			got[i] = strings.TrimRight(got[i], "\r\n")
		}
		if tt.wantErr == nil && len(got) > 0 && strings.HasSuffix(got[len(got)-1], "LOGOUT") {
			got = got[:len(got)-1]
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%s: server received %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestAppenderBatches: the exact bytes of a MULTIAPPEND with flags, a
// date and non-synchronizing literals; a body shorter or longer than its
// size is reported as the body's error.
func TestAppenderBatches(t *testing.T) {
	var appends []string
	f := &fakeServer{pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: "IMAP4rev1 LITERAL+ MULTIAPPEND"}
	f.handle = func(tag, cmd string, c *fakeConn) []string {
		switch {
		case strings.HasPrefix(cmd, "AUTHENTICATE"):
			return []string{tag + " OK in"}
		case strings.HasPrefix(cmd, "APPEND"):
			appends = append(appends, cmd)
			if strings.Contains(cmd, "{0+}") {
				return []string{tag + " NO [LIMIT] Empty message"}
			}
			return []string{tag + " OK [APPENDUID 1 1] done"}
		}
		return []string{tag + " BAD unknown"}
	}
	o := startFake(t, f)
	a, err := dialAppender(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	date := time.Date(2024, 3, 5, 7, 8, 9, 0, time.FixedZone("", -5*3600))
	tag, bodyErr, err := a.send("Entwürfe/2024", []appendMsg{
		{flags: []goimap.Flag{`\Seen`, "$Kw"}, date: date, size: 5, body: strings.NewReader("a\nb\r\n")},
		{size: 3, body: strings.NewReader("xyz")},
	})
	if err != nil || bodyErr {
		t.Fatalf("send = %v, %v", bodyErr, err)
	}
	if ans, err := a.wait(tag); err != nil || ans.status != "OK" || ans.code != "APPENDUID" {
		t.Fatalf("wait(%s) = %+v, %v", tag, ans, err)
	}
	want := "APPEND \"Entw&APw-rfe/2024\" (\\Seen $Kw) \" 5-Mar-2024 07:08:09 -0500\" {5+}\r\na\nb\r\n {3+}\r\nxyz"
	if len(appends) != 1 || appends[0] != want {
		t.Errorf("server received %q, want %q", appends, want)
	}
	// A body shorter or longer than its size is an error of the body.
	for _, m := range []appendMsg{{size: 4, body: strings.NewReader("abc")}, {size: 2, body: strings.NewReader("abc")}} {
		a2, err := dialAppender(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if _, bodyErr, err := a2.send("INBOX", []appendMsg{m}); !bodyErr || err == nil {
			t.Errorf("send of %d bytes announced as %d = %v, %v; want a body error", 3, m.size, bodyErr, err)
		}
		a2.abort()
	}
	a.logout()
}

// TestAppenderStall: a server that stops answering ends the connection
// after appenderTimeout; an appender with nothing outstanding may stay
// idle longer than that.
func TestAppenderStall(t *testing.T) {
	defer func(d time.Duration) { appenderTimeout = d }(appenderTimeout)
	appenderTimeout = 200 * time.Millisecond
	f := &fakeServer{pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: "IMAP4rev1 LITERAL+ MULTIAPPEND"}
	f.handle = func(tag, cmd string, c *fakeConn) []string {
		switch {
		case strings.HasPrefix(cmd, "AUTHENTICATE"):
			return []string{tag + " OK in"}
		case strings.Contains(cmd, "stall"):
			return nil
		}
		return []string{tag + " OK done"}
	}
	o := startFake(t, f)
	a, err := dialAppender(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.logout()
	msg := func(body string) []appendMsg {
		return []appendMsg{{size: int64(len(body)), body: strings.NewReader(body)}}
	}
	tag, _, err := a.send("INBOX", msg("first"))
	if err != nil {
		t.Fatal(err)
	}
	if ans, err := a.wait(tag); err != nil || ans.status != "OK" {
		t.Fatalf("wait(first) = %+v, %v", ans, err)
	}
	time.Sleep(3 * appenderTimeout)
	tag, _, err = a.send("INBOX", msg("after a pause"))
	if err != nil {
		t.Fatal(err)
	}
	if ans, err := a.wait(tag); err != nil || ans.status != "OK" {
		t.Fatalf("wait(after a pause) = %+v, %v; want OK", ans, err)
	}
	tag, _, err = a.send("INBOX", msg("stall"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ans, err := a.wait(tag)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("wait(stall) = %+v, %v; want a timeout", ans, err)
	}
	if d := time.Since(start); d > 10*appenderTimeout {
		t.Errorf("wait(stall) took %v, want about %v", d, appenderTimeout)
	}
}

// TestAppenderDialects: against a server without LITERAL+, the appender
// waits for each continuation request; it converts line ends to CRLF on
// the way, sends a message with NUL bytes as a literal8 (BINARY) and one
// with UTF-8 header bytes with the UTF8 data extension (after ENABLE
// UTF8=ACCEPT); a literal the server refuses ends that command only; and
// the APPENDLIMIT is read.
func TestAppenderDialects(t *testing.T) {
	var appends []string
	f := &fakeServer{pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: "IMAP4rev1 BINARY UTF8=ACCEPT APPENDLIMIT=1000 UIDPLUS"}
	f.refuse = func(soFar string) bool { return strings.Contains(soFar, "{999}") }
	f.handle = func(tag, cmd string, c *fakeConn) []string {
		switch {
		case strings.HasPrefix(cmd, "AUTHENTICATE"):
			return []string{tag + " OK in"}
		case strings.HasPrefix(cmd, "ENABLE UTF8=ACCEPT"):
			return []string{"* ENABLED UTF8=ACCEPT", tag + " OK enabled"}
		case strings.HasPrefix(cmd, "APPEND"):
			appends = append(appends, cmd)
			if strings.Contains(cmd, "{999}") {
				return []string{tag + " NO [TOOBIG] no thanks"}
			}
			return []string{tag + " OK [APPENDUID 7 42] done"}
		}
		return []string{tag + " BAD unknown"}
	}
	o := startFake(t, f)
	a, err := dialAppender(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.logout()
	if a.multi || a.literalPlus || !a.binary || !a.utf8 || a.appendLimit != 1000 {
		t.Errorf("caps: multi %v literal+ %v binary %v utf8 %v limit %d", a.multi, a.literalPlus, a.binary, a.utf8, a.appendLimit)
	}
	for _, tc := range []struct {
		m    appendMsg
		want string
		ok   bool
	}{
		{appendMsg{size: 9, body: strings.NewReader("a\nb\rc\r\n"), crlf: true}, "APPEND \"INBOX\" {9}\r\na\r\nb\r\nc\r\n", true},
		{appendMsg{size: 5, body: strings.NewReader("x\x00y\n"), crlf: true, binary: true}, "APPEND \"INBOX\" ~{5}\r\nx\x00y\r\n", true},
		{appendMsg{size: 999, body: strings.NewReader("never sent")}, "APPEND \"INBOX\" {999}\r\n", false},
		{appendMsg{size: 16, body: strings.NewReader("Subject: caf\xc3\xa9\r\n"), utf8: true}, "APPEND \"INBOX\" UTF8 (~{16}\r\nSubject: caf\xc3\xa9\r\n)", true},
	} {
		tag, bodyErr, err := a.send("INBOX", []appendMsg{tc.m})
		if err != nil || bodyErr {
			t.Fatalf("send(%q) = %v, %v", tc.want, bodyErr, err)
		}
		ans, err := a.wait(tag)
		if err != nil {
			t.Fatal(err)
		}
		if (ans.status == "OK") != tc.ok {
			t.Errorf("send(%q): answer %+v, want ok %v", tc.want, ans, tc.ok)
		}
		if tc.ok && (ans.uidValidity != 7 || len(ans.uids) != 1 || ans.uids[0] != 42) {
			t.Errorf("send(%q): APPENDUID %d %v", tc.want, ans.uidValidity, ans.uids)
		}
		got := appends[len(appends)-1]
		if got != strings.TrimSuffix(tc.want, "\r\n")+"\r\n" && got+"\r\n" != tc.want && got != tc.want {
			t.Errorf("server received %q, want %q", got, tc.want)
		}
	}
	// A body whose conversion yields more or fewer bytes than announced.
	for _, m := range []appendMsg{{size: 3, body: strings.NewReader("a\nb"), crlf: true}, {size: 9, body: strings.NewReader("a\nb"), crlf: true}} {
		a2, err := dialAppender(t.Context(), o)
		if err != nil {
			t.Fatal(err)
		}
		if _, bodyErr, err := a2.send("INBOX", []appendMsg{m}); !bodyErr || err == nil {
			t.Errorf("send of %q as %d bytes = %v, %v; want a body error", "a\nb", m.size, bodyErr, err)
		}
		a2.abort()
	}
}

// TestAppenderLongLine: a server that answers with an endless line ends
// the connection with an error once a line passes 1 MiB; the appender
// does not hold it.
func TestAppenderLongLine(t *testing.T) {
	f := &fakeServer{pre: "IMAP4rev1 AUTH=PLAIN SASL-IR", caps: "IMAP4rev1 LITERAL+"}
	f.handle = func(tag, cmd string, c *fakeConn) []string {
		if strings.HasPrefix(cmd, "AUTHENTICATE") {
			return []string{tag + " OK in"}
		}
		chunk := strings.Repeat("x", 64<<10)
		io.WriteString(c.w, "* OK ")
		for i := 0; i < 100<<20/len(chunk); i++ {
			if _, err := io.WriteString(c.w, chunk); err != nil {
				return []string{"<close>"}
			}
		}
		return []string{tag + " OK done"}
	}
	o := startFake(t, f)
	a, err := dialAppender(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.abort()
	tag, _, err := a.send("INBOX", []appendMsg{{size: 1, body: strings.NewReader("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.wait(tag); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("wait = %v, want a line too long", err)
	}
}

// TestAppenderSlowUpload: a message whose upload takes longer than the
// timeout, the server reading it slowly but steadily, is no stall: every
// write that moves bytes gives the wait for the answer its time again.
func TestAppenderSlowUpload(t *testing.T) {
	const (
		size    = 24 << 20
		slow    = 12 << 20 // read at 1 MiB per 100 ms, the rest at once
		timeout = 500 * time.Millisecond
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		io.WriteString(c, "* OK slow ready\r\n")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				served <- err
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimRight(l, "\r\n"), " ")
			switch {
			case strings.HasPrefix(cmd, "CAPABILITY"):
				io.WriteString(c, "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+\r\n"+tag+" OK done\r\n")
			case strings.HasPrefix(cmd, "AUTHENTICATE"):
				io.WriteString(c, tag+" OK in\r\n")
			case strings.HasPrefix(cmd, "APPEND"):
				n, _ := literalAtEnd(l)
				for read := int64(0); read < slow; read += 1 << 20 {
					if _, err := io.CopyN(io.Discard, r, 1<<20); err != nil {
						served <- err
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				if _, err := io.CopyN(io.Discard, r, n-slow); err != nil {
					served <- err
					return
				}
				r.ReadString('\n')
				io.WriteString(c, tag+" OK appended\r\n")
				served <- nil
				return
			default:
				io.WriteString(c, tag+" OK done\r\n")
			}
		}
	}()
	host, port, _ := strings.Cut(ln.Addr().String(), ":")
	o := &Options{Host: host, Port: atoiPort(t, port), User: "alice", Password: "pw", TLS: TLSNone, IOTimeout: timeout}
	a, err := dialAppender(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.abort()
	start := time.Now()
	body := strings.NewReader(strings.Repeat("x", size))
	tag, _, err := a.send("INBOX", []appendMsg{{size: size, body: body}})
	if err != nil {
		t.Fatalf("send after %v: %v", time.Since(start), err)
	}
	if ans, err := a.wait(tag); err != nil || ans.status != "OK" {
		t.Fatalf("wait after %v = %+v, %v; want OK", time.Since(start), ans, err)
	}
	t.Logf("upload of %d MiB took %v with a timeout of %v", size>>20, time.Since(start), timeout)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
