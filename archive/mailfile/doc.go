// Package mailfile reads and writes mail kept in local files: Maildir
// (Maildir++ as written by Dovecot and Courier, or a tree of plain maildirs),
// directories of one-message files (MH, the Enron/CMU corpus, .eml exports)
// and mbox files (mboxrd).
//
// Sources (MaildirSource, MboxSource) implement archive.Source and are safe
// for concurrent Sync calls on different folders. Sinks (MaildirSink,
// MboxSink, EMLSink) implement archive.Sink and are used from one goroutine.
// Sinks never overwrite existing files: they add to what they find. Files
// they create are readable by their owner only (0600, directories 0700),
// because mail is personal data.
//
// Message bytes travel unchanged in both directions: a sink writes exactly
// the bytes it receives and the matching source yields them back, including
// CRLF, bare CR, NUL bytes and a missing final newline.
//
// # Folder names on disk
//
// Maildir++ folders are ".A.B" directories below the root, one element per
// level, each element in IMAP modified UTF-7 (EncodeMUTF7). mbox and .eml
// sinks use one directory level per element in UTF-8. In both, an element's
// "%" is written "%25" and a "." that would be read wrongly (every "." in
// Maildir++, a leading "." elsewhere) "%2E", NUL "%00"; readers undo exactly
// these three escapes. Folder paths with empty elements ("a//b", "/a") are
// refused.
package mailfile
