package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive/atomicfile"
)

// State is what planb run and planb watch remember between runs, in a
// small JSON file of the state directory: when each source last succeeded
// (so that the metric survives a failed run) and when each repository was
// last pruned and checked. It is not safe for concurrent use.
type State struct {
	Sources      map[string]SourceState `json:"sources"`
	Repositories map[string]RepoState   `json:"repositories"`
}

// SourceState is what is remembered of a source.
type SourceState struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastRun     time.Time `json:"last_run,omitzero"`
}

// RepoState is what is remembered of a repository.
type RepoState struct {
	LastPrune time.Time `json:"last_prune,omitzero"`
	LastCheck time.Time `json:"last_check,omitzero"`
}

// StateFile names the state file of the config file cfg in dir: one per
// config, named after it.
func StateFile(dir, cfg string) string {
	base := strings.TrimSuffix(filepath.Base(cfg), filepath.Ext(cfg))
	return filepath.Join(dir, base+".state.json")
}

// LoadState reads the state file; a missing file is an empty state.
func LoadState(name string) (*State, error) {
	st := &State{}
	b, err := os.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	default:
		if err := json.Unmarshal(b, st); err != nil {
			return nil, fmt.Errorf("read state %s: %w", name, err)
		}
	}
	if st.Sources == nil {
		st.Sources = make(map[string]SourceState)
	}
	if st.Repositories == nil {
		st.Repositories = make(map[string]RepoState)
	}
	return st, nil
}

// Save writes the state file atomically.
func (st *State) Save(name string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := atomicfile.Write(name, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
