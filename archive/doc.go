// Package archive is planb's vocabulary: the types that travel between
// sources (where mail comes from), the repository (where it is kept) and
// sinks (where it goes back to).
//
// It imports only the standard library so that every connector (imap,
// graph, mailfile) can depend on it without pulling in the repository code.
package archive
