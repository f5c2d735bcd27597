// Package archivetest holds test helpers for code that speaks the archive
// vocabulary: Mailbox, an in-memory mailbox that is both an archive.Source
// and an archive.Sink; Changes, a recorder of what a Source reports; Collect
// and Mailbox.WriteTo, which pour a source into a Mailbox and a Mailbox into
// a sink; and Compare and Equal, which compare two mailboxes by folders,
// bytes, flags and internal dates.
//
// Everything here keeps messages in memory: use it with test-sized mail only.
package archivetest
