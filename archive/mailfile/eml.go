package mailfile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"codeberg.org/planb/planb/archive"
)

// EMLSink writes one file per message as an archive.Sink:
// "<dir>/<folder path>/<NNNNNN>.eml", numbered from 000001 in the order
// received (after the highest number already there), with the message's
// exact bytes and its internal date as modification time. Folder path
// elements become directories (see the package documentation for the
// escaping, which keeps every file inside dir). Flags are not written.
// MaildirSource reads such a tree back as one-message-file folders.
//
// An EMLSink is not safe for concurrent use.
type EMLSink struct {
	root   string
	log    *slog.Logger
	folder string
	dir    string
	next   int
	closed bool
}

var _ archive.Sink = (*EMLSink)(nil)

// NewEMLSink returns a sink that writes below dir, creating it if needed.
// opts may be nil.
func NewEMLSink(dir string, opts *Options) (*EMLSink, error) {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("create eml directory %q: %w", dir, err)
	}
	return &EMLSink{root: dir, log: opts.logger()}, nil
}

// Folder implements archive.Sink.
func (s *EMLSink) Folder(ctx context.Context, f archive.Folder) error {
	if s.closed {
		return fmt.Errorf("eml folder %q: sink closed", f.Path)
	}
	dir, err := folderDir(s.root, f.Path)
	if err != nil {
		return fmt.Errorf("eml folder: %w", err)
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return fmt.Errorf("eml folder %q: %w", f.Path, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("eml folder %q: %w", f.Path, err)
	}
	s.next = 1
	for _, de := range des {
		if n, err := strconv.Atoi(strings.TrimSuffix(de.Name(), ".eml")); err == nil && n >= s.next {
			s.next = n + 1
		}
	}
	s.folder, s.dir = f.Path, dir
	return nil
}

// Put implements archive.Sink.
func (s *EMLSink) Put(ctx context.Context, m *archive.Message) error {
	if s.closed || s.dir == "" {
		return fmt.Errorf("eml put message %s: no folder open", m.SourceID)
	}
	for {
		name := filepath.Join(s.dir, fmt.Sprintf("%06d.eml", s.next))
		s.next++
		_, err := writeFile(name, m.Body, m.InternalDate)
		if os.IsExist(err) {
			continue // written meanwhile by someone else
		}
		if err != nil {
			return fmt.Errorf("eml put %q message %s: %w", s.folder, m.SourceID, err)
		}
		return nil
	}
}

// Close implements archive.Sink. Every message is complete on disk when its
// Put returns, so Close only ends the sink.
func (s *EMLSink) Close() error {
	s.closed = true
	return nil
}
