// Package engine runs the sources of a config file into their
// repositories: once, as planb run does (back up every source, apply
// retention, prune, check, report), or for as long as the process lives,
// as planb watch does (follow each mailbox, store new mail as it comes,
// save a snapshot per source at most every snapshot_every, keep the
// repositories maintained).
//
// It owns the config file (Config, Load: its schema and validation), the
// state file (State), the report of a run (RunReport and what it holds),
// the metrics (Metric) and the scheduling of backups, retention, prune and
// check. It does not print: the command that runs it gets the report, the
// metrics and the engine's log (a *slog.Logger it passes in) and decides
// what to show.
//
// It lives under cmd/planb/internal because it wires everything below the
// command (the imap and graph sources, the archive engines) from a file
// that is the command's contract; archive/... may not import imap or
// graph, which import archive. How a repository or a source is opened
// from its config (backends, passwords, TLS options, sign-in) is the
// command's, shared with its backup commands, and comes in through Env.
package engine
