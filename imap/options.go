package imap

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive"
)

// TLSMode says how a connection is protected.
type TLSMode int

const (
	// TLSImplicit speaks TLS from the first byte (imaps://, port 993).
	TLSImplicit TLSMode = iota
	// TLSStartTLS connects in plaintext and requires STARTTLS before
	// logging in (imap://, port 143).
	TLSStartTLS
	// TLSNone never encrypts: passwords and mail travel in the clear.
	TLSNone
)

// Options configure a Source.
type Options struct {
	Host string
	Port int // 0: 993 with TLSImplicit, else 143
	User string
	TLS  TLSMode

	// InsecureSkipVerify accepts any server certificate.
	InsecureSkipVerify bool
	// RootCAs, when set, replaces the system's trusted certificates.
	RootCAs *x509.CertPool

	// Password logs in with AUTHENTICATE PLAIN (or LOGIN when PLAIN is not
	// offered). It is never logged.
	Password string
	// Token, when set, returns an OAuth2 access token for AUTHENTICATE
	// XOAUTH2; Password is then not used. It is called for every new
	// connection.
	Token func(ctx context.Context) (string, error)

	// Connections is how many connections read folders in parallel
	// (default 4).
	Connections int
	// Folders, when not empty, limits the backup to folders whose path (or
	// a parent's path) matches one of these globs (path.Match syntax, "/"
	// separators). Exclude drops folders the same way; it wins over
	// Folders.
	Folders []string
	Exclude []string

	// Retries is how often a folder is tried again after a dropped
	// connection or a throttling answer (default 5); RetryDelay is the first
	// pause (default 1s), doubled after each try up to 30s, each drawn at
	// random between half of it and it (see archive/backoff).
	Retries    int
	RetryDelay time.Duration
	// DialTimeout bounds connecting, the TLS handshake and the login
	// (default 30s).
	DialTimeout time.Duration
	// IOTimeout bounds every wait on the server once logged in: each
	// write, and while a command is outstanding, each wait for the next
	// bytes of its answer (a stalled connection is then dropped, and the
	// folder retried as for any dropped connection). Default 2 minutes,
	// 5 on the connections that append, where a server may take minutes
	// to store a large message before it answers.
	IOTimeout time.Duration

	// Logger receives debug and warning messages (nil: discard).
	Logger *slog.Logger
	// DebugWriter, when set, receives the raw protocol of every
	// connection. It contains credentials and mail: for debugging only.
	DebugWriter io.Writer
}

// defaultIOTimeout is Options.IOTimeout's default on the connections
// that read (appenderTimeout on those that append).
const defaultIOTimeout = 2 * time.Minute

func (o *Options) ioTimeout() time.Duration {
	if o.IOTimeout > 0 {
		return o.IOTimeout
	}
	return defaultIOTimeout
}

func (o *Options) appendTimeout() time.Duration {
	if o.IOTimeout > 0 {
		return o.IOTimeout
	}
	return appenderTimeout
}

func (o *Options) port() int {
	if o.Port != 0 {
		return o.Port
	}
	if o.TLS == TLSImplicit {
		return 993
	}
	return 143
}

func (o *Options) addr() string {
	return net.JoinHostPort(o.Host, strconv.Itoa(o.port()))
}

// Describe is the account's stable description: scheme, user, host and a
// port that is not the default one ("imaps://alice@mail.example.eu"). It
// holds no secret.
func (o *Options) Describe() string { return o.describe() }

func (o *Options) describe() string {
	scheme, def := "imaps", 993
	if o.TLS != TLSImplicit {
		scheme, def = "imap", 143
	}
	host := o.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if o.port() != def {
		host += ":" + strconv.Itoa(o.port())
	}
	return scheme + "://" + o.User + "@" + host
}

// ParseURL reads imaps://user@host[:port] (implicit TLS) or
// imap://user@host[:port] (STARTTLS) into Host, Port, User and TLS. The
// user may contain "@" ("imaps://alice@example.org@imap.example.org"). A
// password in the URL is refused: secrets do not belong on command lines.
func ParseURL(raw string) (Options, error) {
	var o Options
	u, err := url.Parse(raw)
	if err != nil {
		return o, fmt.Errorf("parse imap url: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "imaps":
		o.TLS = TLSImplicit
	case "imap":
		o.TLS = TLSStartTLS
	default:
		return o, fmt.Errorf("parse imap url %q: scheme must be imaps:// or imap://", raw)
	}
	if u.User == nil || u.User.Username() == "" {
		return o, fmt.Errorf("parse imap url %q: no user (imaps://USER@HOST)", raw)
	}
	if _, ok := u.User.Password(); ok {
		return o, errors.New("parse imap url: it contains a password; give it with --imap-password-file or PLANB_IMAP_PASSWORD instead")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return o, fmt.Errorf("parse imap url %q: unexpected path or query", raw)
	}
	o.User = u.User.Username()
	o.Host = u.Hostname()
	if o.Host == "" {
		return o, fmt.Errorf("parse imap url %q: no host", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return o, fmt.Errorf("parse imap url %q: bad port %q", raw, p)
		}
		o.Port = n
	}
	return o, nil
}

// Sentinel errors, checked with errors.Is.
var (
	// ErrAuth means the server refused the credentials.
	ErrAuth = errors.New("authentication failed")
	// ErrCertificate means the server's certificate is not trusted.
	ErrCertificate = errors.New("untrusted server certificate")
	// ErrUnreachable means no connection could be made.
	ErrUnreachable = errors.New("server unreachable")
	// ErrDownloadLimit means the server refuses to send more mail for
	// now: Gmail's cap on IMAP downloads (about 2,500 MB a day), which it
	// answers with "[OVERQUOTA] Account exceeded command or bandwidth
	// limits". It is archive.ErrLimit: a backup keeps what it stored
	// before it as a checkpoint.
	ErrDownloadLimit = archive.ErrLimit
)
