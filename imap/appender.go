package imap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/mutf7"
)

// appender is an APPEND-only connection of planb's own, used for every
// restore. go-imap v2 has no MULTIAPPEND, no BINARY or UTF8=ACCEPT
// APPEND, and sends every literal above 4 KiB synchronizing: each APPEND
// waits a round trip for the server's "+" before the message goes out,
// and the server commits one message per transaction. An appender speaks
// each server's dialect: batches of messages in one APPEND where the
// server offers MULTIAPPEND (RFC 3502); non-synchronizing literals with
// LITERAL+ (RFC 7888, and LITERAL- up to 4 KiB), else synchronizing ones,
// waiting for each "+", with several commands in flight either way;
// literal8 for a message with NUL bytes where the server offers BINARY
// (RFC 3516); the UTF8 data extension for a message with UTF-8 header
// bytes where it offers UTF8=ACCEPT (RFC 6855); and the UIDs of APPENDUID
// (RFC 4315). Line ends go out as CRLF whatever the stored message has.
//
// It connects and logs in as dial does: the same TLS configuration and
// modes, the same SASL mechanisms (XOAUTH2 with a token, else PLAIN when
// offered, else LOGIN). Commands are written by one goroutine; a reader
// goroutine collects the tagged answers and the continuation requests.
// Every line it reads from the server is bounded (1 MiB), and the
// literals of untagged answers are skipped without being held.
type appender struct {
	raw  net.Conn // the TCP connection
	nc   net.Conn // raw, or TLS over it
	br   *bufio.Reader
	bw   *bufio.Writer
	caps map[string]bool
	tag  int
	bye  string // text of an untagged BYE
	crw  *mailform.CRLFWriter
	// timeout bounds each write, and each wait for an answer while
	// commands are outstanding (Options.appendTimeout).
	timeout time.Duration
	// shared is the connection when it is a target's too (shareAppender):
	// the target then logs out.
	shared *sharedConn

	// What the server offers, from its capabilities after login.
	multi        bool  // MULTIAPPEND
	literalPlus  bool  // LITERAL+
	literalMinus bool  // LITERAL-
	binary       bool  // BINARY
	utf8         bool  // UTF8=ACCEPT, enabled
	appendLimit  int64 // APPENDLIMIT=n, 0 if none

	// After start: the reader goroutine's answers.
	mu      sync.Mutex
	cond    *sync.Cond
	answers map[string]*answer
	pending int   // commands sent and not answered
	conts   int   // continuation requests received
	rerr    error // why the reader stopped
}

// appenderTimeout is the default of an appender's timeout
// (Options.IOTimeout), which bounds each write, and the wait for the next
// answer while commands are outstanding: a server that stalls ends the
// connection instead of the run hanging.
var appenderTimeout = 5 * time.Minute

// deadlineWriter gives every write the appender's timeout to complete;
// a write that moves bytes while commands are outstanding gives the wait
// for their answers the timeout again: an upload that takes longer than
// the timeout, but moves, is no stall.
type deadlineWriter struct {
	a *appender
	c net.Conn
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(d.a.timeout))
	n, err := d.c.Write(p)
	if n > 0 {
		d.a.mu.Lock()
		if d.a.pending > 0 {
			d.c.SetReadDeadline(time.Now().Add(d.a.timeout))
		}
		d.a.mu.Unlock()
	}
	return n, err
}

// answer is a tagged status response.
type answer struct {
	status string // OK, NO or BAD
	code   string // the response code's atom, upper case ("ALREADYEXISTS"), or ""
	text   string

	// From an APPENDUID response code: the mailbox's UIDVALIDITY and the
	// UIDs the messages got, in order.
	uidValidity uint32
	uids        []uint32
}

// dialAppender connects, protects and logs in an appender.
func dialAppender(ctx context.Context, o *Options) (*appender, error) {
	a, err := dialRaw(ctx, o)
	if err != nil {
		return nil, err
	}
	go a.read()
	return a, nil
}

// dialRaw connects, protects and logs in a connection of planb's own,
// without the reader goroutine of an appender: its user reads the
// answers itself (see fetcher).
func dialRaw(ctx context.Context, o *Options) (*appender, error) {
	addr := o.addr()
	raw, dctx, release, err := dialTCP(ctx, o)
	if err != nil {
		return nil, err
	}
	defer release()
	a := newAppender(raw, raw, o)
	if err := a.setup(dctx, o); err != nil {
		raw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrAuth) || errors.Is(err, errLogin) {
			return nil, err
		}
		return nil, dialError(ctx, addr, err)
	}
	if !release() {
		raw.Close()
		return nil, dialError(ctx, addr, dctx.Err())
	}
	raw.SetDeadline(time.Time{})
	return a, nil
}

