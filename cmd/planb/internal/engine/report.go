package engine

import (
	"time"

	"codeberg.org/planb/planb/archive/repo"
)

// Statuses of sources and repositories in the report.
const (
	StatusOK      = "ok"
	StatusPartial = "partial"
	StatusFailed  = "failed"
	// StatusInterrupted marks a run, a source or a repository that a
	// signal (SIGTERM, SIGINT) stopped before it finished.
	StatusInterrupted = "interrupted"
)

// ErrInterrupted is the error of a source or repository that a signal
// stopped, as the report words it.
const ErrInterrupted = "interrupted by signal"

// RunReport is the report of a run: planb run's --json output.
type RunReport struct {
	Type         string          `json:"type"` // "run"
	Config       string          `json:"config"`
	Started      time.Time       `json:"started"`
	DurationMS   int64           `json:"duration_ms"`
	Status       string          `json:"status"`
	Sources      []*SourceReport `json:"sources"`
	Repositories []*RepoReport   `json:"repositories"`

	state *State // for the metrics
}

// SourceReport is what the backup of one source did.
type SourceReport struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Repository  string   `json:"repository"`
	Status      string   `json:"status"` // ok, partial, failed or interrupted
	Error       string   `json:"error,omitempty"`
	Snapshots   int      `json:"snapshots"`
	SnapshotIDs []string `json:"snapshot_ids"`
	// CheckpointIDs are the checkpoints an interrupted source saved (not
	// counted in Snapshots, Messages...).
	CheckpointIDs []string        `json:"checkpoint_ids,omitempty"`
	Messages      int64           `json:"messages"`
	Bytes         int64           `json:"bytes"`
	MessagesAdded int64           `json:"messages_added"`
	BytesAdded    int64           `json:"bytes_added"`
	Skipped       []repo.Skipped  `json:"skipped"`
	Errors        int             `json:"errors"` // skipped messages and folders, failed mailboxes
	DurationMS    int64           `json:"duration_ms"`
	Mailboxes     []MailboxReport `json:"mailboxes,omitempty"` // graph

	// Started is when the backup started.
	Started time.Time `json:"-"`
}

// MailboxReport is one mailbox of a Graph source.
type MailboxReport struct {
	Mailbox  string `json:"mailbox"`
	Status   string `json:"status"`
	Error    string `json:"error,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	// Checkpoint is the checkpoint of an interrupted mailbox.
	Checkpoint string `json:"checkpoint,omitempty"`
	Messages   int64  `json:"messages"`
	Added      int64  `json:"messages_added"`
}

// RepoReport is what happened to one repository: stale locks, retention,
// check, and its size afterwards.
type RepoReport struct {
	Name       string   `json:"name"`
	Path       string   `json:"path"`
	Status     string   `json:"status"`
	Error      string   `json:"error,omitempty"`
	StaleLocks []string `json:"stale_locks_removed"` // of dead processes on this host
	SizeBytes  int64    `json:"size_bytes"`          // -1 if unknown
	Snapshots  int      `json:"snapshots"`           // -1 if unknown; checkpoints not counted
	// Checkpoints counts the checkpoints of unfinished backups kept.
	Checkpoints int  `json:"checkpoints"`
	Forgot      int  `json:"forgot"`
	Pruned      bool `json:"pruned"`
	// RetentionSkipped says why keep and prune_every were not applied
	// (an append-only repository: forget and prune are the
	// administrator's, run with --admin).
	RetentionSkipped string        `json:"retention_skipped,omitempty"`
	Prune            *PruneResult  `json:"prune,omitempty"`
	Check            *CheckSummary `json:"check,omitempty"`
}

// PruneResult is what a prune did (planb prune's --json output too).
type PruneResult struct {
	Type          string `json:"type"` // "prune"
	RemovedPacks  int    `json:"removed_packs"`
	RepackedPacks int    `json:"repacked_packs"`
	FreedBytes    int64  `json:"freed_bytes"`
}

// CheckSummary is the result of the sampled check.
type CheckSummary struct {
	OK        bool              `json:"ok"`
	Packs     int               `json:"packs"`
	PacksRead int               `json:"packs_read"`
	Errors    []repo.CheckError `json:"errors"`
}

// Counts returns how many sources failed, were partial (with the skipped
// messages and folders they named) and were interrupted, and how many
// repositories failed and were interrupted.
func (rep *RunReport) Counts() (failed, partial, interrupted, failedRepos, interruptedRepos int) {
	for _, sr := range rep.Sources {
		switch sr.Status {
		case StatusFailed:
			failed++
		case StatusPartial:
			partial++
		case StatusInterrupted:
			interrupted++
		}
	}
	for _, rr := range rep.Repositories {
		switch rr.Status {
		case StatusFailed:
			failedRepos++
		case StatusInterrupted:
			interruptedRepos++
		}
	}
	return
}

// Skipped returns the skipped messages and folders of every source.
func (rep *RunReport) Skipped() []repo.Skipped {
	var out []repo.Skipped
	for _, sr := range rep.Sources {
		out = append(out, sr.Skipped...)
	}
	return out
}
