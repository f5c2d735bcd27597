package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// conn is one logged-in connection.
type conn struct {
	c         *imapclient.Client
	raw       net.Conn // the TCP connection below TLS
	tail      *tailConn
	io        *ioConn     // between go-imap and tail
	shared    *sharedConn // below tail: an appender may take turns on it
	condstore bool
	esearch   bool
	// expunges counts the EXPUNGE answers: sequence numbers noted
	// before a change of it may be stale.
	expunges *atomic.Uint64
	// changes gets a value (without blocking) for each unilateral
	// EXISTS, EXPUNGE or FETCH: the selected mailbox changed (IDLE).
	changes chan struct{}
}

// broken reports whether the connection has been closed.
func (c *conn) broken() bool {
	select {
	case <-c.c.Closed():
		return true
	default:
		return false
	}
}

// failed reports whether err, a command's error, says that the
// connection failed. go-imap hands its reader's error (a read that timed
// out, a response it cannot parse) to the pending commands before it
// marks the client closed, and wraps it as text: an error that is not
// the server's answer (NO, BAD) waits a moment for that mark.
func (c *conn) failed(err error) bool {
	if c.broken() || connDropped(err) {
		return true
	}
	var ie *goimap.Error
	if errors.As(err, &ie) {
		return false
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.c.Closed():
		return true
	case <-t.C:
		return false
	}
}

func (c *conn) close() {
	c.c.Close()
}

// abort drops the connection in the middle of a command (a literal cut
// short) with a TCP reset rather than an orderly close, so that the
// server sees an error, not the end of its input, and cannot mistake what
// it received for a whole message.
func (c *conn) abort() {
	if tc, ok := c.raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.raw.Close()
	c.c.Close()
}

func (c *conn) logout() {
	if !c.broken() {
		done := make(chan struct{})
		go func() {
			c.c.Logout().Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	c.c.Close()
}

// dialTCP opens the TCP connection to the server named by o. Until release
// is called, the end of dctx (o.DialTimeout, or ctx) interrupts any I/O on
// raw: the greeting, TLS and login are bounded by the dial timeout, and the
// caller sets its own deadlines for later commands. Calling release again
// does nothing.
func dialTCP(ctx context.Context, o *Options) (raw net.Conn, dctx context.Context, release func() bool, err error) {
	addr := o.addr()
	timeout := o.DialTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	d := net.Dialer{}
	raw, err = d.DialContext(dctx, "tcp", addr)
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		return nil, nil, nil, fmt.Errorf("connect %s: %w: %w", addr, ErrUnreachable, err)
	}
	stop := context.AfterFunc(dctx, func() { raw.SetDeadline(time.Now()) })
	// release reports whether it stopped the interruption in time (false:
	// the timeout already hit raw).
	return raw, dctx, func() bool { ok := stop(); cancel(); return ok }, nil
}

// dial connects, protects and logs in one connection. go-imap's client
// reads and writes through an ioConn above TLS: once logged in, its I/O
// has deadlines (Options.IOTimeout) and no response takes more than
// maxResponse bytes of memory.
func dial(ctx context.Context, o *Options) (*conn, error) {
	addr := o.addr()
	raw, dctx, release, err := dialTCP(ctx, o)
	if err != nil {
		return nil, err
	}
	defer release()

	tlsConfig := tlsConfigOf(o)
	expunges := new(atomic.Uint64)
	changes := make(chan struct{}, 1)
	changed := func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	}
	copts := &imapclient.Options{
		DebugWriter: o.DebugWriter,
		TLSConfig:   tlsConfig,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Expunge: func(uint32) { expunges.Add(1); changed() },
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					changed()
				}
			},
			Fetch: func(m *imapclient.FetchMessageData) { m.Collect(); changed() },
		},
	}
	var nc net.Conn // the connection go-imap speaks over (TLS or raw)
	switch o.TLS {
	case TLSImplicit:
		tc := tls.Client(raw, tlsConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			raw.Close()
			return nil, dialError(ctx, addr, err)
		}
		nc = tc
	case TLSStartTLS:
		tc, err := startTLS(dctx, raw, o)
		if err != nil {
			raw.Close()
			var refused errStartTLSRefused
			if errors.As(err, &refused) {
				return nil, fmt.Errorf("connect %s: server refused STARTTLS (%s); with no TLS at all, use --insecure-plaintext", addr, refused.text)
			}
			return nil, dialError(ctx, addr, err)
		}
		nc = tc
	default:
		nc = raw
	}
	shared := newSharedConn(nc)
	tail := &tailConn{Conn: shared.view(targetSpeaker)}
	ioc := newIOConn(tail)
	c := imapclient.New(ioc, copts)
	cn := &conn{c: c, raw: raw, tail: tail, io: ioc, shared: shared, expunges: expunges, changes: changes}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, dialError(ctx, addr, err)
	}
	if err := cn.login(ctx, o); err != nil {
		c.Close()
		var ie *goimap.Error
		if !errors.Is(err, ErrAuth) && !errors.As(err, &ie) && ctx.Err() == nil {
			// Not the server's answer: the connection failed or
			// stalled during the login, which is worth another try.
			return nil, fmt.Errorf("connect %s: %w: %w", addr, ErrUnreachable, err)
		}
		return nil, err
	}
	caps := c.Caps()
	cn.condstore = caps.Has(goimap.CapCondStore) || caps.Has(goimap.CapIMAP4rev2) && false
	cn.esearch = caps.Has(goimap.CapESearch) || caps.Has(goimap.CapIMAP4rev2)
	// The login deadline must not outlive this function: ioConn's take
	// over.
	if !release() {
		c.Close()
		return nil, dialError(ctx, addr, dctx.Err())
	}
	raw.SetDeadline(time.Time{})
	ioc.start(o.ioTimeout())
	return cn, nil
}