// newAppender returns an appender on nc (raw, or TLS over it), before
// its buffers are set.
func newAppender(raw, nc net.Conn, o *Options) *appender {
	a := &appender{raw: raw, nc: nc, timeout: o.appendTimeout(), answers: map[string]*answer{}, crw: mailform.NewCRLFWriter(nil)}
	a.cond = sync.NewCond(&a.mu)
	return a
}

// errLogin marks a login the server refused for another reason than the
// credentials (throttled, LOGINDISABLED...).
var errLogin = errors.New("login failed")

// tlsConfigOf is the configuration dial uses.
func tlsConfigOf(o *Options) *tls.Config {
	return &tls.Config{
		ServerName:         o.Host,
		InsecureSkipVerify: o.InsecureSkipVerify,
		RootCAs:            o.RootCAs,
		MinVersion:         tls.VersionTLS12,
	}
}

func (a *appender) wrapTLS(ctx context.Context, o *Options) error {
	tc := tls.Client(a.raw, tlsConfigOf(o))
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	a.nc = tc
	a.buffers(tc, o.DebugWriter)
	return nil
}

// buffers sets the reader and writer on c, copying the protocol to
// debug when set.
func (a *appender) buffers(c net.Conn, debug io.Writer) {
	var (
		r io.Reader = c
		w io.Writer = deadlineWriter{a, c}
	)
	if debug != nil {
		r, w = io.TeeReader(c, debug), io.MultiWriter(c, debug)
	}
	a.br = bufio.NewReaderSize(r, 16<<10)
	a.bw = bufio.NewWriterSize(w, 64<<10)
}

// setup reads the greeting, starts TLS, logs in, reads the capabilities
// and enables UTF8=ACCEPT where offered.
func (a *appender) setup(ctx context.Context, o *Options) error {
	a.buffers(a.raw, o.DebugWriter)
	if o.TLS == TLSImplicit {
		if err := a.wrapTLS(ctx, o); err != nil {
			return err
		}
	}
	greeting, err := a.readLine()
	if err != nil {
		return err
	}
	preauth := false
	switch {
	case hasPrefixFold(greeting, "* OK"):
	case hasPrefixFold(greeting, "* PREAUTH"):
		preauth = true
	default:
		return fmt.Errorf("unexpected greeting %q", trimCRLF(greeting))
	}
	if o.TLS == TLSStartTLS {
		if preauth {
			return errors.New("server greets with PREAUTH: cannot start TLS")
		}
		if ans, err := a.simple("STARTTLS"); err != nil {
			return err
		} else if ans.status != "OK" {
			return fmt.Errorf("server refused STARTTLS (%s)", ans.text)
		}
		if err := a.wrapTLS(ctx, o); err != nil {
			return err
		}
	}
	if err := a.capability(); err != nil {
		return err
	}
	if !preauth {
		if err := a.login(ctx, o); err != nil {
			return err
		}
		if err := a.capability(); err != nil {
			return err
		}
	}
	a.learnCaps()
	if a.caps["UTF8=ACCEPT"] {
		if ans, err := a.simple("ENABLE UTF8=ACCEPT"); err != nil {
			return err
		} else if ans.status == "OK" {
			a.utf8 = true
		}
	}
	return nil
}

// learnCaps sets what the server offers for APPEND from a.caps.
func (a *appender) learnCaps() {
	a.multi = a.caps["MULTIAPPEND"]
	a.literalPlus = a.caps["LITERAL+"]
	a.literalMinus = a.caps["LITERAL-"]
	a.binary = a.caps["BINARY"]
	for c := range a.caps {
		if v, ok := strings.CutPrefix(c, "APPENDLIMIT="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				a.appendLimit = n
			}
		}
	}
}

// errNoShare: the target connection cannot carry the APPENDs too.
var errNoShare = errors.New("the server offers UTF8=ACCEPT, which the appender enables for its session alone")

