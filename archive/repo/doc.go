// Package repo is a planb repository: an encrypted, deduplicated store of
// messages and snapshots on a backend.Backend.
//
// A Repository is safe for concurrent use by several goroutines; several
// processes may use one repository at once as long as they hold the right
// locks (backups share, prune is exclusive). The on-disk format is specified
// in archive/FORMAT.md.
package repo
