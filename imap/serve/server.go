package serve

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Options tune a Server. A nil *Options means defaults.
type Options struct {
	// Logger receives the server's log (nil: discarded): logins, refused
	// logins and errors, never passwords or message contents.
	Logger *slog.Logger
	// TLSConfig, when set, offers STARTTLS on plaintext connections.
	TLSConfig *tls.Config
	// InsecureAuth allows logins on connections without TLS (for a
	// server on the loopback interface only).
	InsecureAuth bool
	// LoginFailDelay is how long a refused login waits before its answer,
	// to slow down guessing (0: one second; negative: none).
	LoginFailDelay time.Duration
}

// Cache sizes: how many messages' wire sizes, headers and MIME structures
// the server remembers. A wire size with its marks takes some tens of
// bytes, a header a few kilobytes and a structure about one.
const (
	cachedSizes      = 200_000
	cachedHeaders    = 1024
	cachedStructures = 1024
	// A message found damaged is remembered for good (its error, a few
	// hundred bytes), so that a client asking for it again gets NO
	// instead of a response cut in the middle.
	cachedDamaged = 1024
)

// Server serves a Store over IMAP4rev1 and IMAP4rev2, read-only.
type Server struct {
	store Store
	log   *slog.Logger
	delay time.Duration
	imap  *imapserver.Server

	sizes   *lru[[32]byte, *wireSize]
	headers *lru[[32]byte, *header]
	structs *lru[[32]byte, *part]
	binary  *lru[binaryKey, int64]
	damaged *lru[[32]byte, error]

	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a server of store.
func New(store Store, opts *Options) *Server {
	if opts == nil {
		opts = &Options{}
	}
	s := &Server{
		store:   store,
		log:     opts.Logger,
		delay:   opts.LoginFailDelay,
		sizes:   newLRU[[32]byte, *wireSize](cachedSizes),
		headers: newLRU[[32]byte, *header](cachedHeaders),
		structs: newLRU[[32]byte, *part](cachedStructures),
		binary:  newLRU[binaryKey, int64](cachedStructures),
		damaged: newLRU[[32]byte, error](cachedDamaged),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.delay == 0 {
		s.delay = time.Second
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities,
		Logger:       logAdapter{s.log},
		TLSConfig:    opts.TLSConfig,
		InsecureAuth: opts.InsecureAuth,
	})
	return s
}

// capabilities are those the server offers beyond what imapserver adds
// by itself (IDLE, UNSELECT, ENABLE, SASL-IR, LITERAL-, AUTH=PLAIN).
var capabilities = goimap.CapSet{
	goimap.CapIMAP4rev1:    {},
	goimap.CapIMAP4rev2:    {},
	goimap.CapNamespace:    {},
	goimap.CapESearch:      {},
	goimap.CapSearchRes:    {},
	goimap.CapListExtended: {},
	goimap.CapListStatus:   {},
	goimap.CapStatusSize:   {},
	goimap.CapBinary:       {},
	goimap.CapChildren:     {},
	goimap.CapSpecialUse:   {},
	goimap.CapMove:         {}, // refused, but a client may ask
}

// Serve accepts connections on ln until Close. ln is a TLS listener, or a
// plaintext one with Options.InsecureAuth or Options.TLSConfig.
func (s *Server) Serve(ln net.Listener) error {
	return s.imap.Serve(ln)
}

// Close stops the listeners and closes every connection.
func (s *Server) Close() error {
	s.cancel()
	return s.imap.Close()
}

// logAdapter lets imapserver log through slog.
type logAdapter struct{ log *slog.Logger }

func (l logAdapter) Printf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