// shareAppender makes an appender of the target connection c, which it
// owns from then on (see sharedConn): a restore of one connection then
// logs in once, not twice. On a server of per-connection processes
// (Dovecot), a login costs some 40 ms of its CPU; a restore --plan of 20
// accounts made 40 where one account restored with 4 connections makes 5.
// The session stays without UTF8=ACCEPT, which go-imap's client would not
// know of: where the server offers it, errNoShare.
func shareAppender(c *conn, o *Options) (*appender, error) {
	c.shared.give(appenderSpeaker)
	nc := c.shared.view(appenderSpeaker)
	a := newAppender(c.raw, nc, o)
	a.shared = c.shared
	a.buffers(nc, o.DebugWriter)
	nc.SetDeadline(time.Now().Add(a.timeout))
	err := a.capability()
	nc.SetDeadline(time.Time{})
	if err == nil && a.caps["UTF8=ACCEPT"] {
		err = errNoShare
	}
	if err != nil {
		c.shared.give(targetSpeaker)
		return nil, err
	}
	a.learnCaps()
	go a.read()
	return a, nil
}

// nonSync reports whether a literal of n bytes may be sent without
// waiting for the server's continuation request.
func (a *appender) nonSync(n int64) bool {
	return a.literalPlus || a.literalMinus && n <= 4096
}

func (a *appender) nextTag() string {
	a.tag++
	return "P" + strconv.Itoa(a.tag)
}

// simple sends a command without literals and waits for its answer (setup
// only).
func (a *appender) simple(cmd string) (*answer, error) {
	tag := a.nextTag()
	a.bw.WriteString(tag + " " + cmd + "\r\n")
	if err := a.bw.Flush(); err != nil {
		return nil, err
	}
	return a.await(tag, nil)
}

// await reads responses until the tagged answer to tag (setup only);
// cont, when set, answers continuation requests.
func (a *appender) await(tag string, cont func(text string) error) (*answer, error) {
	for {
		l, err := a.readLine()
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(l, "+"):
			if cont == nil {
				return nil, fmt.Errorf("unexpected continuation request %q", trimCRLF(l))
			}
			if err := cont(strings.TrimPrefix(strings.TrimPrefix(trimCRLF(l), "+"), " ")); err != nil {
				return nil, err
			}
		case strings.HasPrefix(l, "* "):
			if err := a.untagged(l); err != nil {
				return nil, err
			}
		default:
			t, ans, err := parseTagged(l)
			if err != nil {
				return nil, err
			}
			if t == tag {
				return ans, nil
			}
			return nil, fmt.Errorf("answer for unknown tag %q", t)
		}
	}
}

// untagged handles an untagged response: CAPABILITY is kept, BYE ends
// the connection.
func (a *appender) untagged(l string) error {
	l = trimCRLF(l)
	switch {
	case hasPrefixFold(l, "* CAPABILITY "):
		a.caps = map[string]bool{}
		for _, c := range strings.Fields(l[len("* CAPABILITY "):]) {
			a.caps[strings.ToUpper(c)] = true
		}
	case hasPrefixFold(l, "* BYE"):
		a.bye = strings.TrimSpace(l[len("* BYE"):])
		return fmt.Errorf("server said BYE: %s", a.bye)
	}
	return nil
}

func (a *appender) capability() error {
	a.caps = nil
	ans, err := a.simple("CAPABILITY")
	if err != nil {
		return err
	}
	if ans.status != "OK" || a.caps == nil {
		return fmt.Errorf("capability: %s %s", ans.status, ans.text)
	}
	return nil
}

