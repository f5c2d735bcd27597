package graph

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	kiotaauth "github.com/microsoft/kiota-authentication-azure-go"
	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/users"
)

// Options configure a Client. Tenant and ClientID are required, and one of
// ClientSecret, Certificate or DeviceCode.
type Options struct {
	Tenant   string // tenant id or domain
	ClientID string // the app registration's application (client) id

	// ClientSecret signs in as the app (client credentials).
	ClientSecret string
	// Certificate, with CertificatePassword, is a PEM or PKCS#12 file's
	// content holding the app's certificate and private key.
	Certificate         []byte
	CertificatePassword []byte
	// DeviceCode signs in as a user with the device code flow (delegated
	// permissions); DeviceCodePrompt shows the instructions (required).
	DeviceCode       bool
	DeviceCodePrompt func(message string)
	// TokenCache is the file that keeps the device code sign-in's tokens
	// (mode 0600), so that the next run needs no new sign-in while the
	// refresh token lasts; default DefaultTokenCache().
	TokenCache string

	// Cloud is "global" (the default), "usgov", "usgov-dod" or "china".
	Cloud string
	// GraphEndpoint and AuthorityHost override the cloud's endpoints
	// (https://graph.microsoft.com, https://login.microsoftonline.com/).
	GraphEndpoint string
	AuthorityHost string

	// Connections is the most requests in flight per mailbox (default and
	// maximum 4, Exchange Online's limit).
	Connections int
	// PageSize is the delta page size asked for with Prefer:
	// odata.maxpagesize (default 200).
	PageSize int
	// MaxRetries is how often a throttled or failed request is retried
	// (default 8); MaxRetryWait caps one wait (default 5 minutes), however
	// long the server's Retry-After.
	MaxRetries   int
	MaxRetryWait time.Duration
	// IOTimeout bounds the wait for a response's headers, and while its
	// body is read, for each next bytes (default 3 minutes, past Graph's
	// own gateway timeout): a request that stalls is made again as after
	// a dropped connection; a message body that stalls midway is skipped,
	// named, and read again by the next run.
	IOTimeout time.Duration

	// HTTPClient, if set, is the client whose Transport carries every
	// request (sign-in and Graph); tests set it to trust a fake server.
	// Its Timeout must be zero: message bodies stream.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Clouds lists the national clouds Options.Cloud accepts.
var Clouds = map[string]struct{ Graph, Authority string }{
	"global":    {"https://graph.microsoft.com", "https://login.microsoftonline.com/"},
	"usgov":     {"https://graph.microsoft.us", "https://login.microsoftonline.us/"},
	"usgov-dod": {"https://dod-graph.microsoft.us", "https://login.microsoftonline.us/"},
	"china":     {"https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn/"},
}

// Client is a signed-in connection to one tenant's Microsoft Graph. It is
// safe for concurrent use.
type Client struct {
	opts     Options
	log      *slog.Logger
	endpoint string // without /v1.0
	origin   string // the endpoint's "host:port", lower case: where the token may go
	scope    string
	cred     azcore.TokenCredential
	http     *http.Client // the SDK's client: retries, limits, headers
	adapter  *msgraph.GraphRequestAdapter
	gsc      *msgraph.GraphServiceClient
}

// NewClient checks opts and prepares a client. It does not sign in: the
// first request does (see Check).
func NewClient(opts *Options) (*Client, error) {
	if opts == nil || opts.Tenant == "" || opts.ClientID == "" {
		return nil, errors.New("graph: tenant and client id are required")
	}
	o := *opts
	if o.Cloud == "" {
		o.Cloud = "global"
	}
	cl, ok := Clouds[o.Cloud]
	if !ok {
		return nil, fmt.Errorf("graph: unknown cloud %q (want global, usgov, usgov-dod or china)", o.Cloud)
	}
	knownAuthority := o.AuthorityHost == ""
	if o.GraphEndpoint == "" {
		o.GraphEndpoint = cl.Graph
	}
	if o.AuthorityHost == "" {
		o.AuthorityHost = cl.Authority
	}
	if !strings.HasSuffix(o.AuthorityHost, "/") {
		o.AuthorityHost += "/"
	}
	o.GraphEndpoint = strings.TrimSuffix(strings.TrimSuffix(o.GraphEndpoint, "/"), "/v1.0")
	gu, err := url.Parse(o.GraphEndpoint)
	if err != nil || gu.Scheme != "https" || gu.Host == "" {
		return nil, fmt.Errorf("graph: endpoint %q: want an https URL", o.GraphEndpoint)
	}
	if au, err := url.Parse(o.AuthorityHost); err != nil || au.Scheme != "https" || au.Host == "" {
		return nil, fmt.Errorf("graph: authority host %q: want an https URL", o.AuthorityHost)
	}
	if o.Connections <= 0 || o.Connections > 4 {
		o.Connections = 4
	}
	if o.PageSize <= 0 {
		o.PageSize = 200
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 8
	}
	if o.MaxRetryWait <= 0 {
		o.MaxRetryWait = 5 * time.Minute
	}
	if o.IOTimeout <= 0 {
		o.IOTimeout = 3 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var base http.RoundTripper = defaultTransport()
	if o.HTTPClient != nil && o.HTTPClient.Transport != nil {
		base = o.HTTPClient.Transport
	}
	base = &deadlineTransport{base: base, timeout: o.IOTimeout}
	c := &Client{opts: o, log: log, endpoint: o.GraphEndpoint, origin: originOf(gu), scope: o.GraphEndpoint + "/.default"}

	copts := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: o.AuthorityHost},
		Transport: &http.Client{Transport: base},
		Retry:     policy.RetryOptions{MaxRetries: 2},
	}
	switch {
	case o.ClientSecret != "":
		c.cred, err = azidentity.NewClientSecretCredential(o.Tenant, o.ClientID, o.ClientSecret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions: copts, DisableInstanceDiscovery: !knownAuthority,
		})
	case len(o.Certificate) > 0:
		certs, key, perr := azidentity.ParseCertificates(o.Certificate, o.CertificatePassword)
		if perr != nil {
			return nil, fmt.Errorf("graph: client certificate: %w", perr)
		}
		c.cred, err = azidentity.NewClientCertificateCredential(o.Tenant, o.ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
			ClientOptions: copts, DisableInstanceDiscovery: !knownAuthority, SendCertificateChain: true,
		})
	case o.DeviceCode:
		if o.DeviceCodePrompt == nil {
			return nil, errors.New("graph: device code sign-in needs a prompt")
		}
		c.cred, err = newDeviceCodeCredential(&o, knownAuthority, &http.Client{Transport: base})
	default:
		return nil, errors.New("graph: no credential: give a client secret, a certificate or use the device code flow")
	}
	if err != nil {
		return nil, fmt.Errorf("graph: credential: %w", err)
	}

	c.cred = &tokenCache{cred: c.cred}
	c.http = &http.Client{Transport: &transport{base: base, c: c}}
	auth, err := kiotaauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(c.cred, []string{c.scope}, []string{gu.Hostname()})
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	c.adapter, err = msgraph.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, c.http)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	c.adapter.SetBaseUrl(o.GraphEndpoint + "/v1.0")
	// NewGraphServiceClient would store the SDK's global backing store
	// factory again (the value it already holds) for every client, a
	// data race with every model the SDK makes meanwhile for another
	// client: a run backs up several tenants at once. With nil, the
	// adapter is set up all the same and the global is left alone.
	c.gsc = &msgraph.GraphServiceClient{GraphBaseServiceClient: *msgraph.NewGraphBaseServiceClient(c.adapter, nil)}
	return c, nil
}

