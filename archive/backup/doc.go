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
//
// With Options.Checkpoint, a run also saves checkpoint snapshots (see
// archive/FORMAT.md): every few minutes and when it is stopped, what it has
// stored so far, so that the next run, which takes the newest snapshot as
// its parent, checkpoint or not, fetches only what is missing. Sources
// make that possible by asking Changes.Have during a listing from scratch.
package backup