func (a *appender) login(ctx context.Context, o *Options) error {
	var (
		tag  = a.nextTag()
		cont func(string) error
	)
	sasl := func(mech string, ir []byte, onChallenge func() error) {
		enc := base64.StdEncoding.EncodeToString(ir)
		if a.caps["SASL-IR"] {
			a.bw.WriteString(tag + " AUTHENTICATE " + mech + " " + enc + "\r\n")
			cont = func(string) error { return onChallenge() }
			return
		}
		a.bw.WriteString(tag + " AUTHENTICATE " + mech + "\r\n")
		sent := false
		cont = func(string) error {
			if sent {
				return onChallenge()
			}
			sent = true
			a.bw.WriteString(enc + "\r\n")
			return a.bw.Flush()
		}
	}
	refuse := func() error { return errors.New("unexpected server challenge") }
	var (
		ans *answer
		err error
	)
	switch {
	case o.Token != nil:
		tok, err := o.Token(ctx)
		if err != nil {
			return fmt.Errorf("login as %s: get oauth2 token: %w", o.User, err)
		}
		sasl("XOAUTH2", []byte("user="+o.User+"\x01auth=Bearer "+tok+"\x01\x01"), func() error {
			// A JSON error: answer with an empty response, the server
			// then ends the command with NO.
			a.bw.WriteString("\r\n")
			return a.bw.Flush()
		})
	case a.caps["AUTH=PLAIN"]:
		sasl("PLAIN", []byte("\x00"+o.User+"\x00"+o.Password), refuse)
	case a.caps["LOGINDISABLED"]:
		return fmt.Errorf("login as %s: %w: server offers neither LOGIN nor AUTH=PLAIN", o.User, errLogin)
	default:
		ans, err = a.loginCommand(tag, o.User, o.Password)
	}
	if ans == nil && err == nil {
		if err = a.bw.Flush(); err == nil {
			ans, err = a.await(tag, cont)
		}
	}
	if err != nil {
		return fmt.Errorf("login as %s: %w", o.User, err)
	}
	if ans.status == "OK" {
		return nil
	}
	if ans.status == "NO" {
		if _, ok := throttled(ans.code, ans.text); ok || overQuota(ans.code, ans.text) {
			// Not the credentials: a pause, or (a source's) download
			// limit.
			return fmt.Errorf("login as %s: %w: %w", o.User, errLogin, &statusError{cmd: "LOGIN", status: ans.status, code: ans.code, text: ans.text})
		}
		return fmt.Errorf("login as %s: %w: %s", o.User, ErrAuth, ans.text)
	}
	return fmt.Errorf("login as %s: %w: %s %s", o.User, errLogin, ans.status, ans.text)
}

// loginCommand sends LOGIN with user and password as quoted strings, or
// as literals where they cannot be quoted, and returns the answer.
func (a *appender) loginCommand(tag, user, password string) (*answer, error) {
	a.bw.WriteString(tag + " LOGIN")
	for _, s := range []string{user, password} {
		a.bw.WriteByte(' ')
		if q, ok := quoted(s); ok {
			a.bw.WriteString(q)
			continue
		}
		n := int64(len(s))
		if a.caps["LITERAL+"] || a.caps["LITERAL-"] && n <= 4096 {
			a.bw.WriteString("{" + strconv.FormatInt(n, 10) + "+}\r\n" + s)
			continue
		}
		a.bw.WriteString("{" + strconv.FormatInt(n, 10) + "}\r\n")
		if err := a.bw.Flush(); err != nil {
			return nil, err
		}
		l, err := a.readLine()
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(l, "+") {
			_, ans, err := parseTagged(l)
			return ans, err
		}
		a.bw.WriteString(s)
	}
	a.bw.WriteString("\r\n")
	if err := a.bw.Flush(); err != nil {
		return nil, err
	}
	return a.await(tag, nil)
}

// maxResponseLine bounds a line the server sends (without the literals it
// announces).
const maxResponseLine = 1 << 20

// readLine reads one response line with the literals it contains (their
// contents are skipped: nothing an appender waits for needs them). A line
// longer than maxResponseLine is an error, and is not read whole.
func (a *appender) readLine() (string, error) { return a.readLineKeeping(0) }

