// Package repo is a planb repository: an encrypted, deduplicated store of
// messages and snapshots on a backend.Backend.
//
// A Repository is safe for concurrent use by several goroutines; several
// processes may use one repository at once as long as they hold the right
// locks (backups share, prune is exclusive). A held Lock is refreshed in the
// background; an operation checks it (Lock.Check) before it commits, and
// stops with ErrLockLost once it could not be refreshed in time or was
// removed by someone else.
//
// Damage (ErrDamaged) is named, not fatal where it need not be: Open skips
// a damaged index file, Check names damaged files and the messages they
// hold, RepairIndex rebuilds the index from the packs and RepairSnapshots
// replaces snapshots that lost pages or messages by marked copies. The
// on-disk format is specified in archive/FORMAT.md.
package repo