// defaultTransport is the transport used when Options.HTTPClient gives
// none: http.DefaultTransport's settings (proxy from the environment, the
// system's CA pool), but HTTP/1.1 only, with enough idle connections kept
// for every mailbox's requests in flight. Over HTTP/2 all requests share one
// connection and Go's HTTP/2 framing costs more CPU per message than the
// message's own TLS reading (measured with BenchmarkBackupRemote); Graph
// serves both.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	var p http.Protocols
	p.SetHTTP1(true)
	t.Protocols = &p
	t.ForceAttemptHTTP2 = false
	// Clone has set up HTTP/2: offer only HTTP/1.1 in the TLS handshake.
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.NextProtos = []string{"http/1.1"}
	t.MaxIdleConnsPerHost = 64
	t.ReadBufferSize = 32 << 10
	return t
}

// Check signs in, so that a wrong secret or tenant is reported before any
// other work.
func (c *Client) Check(ctx context.Context) error {
	_, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return c.authError(err)
	}
	return nil
}

// ErrForeignLink is a link, handed out by the server (@odata.nextLink,
// @odata.deltaLink) or stored in a cursor, to another host than the
// Graph endpoint's. It is never followed: requests carry the bearer token.
var ErrForeignLink = errors.New("not the Graph endpoint")

