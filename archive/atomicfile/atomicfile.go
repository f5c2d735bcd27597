// Package atomicfile replaces small files so that whoever reads one, even
// after a crash, finds either its old content or its new content, never a
// mix: the new content goes to a temporary file in the same folder, which
// is given its mode, synced and renamed over the file.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces the file name with data, with mode perm. The temporary
// file ("." + the name + a random suffix) is removed on failure.
func Write(name string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
