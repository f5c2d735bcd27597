package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrAuth: signing in failed (wrong secret, unknown tenant or app).
	ErrAuth = errors.New("sign-in failed")
	// ErrAccessDenied: Graph answered 403 (no Mail.Read permission, or an
	// application access policy leaves the mailbox out).
	ErrAccessDenied = errors.New("access denied")
	// ErrNoMailbox: the user has no Exchange Online mailbox.
	ErrNoMailbox = errors.New("no mailbox")
	// ErrNotFound: Graph answered 404.
	ErrNotFound = errors.New("not found")
	// ErrThrottled: Graph still answered 429 or 503 after every retry.
	ErrThrottled = errors.New("throttled")
	// errSyncState: the delta link expired (410 Gone, syncStateNotFound).
	errSyncState = errors.New("delta token expired")
)

// Error is an error answer of Microsoft Graph.
type Error struct {
	Status  int    // HTTP status
	Code    string // Graph's error code ("ErrorAccessDenied")
	Message string
}

func (e *Error) Error() string {
	switch {
	case e.Code != "" && e.Message != "":
		return fmt.Sprintf("%s (%d %s)", strings.TrimSuffix(e.Message, "."), e.Status, e.Code)
	case e.Code != "":
		return fmt.Sprintf("%d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
}

// Is maps Graph's answers to the package's sentinel errors.
func (e *Error) Is(target error) bool {
	code := strings.ToLower(e.Code)
	switch target {
	case ErrAccessDenied:
		return e.Status == http.StatusForbidden
	case ErrNoMailbox:
		return code == "mailboxnotenabledforrestapi" || code == "mailboxnotsupportedforrestapi" || code == "resourcenotfound" && strings.Contains(strings.ToLower(e.Message), "mailbox")
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrThrottled:
		return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
	case errSyncState:
		return e.Status == http.StatusGone || code == "syncstatenotfound" || code == "syncstateinvalid" || code == "resyncrequired"
	}
	return false
}

// apiError turns an SDK error into an *Error (or an auth error) prefixed
// by op.
func (c *Client) apiError(op string, err error) error {
	var oe *odataerrors.ODataError
	var ae *abstractions.ApiError
	var authErr *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &authErr):
		return fmt.Errorf("%s: %w", op, c.authError(err))
	case errors.As(err, &oe):
		e := &Error{Status: oe.GetStatusCode()}
		if me := oe.GetErrorEscaped(); me != nil {
			e.Code, e.Message = deref(me.GetCode()), deref(me.GetMessage())
		}
		return fmt.Errorf("%s: %w", op, e)
	case errors.As(err, &ae):
		return fmt.Errorf("%s: %w", op, &Error{Status: ae.ResponseStatusCode})
	}
	return fmt.Errorf("%s: %w", op, err)
}

// errorFromResponse reads Graph's error body from resp (closing it).
func errorFromResponse(resp *http.Response) *Error {
	defer resp.Body.Close()
	e := &Error{Status: resp.StatusCode}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	}
	return e
}

// AuthError is a failed sign-in, with Entra ID's reason.
type AuthError struct {
	Tenant, ClientID string
	Code             string // OAuth error ("invalid_client")
	Description      string // the first sentence of Entra ID's description
	err              error
}

func (e *AuthError) Error() string {
	s := fmt.Sprintf("sign in to tenant %q as app %s", e.Tenant, e.ClientID)
	switch {
	case e.Description != "":
		return s + ": " + e.Description
	case e.Code != "":
		return s + ": " + e.Code
	}
	return s + ": " + firstLine(e.err.Error())
}

func (e *AuthError) Unwrap() []error { return []error{ErrAuth, e.err} }

// authError condenses azidentity's many-line error into one line.
func (c *Client) authError(err error) error {
	ae := &AuthError{Tenant: c.opts.Tenant, ClientID: c.opts.ClientID, err: err}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil && afe.RawResponse.Body != nil {
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		b, _ := io.ReadAll(io.LimitReader(afe.RawResponse.Body, 64<<10))
		if json.Unmarshal(b, &body) == nil {
			ae.Code = body.Error
			ae.Description = shortDescription(body.Description)
		}
	}
	if ae.Description == "" && ae.Code == "" {
		// MSAL's own errors (device code sign-in) end with the answer's
		// body: "http call(URL)(POST) error: reply status code was 400:\n{...}".
		if i := strings.Index(err.Error(), "\n{"); i >= 0 {
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.NewDecoder(strings.NewReader(err.Error()[i+1:])).Decode(&body) == nil {
				ae.Code = body.Error
				ae.Description = shortDescription(body.Description)
			}
		}
	}
	if ae.Description == "" && ae.Code == "" {
		// Errors without a response (discovery, network): MSAL's text.
		ae.Description = firstLine(err.Error())
		if i := strings.Index(ae.Description, "AADSTS"); i >= 0 {
			ae.Description = shortDescription(ae.Description[i:])
		}
	}
	return ae
}

// shortDescription keeps Entra ID's error text up to its trace id.
func shortDescription(s string) string {
	s = firstLine(s)
	for _, cut := range []string{" Trace ID:", " Trace ID", "\r"} {
		if i := strings.Index(s, cut); i >= 0 {
			s = s[:i]
		}
	}
	// The first sentence says it; the rest is advice of its own.
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	return strings.TrimSpace(s)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
