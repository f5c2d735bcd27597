package repo

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
