package graphtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// App is an app registration of a tenant.
type App struct {
	ClientID string
	Secret   string
	// Cert, when set, lets the app sign in with a client assertion signed
	// by the certificate's key.
	Cert *x509.Certificate
	// NoMailRead makes every mailbox request answer 403, as for an app
	// without the Mail.Read application permission.
	NoMailRead bool
	// Public allows public client flows: users sign in with the device
	// code flow, without a secret.
	Public bool
}

// AddApp registers an app with a client secret in the tenant.
func (t *Tenant) AddApp(clientID, secret string) *App {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	a := &App{ClientID: clientID, Secret: secret}
	t.apps[clientID] = a
	return a
}

// AddCertApp registers an app that signs in with a certificate.
func (t *Tenant) AddCertApp(clientID string, cert *x509.Certificate) *App {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	a := &App{ClientID: clientID, Cert: cert}
	t.apps[clientID] = a
	return a
}

// SetNoMailRead takes the Mail.Read permission from an app (or gives it back).
func (t *Tenant) SetNoMailRead(clientID string, no bool) {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if a := t.apps[clientID]; a != nil {
		a.NoMailRead = no
	}
}

func (s *Server) tenant(name string) *Tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tenants[strings.ToLower(name)]
}

func (s *Server) serveInstanceDiscovery(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + host + "/common/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []any{map[string]any{
			"preferred_network": host, "preferred_cache": host, "aliases": []string{host},
		}},
	})
}

// aadError writes an Entra ID OAuth error.
func aadError(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Timestamp: %s", aadsts, desc, newID(8), time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
	})
}

func unknownTenant(w http.ResponseWriter, name string) {
	aadError(w, http.StatusBadRequest, "invalid_tenant", 90002,
		fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", name))
}

func (s *Server) serveOpenID(w http.ResponseWriter, r *http.Request, tenant string) {
	if tenant != "common" && tenant != "organizations" && s.tenant(tenant) == nil {
		unknownTenant(w, tenant)
		return
	}
	base := "https://" + r.Host + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              "https://" + r.Host + "/" + tenant + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"tenant_region_scope":                   "EU",
	})
}

// issued is what an access or refresh token grants: an app's access to a
// tenant, and for delegated sign-in the user's.
type issued struct {
	tenant  *Tenant
	app     *App
	user    *Mailbox // nil for app-only tokens
	scope   string
	expires time.Time // access tokens only
}

// deviceCode is a pending device code sign-in.
type deviceCode struct {
	tenant   *Tenant
	app      *App
	userCode string
	scope    string
	expires  time.Time
	user     *Mailbox // set when approved
}

// AddPublicApp registers a public client app (no secret; "allow public
// client flows" on), with which users sign in by the device code flow.
func (t *Tenant) AddPublicApp(clientID string) *App {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	a := &App{ClientID: clientID, Public: true}
	t.apps[clientID] = a
	return a
}

// SetTokenLifetime sets the lifetime of the access tokens issued from now
// on (default 3599 s, as Entra ID's). Graph refuses a token once it expired.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLifetime = d
}

// TokenGrants returns the number of token requests by grant_type
// ("client_credentials", "device_code" for either of its names,
// "refresh_token"), and of device code requests ("devicecode").
func (s *Server) TokenGrants() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.grants)
}

// ApproveDeviceCode signs the user with the mail address user in on the
// device code userCode, as the user does on the verification page. The
// client polling the token endpoint gets its tokens at the next poll.
func (s *Server) ApproveDeviceCode(userCode, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dc := range s.deviceCodes {
		if dc.userCode != userCode {
			continue
		}
		for _, u := range dc.tenant.users {
			if strings.EqualFold(u.Address, user) {
				dc.user = u
				return nil
			}
		}
		return fmt.Errorf("approve device code: no user %q in tenant %s", user, dc.tenant.ID)
	}
	return fmt.Errorf("approve device code: no pending code %q", userCode)
}

