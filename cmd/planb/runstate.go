package main

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

// runState is what planb run remembers between runs, in a small JSON file
// of the state directory: when each source last succeeded (so that the
// metric survives a failed run) and when each repository was last pruned.
type runState struct {
	Sources      map[string]sourceState `json:"sources"`
	Repositories map[string]repoState   `json:"repositories"`
}

type sourceState struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastRun     time.Time `json:"last_run,omitzero"`
}

type repoState struct {
	LastPrune time.Time `json:"last_prune,omitzero"`
}

// stateFile names the state file of the config file cfg in dir: one per
// config, named after it.
func stateFile(dir, cfg string) string {
	base := strings.TrimSuffix(filepath.Base(cfg), filepath.Ext(cfg))
	return filepath.Join(dir, base+".state.json")
}

// loadState reads the state file; a missing file is an empty state.
func loadState(name string) (*runState, error) {
	st := &runState{}
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
		st.Sources = make(map[string]sourceState)
	}
	if st.Repositories == nil {
		st.Repositories = make(map[string]repoState)
	}
	return st, nil
}

// save writes the state file atomically.
func (st *runState) save(name string) error {
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
