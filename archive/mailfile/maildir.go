package mailfile

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mutf7"
)

// MaildirSource reads a directory tree of mail as an archive.Source. It
// understands three layouts, which may mix:
//
//   - Maildir++: the root is a maildir (cur/, new/) and is the folder
//     "INBOX"; each ".A.B" directory below the root that is a maildir is the
//     folder "A/B", its elements in modified UTF-7. A folder's
//     dovecot-keywords file names its keyword letters.
//   - A tree of maildirs: every other directory with cur/ or new/ is a
//     folder named by its path relative to the root.
//   - Directories of one-message files (MH, the Enron/CMU corpus, .eml
//     exports): every other directory holding regular files is a folder
//     named by its relative path ("INBOX" for the root itself), and each
//     regular file in it is a message. Hidden files and the state files of
//     mail programs (dovecot*, courier*, maildirfolder, subscriptions, *.md,
//     *.json) are not messages.
//
// Symbolic links to directories are not followed. Maildir has no change log,
// so every Sync is a full listing that starts with Reset; Changes.Have lets
// it skip unchanged files (same size and modification time) without opening
// them: an unchanged Maildir costs one stat a message.
//
// A MaildirSource is safe for concurrent use.
type MaildirSource struct {
	root string
	log  *slog.Logger
	open func(name string) (*os.File, error) // os.Open; counted in tests

	mu      sync.Mutex
	folders map[string]mdFolder // by Folder.Path, from the last scan
}

type folderKind int

const (
	kindMaildir folderKind = iota + 1 // cur/new/tmp
	kindFiles                         // one message per regular file
)

type mdFolder struct {
	dir  string
	kind folderKind
	info archive.Folder
}

var _ archive.Source = (*MaildirSource)(nil)

// maildirCursor is the cursor Sync returns. Maildir keeps no state to resume
// from, so it only says "listed before".
var maildirCursor = archive.Cursor("maildir:1")

// NewMaildirSource returns a source that reads the tree at path, which must
// be a directory. opts may be nil.
func NewMaildirSource(path string, opts *Options) (*MaildirSource, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open maildir %q: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open maildir %q: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open maildir %q: not a directory", path)
	}
	return &MaildirSource{root: abs, log: opts.logger(), open: os.Open}, nil
}

// Describe implements archive.Source.
func (s *MaildirSource) Describe() string { return "maildir:" + s.root }

// Folders implements archive.Source. It scans the tree again on every call
// and returns the folders sorted by path.
func (s *MaildirSource) Folders(ctx context.Context) ([]archive.Folder, error) {
	m, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.folders = m
	s.mu.Unlock()
	out := make([]archive.Folder, 0, len(m))
	for _, f := range m {
		out = append(out, f.info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

func (s *MaildirSource) scan(ctx context.Context) (map[string]mdFolder, error) {
	out := make(map[string]mdFolder)
	add := func(f mdFolder) {
		if old, ok := out[f.info.Path]; ok {
			s.log.Warn("maildir: two directories map to one folder, ignoring the second",
				"folder", f.info.Path, "dir", old.dir, "ignored", f.dir)
			return
		}
		out[f.info.Path] = f
	}
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("scan maildir %q: %w", s.root, err)
	}
	rootMaildir := isMaildir(s.root)
	if rootMaildir {
		add(mdFolder{dir: s.root, kind: kindMaildir, info: archive.Folder{Path: "INBOX", Name: "INBOX", Delimiter: "."}})
	}
	// Maildir++ folders: ".A.B" maildirs directly below the root.
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || len(name) < 2 || name[0] != '.' || name == ".." {
			continue
		}
		dir := filepath.Join(s.root, name)
		if !isMaildir(dir) {
			continue
		}
		path := s.plusPlusPath(name[1:])
		add(mdFolder{dir: dir, kind: kindMaildir, info: archive.Folder{
			Path: path, Name: name[1:], Delimiter: ".", SpecialUse: guessSpecialUse(path),
		}})
	}
	if err := s.walk(ctx, s.root, nil, rootMaildir, add); err != nil {
		return nil, err
	}
	return out, nil
}

// plusPlusPath turns a Maildir++ directory name (without its leading ".")
// into a folder path.
func (s *MaildirSource) plusPlusPath(name string) string {
	elems := strings.Split(name, ".")
	for i, e := range elems {
		u := unescapeElem(e)
		d, err := mutf7.Decode(u)
		if err != nil {
			s.log.Warn("maildir: folder name is not modified UTF-7, keeping it as is", "name", name, "err", err)
			d = u
		}
		elems[i] = d
	}
	return strings.Join(elems, "/")
}

// walk finds tree-of-maildirs folders and one-message-file folders below dir
// (rel is dir's path below the root).
func (s *MaildirSource) walk(ctx context.Context, dir string, rel []string, dirIsMaildir bool, add func(mdFolder)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if isNotExist(err) && len(rel) > 0 {
			return nil
		}
		return fmt.Errorf("scan maildir %q: %w", dir, err)
	}
	hasFiles := false
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		if e.IsDir() {
			if dirIsMaildir && (name == "cur" || name == "new" || name == "tmp") {
				continue
			}
			child := filepath.Join(dir, name)
			childRel := append(slices.Clip(rel), name)
			childMaildir := isMaildir(child)
			if childMaildir {
				path := relPath(childRel)
				info := archive.Folder{Path: path, Name: strings.Join(childRel, "/"), Delimiter: "/"}
				if len(childRel) == 1 {
					info.SpecialUse = guessSpecialUse(path)
				}
				add(mdFolder{dir: child, kind: kindMaildir, info: info})
			}
			if err := s.walk(ctx, child, childRel, childMaildir, add); err != nil {
				return err
			}
			continue
		}
		if !hasFiles && !dirIsMaildir && !skipFile(name) && isRegular(dir, e) {
			hasFiles = true
		}
	}
	if hasFiles {
		path, name := "INBOX", "INBOX"
		if len(rel) > 0 {
			path, name = relPath(rel), strings.Join(rel, "/")
		}
		add(mdFolder{dir: dir, kind: kindFiles, info: archive.Folder{Path: path, Name: name, Delimiter: "/"}})
	}
	return nil
}

