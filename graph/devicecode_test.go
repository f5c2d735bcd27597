package graph_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/graph/graphtest"
)

const (
	publicClientID = "99999999-8888-7777-6666-555555555555"
	deviceGrant    = "device_code"
)

// prompter records the device code prompts and, when approve is set,
// approves each code as that user after a short while (so that the client
// polls at least once while authorization is pending).
type prompter struct {
	t       *testing.T
	srv     *graphtest.Server
	approve string
	mu      sync.Mutex
	msgs    []string
}

var userCodeRE = regexp.MustCompile(`enter the code (\S+) to authenticate`)

func (p *prompter) prompt(msg string) {
	p.mu.Lock()
	p.msgs = append(p.msgs, msg)
	p.mu.Unlock()
	m := userCodeRE.FindStringSubmatch(msg)
	if m == nil {
		p.t.Errorf("prompt %q names no user code", msg)
		return
	}
	if p.approve == "" {
		return
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := p.srv.ApproveDeviceCode(m[1], p.approve); err != nil {
			p.t.Error(err)
		}
	}()
}

func (p *prompter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// TestDeviceCode signs a user in with the device code flow and keeps the
// tokens in a cache file: the first client prompts once; a second one with
// the same file signs in silently with the refresh token (the access token
// was short-lived); a third uses the cached access token without asking
// the token endpoint; a corrupt file is a clear error, with no prompt.
func TestDeviceCode(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t)
	f.tenant.AddPublicApp(publicClientID)
	dave := f.tenant.AddMailbox("dave@contoso.eu", "Dave")
	for i := range 5 {
		dave.AddMessage("inbox", graphtest.Message{MIME: []byte("Subject: " + strings.Repeat("d", i) + "\r\n\r\nhello\r\n")})
	}
	other := f.tenant.AddMailbox("erin@contoso.eu", "Erin")
	cacheFile := filepath.Join(t.TempDir(), "config", "planb", "graph-token-cache.json")
	newClient := func(p *prompter) *graph.Client {
		return f.client(t, func(o *graph.Options) {
			o.ClientID, o.ClientSecret = publicClientID, ""
			o.DeviceCode, o.DeviceCodePrompt, o.TokenCache = true, p.prompt, cacheFile
		})
	}
	backupDave := func(c *graph.Client) {
		t.Helper()
		snap, got := backupRestore(t, ctx, newRepo(t), c.Source(dave.Address))
		if snap.Partial || got.Count() != 5 {
			t.Fatalf("backup of %s: %d messages (partial %v), want 5", dave.Address, got.Count(), snap.Partial)
		}
		check(t, dave, got)
	}

	// First run: one prompt, approved; access tokens last 2 minutes,
	// which MSAL counts as expired (it renews 5 minutes ahead).
	f.srv.SetTokenLifetime(2 * time.Minute)
	p1 := &prompter{t: t, srv: f.srv, approve: dave.Address}
	c1 := newClient(p1)
	if err := c1.Check(ctx); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	if n := p1.count(); n != 1 {
		t.Fatalf("first sign-in: %d prompts, want 1", n)
	}
	g := f.srv.TokenGrants()
	if g["devicecode"] != 1 || g[deviceGrant] < 2 {
		t.Errorf("first sign-in: grants %v, want 1 device code and at least 2 polls (one pending)", g)
	}
	backupDave(c1)
	if n := f.srv.TokenGrants()["refresh_token"]; n != 0 {
		t.Logf("first run: %d refresh token grants (2 minute tokens, reused for 1 minute)", n)
	}
	// A delegated token reads only the user's own mailbox.
	if _, err := c1.Source(other.Address).Folders(ctx); !errors.Is(err, graph.ErrAccessDenied) {
		t.Errorf("Folders(%s) as %s = %v, want access denied", other.Address, dave.Address, err)
	}
	fi, err := os.Stat(cacheFile)
	if err != nil {
		t.Fatalf("token cache: %v", err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("token cache mode = %v, want 0600", m)
	}
	di, err := os.Stat(filepath.Dir(cacheFile))
	if err != nil {
		t.Fatal(err)
	}
	if m := di.Mode().Perm(); m != 0o700 {
		t.Errorf("token cache folder mode = %v, want 0700", m)
	}
	if b, _ := os.ReadFile(cacheFile); !strings.Contains(string(b), "RefreshToken") {
		t.Errorf("token cache holds no refresh token: %.200s", b)
	}

	// Second run, fresh state, same file: the access token is due, so a
	// refresh token grant and no prompt.
	g1 := f.srv.TokenGrants()
	f.srv.SetTokenLifetime(time.Hour)
	p2 := &prompter{t: t, srv: f.srv}
	c2 := newClient(p2)
	if err := c2.Check(ctx); err != nil {
		t.Fatalf("second Check() = %v", err)
	}
	g2 := f.srv.TokenGrants()
	if p2.count() != 0 || g2["refresh_token"]-g1["refresh_token"] != 1 || g2["devicecode"] != 1 {
		t.Errorf("second sign-in: %d prompts, grants %v; want no prompt, 1 refresh token grant, no new device code", p2.count(), g2)
	}
	backupDave(c2)

	// Third run: the cached access token is good for an hour: no request
	// to the token endpoint at all.
	p3 := &prompter{t: t, srv: f.srv}
	before := f.srv.TokenRequests()
	c3 := newClient(p3)
	if err := c3.Check(ctx); err != nil {
		t.Fatalf("third Check() = %v", err)
	}
	backupDave(c3)
	if n := f.srv.TokenRequests() - before; p3.count() != 0 || n != 0 {
		t.Errorf("third sign-in: %d prompts, %d token requests; want none", p3.count(), n)
	}

	// A corrupt cache file: a clear error naming it, no prompt.
	if err := os.WriteFile(cacheFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	p4 := &prompter{t: t, srv: f.srv}
	err = newClient(p4).Check(ctx)
	var ce *graph.TokenCacheError
	if !errors.As(err, &ce) || !errors.Is(err, graph.ErrAuth) || ce.Path != cacheFile {
		t.Fatalf("Check() with a corrupt cache = %v, want a TokenCacheError for %s", err, cacheFile)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "token cache "+cacheFile+": corrupt") || !strings.Contains(msg, "delete it to sign in again") {
		t.Errorf("error = %q, want one line naming the corrupt cache file", msg)
	}
	if p4.count() != 0 {
		t.Errorf("corrupt cache: %d prompts, want 0", p4.count())
	}
}

// TestDeviceCodeErrors: sign-in failures of the device code flow give one
// clear line, with no prompt.
func TestDeviceCodeErrors(t *testing.T) {
	f := newFixture(t)
	f.tenant.AddPublicApp(publicClientID)
	tests := []struct {
		name string
		mod  func(*graph.Options)
		want string
	}{
		{"unknown tenant", func(o *graph.Options) { o.Tenant = "fabrikam.onmicrosoft.com" },
			`sign in to tenant "fabrikam.onmicrosoft.com" as app ` + publicClientID + `: AADSTS90002: Tenant 'fabrikam.onmicrosoft.com' not found.`},
		{"unknown app", func(o *graph.Options) { o.ClientID = "00000000-0000-0000-0000-000000000000" },
			`: AADSTS700016: Application with identifier '00000000-0000-0000-0000-000000000000' was not found in the directory '` + tenantID + `'.`},
		{"confidential app", func(o *graph.Options) { o.ClientID = clientID },
			`: AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &prompter{t: t, srv: f.srv}
			c := f.client(t, func(o *graph.Options) {
				o.ClientID, o.ClientSecret = publicClientID, ""
				o.DeviceCode, o.DeviceCodePrompt, o.TokenCache = true, p.prompt, filepath.Join(t.TempDir(), "cache.json")
				tt.mod(o)
			})
			err := c.Check(t.Context())
			if !errors.Is(err, graph.ErrAuth) {
				t.Fatalf("Check() = %v, want a sign-in error", err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want one line containing %q", msg, tt.want)
			}
			if p.count() != 0 {
				t.Errorf("%d prompts, want 0", p.count())
			}
		})
	}
}
