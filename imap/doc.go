// Package imap backs up IMAP accounts and pours snapshots back into them:
// Source implements archive.Source and Sink implements archive.Sink on
// go-imap v2's client (imported as goimap); Verifier compares a snapshot
// with what an account holds.
//
// A Source lists every selectable folder (nested and non-ASCII names,
// RFC 6154 special-use attributes) and, per folder, reports what changed
// since the folder's cursor (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and the
// message count): an unchanged folder costs one EXAMINE; new messages are
// fetched by UID; flag changes come from CONDSTORE's CHANGEDSINCE where the
// server offers it, else from one FETCH FLAGS pass; expunged messages leave
// the snapshot. A changed UIDVALIDITY makes the folder start from scratch;
// the repository's deduplication makes that cheap.
//
// Bodies (BODY.PEEK[]) stream from the connection straight into the
// archive, in batches of one FETCH command each (the server streams a
// batch without round trips), never whole in memory. They are fetched by
// sequence number, and each is paired with its UID whatever the order of
// the items (a body sent before its UID waits in a temporary file). Every
// message asked for is stored, skipped (named), or found expunged by a UID
// SEARCH. Folders are read in parallel on a pool of connections. A dropped
// or stalled connection is retried with backoff and the folder's sync
// starts again; a server that asks for a pause ("Request is throttled.
// Suggested Backoff Time: N milliseconds", as Microsoft 365 does) is
// obeyed; a message the server refuses to send is reported through
// archive.Changes.Skip.
//
// Gmail (a server offering X-GM-EXT-1) is read in label mode when its All
// Mail folder (\All) is among the folders backed up: the Source lists only
// All Mail, Spam and Trash, and reads each message of All Mail once, keyed
// by its X-GM-MSGID, with its labels from X-GM-LABELS (archive.Message.Labels;
// a label change comes through archive.Relabeler without a new download).
// Gmail's download cap ("[OVERQUOTA] Account exceeded command or bandwidth
// limits") stops the Source's syncs with ErrDownloadLimit; its [THROTTLED]
// answers are pauses. See gmail.go.
//
// What a server sends is data, not a promise: once logged in, every
// connection has I/O deadlines (Options.IOTimeout: a write, and while a
// command is outstanding, the wait for the next bytes of its answer), and
// no response but a message body's literal is held in memory past a
// bound (4 MiB, 64 MiB for a SEARCH; see ioConn). planb speaks STARTTLS
// itself, so that go-imap's client reads above TLS through that bound.
//
// A Sink maps folder paths onto the target's namespace, separator and
// special-use folders, and APPENDs messages with their flags, keywords and
// internal dates, several in flight on each of several connections. Before
// appending into a folder it hashes what the folder already holds, so an
// interrupted restore run again appends only what is missing, whatever the
// messages' Message-IDs. go-imap has no MULTIAPPEND and sends large literals
// synchronizing, so with a server that offers MULTIAPPEND (RFC 3502) and
// LITERAL+ (RFC 7888) the Sink appends through its own APPEND-only
// connection (appender.go) in batches per APPEND, which the server stores
// in one transaction. A message larger than SinkOptions.StreamAbove streams
// from the repository into the literal, read twice when the resume check
// needs its hash, and is never held whole in memory. A keyword the server
// refuses is dropped from that message and later ones, with a warning.
//
// Wrong credentials, an untrusted certificate and an unreachable server are
// reported as errors wrapping ErrAuth, ErrCertificate and ErrUnreachable.
package imap
