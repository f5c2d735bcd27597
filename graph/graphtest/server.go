package graphtest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mathrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Server is a fake Microsoft Graph and Entra ID login endpoint on one TLS
// httptest server. Both the authority host and the Graph endpoint are URL.
type Server struct {
	ts *httptest.Server

	mu      sync.Mutex
	tenants map[string]*Tenant // by id and by domain, lower case
	tokens  map[string]*issued // access token → what it grants
	users   int                // for fresh ids
	rng     *mathrand.Rand

	// Fault injection.
	throttleRate   float64
	throttleStatus int
	retryAfter     string
	throttleLimit  int // stop throttling after this many (0: never)
	valueDelay     time.Duration
	stalls         []*stall
	// Requests allowed per mailbox in each window (0: no budget), and
	// each mailbox's current window.
	budget       int
	budgetWindow time.Duration
	windows      map[string]*budgetWindow

	// Paging.
	linkHost        string // host named by next and delta links; "": the request's
	usersPageSize   int
	foldersPageSize int
	deltaPageSize   int // when the client does not ask

	// Statistics.
	stats    map[string]*MailboxStats // by mailbox address
	requests int
	noImmID  int
	tokenReq int

	sessions map[string]*deltaSession
	deltas   map[string]*deltaToken

	// Delegated sign-in (device code flow).
	refresh       map[string]*issued     // refresh token → what it grants
	deviceCodes   map[string]*deviceCode // by device_code
	grants        map[string]int         // token requests by grant type, and "devicecode"
	tokenLifetime time.Duration          // of access tokens issued
}

// MailboxStats are the counters the server keeps per mailbox.
type MailboxStats struct {
	Requests      int // Graph requests under /users/{mailbox}
	ValueCalls    int // /messages/{id}/$value answered with the body (read by the client or not)
	Throttled     int // answered 429 or 503
	Delta         int // delta pages served
	InFlight      int
	MaxConcurrent int
	// OverLimit counts requests that arrived while 4 others were in flight
	// (Exchange Online's limit per app and mailbox); they were answered 429.
	OverLimit int
	// OverBudget counts requests answered 429 because the mailbox's
	// budget of requests for the current window was spent (SetBudget).
	OverBudget int
}

type budgetWindow struct {
	start time.Time
	used  int
}

// ConcurrencyLimit is the number of concurrent requests per mailbox above
// which the server answers 429, as Exchange Online does.
const ConcurrencyLimit = 4

// NewServer starts a server. Close it when done.
func NewServer() *Server {
	s := &Server{
		tenants:         make(map[string]*Tenant),
		tokens:          make(map[string]*issued),
		refresh:         make(map[string]*issued),
		deviceCodes:     make(map[string]*deviceCode),
		grants:          make(map[string]int),
		tokenLifetime:   3599 * time.Second,
		rng:             mathrand.New(mathrand.NewPCG(1, 2)),
		throttleStatus:  http.StatusTooManyRequests,
		retryAfter:      "1",
		usersPageSize:   100,
		foldersPageSize: 10,
		deltaPageSize:   10,
		stats:           make(map[string]*MailboxStats),
		sessions:        make(map[string]*deltaSession),
		deltas:          make(map[string]*deltaToken),
	}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	s.ts.EnableHTTP2 = true
	s.ts.StartTLS()
	return s
}

// URL is the server's base URL (https://127.0.0.1:port), both the authority
// host and the Graph endpoint.
func (s *Server) URL() string { return s.ts.URL }

// Close shuts the server down.
func (s *Server) Close() { s.ts.Close() }

// Client returns an HTTP client that trusts the server's certificate.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// CertPool returns a pool that holds the server's certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ts.Certificate())
	return p
}

// TLSConfig returns a TLS configuration that trusts the server.
func (s *Server) TLSConfig() *tls.Config { return &tls.Config{RootCAs: s.CertPool()} }

// WriteCertFile writes the server's certificate as PEM into dir and returns
// the file's name, for SSL_CERT_FILE.
func (s *Server) WriteCertFile(dir string) (string, error) {
	name := filepath.Join(dir, "graphtest-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ts.Certificate().Raw})
	if err := os.WriteFile(name, b, 0o644); err != nil {
		return "", fmt.Errorf("write certificate: %w", err)
	}
	return name, nil
}

// SetThrottle makes the server answer a fraction rate (0..1) of Graph
// requests with status (429 or 503) and the Retry-After value retryAfter
// (in seconds, "1"; fractions such as "0.05" keep tests fast; "" sends
// none). Token requests are never throttled. The choice is pseudo-random
// with a fixed seed.
func (s *Server) SetThrottle(rate float64, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttleRate, s.throttleStatus, s.retryAfter = rate, status, retryAfter
	s.throttleLimit = 0
}

// SetBudget limits each mailbox to n Graph requests per window, as
// Exchange Online limits an app to 10,000 requests per mailbox in 10
// minutes: a request over the budget is answered 429 with a Retry-After
// of the seconds left in the window (rounded up), and counts against it
// too. n = 0 removes the budget.
func (s *Server) SetBudget(n int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budget, s.budgetWindow = n, window
	s.windows = make(map[string]*budgetWindow)
}

// overBudget counts a request to mailbox against its budget and says how
// long to wait if the budget is spent. The caller holds s.mu.
func (s *Server) overBudget(mailbox string, st *MailboxStats) (wait time.Duration, over bool) {
	if s.budget <= 0 {
		return 0, false
	}
	now := time.Now()
	w := s.windows[mailbox]
	if w == nil || now.Sub(w.start) >= s.budgetWindow {
		w = &budgetWindow{start: now}
		s.windows[mailbox] = w
	}
	w.used++
	if w.used <= s.budget {
		return 0, false
	}
	st.OverBudget++
	st.Throttled++
	return w.start.Add(s.budgetWindow).Sub(now), true
}

// SetValueDelay makes every $value request wait d before it is answered,
// as Exchange Online takes tens to hundreds of milliseconds per message; the
// wait holds one of the mailbox's concurrent requests. A request whose
// client gives up during the wait is not counted in ValueCalls. 0 answers
// at once.
func (s *Server) SetValueDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.valueDelay = d
}

