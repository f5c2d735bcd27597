// Package backend defines the flat object store a planb repository lives in.
//
// A Backend stores named files of a few types (FileType). It knows nothing of
// encryption or of the repository's layout beyond the type of each file; all
// integrity checking is done above it. Implementations live in sub-packages
// (local, mem) and must all pass backendtest.Run.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// FileType is the kind of a file in the repository.
type FileType int

// The repository's file types.
const (
	ConfigFile FileType = iota + 1
	KeyFile
	PackFile
	IndexFile
	SnapshotFile
	LockFile
)

// String returns the type's folder name ("data" for packs).
func (t FileType) String() string {
	switch t {
	case ConfigFile:
		return "config"
	case KeyFile:
		return "keys"
	case PackFile:
		return "data"
	case IndexFile:
		return "index"
	case SnapshotFile:
		return "snapshots"
	case LockFile:
		return "locks"
	}
	return fmt.Sprintf("FileType(%d)", int(t))
}

// Handle names one file. For ConfigFile, Name is ignored.
type Handle struct {
	Type FileType
	Name string
}

func (h Handle) String() string {
	if h.Type == ConfigFile {
		return "config"
	}
	return h.Type.String() + "/" + h.Name
}

// FileInfo describes a stored file.
type FileInfo struct {
	Name string
	Size int64
}

// ErrNotExist is returned (wrapped) when a file does not exist.
var ErrNotExist = errors.New("file does not exist")

// Backend is a flat object store. All methods are safe for concurrent use.
//
// Contract:
//   - Save stores the whole content of rd under h atomically: a reader sees
//     either no file or the complete file, never a partial one, even if the
//     process is killed. Save fails if rd fails; it may Seek rd to its start
//     to retry. Saving an existing handle replaces it (callers only do that
//     for the config file at init; every other name is content-derived or
//     random).
//   - Load returns a reader of length bytes from offset (length 0 means to the
//     end). Loading a missing file returns an error wrapping ErrNotExist;
//     reading past the end returns io.ErrUnexpectedEOF from the reader.
//   - List calls fn for every file of type t in no particular order; an error
//     from fn stops the listing and is returned.
//   - Remove deletes a file; removing a missing file wraps ErrNotExist.
//   - Stat returns a file's size or wraps ErrNotExist.
type Backend interface {
	Location() string
	Save(ctx context.Context, h Handle, rd io.ReadSeeker) error
	Load(ctx context.Context, h Handle, offset, length int64) (io.ReadCloser, error)
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error
	Remove(ctx context.Context, h Handle) error
	Stat(ctx context.Context, h Handle) (FileInfo, error)
	Close() error
}

// ReadAll loads a whole file into memory; it is meant for small files
// (config, keys, indexes, snapshots, locks), never for packs.
func ReadAll(ctx context.Context, b Backend, h Handle) ([]byte, error) {
	rd, err := b.Load(ctx, h, 0, 0)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}
