package mailfile

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"codeberg.org/planb/planb/archive"
)

// MboxSink writes one mboxrd file per folder as an archive.Sink: the folder
// "A/B" goes to "<dir>/A/B.mbox" (see the package documentation for the
// escaping). Each message gets a "From MAILER-DAEMON <date>" line with its
// internal date in UTC, its lines matching `^>*From ` one more ">", and one
// "\n" after it, so that MboxSource gives back exactly the bytes written. An
// existing file is appended to. Flags are not written: mbox keeps only what
// the message's own Status headers say. A message of a
// label-based mailbox (Gmail, Proton Mail) gets its labels in an
// X-Gmail-Labels header field, in the export only, as Google Takeout writes
// them (see archive.Message.GmailLabels).
//
// A MboxSink is not safe for concurrent use.
type MboxSink struct {
	root   string
	log    *slog.Logger
	folder string
	file   *os.File
	w      *mboxWriter
	closed bool
}

var _ archive.Sink = (*MboxSink)(nil)

// NewMboxSink returns a sink that writes below dir, creating it if needed.
// opts may be nil.
func NewMboxSink(dir string, opts *Options) (*MboxSink, error) {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("create mbox directory %q: %w", dir, err)
	}
	return &MboxSink{root: dir, log: opts.logger()}, nil
}

// Folder implements archive.Sink.
func (s *MboxSink) Folder(ctx context.Context, f archive.Folder) error {
	if s.closed {
		return fmt.Errorf("mbox folder %q: sink closed", f.Path)
	}
	if err := s.finish(); err != nil {
		return err
	}
	base, err := folderDir(s.root, f.Path)
	if err != nil {
		return fmt.Errorf("mbox folder: %w", err)
	}
	name := base + ".mbox"
	if err := os.MkdirAll(filepath.Dir(name), dirPerm); err != nil {
		return fmt.Errorf("mbox folder %q: %w", f.Path, err)
	}
	file, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, filePerm)
	if err != nil {
		return fmt.Errorf("mbox folder %q: %w", f.Path, err)
	}
	s.file, s.folder = file, f.Path
	s.w = newMboxWriter(file)
	// Appending: make sure the next "From " line starts a line.
	if fi, err := file.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := file.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			s.w.w.WriteByte('\n')
		}
	}
	return nil
}

// Put implements archive.Sink.
func (s *MboxSink) Put(ctx context.Context, m *archive.Message) error {
	if s.closed || s.file == nil {
		return fmt.Errorf("mbox put message %s: no folder open", m.SourceID)
	}
	body := m.Body
	if labels := m.GmailLabels(); labels != "" {
		body = withLabels(body, labels)
	}
	if err := s.w.write(m.InternalDate, body); err != nil {
		return fmt.Errorf("mbox put %q message %s: %w", s.folder, m.SourceID, err)
	}
	return nil
}

// finish flushes and closes the current file.
func (s *MboxSink) finish() error {
	if s.file == nil {
		return nil
	}
	err := s.w.flush()
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
	s.file, s.w = nil, nil
	if err != nil {
		return fmt.Errorf("mbox folder %q: %w", s.folder, err)
	}
	return nil
}

// Close implements archive.Sink: it flushes and closes the last file.
func (s *MboxSink) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.finish()
}

// withLabels returns body with an X-Gmail-Labels header field first, as
// Google Takeout writes one, ended as body's first line is.
func withLabels(body io.Reader, labels string) io.Reader {
	br := bufio.NewReader(body)
	eol := "\n"
	head, _ := br.Peek(br.Size()) // what there is: an error comes again on Read
	if i := bytes.IndexByte(head, '\n'); i > 0 && head[i-1] == '\r' {
		eol = "\r\n"
	}
	return io.MultiReader(strings.NewReader("X-Gmail-Labels: "+labels+eol), br)
}
