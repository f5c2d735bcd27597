package graph

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"codeberg.org/planb/planb/archive/atomicfile"
)

// DefaultTokenCache returns the token cache file of the device code
// sign-in: graph-token-cache.json in the folder planb of the user's
// configuration folder (os.UserConfigDir: ~/.config on Linux).
func DefaultTokenCache() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("token cache: %w", err)
	}
	return filepath.Join(dir, "planb", "graph-token-cache.json"), nil
}

// fileCache keeps MSAL's token cache (access, refresh and ID tokens, and
// the accounts) in a file only its owner can read (0600, in a folder made
// 0700), written atomically. It implements MSAL's cache.ExportReplace.
type fileCache struct {
	path string
	mu   sync.Mutex
}

// TokenCacheError is a token cache file that cannot be read or written.
// A corrupt file is not replaced by a new sign-in: the error says to
// delete it.
type TokenCacheError struct {
	Path string
	Err  error
}

func (e *TokenCacheError) Error() string { return "token cache " + e.Path + ": " + e.Err.Error() }
func (e *TokenCacheError) Unwrap() error { return e.Err }

// Replace loads the file into MSAL's in-memory cache; a missing or empty
// file leaves it as it is.
func (f *fileCache) Replace(ctx context.Context, c cache.Unmarshaler, _ cache.ReplaceHints) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := os.ReadFile(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &TokenCacheError{Path: f.path, Err: err}
	case len(b) == 0:
		return nil
	}
	if err := c.Unmarshal(b); err != nil {
		return &TokenCacheError{Path: f.path, Err: fmt.Errorf("corrupt (%v): delete it to sign in again", err)}
	}
	return nil
}

// Export writes MSAL's in-memory cache to the file: into a temporary file
// of the same folder, then renamed over it.
func (f *fileCache) Export(ctx context.Context, c cache.Marshaler, _ cache.ExportHints) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := c.Marshal()
	if err != nil {
		return &TokenCacheError{Path: f.path, Err: err}
	}
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &TokenCacheError{Path: f.path, Err: err}
	}
	if err := atomicfile.Write(f.path, b, 0o600); err != nil {
		return &TokenCacheError{Path: f.path, Err: err}
	}
	return nil
}

// deviceCodeCredential signs a user in with MSAL's public client: from the
// token cache file when it holds an account of the tenant (refreshing the
// access token with the refresh token as needed), else with the device
// code flow, showing its instructions through prompt.
type deviceCodeCredential struct {
	client public.Client
	tenant string
	prompt func(string)
	mu     sync.Mutex
}

func newDeviceCodeCredential(o *Options, knownAuthority bool, hc *http.Client) (*deviceCodeCredential, error) {
	path := o.TokenCache
	if path == "" {
		var err error
		if path, err = DefaultTokenCache(); err != nil {
			return nil, err
		}
	}
	client, err := public.New(o.ClientID,
		public.WithAuthority(o.AuthorityHost+o.Tenant),
		public.WithCache(&fileCache{path: path}),
		public.WithHTTPClient(hc),
		public.WithInstanceDiscovery(knownAuthority),
	)
	if err != nil {
		return nil, err
	}
	return &deviceCodeCredential{client: client, tenant: o.Tenant, prompt: o.DeviceCodePrompt}, nil
}

// GetToken implements azcore.TokenCredential.
func (d *deviceCodeCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	accounts, err := d.client.Accounts(ctx)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	if acct, ok := d.account(accounts); ok {
		res, err := d.client.AcquireTokenSilent(ctx, opts.Scopes, public.WithSilentAccount(acct), public.WithClaims(opts.Claims))
		if err == nil {
			return azcore.AccessToken{Token: res.AccessToken, ExpiresOn: res.ExpiresOn}, nil
		}
		var ce *TokenCacheError
		if errors.As(err, &ce) || ctx.Err() != nil {
			return azcore.AccessToken{}, err
		}
		// The refresh token expired or was revoked: sign in again.
	}
	dc, err := d.client.AcquireTokenByDeviceCode(ctx, opts.Scopes, public.WithClaims(opts.Claims))
	if err != nil {
		return azcore.AccessToken{}, err
	}
	d.prompt(dc.Result.Message)
	res, err := dc.AuthenticationResult(ctx)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	return azcore.AccessToken{Token: res.AccessToken, ExpiresOn: res.ExpiresOn}, nil
}

// account picks the cached account of the tenant: the one whose tenant id
// is the tenant asked for, or the only one.
func (d *deviceCodeCredential) account(accounts []public.Account) (public.Account, bool) {
	for _, a := range accounts {
		if strings.EqualFold(a.Realm, d.tenant) {
			return a, true
		}
	}
	if len(accounts) == 1 {
		return accounts[0], true
	}
	return public.Account{}, false
}