func relPath(elems []string) string {
	out := make([]string, len(elems))
	for i, e := range elems {
		out[i] = unescapeElem(e)
	}
	return strings.Join(out, "/")
}

// isRegular reports whether a directory entry is a regular file or a
// symbolic link to one.
func isRegular(dir string, e os.DirEntry) bool {
	if e.Type().IsRegular() {
		return true
	}
	if e.Type()&os.ModeSymlink != 0 {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		return err == nil && fi.Mode().IsRegular()
	}
	return false
}

// guessSpecialUse guesses the RFC 6154 attribute of a top-level folder from
// its name.
func guessSpecialUse(path string) string {
	switch strings.ToLower(path) {
	case "sent", "sent items", "sent messages", "sent mail":
		return archive.Sent
	case "drafts", "draft":
		return archive.Drafts
	case "trash", "deleted items", "deleted messages":
		return archive.Trash
	case "junk", "spam", "junk e-mail", "junk email":
		return archive.Junk
	case "archive", "archives":
		return archive.Archive
	}
	return ""
}

func (s *MaildirSource) lookup(ctx context.Context, path string) (mdFolder, error) {
	s.mu.Lock()
	f, ok := s.folders[path]
	s.mu.Unlock()
	if ok {
		return f, nil
	}
	m, err := s.scan(ctx)
	if err != nil {
		return mdFolder{}, err
	}
	s.mu.Lock()
	s.folders = m
	s.mu.Unlock()
	f, ok = m[path]
	if !ok {
		return mdFolder{}, fmt.Errorf("no folder %q in %q", path, s.root)
	}
	return f, nil
}

// mdEntry is one message file.
type mdEntry struct {
	sub   string // "cur", "new" or "" (one-message-file folders)
	name  string // file name
	id    string // SourceID
	flags []string
}

// Sync implements archive.Source. It ignores since: every Sync is a full
// listing. A message file that vanishes during the run (a mail program moved
// or deleted it) is looked up again under its new flags, else skipped.
func (s *MaildirSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	d, err := s.lookup(ctx, f.Path)
	if err != nil {
		return nil, fmt.Errorf("sync %q: %w", f.Path, err)
	}
	var stats [len(subs)]*dirStat // opened as needed
	defer func() {
		for _, ds := range stats {
			if ds != nil {
				ds.close()
			}
		}
	}()
	var kw map[byte]string
	var entries []mdName
	if d.kind == kindMaildir {
		kw, err = readKeywords(filepath.Join(d.dir, "dovecot-keywords"))
		if err != nil {
			return nil, fmt.Errorf("sync %q: %w", f.Path, err)
		}
		if err := c.Reset(); err != nil {
			return nil, fmt.Errorf("sync %q: %w", f.Path, err)
		}
		entries, err = keepMaildir(ctx, d.dir, kw, c, &stats)
	} else {
		if entries, err = listFiles(d.dir); err == nil {
			err = c.Reset()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sync %q: %w", f.Path, err)
	}
	for i, e := range entries {
		// A name read is let go: on a first backup the folder's entries
		// grow as its names go.
		entries[i] = mdName{}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("sync %q: %w", f.Path, err)
		}
		me := mdEntry{name: e.name, id: e.name}
		if d.kind == kindMaildir {
			me = parseMaildirName(subs[e.sub], e.name, kw)
		}
		if stats[e.sub] == nil {
			if stats[e.sub], err = openDirStat(filepath.Join(d.dir, subs[e.sub])); err != nil {
				return nil, fmt.Errorf("sync %q: %w", f.Path, err)
			}
		}
		if err := s.syncOne(d, stats[e.sub], me, kw, f.Path, c); err != nil {
			return nil, fmt.Errorf("sync %q message %s: %w", f.Path, me.id, err)
		}
	}
	return maildirCursor, nil
}

