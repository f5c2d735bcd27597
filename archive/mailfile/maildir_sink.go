package mailfile

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/atomicfile"
	"codeberg.org/planb/planb/archive/mutf7"
)

// MaildirSink writes a Maildir++ tree as an archive.Sink: the folder
// "INBOX" is the root maildir and every other folder "A/B" is the maildir
// ".A.B" below it (see the package documentation for the escaping). Each
// message is written to tmp/ and renamed into cur/ as
// "<unique>:2,<flags>", also when unseen, so that reading the tree back gives
// the same flags; its modification time is its internal date. Keywords get
// the letters a–z through the folder's dovecot-keywords file; a folder's
// 27th and later keywords are dropped with a warning.
//
// A MaildirSink is not safe for concurrent use.
type MaildirSink struct {
	root  string
	log   *slog.Logger
	host  string
	start time.Time
	pid   int

	folder   string // current folder path
	dir      string // current folder directory; "" before the first Folder
	keywords []string
	closed   bool
}

var _ archive.Sink = (*MaildirSink)(nil)

// uniqueSeq numbers the files written by all MaildirSinks of this process.
var uniqueSeq atomic.Uint64

// NewMaildirSink returns a sink that writes below dir, creating it if
// needed. opts may be nil.
func NewMaildirSink(dir string, opts *Options) (*MaildirSink, error) {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("create maildir %q: %w", dir, err)
	}
	host := ""
	if opts != nil {
		host = opts.Hostname
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	if host == "" {
		host = "localhost"
	}
	// Maildir escapes "/" and ":" in the host part of unique names.
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return &MaildirSink{root: dir, log: opts.logger(), host: host, start: time.Now(), pid: os.Getpid()}, nil
}

// maildirPlusPlusDir returns the directory name of a non-INBOX folder.
func maildirPlusPlusDir(path string) (string, error) {
	elems, err := splitFolder(path)
	if err != nil {
		return "", err
	}
	for i, e := range elems {
		elems[i] = escapeElem(mutf7.Encode(e), true)
	}
	return "." + strings.Join(elems, "."), nil
}

// Folder implements archive.Sink. It creates the folder's maildir if needed.
func (s *MaildirSink) Folder(ctx context.Context, f archive.Folder) error {
	if s.closed {
		return fmt.Errorf("maildir folder %q: sink closed", f.Path)
	}
	dir := s.root
	inbox := strings.EqualFold(f.Path, "INBOX")
	if !inbox {
		name, err := maildirPlusPlusDir(f.Path)
		if err != nil {
			return fmt.Errorf("maildir folder: %w", err)
		}
		dir = filepath.Join(s.root, name)
	}
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), dirPerm); err != nil && !os.IsExist(err) {
			return fmt.Errorf("maildir folder %q: %w", f.Path, err)
		}
	}
	if !inbox {
		// Courier's marker of a Maildir++ sub-folder.
		mf, err := os.OpenFile(filepath.Join(dir, "maildirfolder"), os.O_WRONLY|os.O_CREATE, filePerm)
		if err != nil {
			return fmt.Errorf("maildir folder %q: %w", f.Path, err)
		}
		mf.Close()
	}
	kw, err := readKeywords(filepath.Join(dir, "dovecot-keywords"))
	if err != nil {
		return fmt.Errorf("maildir folder %q: %w", f.Path, err)
	}
	s.keywords = make([]string, 26)
	for l, k := range kw {
		s.keywords[l-'a'] = k
	}
	for len(s.keywords) > 0 && s.keywords[len(s.keywords)-1] == "" {
		s.keywords = s.keywords[:len(s.keywords)-1]
	}
	s.folder, s.dir = f.Path, dir
	return nil
}

// Put implements archive.Sink. The bytes are written exactly as received;
// the labels of a message of a label-based mailbox become keywords (see
// archive.Message.LabelKeywords).
func (s *MaildirSink) Put(ctx context.Context, m *archive.Message) error {
	if s.closed || s.dir == "" {
		return fmt.Errorf("maildir put message %s: no folder open", m.SourceID)
	}
	flags := m.Flags
	if kw := m.LabelKeywords(); len(kw) > 0 {
		flags = append(slices.Clip(flags), kw...)
	}
	letters, err := s.letters(flags)
	if err != nil {
		return fmt.Errorf("maildir put %q message %s: %w", s.folder, m.SourceID, err)
	}
	unique := fmt.Sprintf("%d.M%06dP%dQ%d.%s", s.start.Unix(), s.start.Nanosecond()/1000, s.pid, uniqueSeq.Add(1), s.host)
	tmp := filepath.Join(s.dir, "tmp", unique)
	if _, err := writeFile(tmp, m.Body, m.InternalDate); err != nil {
		return fmt.Errorf("maildir put %q message %s: %w", s.folder, m.SourceID, err)
	}
	final := filepath.Join(s.dir, "cur", unique+":2,"+letters)
	if _, err := os.Lstat(final); err == nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir put %q message %s: %s exists", s.folder, m.SourceID, final)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir put %q message %s: %w", s.folder, m.SourceID, err)
	}
	return nil
}

// letters returns the sorted Maildir info letters of flags, adding new
// keywords to the folder's dovecot-keywords file.
func (s *MaildirSink) letters(flags []string) (string, error) {
	var out []byte
	added := false
	for _, f := range flags {
		sys := false
		for l, name := range maildirFlags {
			if strings.EqualFold(f, name) {
				out = append(out, l)
				sys = true
				break
			}
		}
		if sys || strings.HasPrefix(f, `\`) {
			continue // a system flag Maildir cannot store (\Recent)
		}
		if f == "" || strings.ContainsAny(f, " \t\r\n") {
			s.log.Warn("maildir: keyword cannot be stored, dropping it", "folder", s.folder, "keyword", f)
			continue
		}
		i := slices.Index(s.keywords, f)
		if i < 0 {
			i = slices.Index(s.keywords, "")
			if i < 0 {
				i = len(s.keywords)
			}
			if i >= 26 {
				s.log.Warn("maildir: more than 26 keywords in folder, dropping one", "folder", s.folder, "keyword", f)
				continue
			}
			if i == len(s.keywords) {
				s.keywords = append(s.keywords, f)
			} else {
				s.keywords[i] = f
			}
			added = true
		}
		out = append(out, 'a'+byte(i))
	}
	if added {
		if err := s.writeKeywords(); err != nil {
			return "", err
		}
	}
	slices.Sort(out)
	return string(slices.Compact(out)), nil
}

// writeKeywords replaces the folder's dovecot-keywords file atomically.
func (s *MaildirSink) writeKeywords() error {
	var b strings.Builder
	for i, k := range s.keywords {
		if k != "" {
			fmt.Fprintf(&b, "%d %s\n", i, k)
		}
	}
	if err := atomicfile.Write(filepath.Join(s.dir, "dovecot-keywords"), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write keywords: %w", err)
	}
	return nil
}

// Close implements archive.Sink. Every message is complete on disk when its
// Put returns, so Close only ends the sink.
func (s *MaildirSink) Close() error {
	s.closed = true
	return nil
}