// PendingDeviceCodes returns the user codes of the device code sign-ins
// not yet approved nor expired.
func (s *Server) PendingDeviceCodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, dc := range s.deviceCodes {
		if dc.user == nil && time.Now().Before(dc.expires) {
			out = append(out, dc.userCode)
		}
	}
	slices.Sort(out)
	return out
}

// serveDeviceCode is the device authorization endpoint
// (POST /{tenant}/oauth2/v2.0/devicecode, client_id and scope).
func (s *Server) serveDeviceCode(w http.ResponseWriter, r *http.Request, tenantName string) {
	s.mu.Lock()
	s.grants["devicecode"]++
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		aadError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	t := s.tenant(tenantName)
	if t == nil {
		unknownTenant(w, tenantName)
		return
	}
	app := s.app(t, w, r.PostForm.Get("client_id"))
	if app == nil {
		return
	}
	if !app.Public {
		aadError(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	const codeChars = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	code := make([]byte, 9)
	for i, b := range []byte(newID(9))[:9] {
		code[i] = codeChars[int(b)%len(codeChars)]
	}
	dc := &deviceCode{tenant: t, app: app, userCode: string(code), scope: r.PostForm.Get("scope"), expires: time.Now().Add(15 * time.Minute)}
	device := newID(48)
	s.mu.Lock()
	s.deviceCodes[device] = dc
	s.mu.Unlock()
	verify := "https://" + r.Host + "/devicelogin"
	writeJSON(w, http.StatusOK, map[string]any{
		"user_code": dc.userCode, "device_code": device, "verification_uri": verify,
		"expires_in": 900, "interval": 5,
		"message": "To sign in, use a web browser to open the page " + verify + " and enter the code " + dc.userCode + " to authenticate.",
	})
}

// app returns the tenant's app clientID, or writes Entra ID's error.
func (s *Server) app(t *Tenant, w http.ResponseWriter, clientID string) *App {
	s.mu.Lock()
	app := t.apps[clientID]
	s.mu.Unlock()
	if app == nil {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, t.ID))
	}
	return app
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, tenantName string) {
	s.mu.Lock()
	s.tokenReq++
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		aadError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	gt := r.PostForm.Get("grant_type")
	if gt == "urn:ietf:params:oauth:grant-type:device_code" {
		gt = "device_code" // Entra ID takes both; MSAL sends the short one
	}
	s.mu.Lock()
	s.grants[gt]++
	s.mu.Unlock()
	t := s.tenant(tenantName)
	if t == nil {
		unknownTenant(w, tenantName)
		return
	}
	switch gt {
	case "client_credentials":
	case "device_code":
		s.redeemDeviceCode(w, r, t)
		return
	case "refresh_token":
		s.redeemRefreshToken(w, r, t)
		return
	default:
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	if scope := r.PostForm.Get("scope"); !slices.ContainsFunc(strings.Fields(scope), func(s string) bool { return strings.HasSuffix(s, "/.default") }) {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope))
		return
	}
	id := r.PostForm.Get("client_id")
	app := s.app(t, w, id)
	if app == nil {
		return
	}
	switch {
	case r.PostForm.Get("client_assertion") != "":
		if app.Cert == nil || !verifyAssertion(r.PostForm.Get("client_assertion"), app.Cert) {
			aadError(w, http.StatusUnauthorized, "invalid_client", 700027, "The certificate with identifier used to sign the client assertion is not registered on application.")
			return
		}
	case app.Secret == "" || r.PostForm.Get("client_secret") != app.Secret:
		aadError(w, http.StatusUnauthorized, "invalid_client", 7000215,
			fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", id))
		return
	}
	tok, life := s.issue(&issued{tenant: t, app: app})
	secs := int(life.Seconds())
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok,
	})
}

// issue records a new access token and returns it with its lifetime.
func (s *Server) issue(g *issued) (string, time.Duration) {
	tok := "fake." + newID(24)
	s.mu.Lock()
	defer s.mu.Unlock()
	life := s.tokenLifetime
	g.expires = time.Now().Add(life)
	s.tokens[tok] = g
	return tok, life
}

