package main

// The "Proton side" of the server kept on disk: users, their labels and
// folders, and their messages with Proton's metadata, in one SQLite
// database beside gluon's own (gluon keeps the IMAP view; this is what
// the Proton API would hold).

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

type store struct{ db *sql.DB }

const schema = `
CREATE TABLE IF NOT EXISTS users (
	name TEXT PRIMARY KEY,
	gluon_id TEXT NOT NULL,
	passphrase BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
	user TEXT NOT NULL,
	id TEXT NOT NULL,
	parent TEXT NOT NULL,
	name TEXT NOT NULL,
	type INTEGER NOT NULL,
	PRIMARY KEY (user, id)
);
CREATE TABLE IF NOT EXISTS messages (
	user TEXT NOT NULL,
	id TEXT NOT NULL,
	kind INTEGER NOT NULL,
	loc TEXT,
	labels TEXT NOT NULL,
	unread INTEGER NOT NULL,
	starred INTEGER NOT NULL,
	replied INTEGER NOT NULL,
	date INTEGER NOT NULL,
	literal BLOB NOT NULL,
	PRIMARY KEY (user, id)
);
CREATE TABLE IF NOT EXISTS tombstones (
	user TEXT NOT NULL,
	id TEXT NOT NULL,
	PRIMARY KEY (user, id)
);
`

func openStore(path string) (*store, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// user returns the gluon ID and store passphrase of a user, ok false if
// the user is new.
func (s *store) user(name string) (gluonID string, passphrase []byte, ok bool, err error) {
	err = s.db.QueryRow(`SELECT gluon_id, passphrase FROM users WHERE name = ?`, name).Scan(&gluonID, &passphrase)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, false, nil
	}
	return gluonID, passphrase, err == nil, err
}

func (s *store) addUser(name, gluonID string, passphrase []byte) error {
	_, err := s.db.Exec(`INSERT INTO users (name, gluon_id, passphrase) VALUES (?, ?, ?)`, name, gluonID, passphrase)
	return err
}

func (s *store) labels(user string) (map[string]*label, error) {
	rows, err := s.db.Query(`SELECT id, parent, name, type FROM labels WHERE user = ?`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*label{}
	for rows.Next() {
		l := &label{}
		if err := rows.Scan(&l.id, &l.parent, &l.name, &l.typ); err != nil {
			return nil, err
		}
		out[l.id] = l
	}
	return out, rows.Err()
}

func (s *store) putLabel(user string, l *label) error {
	_, err := s.db.Exec(`INSERT OR REPLACE INTO labels (user, id, parent, name, type) VALUES (?, ?, ?, ?, ?)`,
		user, l.id, l.parent, l.name, l.typ)
	return err
}

func (s *store) deleteLabel(user, id string) error {
	_, err := s.db.Exec(`DELETE FROM labels WHERE user = ? AND id = ?`, user, id)
	return err
}

// messages returns the metadata of every message of user, oldest first.
func (s *store) messages(user string) ([]*message, error) {
	rows, err := s.db.Query(`SELECT id, kind, loc, labels, unread, starred, replied, date FROM messages WHERE user = ? ORDER BY rowid`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*message
	for rows.Next() {
		m := &message{}
		var loc sql.NullString
		var labels string
		var date int64
		if err := rows.Scan(&m.id, &m.kind, &loc, &labels, &m.unread, &m.starred, &m.replied, &date); err != nil {
			return nil, err
		}
		if loc.Valid {
			m.loc = &loc.String
		}
		m.labels = strings.Fields(labels)
		m.date = time.Unix(date, 0)
		out = append(out, m)
	}
	return out, rows.Err()
}

func (s *store) addMessage(user string, m *message, literal []byte) error {
	_, err := s.db.Exec(`INSERT INTO messages (user, id, kind, loc, labels, unread, starred, replied, date, literal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		user, m.id, m.kind, nullLoc(m.loc), strings.Join(m.labels, " "), m.unread, m.starred, m.replied, m.date.Unix(), literal)
	return err
}

func (s *store) putMessage(user string, m *message) error {
	_, err := s.db.Exec(`UPDATE messages SET loc = ?, labels = ?, unread = ?, starred = ?, replied = ? WHERE user = ? AND id = ?`,
		nullLoc(m.loc), strings.Join(m.labels, " "), m.unread, m.starred, m.replied, user, m.id)
	return err
}

// deleteMessage deletes a message for good and leaves a tombstone, which
// tells gluon after a crash that the message is gone.
func (s *store) deleteMessage(user, id string) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM messages WHERE user = ? AND id = ?`, user, id); err != nil {
		return err
	}
	if _, err := tx.Exec(`INSERT OR IGNORE INTO tombstones (user, id) VALUES (?, ?)`, user, id); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *store) tombstones(user string) ([]string, error) {
	rows, err := s.db.Query(`SELECT id FROM tombstones WHERE user = ?`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (s *store) clearTombstones() error {
	_, err := s.db.Exec(`DELETE FROM tombstones`)
	return err
}

func (s *store) literal(user, id string) ([]byte, error) {
	var b []byte
	err := s.db.QueryRow(`SELECT literal FROM messages WHERE user = ? AND id = ?`, user, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNoSuchMessage
	}
	return b, err
}

func nullLoc(loc *string) any {
	if loc == nil {
		return nil
	}
	return *loc
}
