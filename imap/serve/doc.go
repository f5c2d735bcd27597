// Package serve serves a read-only mail store over IMAP (IMAP4rev1 and
// IMAP4rev2), on go-imap v2's imapserver: the day a provider cuts a
// mailbox off, Thunderbird, Outlook, Apple Mail or a phone read the
// archive directly.
//
// A Store says who may log in and what each login reads: a tree of
// mailboxes, each a fixed list of messages with UIDs, flags, internal
// dates and sizes, whose bytes it opens as an io.ReadSeeker. cmd/planb
// implements it on the repository; this package knows nothing of
// repositories.
//
// The server answers LOGIN and AUTHENTICATE PLAIN, CAPABILITY, LIST (with
// SPECIAL-USE, LIST-EXTENDED and LIST-STATUS), STATUS, SELECT, EXAMINE,
// FETCH and UID FETCH (FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE,
// BODYSTRUCTURE, BODY[section]<partial>, BINARY[section]<partial>,
// BINARY.SIZE), SEARCH and UID SEARCH (every RFC 3501 criterion, ESEARCH,
// SEARCHRES), STORE (kept for the session only: PERMANENTFLAGS is empty),
// IDLE, NOOP, CHECK, NAMESPACE, CLOSE, UNSELECT and LOGOUT. APPEND, COPY,
// MOVE, EXPUNGE, CREATE, DELETE and RENAME answer NO [CANNOT];
// SUBSCRIBE and UNSUBSCRIBE are accepted and forgotten (every mailbox is
// subscribed).
//
// Messages stream from the store, converted to CRLF line ends on the way
// (wire.go), and are never held whole in memory: the server keeps, per
// message content, its size on the wire, its header and its MIME
// structure in bounded caches, learnt by reading the message once. A
// selected mailbox never changes; a newer one (a new snapshot) shows at
// the next SELECT.
//
// The Server's methods are safe for concurrent use.
package serve