// redeemDeviceCode answers a device code grant: authorization_pending
// until the code is approved, then the user's tokens (once).
func (s *Server) redeemDeviceCode(w http.ResponseWriter, r *http.Request, t *Tenant) {
	device := r.PostForm.Get("device_code")
	s.mu.Lock()
	dc := s.deviceCodes[device]
	var user *Mailbox
	if dc != nil {
		user = dc.user
		if user != nil || time.Now().After(dc.expires) {
			delete(s.deviceCodes, device)
		}
	}
	s.mu.Unlock()
	switch {
	case dc == nil || dc.tenant != t || dc.app.ClientID != r.PostForm.Get("client_id"):
		aadError(w, http.StatusBadRequest, "invalid_grant", 70000, "Provided grant is invalid or malformed.")
	case user == nil && time.Now().After(dc.expires):
		aadError(w, http.StatusBadRequest, "expired_token", 70019, "Verification code expired.")
	case user == nil:
		aadError(w, http.StatusBadRequest, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
	default:
		s.userTokens(w, r, &issued{tenant: t, app: dc.app, user: user, scope: r.PostForm.Get("scope")})
	}
}

// redeemRefreshToken answers a refresh token grant with new tokens.
func (s *Server) redeemRefreshToken(w http.ResponseWriter, r *http.Request, t *Tenant) {
	s.mu.Lock()
	g := s.refresh[r.PostForm.Get("refresh_token")]
	s.mu.Unlock()
	if g == nil || g.tenant != t || g.app.ClientID != r.PostForm.Get("client_id") {
		aadError(w, http.StatusBadRequest, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
		return
	}
	scope := r.PostForm.Get("scope")
	if scope == "" {
		scope = g.scope
	}
	s.userTokens(w, r, &issued{tenant: t, app: g.app, user: g.user, scope: scope})
}

// userTokens writes a delegated token response: access, refresh and ID
// token, and client_info (uid and utid), as MSAL expects.
func (s *Server) userTokens(w http.ResponseWriter, r *http.Request, g *issued) {
	tok, life := s.issue(g)
	rt := "fakert." + newID(32)
	s.mu.Lock()
	s.refresh[rt] = &issued{tenant: g.tenant, app: g.app, user: g.user, scope: g.scope}
	s.mu.Unlock()
	now := time.Now()
	claims := map[string]any{
		"aud": g.app.ClientID, "iss": "https://" + r.Host + "/" + g.tenant.ID + "/v2.0",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"name": g.user.DisplayName, "oid": g.user.ID, "preferred_username": g.user.Address,
		"sub": newID(16), "tid": g.tenant.ID, "ver": "2.0",
	}
	hdr, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "RS256", "kid": "graphtest"})
	body, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	info, _ := json.Marshal(map[string]string{"uid": g.user.ID, "utid": g.tenant.ID})
	secs := int(life.Seconds())
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "scope": g.scope, "expires_in": secs, "ext_expires_in": secs,
		"access_token": tok, "refresh_token": rt,
		"id_token":    enc(hdr) + "." + enc(body) + "." + enc([]byte("graphtest-signature")),
		"client_info": enc(info),
	})
}

// verifyAssertion checks the RS256 signature of a client assertion JWT
// against cert's public key.
func verifyAssertion(jwt string, cert *x509.Certificate) bool {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return false
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || json.Unmarshal(b, &hdr) != nil {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch hdr.Alg {
	case "RS256":
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
	case "PS256":
		return rsa.VerifyPSS(pub, crypto.SHA256, sum[:], sig, nil) == nil
	}
	return false
}

// authorize returns the tenant, app and (for delegated tokens) user of a
// request's bearer token, or writes a 401 and returns nil.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*Tenant, *App, *Mailbox) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	g := s.tokens[tok]
	s.mu.Unlock()
	if !ok || g == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"`)
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or invalid.")
		return nil, nil, nil
	}
	if time.Now().After(g.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="invalid_token", error_description="The access token has expired"`)
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
		return nil, nil, nil
	}
	return g.tenant, g.app, g.user
}
