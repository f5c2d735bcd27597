package mailfile

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"codeberg.org/planb/planb/archive"
)

// MboxSource reads mbox files (mboxrd; mboxo and Gmail Takeout files read
// the same way) as an archive.Source. Given a file, it is one folder named by
// the file's base name without its extension; given a directory, every
// "*.mbox" file below it is a folder named by its relative path without
// ".mbox" (so "A/B.mbox" is "A/B"), the layout MboxSink writes.
//
// A message's SourceID is its ordinal in the file ("1", "2"...), its
// InternalDate the date of its "From " line (zero when there is none), its
// flags those of its Status, X-Status and X-Mozilla-Status headers, and its
// Size -1. Messages stream: memory use does not grow with their size. A
// file whose size and modification time are those the cursor recorded is
// not opened: Sync reports no change. Any other Sync is a full listing that
// starts with Reset.
//
// A MboxSource is safe for concurrent use.
type MboxSource struct {
	path string
	dir  bool
	log  *slog.Logger
	open func(name string) (*os.File, error) // os.Open; counted in tests

	mu    sync.Mutex
	files map[string]string // folder path → file, from the last scan
}

var _ archive.Source = (*MboxSource)(nil)

// mboxCursor returns the cursor of an mbox file read whole: its size and
// modification time. (Cursors of older versions, "mbox:1", match no file
// and cost one full listing.)
func mboxCursor(fi os.FileInfo) archive.Cursor {
	return archive.Cursor("mbox:2:" + fileFingerprint(fi))
}

// NewMboxSource returns a source that reads the mbox file or the directory
// of mbox files at path. opts may be nil.
func NewMboxSource(path string, opts *Options) (*MboxSource, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open mbox %q: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open mbox %q: %w", path, err)
	}
	return &MboxSource{path: abs, dir: fi.IsDir(), log: opts.logger(), open: os.Open}, nil
}

// Describe implements archive.Source.
func (s *MboxSource) Describe() string { return "mbox:" + s.path }

// Folders implements archive.Source. It returns the folders sorted by path.
func (s *MboxSource) Folders(ctx context.Context) ([]archive.Folder, error) {
	files, err := s.scan()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.files = files
	s.mu.Unlock()
	out := make([]archive.Folder, 0, len(files))
	for p := range files {
		out = append(out, archive.Folder{Path: p, Name: p, Delimiter: "/"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func (s *MboxSource) scan() (map[string]string, error) {
	files := make(map[string]string)
	if !s.dir {
		base := filepath.Base(s.path)
		files[strings.TrimSuffix(base, filepath.Ext(base))] = s.path
		return files, nil
	}
	err := filepath.WalkDir(s.path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == s.path {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(strings.ToLower(d.Name()), ".mbox") || !isRegular(filepath.Dir(p), d) {
			return nil
		}
		rel, err := filepath.Rel(s.path, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		rel = rel[:len(rel)-len(".mbox")]
		files[relPath(strings.Split(rel, "/"))] = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan mbox directory %q: %w", s.path, err)
	}
	return files, nil
}

// Sync implements archive.Source. It reports no change when since is the
// cursor of the file as it is now (same size and modification time), and
// otherwise lists the file whole.
func (s *MboxSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	s.mu.Lock()
	name, ok := s.files[f.Path]
	s.mu.Unlock()
	if !ok {
		files, err := s.scan()
		if err != nil {
			return nil, err
		}
		if name, ok = files[f.Path]; !ok {
			return nil, fmt.Errorf("sync %q: no such mbox folder in %q", f.Path, s.path)
		}
	}
	if fi, err := os.Stat(name); err == nil && len(since) > 0 && string(mboxCursor(fi)) == string(since) {
		return since, nil
	}
	file, err := s.open(name)
	if err != nil {
		return nil, fmt.Errorf("sync %q: %w", f.Path, err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("sync %q: %w", f.Path, err)
	}
	cursor := mboxCursor(fi) // taken before reading: a change meanwhile is read next time
	if err := c.Reset(); err != nil {
		return nil, fmt.Errorf("sync %q: %w", f.Path, err)
	}
	mr := newMboxReader(file)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sync %q: %w", f.Path, err)
		}
		m, err := mr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("sync %q: read %q at message %d: %w", f.Path, name, mr.n+1, err)
		}
		head, body, err := readHead(m.Body)
		if err != nil {
			return nil, fmt.Errorf("sync %q: read %q message %d: %w", f.Path, name, m.Ordinal, err)
		}
		id := strconv.Itoa(m.Ordinal)
		err = c.Put(&archive.Message{
			Folder:       f.Path,
			SourceID:     id,
			Flags:        mboxFlags(head),
			InternalDate: m.Date,
			Size:         -1,
			Body:         body,
		})
		if err != nil {
			return nil, fmt.Errorf("sync %q message %s: %w", f.Path, id, err)
		}
	}
	return cursor, nil
}