func (s *MaildirSource) syncOne(d mdFolder, ds *dirStat, e mdEntry, kw map[byte]string, folder string, c archive.Changes) error {
	for attempt := 0; ; attempt++ {
		// Stat first: a file of the same size and modification time as in
		// the parent snapshot is kept without being opened, so that an
		// unchanged Maildir costs a directory walk.
		var st fileStat
		var err error
		if attempt == 0 {
			st, err = ds.stat(e.name)
		} else { // found again, perhaps in the other subfolder
			st, err = statFile(filepath.Join(d.dir, e.sub, e.name))
		}
		var file *os.File
		var fi os.FileInfo
		if err == nil && st.regular && !c.Have(e.id, st.fingerprint()) {
			file, err = s.open(filepath.Join(d.dir, e.sub, e.name))
			if err == nil {
				if fi, err = file.Stat(); err != nil {
					file.Close()
				}
			}
		}
		if isNotExist(err) && attempt == 0 && d.kind == kindMaildir {
			// Moved by a mail program, most likely to change its flags.
			if ne, ok := findMaildirEntry(d.dir, e.id, kw); ok {
				e = ne
				continue
			}
		}
		if isNotExist(err) {
			s.log.Info("maildir: message vanished during the run", "folder", folder, "file", e.name)
			return nil
		}
		if err != nil {
			// Unreadable (permissions, a broken link): this message only.
			return c.Skip(e.id, fmt.Errorf("open %s: %w", e.name, err))
		}
		if file == nil && !st.regular {
			s.log.Warn("maildir: not a regular file, skipping", "folder", folder, "file", e.name)
			return nil
		}
		if file == nil {
			flags := e.flags
			if flags == nil {
				flags = []string{}
			}
			return c.Keep(e.id, flags)
		}
		defer file.Close()
		if !fi.Mode().IsRegular() {
			s.log.Warn("maildir: not a regular file, skipping", "folder", folder, "file", e.name)
			return nil
		}
		return c.Put(&archive.Message{
			Folder:       folder,
			SourceID:     e.id,
			Flags:        e.flags,
			InternalDate: fi.ModTime(),
			Size:         fi.Size(),
			Body:         file,
			Fingerprint:  fileFingerprint(fi),
		})
	}
}

// fileFingerprint is a message file's fingerprint (archive.Message): its
// size and modification time.
func fileFingerprint(fi os.FileInfo) string {
	return fileStat{size: fi.Size(), mtime: fi.ModTime().UnixNano()}.fingerprint()
}

// fileStat is what a stat of a message file tells.
type fileStat struct {
	regular bool
	size    int64
	mtime   int64 // nanoseconds since 1970
}

// fingerprint is fileFingerprint of the file.
func (st fileStat) fingerprint() string {
	var b [48]byte
	out := strconv.AppendInt(b[:0], st.size, 10)
	out = append(out, '.')
	return string(strconv.AppendInt(out, st.mtime, 10))
}

// statFile stats a file by its path, following a symbolic link.
func statFile(path string) (fileStat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{}, err
	}
	return fileStat{regular: fi.Mode().IsRegular(), size: fi.Size(), mtime: fi.ModTime().UnixNano()}, nil
}

// mdName is a message file as listed: a folder of a million messages is
// listed whole before it is read, so only the file's name is kept (its ID
// and flags are parsed from it when it is read).
type mdName struct {
	name string
	sub  uint8 // in subs
}

// subs are the subfolders of a maildir, as mdName.sub numbers them; 0 is a
// folder of one-message files.
var subs = [...]string{"", "new", "cur"}