// startGreeting is what go-imap's client reads first on a connection that
// startTLS upgraded: the server's own greeting came before TLS.
const startGreeting = "* OK planb: TLS started\r\n"

// errStartTLSRefused is the server's refusal of STARTTLS.
type errStartTLSRefused struct{ text string }

func (e errStartTLSRefused) Error() string { return "server refused STARTTLS: " + e.text }

// startTLS reads the greeting, upgrades raw with STARTTLS (RFC 3501
// 6.2.1) and returns the TLS connection, which starts with startGreeting.
// planb speaks STARTTLS itself, not go-imap's client, so that the
// client's ioConn sits above TLS.
func startTLS(ctx context.Context, raw net.Conn, o *Options) (net.Conn, error) {
	a := newAppender(raw, raw, o)
	a.buffers(raw, o.DebugWriter)
	greeting, err := a.readLine()
	if err != nil {
		return nil, err
	}
	switch {
	case hasPrefixFold(greeting, "* OK"):
	case hasPrefixFold(greeting, "* PREAUTH"):
		return nil, errors.New("server greets with PREAUTH: cannot start TLS")
	default:
		return nil, fmt.Errorf("unexpected greeting %q", trimCRLF(greeting))
	}
	ans, err := a.simple("STARTTLS")
	if err != nil {
		return nil, err
	}
	if ans.status != "OK" {
		return nil, errStartTLSRefused{text: strings.TrimSpace(ans.status + " " + ans.text)}
	}
	if a.br.Buffered() > 0 {
		// Bytes sent before TLS must not pass for the server's.
		return nil, errors.New("the server sent data after its STARTTLS answer")
	}
	tc := tls.Client(raw, tlsConfigOf(o))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return &greetedConn{Conn: tc, r: io.MultiReader(strings.NewReader(startGreeting), tc)}, nil
}

// greetedConn reads r, then the connection.
type greetedConn struct {
	net.Conn
	r io.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) { return g.r.Read(p) }

// dialError classifies an error of connecting or of the TLS handshake.
func dialError(ctx context.Context, addr string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	if errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return fmt.Errorf("connect %s: %w: %w", addr, ErrCertificate, err)
	}
	var ie *goimap.Error
	if errors.As(err, &ie) {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	return fmt.Errorf("connect %s: %w: %w", addr, ErrUnreachable, err)
}

func (c *conn) login(ctx context.Context, o *Options) error {
	var err error
	switch {
	case o.Token != nil:
		var tok string
		tok, err = o.Token(ctx)
		if err != nil {
			return fmt.Errorf("login as %s: get oauth2 token: %w", o.User, err)
		}
		err = c.c.Authenticate(&xoauth2Client{user: o.User, token: tok})
	case c.c.Caps().Has(goimap.AuthCap("PLAIN")):
		err = c.c.Authenticate(&plainClient{user: o.User, password: o.Password})
	default:
		err = c.c.Login(o.User, o.Password).Wait()
	}
	if err == nil {
		return nil
	}
	var ie *goimap.Error
	if errors.As(err, &ie) && ie.Type == goimap.StatusResponseTypeNo {
		if _, ok := throttled(string(ie.Code), ie.Text); ok || overQuota(string(ie.Code), ie.Text) {
			// Not the credentials: a pause, or the download limit.
			return fmt.Errorf("login as %s: %w", o.User, err)
		}
		return fmt.Errorf("login as %s: %w: %s", o.User, ErrAuth, ie.Text)
	}
	return fmt.Errorf("login as %s: %w", o.User, err)
}

// plainClient is the SASL PLAIN mechanism (RFC 4616).
type plainClient struct{ user, password string }

func (p *plainClient) Start() (string, []byte, error) {
	return "PLAIN", []byte("\x00" + p.user + "\x00" + p.password), nil
}

func (p *plainClient) Next([]byte) ([]byte, error) {
	return nil, errors.New("sasl plain: unexpected server challenge")
}

// xoauth2Client is the SASL XOAUTH2 mechanism of Google and Microsoft:
// "user=USER^Aauth=Bearer TOKEN^A^A". On failure the server sends a JSON
// challenge, to which the client answers with an empty response; the
// server then ends the command with NO.
type xoauth2Client struct{ user, token string }

func (x *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

func (x *xoauth2Client) Next([]byte) ([]byte, error) {
	return []byte{}, nil
}

// tailConn remembers the last bytes read, so that the text of an untagged
// BYE that closed the connection can be searched for a throttling hint.
type tailConn struct {
	net.Conn
	mu  sync.Mutex
	buf [512]byte
	n   int // bytes in buf, at most len(buf)
}

func (t *tailConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.mu.Lock()
		d := p[:n]
		if len(d) >= len(t.buf) {
			t.n = copy(t.buf[:], d[len(d)-len(t.buf):])
		} else {
			keep := min(t.n, len(t.buf)-len(d))
			copy(t.buf[:], t.buf[t.n-keep:t.n])
			t.n = keep + copy(t.buf[keep:], d)
		}
		t.mu.Unlock()
	}
	return n, err
}

func (t *tailConn) last() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf[:t.n])
}

var throttleRE = regexp.MustCompile(`(?i)Suggested Backoff Time:\s*(\d+)\s*milliseconds`)

// throttleDelay finds Microsoft 365's throttling hint in a server's text.
func throttleDelay(text string) (time.Duration, bool) {
	m := throttleRE.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	ms, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || ms < 0 {
		return 0, false
	}
	return min(time.Duration(ms)*time.Millisecond, 10*time.Minute), true
}