// readLineKeeping is readLine keeping in the line the bytes of the
// literals of at most keep bytes ("* STATUS {13}\r\nProjets Été (...)");
// larger ones are skipped.
func (a *appender) readLineKeeping(keep int64) (string, error) {
	var out []byte
	for {
		frag, err := a.br.ReadSlice('\n')
		if len(out)+len(frag) > maxResponseLine {
			return "", fmt.Errorf("response line longer than %d bytes", maxResponseLine)
		}
		out = append(out, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(out) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		n, ok := literalAtEnd(string(frag))
		if !ok {
			return string(out), nil
		}
		if n > keep {
			if _, err := io.CopyN(io.Discard, a.br, n); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return "", err
			}
			continue
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(a.br, lit); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		out = append(out, lit...)
	}
}

// literalAtEnd reports whether line ends with a literal's announcement
// "{n}\r\n" (or "~{n}", "{n+}") and returns n.
func literalAtEnd(l string) (int64, bool) {
	l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
	if !strings.HasSuffix(l, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(l[i+1:len(l)-1], "+"), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// parseTagged parses "TAG OK [CODE ...] text".
func parseTagged(l string) (string, *answer, error) {
	l = trimCRLF(l)
	tag, rest, ok := strings.Cut(l, " ")
	if !ok || tag == "" {
		return "", nil, fmt.Errorf("malformed response %q", l)
	}
	status, text, _ := strings.Cut(rest, " ")
	status = strings.ToUpper(status)
	if status != "OK" && status != "NO" && status != "BAD" {
		return "", nil, fmt.Errorf("malformed response %q", l)
	}
	ans := &answer{status: status, text: text}
	if strings.HasPrefix(text, "[") {
		if j := strings.IndexByte(text, ']'); j > 0 {
			code, args, _ := strings.Cut(text[1:j], " ")
			ans.code = strings.ToUpper(code)
			ans.text = strings.TrimSpace(text[j+1:])
			if ans.code == "APPENDUID" {
				ans.uidValidity, ans.uids = parseAppendUID(args)
			}
		}
	}
	return tag, ans, nil
}

// parseAppendUID reads "uidvalidity uid-set" (RFC 4315); it returns no
// UIDs when the set is malformed or absurdly large.
func parseAppendUID(args string) (uint32, []uint32) {
	v, set, ok := strings.Cut(strings.TrimSpace(args), " ")
	uv, err := strconv.ParseUint(v, 10, 32)
	if !ok || err != nil {
		return 0, nil
	}
	var uids []uint32
	for _, r := range strings.Split(set, ",") {
		lo, hi, isRange := strings.Cut(r, ":")
		a, err1 := strconv.ParseUint(lo, 10, 32)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 32)
		}
		if err1 != nil || err2 != nil || a == 0 || b == 0 {
			return 0, nil
		}
		if a > b {
			a, b = b, a
		}
		if b-a >= 100000 || len(uids) > 100000 {
			return 0, nil
		}
		for u := a; u <= b; u++ {
			uids = append(uids, uint32(u))
		}
	}
	return uint32(uv), uids
}

// read collects tagged answers and continuation requests until the
// connection ends.
func (a *appender) read() {
	var err error
	for {
		var l string
		l, err = a.readLine()
		if err != nil {
			break
		}
		if strings.HasPrefix(l, "* ") {
			if err = a.untagged(l); err != nil {
				break
			}
			continue
		}
		if trimCRLF(l) == "" {
			// An empty line: Bridge (gluon) follows the refusal of a
			// header line without a colon with one. Nothing to read in it.
			continue
		}
		if strings.HasPrefix(l, "+") {
			a.mu.Lock()
			a.conts++
			a.mu.Unlock()
			a.cond.Broadcast()
			continue
		}
		tag, ans, perr := parseTagged(l)
		if perr != nil {
			err = perr
			break
		}
		a.mu.Lock()
		a.answers[tag] = ans
		a.pending--
		if a.pending > 0 {
			a.nc.SetReadDeadline(time.Now().Add(a.timeout))
		} else {
			a.nc.SetReadDeadline(time.Time{})
		}
		a.mu.Unlock()
		a.cond.Broadcast()
	}
	a.mu.Lock()
	if a.bye != "" && !strings.Contains(err.Error(), "BYE") {
		err = fmt.Errorf("%w (server said BYE: %s)", err, a.bye)
	}
	a.rerr = err
	a.mu.Unlock()
	a.cond.Broadcast()
	a.nc.Close()
}

// wait returns the answer to tag; an error means the connection is gone.
func (a *appender) wait(tag string) (*answer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		if ans, ok := a.answers[tag]; ok {
			delete(a.answers, tag)
			return ans, nil
		}
		if a.rerr != nil {
			return nil, a.rerr
		}
		a.cond.Wait()
	}
}

// awaitContinuation waits for a continuation request after the first
// seen ones, and reports false when the command tag was answered instead
// (the server refused the literal).
func (a *appender) awaitContinuation(tag string, seen int) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		if a.conts > seen {
			return true, nil
		}
		if _, ok := a.answers[tag]; ok {
			return false, nil
		}
		if a.rerr != nil {
			return false, a.rerr
		}
		a.cond.Wait()
	}
}

// appendMsg is one message of an APPEND command.
type appendMsg struct {
	flags []goimap.Flag
	date  time.Time
	// size is the literal's size: the message's after CRLF conversion.
	size int64
	// body reads the message as stored; with crlf its line ends are made
	// CRLF on the way (bare ones are there), else it goes as it is.
	body io.Reader
	crlf bool
	// binary sends a literal8 (BINARY): the message holds NUL bytes.
	// utf8 sends it with the UTF8 data extension (UTF8=ACCEPT).
	binary, utf8 bool
}

