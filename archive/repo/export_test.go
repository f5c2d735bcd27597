package repo

import (
	"context"
	"encoding/json"

	"codeberg.org/planb/planb/archive/backend"
)

// RunIndexFiles returns the names of the index files a run of r's cache
// was built from.
func RunIndexFiles(r *Repository, path string) ([]string, error) {
	rf, err := openRun(path, r.key)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	var names []string
	for n := range rf.files {
		names = append(names, n)
	}
	return names, nil
}

// RewriteConfig replaces r's config file with r's config as edit changes
// it, as another planb might have written it.
func RewriteConfig(r *Repository, edit func(*Config)) error {
	cfg := r.cfg
	edit(&cfg)
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	h := backend.Handle{Type: backend.ConfigFile}
	if err := r.be.Remove(context.Background(), h); err != nil {
		return err
	}
	return r.saveSealed(context.Background(), h, b)
}
