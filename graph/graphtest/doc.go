// Package graphtest is a fake Microsoft Graph and Microsoft Entra ID token
// endpoint for tests and demos.
//
// A Server is one TLS httptest server that answers, for the tenants, apps
// and mailboxes a test adds to it, exactly the calls planb makes:
//
//   - the OpenID discovery document, instance discovery and the OAuth 2.0
//     client-credentials token endpoint (/{tenant}/oauth2/v2.0/token), with
//     Entra ID's errors for a wrong secret (401 invalid_client, AADSTS7000215),
//     an unknown client (AADSTS700016) and an unknown tenant (AADSTS90002);
//   - the device code flow for public client apps: /{tenant}/oauth2/v2.0/devicecode
//     (user_code, device_code, verification_uri, message) and the token
//     endpoint's device_code grant (authorization_pending until a test
//     calls ApproveDeviceCode, then access, refresh and ID token and
//     client_info, as MSAL expects), and the refresh_token grant; a user's
//     token reads only that user's mailbox, and Graph refuses expired
//     access tokens (SetTokenLifetime);
//   - /v1.0/users with paging (@odata.nextLink; SetLinkHost points the
//     links of every list elsewhere);
//   - /users/{id|upn}/mailFolders and /mailFolders/{id}/childFolders
//     (includeHiddenFolders), folders by well-known name (inbox, sentitems,
//     drafts, deleteditems, junkemail, archive...);
//   - /mailFolders/{id}/messages/delta with $select, Prefer:
//     odata.maxpagesize, @odata.nextLink ($skiptoken), a final
//     @odata.deltaLink ($deltatoken), @removed entries, and 410 Gone
//     (syncStateNotFound) for expired delta tokens;
//   - /messages/{id}/$value, the raw MIME.
//
// Exchange Online's limits per app and mailbox are kept: a fifth concurrent
// request is answered 429, and SetBudget caps the requests per window (10,000
// in 10 minutes in Exchange Online), answering 429 with the Retry-After of
// the window's end. Faults are injected on demand: 429 or 503 with
// Retry-After at a chosen rate, 403 for a mailbox the app may not read,
// expired delta tokens; SetValueDelay slows $value answers down; requests
// hang before their headers or in the middle of their body (Stall). The
// server counts requests, $value calls and the largest number of concurrent
// requests per mailbox, and records requests without Prefer:
// IdType="ImmutableId".
//
// All methods of Server, Tenant and Mailbox are safe for concurrent use.
package graphtest