// SetThrottleLimit stops throttling after n more throttled answers.
func (s *Server) SetThrottleLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttleLimit = n
}

// SetPageSizes sets the page sizes of /users and folder lists, and the
// default page size of delta queries (when the client sends no Prefer:
// odata.maxpagesize). Zero leaves a size unchanged.
func (s *Server) SetPageSizes(users, folders, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if users > 0 {
		s.usersPageSize = users
	}
	if folders > 0 {
		s.foldersPageSize = folders
	}
	if delta > 0 {
		s.deltaPageSize = delta
	}
}

// SetLinkHost makes the @odata.nextLink and @odata.deltaLink of the pages
// served from now on name host (host:port) instead of the server's own, as
// a malicious or compromised server could; "" restores the server's own.
func (s *Server) SetLinkHost(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.linkHost = host
}

// linkBase returns "https://HOST" for the links of a page answering r;
// s.mu is held.
func (s *Server) linkBase(r *http.Request) string {
	if s.linkHost != "" {
		return "https://" + s.linkHost
	}
	return "https://" + r.Host
}

// ExpireDeltaTokens makes every delta and skip token issued so far invalid:
// the next request with one gets 410 Gone, syncStateNotFound.
func (s *Server) ExpireDeltaTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.deltas)
	clear(s.sessions)
}

// Stats returns a copy of the counters of a mailbox (by the address it was
// added with).
func (s *Server) Stats(mailbox string) MailboxStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stats[strings.ToLower(mailbox)]; st != nil {
		return *st
	}
	return MailboxStats{}
}

// ResetStats zeroes the counters of every mailbox and the server's.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.stats {
		inFlight := st.InFlight
		*st = MailboxStats{InFlight: inFlight}
	}
	s.requests, s.noImmID, s.tokenReq = 0, 0, 0
}

// Requests returns the number of Graph requests served and how many of them
// came without Prefer: IdType="ImmutableId".
func (s *Server) Requests() (total, withoutImmutableID int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.noImmID
}

// TokenRequests returns the number of token requests served.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenReq
}

// stall is a plan of Stall.
type stall struct {
	path  string // a part of the request path ("/$value", "/delta")
	n     int    // requests left to stall
	after int    // body bytes sent first; -1: no headers
	hits  int
}

// Stall makes the next n Graph requests whose path contains pathPart
// hang, the connection staying open until the client gives up: with
// after < 0 before the response's headers, else after its headers and
// the first after bytes of its body (a request that stalls before its
// headers counts in no statistics). It returns a function that tells how many requests stalled
// so far.
func (s *Server) Stall(pathPart string, n, after int) func() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &stall{path: pathPart, n: n, after: after}
	s.stalls = append(s.stalls, st)
	return func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return st.hits
	}
}

// stallFor returns the plan that stalls r, if any.
func (s *Server) stallFor(r *http.Request) *stall {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.stalls {
		if st.n > 0 && strings.Contains(r.URL.Path, st.path) {
			st.n--
			st.hits++
			return st
		}
	}
	return nil
}

// stallWriter passes the first n bytes of the body, then blocks until the
// request ends.
type stallWriter struct {
	http.ResponseWriter
	r *http.Request
	n int
}

func (w *stallWriter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return w.ResponseWriter.Write(p)
	}
	k, err := w.ResponseWriter.Write(p[:w.n])
	w.n = 0
	if err == nil {
		http.NewResponseController(w.ResponseWriter).Flush()
	}
	<-w.r.Context().Done()
	return k, w.r.Context().Err()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/v1.0/") {
		if st := s.stallFor(r); st != nil {
			if st.after < 0 {
				<-r.Context().Done()
				return
			}
			w = &stallWriter{ResponseWriter: w, r: r, n: st.after}
		}
	}
	switch {
	case strings.HasPrefix(p, "/v1.0/"):
		s.serveGraph(w, r, strings.TrimPrefix(p, "/v1.0/"))
	case p == "/common/discovery/instance":
		s.serveInstanceDiscovery(w, r)
	case strings.HasSuffix(p, "/v2.0/.well-known/openid-configuration"):
		s.serveOpenID(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/v2.0/.well-known/openid-configuration"))
	case strings.HasSuffix(p, "/oauth2/v2.0/devicecode"):
		s.serveDeviceCode(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/oauth2/v2.0/devicecode"))
	case strings.HasSuffix(p, "/oauth2/v2.0/token"):
		s.serveToken(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/oauth2/v2.0/token"))
	default:
		graphError(w, http.StatusNotFound, "UnknownError", "no such endpoint: "+p)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

// graphError writes Graph's error body.
func graphError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"innerError": map[string]any{"date": time.Now().UTC().Format("2006-01-02T15:04:05"), "request-id": newID(8)},
	}})
}

// newID returns a random URL-safe id of n random bytes.
func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
