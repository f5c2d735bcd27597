// Package graph backs up Microsoft 365 (Exchange Online) mailboxes through
// Microsoft Graph.
//
// A Client signs in to one tenant with azidentity (client secret,
// certificate or device code) and talks to Graph through msgraph-sdk-go. A
// Source, made by Client.Source, is the archive.Source of one mailbox: its
// Folders are the mailbox's whole folder tree (hidden folders included,
// paths built from display names, the well-known folders mapped to
// special-use attributes and the inbox to "INBOX"); its Sync follows the
// folder's delta query and stores the folder's @odata.deltaLink as the
// cursor, so that a nightly run asks only for what changed. Each new or
// changed message is read from /messages/{id}/$value as a stream.
//
// Every request carries Prefer: IdType="ImmutableId", so that a message
// keeps its id when it moves. Requests answered 429, 503 or 504 are retried
// after the server's Retry-After (or a capped exponential backoff); at most
// Options.Connections requests per mailbox are in flight at once (Exchange
// Online allows 4). A message that still cannot be read is reported with
// archive.Changes.Skip.
//
// This package is the only importer of msgraph-sdk-go and azidentity.
// graph/graphtest is a fake Graph and token endpoint for tests.
package graph
