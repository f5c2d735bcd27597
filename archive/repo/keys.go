package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/dedup"
)

// maxKeyTries bounds how many key files a password is tried against, since
// each try costs a key derivation. Only key files that parse count:
// whoever can write to keys/ must not lock the password out with junk.
const maxKeyTries = 32

// maxKeyFileSize bounds a key file (a real one has a few hundred bytes);
// a larger one is not read.
const maxKeyFileSize = 64 << 10

func unlock(ctx context.Context, be backend.Backend, password string) (*crypto.Key, string, error) {
	var files []backend.FileInfo
	err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
		files = append(files, fi)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("open repository: list keys: %w", err)
	}
	if len(files) == 0 {
		if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile}); err != nil {
			return nil, "", fmt.Errorf("open repository %s: no repository there: %w", be.Location(), backend.ErrNotExist)
		}
		return nil, "", fmt.Errorf("open repository: %w", ErrNoKey)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	// A damaged key file must not lock out the others: try them all and
	// only report damage if no key opens. A file that is too large, does
	// not parse or asks for a key derivation out of bounds costs no try.
	var damaged error
	tries := 0
	for _, fi := range files {
		if tries == maxKeyTries {
			break
		}
		kf, err := readKeyFile(ctx, be, fi)
		if err == nil {
			tries++
			var key *crypto.Key
			if key, err = kf.Unlock(password); err == nil {
				return key, fi.Name, nil
			}
		}
		if !errors.Is(err, crypto.ErrWrongPassword) && damaged == nil {
			damaged = fmt.Errorf("key %s: %w", fi.Name, err)
		}
	}
	if damaged != nil {
		return nil, "", fmt.Errorf("%w (and %v)", ErrWrongPassword, damaged)
	}
	return nil, "", ErrWrongPassword
}

// readKeyFile reads and parses one key file, refusing to read one larger
// than maxKeyFileSize. A file that is not a key file planb would use is
// ErrDamaged.
func readKeyFile(ctx context.Context, be backend.Backend, fi backend.FileInfo) (*crypto.KeyFile, error) {
	if fi.Size > maxKeyFileSize {
		return nil, asDamaged(fmt.Errorf("%d bytes, too large for a key file", fi.Size))
	}
	rd, err := be.Load(ctx, backend.Handle{Type: backend.KeyFile, Name: fi.Name}, 0, 0)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	b, err := io.ReadAll(io.LimitReader(rd, maxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFileSize {
		return nil, asDamaged(errors.New("too large for a key file"))
	}
	kf, err := crypto.ParseKeyFile(b)
	if err != nil {
		return nil, asDamaged(err)
	}
	return kf, nil
}

// KeyEntry describes one key file.
type KeyEntry struct {
	ID       string    `json:"id"`
	Current  bool      `json:"current"`
	Created  time.Time `json:"created"`
	Host     string    `json:"host"`
	Username string    `json:"username"`
	// KDF is the key file's key derivation, as "argon2id m=9216,t=4,p=1";
	// empty if the file is damaged.
	KDF string `json:"kdf,omitempty"`
}

// AddKey adds a key file for password and returns its ID.
func (r *Repository) AddKey(ctx context.Context, password string) (string, error) {
	if password == "" {
		return "", errors.New("add key: empty password")
	}
	host, name := hostUser()
	kdf := crypto.DefaultKDF()
	if r.kdf != nil {
		kdf = *r.kdf
	}
	kf, err := crypto.NewKeyFileWith(password, r.key, crypto.KeyInfo{Created: time.Now().UTC(), Host: host, Username: name}, kdf)
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
		kf, err := readKeyFile(ctx, r.be, fi)
		switch {
		case err == nil:
			e.KDF = kf.KDF.Algorithm + " " + kf.KDF.String()
			if info, err := kf.InfoWith(r.key); err == nil {
				e.Created, e.Host, e.Username = info.Created, info.Host, info.Username
			}
		case !errors.Is(err, ErrDamaged):
			return err
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
