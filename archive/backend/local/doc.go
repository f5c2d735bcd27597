// Package local is a backend.Backend that keeps a repository in a directory
// of the local file system.
//
// The layout is that of the repository format:
//
//	config
//	keys/<name>
//	data/<first two characters of name>/<name>
//	index/<name>
//	snapshots/<name>
//	locks/<name>
//
// Save is crash-safe: the content goes to a temporary file in the target's
// folder (named ".tmp-…"), which is synced, renamed over the target, and
// the folder synced. A killed process leaves at most stale temporary files,
// which List never reports and CleanTemp removes. Files are created with
// mode 0600 and folders with 0700. A Local is safe for concurrent use.
package local
