// Package restore pours a snapshot into an archive.Sink: an export to mbox,
// Maildir or .eml files, or (later) an IMAP host.
//
// Messages are streamed chunk by chunk from the repository; a message whose
// data is damaged is named in the report and the run goes on with the next.
package restore