// originOf returns the "host:port" of an https URL, lower case, with the
// default port spelled out.
func originOf(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return strings.ToLower(net.JoinHostPort(u.Hostname(), port))
}

// checkLink returns an error wrapping ErrForeignLink unless link is an
// https URL, without user information, of the Graph endpoint's host and
// port. what names the link in the error ("next link"); the link itself is
// not repeated, only its host: its query holds the mailbox's sync state.
func (c *Client) checkLink(what, link string) error {
	u, err := url.Parse(link)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if u.Scheme != "https" || u.User != nil || u.Host == "" || originOf(u) != c.origin {
		return fmt.Errorf("%s to %s://%s: %w %s: refused, the bearer token goes only there",
			what, u.Scheme, u.Host, ErrForeignLink, c.endpoint)
	}
	return nil
}

// Endpoint returns the Graph endpoint in use, without /v1.0.
func (c *Client) Endpoint() string { return c.endpoint }

// User is a user of the tenant that has a mail address.
type User struct {
	ID                string
	UserPrincipalName string
	Mail              string
}

// Users lists the tenant's users that have a mail address (/users, every
// page). Whether each has an Exchange mailbox shows when its folders are
// listed (ErrNoMailbox).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	top := int32(999)
	cfg := &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{
			Select: []string{"id", "userPrincipalName", "mail"}, Top: &top,
		},
	}
	resp, err := c.gsc.Users().Get(ctx, cfg)
	var out []User
	for {
		if err != nil {
			return nil, c.apiError("list users", err)
		}
		for _, u := range resp.GetValue() {
			if u.GetMail() == nil || *u.GetMail() == "" {
				continue
			}
			out = append(out, User{ID: deref(u.GetId()), UserPrincipalName: deref(u.GetUserPrincipalName()), Mail: *u.GetMail()})
		}
		next := resp.GetOdataNextLink()
		if next == nil || *next == "" {
			return out, nil
		}
		if err := c.checkLink("next link", *next); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		resp, err = c.gsc.Users().WithUrl(*next).Get(ctx, nil)
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// tokenCache hands out the last access token until five minutes before it
// expires, or half its lifetime for tokens shorter-lived than ten minutes.
// azidentity and MSAL cache tokens too, but a lookup costs tens of
// microseconds (MSAL's file cache: a read of the file), and a backup asks
// once per message ($value). A different scope, tenant or claims challenge
// (continuous access evaluation) gets a new token.
type tokenCache struct {
	cred  azcore.TokenCredential
	mu    sync.Mutex
	key   string
	tok   azcore.AccessToken
	renew time.Time
}

func (t *tokenCache) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	key := strings.Join(opts.Scopes, " ") + "\x00" + opts.TenantID + "\x00" + opts.Claims
	t.mu.Lock()
	defer t.mu.Unlock()
	if key == t.key && time.Now().Before(t.renew) {
		return t.tok, nil
	}
	tok, err := t.cred.GetToken(ctx, opts)
	if err != nil {
		return tok, err
	}
	t.key, t.tok = key, tok
	t.renew = tok.ExpiresOn.Add(-min(5*time.Minute, time.Until(tok.ExpiresOn)/2))
	return tok, nil
}
