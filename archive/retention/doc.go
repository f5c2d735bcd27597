// Package retention decides which snapshots a keep policy keeps.
//
// Snapshots are grouped by host and source; within a group the rules are
// applied newest first, as restic does: keep-within keeps every snapshot
// less than a duration older than the group's newest, keep-last keeps the
// N newest, and keep-hourly/daily/weekly/monthly keep the newest snapshot
// of each of the N most recent hours/days/weeks/months that have one (in
// local time). A snapshot kept by any rule stays.
// Checkpoints count for no rule; those that a snapshot of their group
// supersedes are removed, the others kept.
package retention
