// Package retention decides which snapshots a keep policy keeps.
//
// Snapshots are grouped by host and source; within a group the rules are
// applied newest first, as restic does: keep-last keeps the N newest, and
// keep-daily/weekly/monthly keep the newest snapshot of each of the N most
// recent days/weeks/months that have one. A snapshot kept by any rule stays.
// Checkpoints count for no rule; those that a snapshot of their group
// supersedes are removed, the others kept.
package retention
