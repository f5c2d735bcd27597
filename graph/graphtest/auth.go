package graphtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
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
	t := s.tenant(tenantName)
	if t == nil {
		unknownTenant(w, tenantName)
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	if scope := r.PostForm.Get("scope"); !slices.ContainsFunc(strings.Fields(scope), func(s string) bool { return strings.HasSuffix(s, "/.default") }) {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope))
		return
	}
	id := r.PostForm.Get("client_id")
	s.mu.Lock()
	app := t.apps[id]
	s.mu.Unlock()
	if app == nil {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", id, t.ID))
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
	tok := "fake." + newID(24)
	s.mu.Lock()
	s.tokens[tok] = t
	s.mu.Unlock()
	t.s.mu.Lock()
	t.tokenApps[tok] = app
	t.s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok,
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

// authorize returns the tenant and app of a request's bearer token, or
// writes a 401 and returns nil.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*Tenant, *App) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	t := s.tokens[tok]
	var app *App
	if t != nil {
		app = t.tokenApps[tok]
	}
	s.mu.Unlock()
	if !ok || t == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"`)
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or invalid.")
		return nil, nil
	}
	return t, app
}