// send writes one APPEND command of msgs into mailbox (UTF-8 name) and
// returns its tag. When the server refuses a synchronizing literal the
// command ends there (the rest of msgs is not sent) and wait(tag) gives
// the refusal. A body that fails or does not yield exactly its size
// leaves the command cut short: the caller must abort the connection.
// bodyErr tells whether the error came from a body.
func (a *appender) send(mailbox string, msgs []appendMsg) (tag string, bodyErr bool, err error) {
	tag = a.nextTag()
	a.mu.Lock()
	a.pending++
	a.nc.SetReadDeadline(time.Now().Add(a.timeout))
	a.mu.Unlock()
	a.bw.WriteString(tag + " APPEND ")
	q, _ := quoted(mutf7.Encode(mailbox))
	a.bw.WriteString(q)
	for _, m := range msgs {
		if len(m.flags) > 0 {
			a.bw.WriteString(" (")
			for i, f := range m.flags {
				if i > 0 {
					a.bw.WriteByte(' ')
				}
				a.bw.WriteString(string(f))
			}
			a.bw.WriteByte(')')
		}
		if !m.date.IsZero() {
			a.bw.WriteString(` "` + m.date.Format("_2-Jan-2006 15:04:05 -0700") + `"`)
		}
		a.bw.WriteByte(' ')
		if m.utf8 {
			a.bw.WriteString("UTF8 (~")
		} else if m.binary {
			a.bw.WriteByte('~')
		}
		n := strconv.FormatInt(m.size, 10)
		if a.nonSync(m.size) {
			a.bw.WriteString("{" + n + "+}\r\n")
		} else {
			a.bw.WriteString("{" + n + "}\r\n")
			a.mu.Lock()
			seen := a.conts
			a.mu.Unlock()
			if err := a.bw.Flush(); err != nil {
				return tag, false, err
			}
			ok, err := a.awaitContinuation(tag, seen)
			if err != nil || !ok {
				return tag, false, err
			}
		}
		if bodyErr, err := a.copyLiteral(m); err != nil {
			return tag, bodyErr, err
		}
		if m.utf8 {
			a.bw.WriteByte(')')
		}
	}
	a.bw.WriteString("\r\n")
	return tag, false, a.bw.Flush()
}

// copyLiteral writes m's body as its literal: exactly m.size bytes.
func (a *appender) copyLiteral(m appendMsg) (bodyErr bool, err error) {
	if !m.crlf {
		return copyBody(a.bw, m.body, m.size, nil)
	}
	lw := &literalWriter{w: a.bw, left: m.size}
	a.crw.Reset(lw)
	src := &errReader{r: m.body}
	_, err = io.Copy(a.crw, src)
	if err == nil {
		err = a.crw.Close()
	}
	switch {
	case src.err != nil:
		return true, src.err
	case lw.over:
		return true, fmt.Errorf("body longer than its size %d", m.size)
	case err != nil:
		return false, err
	case lw.left != 0:
		return true, fmt.Errorf("body has %d bytes, want %d", m.size-lw.left, m.size)
	}
	return false, nil
}

// literalWriter writes at most left bytes to w, and fails beyond.
type literalWriter struct {
	w    io.Writer
	left int64
	over bool
}

func (l *literalWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		l.over = true
		return 0, errors.New("literal overflow")
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

// abort drops the connection with a TCP reset, so that the server does
// not take a command cut short for a whole one.
func (a *appender) abort() {
	if tc, ok := a.raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	a.raw.Close()
}

// logout ends the session politely (bounded to 2 s) and closes.
func (a *appender) logout() {
	if a.shared != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tag := a.nextTag()
		a.bw.WriteString(tag + " LOGOUT\r\n")
		if a.bw.Flush() == nil {
			a.wait(tag)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	a.nc.Close()
	<-done
}

// quoted returns s as an IMAP quoted string, or false when s cannot be
// one (CR, LF, NUL or 8-bit bytes).
func quoted(s string) (string, bool) {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0 || c == '\r' || c == '\n' || c >= 0x80:
			return "", false
		case c == '"' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), true
}

// validFlag reports whether f can be sent as a flag: an atom, or `\`
// followed by an atom (RFC 3501 flag-keyword and flag-extension).
func validFlag(f string) bool {
	f = strings.TrimPrefix(f, `\`)
	if f == "" {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`(){%*"\]`), c) >= 0 {
			return false
		}
	}
	return true
}

func trimCRLF(s string) string { return strings.TrimRight(s, "\r\n") }

func hasPrefixFold(s, p string) bool {
	return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p)
}
