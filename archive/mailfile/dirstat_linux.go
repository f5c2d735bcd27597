package mailfile

import (
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// dirStat stats the files of one directory by name, relative to the
// directory's descriptor: an unchanged Maildir of a million messages is
// a million stats, and this spares each the lookup of the whole path and
// the allocations of os.Stat.
type dirStat struct {
	dir string
	fd  int
}

func openDirStat(dir string) (*dirStat, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return &dirStat{dir: dir, fd: fd}, nil
}

// stat follows a symbolic link, as os.Stat does.
func (d *dirStat) stat(name string) (fileStat, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(d.fd, name, &st, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fileStat{}, &fs.PathError{Op: "stat", Path: filepath.Join(d.dir, name), Err: err}
		}
		break
	}
	return fileStat{
		regular: st.Mode&unix.S_IFMT == unix.S_IFREG,
		size:    st.Size,
		mtime:   st.Mtim.Sec*1e9 + st.Mtim.Nsec,
	}, nil
}

func (d *dirStat) close() { unix.Close(d.fd) }
