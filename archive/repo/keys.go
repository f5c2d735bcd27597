package repo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"bytes"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/dedup"
)

// maxKeyTries bounds how many key files a password is tried against, since
// each try costs a key derivation.
const maxKeyTries = 32

func unlock(ctx context.Context, be backend.Backend, password string) (*crypto.Key, string, error) {
	var names []string
	err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("open repository: list keys: %w", err)
	}
	if len(names) == 0 {
		if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err != nil {
			return nil, "", fmt.Errorf("open repository %s: no repository there: %w", be.Location(), backend.ErrNotExist)
		}
		return nil, "", fmt.Errorf("open repository: %w", ErrNoKey)
	}
	sort.Strings(names)
	if len(names) > maxKeyTries {
		names = names[:maxKeyTries]
	}
	// A damaged key file must not lock out the others: try them all and
	// only report damage if no key opens.
	var damaged error
	for _, name := range names {
		b, err := backend.ReadAll(ctx, be, backend.Handle{Type: backend.KeyFile, Name: name})
		if err == nil {
			var kf *crypto.KeyFile
			if kf, err = crypto.ParseKeyFile(b); err == nil {
				var key *crypto.Key
				if key, err = kf.Unlock(password); err == nil {
					return key, name, nil
				}
			}
		}
		if !errors.Is(err, crypto.ErrWrongPassword) && damaged == nil {
			damaged = fmt.Errorf("key %s: %w", name, err)
		}
	}
	if damaged != nil {
		return nil, "", fmt.Errorf("%w (and %v)", ErrWrongPassword, damaged)
	}
	return nil, "", ErrWrongPassword
}

// KeyEntry describes one key file.
type KeyEntry struct {
	ID       string    `json:"id"`
	Current  bool      `json:"current"`
	Created  time.Time `json:"created"`
	Host     string    `json:"host"`
	Username string    `json:"username"`
}

// AddKey adds a key file for password and returns its ID.
func (r *Repository) AddKey(ctx context.Context, password string) (string, error) {
	if password == "" {
		return "", errors.New("add key: empty password")
	}
	host, name := hostUser()
	kf, err := crypto.NewKeyFile(password, r.key, crypto.KeyInfo{Created: time.Now().UTC(), Host: host, Username: name})
	if err != nil {
		return "", fmt.Errorf("add key: %w", err)
	}
	b, err := kf.Marshal()
	if err != nil {
		return "", err
	}
	id := dedup.RandomID().String()
	if err := r.be.Save(ctx, backend.Handle{Type: backend.KeyFile, Name: id}, bytes.NewReader(b)); err != nil {
		return "", fmt.Errorf("add key: %w", err)
	}
	return id, nil
}

// ListKeys lists the key files.
func (r *Repository) ListKeys(ctx context.Context) ([]KeyEntry, error) {
	var out []KeyEntry
	err := r.be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		e := KeyEntry{ID: fi.Name, Current: fi.Name == r.keyID}
		b, err := backend.ReadAll(ctx, r.be, backend.Handle{Type: backend.KeyFile, Name: fi.Name})
		if err != nil {
			return err
		}
		if kf, err := crypto.ParseKeyFile(b); err == nil {
			if info, err := kf.InfoWith(r.key); err == nil {
				e.Created, e.Host, e.Username = info.Created, info.Host, info.Username
			}
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// RemoveKey removes a key file given its ID or a unique prefix. It refuses
// to remove the key the repository was opened with.
func (r *Repository) RemoveKey(ctx context.Context, id string) error {
	keys, err := r.ListKeys(ctx)
	if err != nil {
		return err
	}
	var match []string
	for _, k := range keys {
		if len(id) > 0 && len(id) <= len(k.ID) && k.ID[:len(id)] == id {
			match = append(match, k.ID)
		}
	}
	switch {
	case len(match) == 0:
		return fmt.Errorf("remove key %s: no such key", id)
	case len(match) > 1:
		return fmt.Errorf("remove key %s: prefix is ambiguous", id)
	case match[0] == r.keyID:
		return fmt.Errorf("remove key %s: it is the key in use; use `key passwd` to change it", id)
	}
	return r.be.Remove(ctx, backend.Handle{Type: backend.KeyFile, Name: match[0]})
}

// ChangePassword replaces the key in use by one for newPassword.
func (r *Repository) ChangePassword(ctx context.Context, newPassword string) error {
	id, err := r.AddKey(ctx, newPassword)
	if err != nil {
		return err
	}
	old := r.keyID
	r.keyID = id
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.KeyFile, Name: old}); err != nil {
		return fmt.Errorf("change password: remove old key: %w", err)
	}
	return nil
}