// readNames calls fn with the names of the files and links in dir, a
// batch at a time, so that a folder of a million files is never held as
// a million os.DirEntry values.
func readNames(dir string, fn func(de os.DirEntry) error) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		des, err := f.ReadDir(4096)
		for _, de := range des {
			if !de.IsDir() {
				if err := fn(de); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// mdID is the unique part of a maildir file name, before the info.
func mdID(name string) string {
	id, _, _ := strings.Cut(name, ":")
	return id
}

// keepMaildir lists the messages of a maildir and keeps, as it reads the
// names, those the parent snapshot holds unchanged (same unique name,
// size and modification time): only the others are held, sorted, and
// returned to be read. An unchanged folder of a million messages is thus
// never held as a million names. new/ is read first, then cur/, so that
// a message moved from new/ to cur/ meanwhile is seen at least once; a
// unique name seen in both keeps its cur/ file. The names returned are in
// the natural order of the unique names.
func keepMaildir(ctx context.Context, dir string, kw map[byte]string, c archive.Changes, stats *[len(subs)]*dirStat) ([]mdName, error) {
	var out []mdName
	inNew := map[string]int{} // unique name → its index in out, of new/ files
	for sub := uint8(1); sub <= 2; sub++ {
		ds, err := openDirStat(filepath.Join(dir, subs[sub]))
		if isNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		stats[sub] = ds
		err = readNames(ds.dir, func(de os.DirEntry) error {
			name := de.Name()
			if strings.HasPrefix(name, ".") {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			e := parseMaildirName(subs[sub], name, kw)
			if k, ok := inNew[e.id]; ok && sub == 2 {
				out[k].sub = dropped // its cur/ file stays
				delete(inNew, e.id)
			}
			if st, err := ds.stat(name); err == nil && st.regular && c.Have(e.id, st.fingerprint()) {
				flags := e.flags
				if flags == nil {
					flags = []string{}
				}
				return c.Keep(e.id, flags)
			}
			if sub == 1 {
				inNew[e.id] = len(out)
			}
			out = append(out, mdName{name: name, sub: sub})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out = slices.DeleteFunc(out, func(n mdName) bool { return n.sub == dropped })
	slices.SortFunc(out, func(a, b mdName) int {
		ia, ib := mdID(a.name), mdID(b.name)
		if c := naturalCompare(ia, ib); c != 0 {
			return c
		}
		return strings.Compare(ia, ib)
	})
	return slices.Clip(out), nil
}

// dropped marks an mdName left out.
const dropped = 0xff

// findMaildirEntry looks for the message with unique name id again.
func findMaildirEntry(dir, id string, kw map[byte]string) (mdEntry, bool) {
	for _, sub := range []string{"cur", "new"} {
		des, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, de := range des {
			if n := de.Name(); n == id || strings.HasPrefix(n, id+":") {
				return parseMaildirName(sub, n, kw), true
			}
		}
	}
	return mdEntry{}, false
}

// maildirFlags maps Maildir info letters to IMAP flags.
var maildirFlags = map[byte]string{
	'D': archive.FlagDraft,
	'F': archive.FlagFlagged,
	'P': archive.FlagForwarded,
	'R': archive.FlagAnswered,
	'S': archive.FlagSeen,
	'T': archive.FlagDeleted,
}

func parseMaildirName(sub, name string, kw map[byte]string) mdEntry {
	e := mdEntry{sub: sub, name: name, id: name}
	id, info, ok := strings.Cut(name, ":")
	if !ok {
		return e
	}
	e.id = id
	letters, ok := strings.CutPrefix(info, "2,")
	if !ok {
		return e
	}
	for i := range len(letters) {
		l := letters[i]
		if f, ok := maildirFlags[l]; ok {
			if sub == "new" && f == archive.FlagSeen {
				continue
			}
			e.flags = append(e.flags, f)
		} else if k, ok := kw[l]; ok {
			e.flags = append(e.flags, k)
		}
	}
	return e
}

// readKeywords reads a Dovecot dovecot-keywords file: lines "N keyword",
// where N = 0 is the letter "a"; a line whose keyword no IMAP server would
// take (validKeyword) is skipped. A missing file means no keywords.
func readKeywords(name string) (map[byte]string, error) {
	f, err := os.Open(name)
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read keywords: %w", err)
	}
	defer f.Close()
	kw := make(map[byte]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		num, word, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		n, err := strconv.Atoi(num)
		word = strings.TrimSpace(word)
		if !ok || err != nil || n < 0 || n >= 26 || !validKeyword(word) {
			continue
		}
		kw['a'+byte(n)] = word
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read keywords %q: %w", name, err)
	}
	return kw, nil
}

// validKeyword reports whether word can be an IMAP keyword: an atom (no
// space, control character or one of `(){%*"\]`) not starting with "\".
func validKeyword(word string) bool {
	if word == "" || word[0] == '\\' {
		return false
	}
	for i := range len(word) {
		if c := word[i]; c <= ' ' || c == 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// listFiles lists the messages of a directory of one-message files.
func listFiles(dir string) ([]mdName, error) {
	var out []mdName
	err := readNames(dir, func(de os.DirEntry) error {
		if !skipFile(de.Name()) && isRegular(dir, de) {
			out = append(out, mdName{name: de.Name()})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b mdName) int {
		if c := naturalCompare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return out, nil
}
