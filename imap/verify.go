package imap

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
)

// Expected is one message a target folder should hold.
type Expected struct {
	SourceID  string
	Hash      Hash  // see Hash: line ends made CRLF
	Size      int64 // bytes after the CRLF conversion
	Date      time.Time
	MessageID string
}

// Difference is one way a target folder differs from what was expected.
type Difference struct {
	Kind      string    `json:"kind"` // "missing", "extra", "altered" or "folder-missing"
	Folder    string    `json:"folder"`
	Mailbox   string    `json:"mailbox"`
	SourceID  string    `json:"source_id,omitempty"`
	UID       uint32    `json:"uid,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	Date      time.Time `json:"date,omitzero"`
}

// Verifier compares folders of an IMAP account with what a snapshot
// holds, message by message by content hash of what the server returns.
type Verifier struct {
	t *target
}

// NewVerifier connects to the account in opts; mo maps folders as the
// restore did.
func NewVerifier(ctx context.Context, opts *Options, mo MapOptions) (*Verifier, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t, err := openTarget(ctx, opts, mo, log)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", opts.describe(), err)
	}
	return &Verifier{t: t}, nil
}

// Close logs out.
func (v *Verifier) Close() error {
	v.t.close()
	return nil
}

// Folder compares the target folder of f with want. Messages are matched
// by content with multiplicity; a missing and an extra message with the
// same Message-ID, or the same date and size, are reported together as one
// altered message.
func (v *Verifier) Folder(ctx context.Context, f archive.Folder, want []Expected) ([]Difference, error) {
	mb := v.t.mailbox(f)
	if !v.t.mailboxes[mb] && mb != "INBOX" {
		if len(want) == 0 {
			return nil, nil
		}
		return []Difference{{Kind: "folder-missing", Folder: f.Path, Mailbox: mb}}, nil
	}
	got, _, err := v.t.contents(mb, true)
	if err != nil {
		return nil, err
	}
	have := map[Hash][]int{}
	for i, m := range got {
		have[m.Hash] = append(have[m.Hash], i)
	}
	var missing []Expected
	for _, w := range want {
		if l := have[w.Hash]; len(l) > 0 {
			have[w.Hash] = l[1:]
			continue
		}
		missing = append(missing, w)
	}
	var extra []targetMsg
	for i, m := range got {
		for _, j := range have[m.Hash] {
			if j == i {
				extra = append(extra, m)
			}
		}
	}
	var diffs []Difference
	used := make([]bool, len(extra))
	for _, w := range missing {
		k := -1
		for i, e := range extra {
			if used[i] {
				continue
			}
			if w.MessageID != "" && e.MessageID == w.MessageID || w.Date.Unix() == e.Date.Unix() && w.Size == e.Size {
				k = i
				break
			}
		}
		if k >= 0 {
			used[k] = true
			diffs = append(diffs, Difference{Kind: "altered", Folder: f.Path, Mailbox: mb, SourceID: w.SourceID, UID: uint32(extra[k].UID), MessageID: w.MessageID, Date: w.Date})
			continue
		}
		diffs = append(diffs, Difference{Kind: "missing", Folder: f.Path, Mailbox: mb, SourceID: w.SourceID, MessageID: w.MessageID, Date: w.Date})
	}
	for i, e := range extra {
		if !used[i] {
			diffs = append(diffs, Difference{Kind: "extra", Folder: f.Path, Mailbox: mb, UID: uint32(e.UID), MessageID: e.MessageID, Date: e.Date})
		}
	}
	return diffs, nil
}

// SnapshotExpected reads folder i of snap and hashes each of its
// messages, for Verifier.Folder.
func SnapshotExpected(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, i int) ([]Expected, error) {
	var out []Expected
	err := r.Entries(ctx, snap, i, func(e repo.Entry) error {
		h := NewHasher()
		if _, err := io.Copy(h, restore.NewReader(ctx, r, &e)); err != nil {
			return fmt.Errorf("message %s: %w", e.SourceID, err)
		}
		out = append(out, Expected{SourceID: e.SourceID, Hash: h.Sum(), Size: h.Size(), Date: e.Date, MessageID: h.MessageID()})
		return nil
	})
	return out, err
}
