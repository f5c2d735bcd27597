// Package graph backs up Microsoft 365 (Exchange Online) mailboxes through
// Microsoft Graph.
//
// A Client signs in to one tenant: as an app with azidentity (client
// secret or certificate), or as a user with MSAL's device code flow, whose
// tokens are kept in a token cache file (mode 0600, Options.TokenCache,
// default DefaultTokenCache) so that later runs sign in silently with the
// refresh token. It lists users and folders through msgraph-sdk-go. A
// Source, made by Client.Source, is the archive.Source of one mailbox: its
// Folders are the mailbox's whole folder tree (hidden folders included,
// paths built from display names, the well-known folders mapped to
// special-use attributes and the inbox to "INBOX"); its Sync follows the
// folder's delta query and stores the folder's @odata.deltaLink as the
// cursor, so that a nightly run asks only for what changed. Each new or
// changed message is read from /messages/{id}/$value as a stream. These two
// requests, made once per page and once per message, are plain GETs with
// the client's bearer token through the same HTTP client as the SDK's,
// decoded with encoding/json: kiota's request building and parse nodes
// cost more CPU than the rest of the connector (BenchmarkBackupRemote).
// Without Options.HTTPClient the client speaks HTTP/1.1 (a connection per
// request in flight), which costs less CPU per message than Go's HTTP/2.
//
// The bearer token goes only to the Graph endpoint's host: a next or delta
// link a server hands out that names another host ends the sync with an
// error wrapping ErrForeignLink, before any request; a delta link stored
// in a cursor that names another host (an endpoint changed since) makes
// Sync list the folder again.
//
// Every request carries Prefer: IdType="ImmutableId", so that a message
// keeps its id when it moves. Requests answered 429, 503 or 504 are retried
// after the server's Retry-After (or a capped exponential backoff); at most
// Options.Connections requests per mailbox are in flight at once (Exchange
// Online allows 4). Every request has deadlines (Options.IOTimeout): for
// its response's headers, then for each read of its body; a request that
// stalls or breaks off before its body is read whole is made again, as
// after a dropped connection. A message that still cannot be read, or
// whose body stalls midway while it streams into the archive, is reported
// with archive.Changes.Skip (the next run reads it again).
//
// This package is the only importer of msgraph-sdk-go, azidentity and MSAL.
// graph/graphtest is a fake Graph and token endpoint for tests.
package graph
