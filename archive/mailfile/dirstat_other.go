//go:build !linux

package mailfile

import "path/filepath"

// dirStat stats the files of one directory by name (see the Linux
// version, which does it relative to the directory's descriptor).
type dirStat struct{ dir string }

func openDirStat(dir string) (*dirStat, error) { return &dirStat{dir: dir}, nil }

func (d *dirStat) stat(name string) (fileStat, error) { return statFile(filepath.Join(d.dir, name)) }

func (d *dirStat) close() {}
