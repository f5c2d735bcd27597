package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidHandle is returned (wrapped) for a handle whose type is unknown
// or whose name cannot be stored safely.
var ErrInvalidHandle = errors.New("invalid handle")

// MaxNameLen is the longest file name a backend accepts.
const MaxNameLen = 200

// Types lists every FileType, in a fixed order; it is meant for loops over
// all the folders of a repository.
func Types() []FileType {
	return []FileType{ConfigFile, KeyFile, PackFile, IndexFile, SnapshotFile, LockFile}
}

// Valid returns nil if t is one of the known file types.
func (t FileType) Valid() error {
	if t < ConfigFile || t > LockFile {
		return fmt.Errorf("%w: unknown file type %d", ErrInvalidHandle, int(t))
	}
	return nil
}

// Valid returns nil if h can be stored, or an error wrapping
// ErrInvalidHandle. The config file's name is ignored. Any other name must
// be non-empty, at most MaxNameLen bytes, free of path separators, control
// characters and "..", and must not start with "." (such names are reserved
// for a backend's temporary files). Pack names need at least two bytes
// because the local backend files packs under their first two.
func (h Handle) Valid() error {
	if err := h.Type.Valid(); err != nil {
		return err
	}
	if h.Type == ConfigFile {
		return nil
	}
	name := h.Name
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s name", ErrInvalidHandle, h.Type)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s name longer than %d bytes", ErrInvalidHandle, h.Type, MaxNameLen)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("%w: %s name %q starts with a dot", ErrInvalidHandle, h.Type, name)
	case strings.Contains(name, ".."):
		return fmt.Errorf("%w: %s name %q contains \"..\"", ErrInvalidHandle, h.Type, name)
	case h.Type == PackFile && len(name) < 2:
		return fmt.Errorf("%w: pack name %q shorter than 2 bytes", ErrInvalidHandle, name)
	}
	for _, c := range []byte(name) {
		if c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s name %q contains %q", ErrInvalidHandle, h.Type, name, c)
		}
	}
	return nil
}

// InfoName returns the name List and Stat report for h: "config" for the
// config file, else h.Name.
func (h Handle) InfoName() string {
	if h.Type == ConfigFile {
		return "config"
	}
	return h.Name
}

// CheckCall is what every Backend method does first: it returns an error,
// prefixed by op and h, when ctx is done or h is not a valid handle.
func CheckCall(ctx context.Context, op string, h Handle) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %v: %w", op, h, err)
	}
	if err := h.Valid(); err != nil {
		return fmt.Errorf("%s %v: %w", op, h, err)
	}
	return nil
}
