package restore

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Journal records what restores appended into one target account: per
// mailbox and UIDVALIDITY, the UID each message got and its digest (the
// repository's ID of the message). A later restore into the account then
// knows which of the messages it finds are the ones it appended, whatever
// the server did to their bytes, without reading them (see imap.Journal).
//
// It keeps one file per mailbox in its directory, named by a hash of the
// account and the mailbox (no folder name is written in clear), of lines
// "UIDVALIDITY UID DIGEST". A record is written as soon as the server has
// answered, buffered and written out at Flush (a restore flushes once per
// answer to an APPEND, which can carry a hundred messages), once
// journalBatch records are pending, at the next record once the oldest is
// journalDelay old, and at Load and Close. Records are not synced: a
// killed process leaves what it flushed, and records lost in a machine's
// crash only make the next run compare those messages by their
// fingerprints. One write per message cost a restore into Dovecot some 5%
// of its time. Its methods are safe for concurrent use.
type Journal struct {
	dir, account string
	mu           sync.Mutex
	files        map[string]*journalFile
	began        bool // Begin left its marker
}

// journalFile is the open file of one mailbox and its unwritten records.
type journalFile struct {
	f       *os.File
	w       *bufio.Writer
	pending int       // records in w
	since   time.Time // when the first of them was added
}

// A journal writes its records out once journalBatch are pending, or at
// a record once the oldest pending is journalDelay old.
const (
	journalBatch = 64
	journalDelay = time.Second
)

func (jf *journalFile) flush() error {
	jf.pending = 0
	return jf.w.Flush()
}

// OpenJournal returns the journal of account (a description such as
// "imaps://alice@mail.example.eu:993") in dir, created (mode 0700) if
// missing.
func OpenJournal(dir, account string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore journal: %w", err)
	}
	return &Journal{dir: dir, account: account, files: map[string]*journalFile{}}, nil
}

func (j *Journal) path(mailbox string) string {
	sum := sha256.Sum256([]byte(j.account + "\x00" + mailbox))
	return filepath.Join(j.dir, hex.EncodeToString(sum[:16])+".journal")
}

// marker is the file a run of the account keeps from Begin to Close.
func (j *Journal) marker() string {
	sum := sha256.Sum256([]byte(j.account))
	return filepath.Join(j.dir, hex.EncodeToString(sum[:16])+".run")
}

// Load returns UID → digest of what was recorded for mailbox under
// uidValidity. A torn last line (a crash while it was written) is
// ignored.
func (j *Journal) Load(mailbox string, uidValidity uint32) (map[uint32]string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if jf := j.files[mailbox]; jf != nil {
		if err := jf.flush(); err != nil {
			return nil, fmt.Errorf("restore journal: %w", err)
		}
	}
	f, err := os.Open(j.path(mailbox))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore journal: %w", err)
	}
	defer f.Close()
	out := map[uint32]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 || len(fs[2]) != 64 {
			continue
		}
		uv, err1 := strconv.ParseUint(fs[0], 10, 32)
		uid, err2 := strconv.ParseUint(fs[1], 10, 32)
		if err1 != nil || err2 != nil || uint32(uv) != uidValidity {
			continue
		}
		out[uint32(uid)] = fs[2]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("restore journal: %w", err)
	}
	return out, nil
}

// Record notes that the message with digest is mailbox's UID uid.
func (j *Journal) Record(mailbox string, uidValidity, uid uint32, digest string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	jf := j.files[mailbox]
	if jf == nil {
		f, err := os.OpenFile(j.path(mailbox), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("restore journal: %w", err)
		}
		jf = &journalFile{f: f, w: bufio.NewWriter(f)}
		j.files[mailbox] = jf
	}
	if jf.pending == 0 {
		jf.since = time.Now()
	}
	fmt.Fprintf(jf.w, "%d %d %s\n", uidValidity, uid, digest)
	jf.pending++
	if jf.pending >= journalBatch || time.Since(jf.since) >= journalDelay {
		if err := jf.flush(); err != nil {
			return fmt.Errorf("restore journal: %w", err)
		}
	}
	return nil
}

// Begin notes that a run into the account starts, and reports whether the
// one before it was interrupted (killed, or its machine crashed): Begin
// leaves a marker file that only Close removes.
func (j *Journal) Begin() (interrupted bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	marker := j.marker()
	if _, err := os.Stat(marker); err == nil {
		interrupted = true
	}
	f, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return interrupted, fmt.Errorf("restore journal: %w", err)
	}
	j.began = true
	return interrupted, f.Close()
}

// Flush writes out the records not yet written.
func (j *Journal) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, jf := range j.files {
		if jf.pending == 0 {
			continue
		}
		if err := jf.flush(); err != nil {
			return fmt.Errorf("restore journal: %w", err)
		}
	}
	return nil
}

// Close writes out what is pending, closes the journal's files and, after
// Begin, notes that the run ended.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	var first error
	if j.began {
		if err := os.Remove(j.marker()); err != nil && !os.IsNotExist(err) {
			first = fmt.Errorf("restore journal: %w", err)
		}
		j.began = false
	}
	for mb, jf := range j.files {
		err := jf.flush()
		if cerr := jf.f.Close(); err == nil {
			err = cerr
		}
		if err != nil && first == nil {
			first = fmt.Errorf("restore journal: %w", err)
		}
		delete(j.files, mb)
	}
	return first
}
