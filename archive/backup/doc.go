// Package backup stores what an archive.Source holds into a repository as a
// new snapshot.
//
// A run takes a shared lock, finds the parent snapshot (the newest one of the
// same source and host), lets the source report each folder's changes since
// the parent's cursor, streams new message bodies through the chunker into
// the repository (chunking and hashing in the folder's goroutine, compression
// and encryption in a pool), and writes the snapshot last. A message that
// cannot be read is named in the snapshot's Skipped list and the snapshot is
// marked partial; the run goes on.
package backup
