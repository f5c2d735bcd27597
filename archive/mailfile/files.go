package mailfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Permissions of what the sinks create: mail is personal data.
const (
	filePerm = 0o600
	dirPerm  = 0o700
)

// splitFolder splits a folder path into its elements and refuses empty ones,
// which could make a sink write outside its directory.
func splitFolder(path string) ([]string, error) {
	elems := strings.Split(path, "/")
	for _, e := range elems {
		if e == "" {
			return nil, fmt.Errorf("folder %q: empty name element", path)
		}
	}
	return elems, nil
}

// escapeElem escapes one folder-path element for use as (part of) a file
// name: "%" → "%25", NUL → "%00", and "." → "%2E" where allDots is set or
// where the "." leads the element. The result is never empty, ".", ".." or a
// hidden name, and holds neither "/" nor NUL as long as e holds no "/".
func escapeElem(e string, allDots bool) string {
	var b strings.Builder
	for i := range len(e) {
		switch c := e[i]; {
		case c == '%':
			b.WriteString("%25")
		case c == 0:
			b.WriteString("%00")
		case c == '.' && (allDots || i == 0):
			b.WriteString("%2E")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeElem undoes escapeElem: it decodes "%25", "%00" and "%2E" (or
// "%2e") and leaves every other "%" alone.
func unescapeElem(e string) string {
	if !strings.Contains(e, "%") {
		return e
	}
	var b strings.Builder
	for i := 0; i < len(e); i++ {
		if e[i] == '%' && i+2 < len(e) {
			switch strings.ToUpper(e[i+1 : i+3]) {
			case "25":
				b.WriteByte('%')
				i += 2
				continue
			case "00":
				b.WriteByte(0)
				i += 2
				continue
			case "2E":
				b.WriteByte('.')
				i += 2
				continue
			}
		}
		b.WriteByte(e[i])
	}
	return b.String()
}

// folderDir returns the directory below root for a folder path in the
// mbox and .eml layouts: one directory per element.
func folderDir(root, path string) (string, error) {
	elems, err := splitFolder(path)
	if err != nil {
		return "", err
	}
	for i, e := range elems {
		elems[i] = escapeElem(e, false)
	}
	return filepath.Join(append([]string{root}, elems...)...), nil
}

// writeFile creates name (which must not exist) with mode 0600, copies r
// into it and sets its modification time to mtime unless mtime is zero. On
// failure it removes the file.
func writeFile(name string, r io.Reader, mtime time.Time) (n int64, err error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return 0, err
	}
	n, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(name, mtime, mtime)
	}
	if err != nil {
		os.Remove(name)
		return n, err
	}
	return n, nil
}

// skipFile reports whether a file in a directory of one-message files is not
// a message: hidden files, index and state files of mail programs, notes.
func skipFile(name string) bool {
	lower := strings.ToLower(name)
	switch {
	case strings.HasPrefix(name, "."),
		strings.HasPrefix(lower, "dovecot"),
		strings.HasPrefix(lower, "courier"),
		lower == "maildirfolder", lower == "subscriptions", lower == "thumbs.db", lower == "desktop.ini",
		strings.HasSuffix(lower, ".md"), strings.HasSuffix(lower, ".json"), strings.HasSuffix(lower, "~"):
		return true
	}
	return false
}

// naturalLess orders names with their digit runs compared as numbers, so
// "9" < "10" and "1.M5" < "1.M10"; equal-looking names fall back to bytes.
func naturalLess(a, b string) bool {
	if c := naturalCompare(a, b); c != 0 {
		return c < 0
	}
	return a < b
}

func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			na, ra := digitRun(a)
			nb, rb := digitRun(b)
			ta, tb := strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(ta) != len(tb) {
				return cmpInt(len(ta), len(tb))
			}
			if c := strings.Compare(ta, tb); c != 0 {
				return c
			}
			a, b = ra, rb
			continue
		}
		if a[0] != b[0] {
			return cmpInt(int(a[0]), int(b[0]))
		}
		a, b = a[1:], b[1:]
	}
	return cmpInt(len(a), len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) (run, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// isNotExist reports whether err says a file is gone.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
