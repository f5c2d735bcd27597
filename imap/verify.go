package imap

import (
	"context"
	"fmt"
	"log/slog"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailform"
)

// Account reads what an IMAP account holds, folder by folder, for a
// comparison with a snapshot (restore.Verify): it maps folders as a Sink
// does and fingerprints every message it lists. It is used from one
// goroutine.
type Account struct {
	t *target
}

// OpenAccount connects to the account in opts; mo maps folders as the
// restore did.
func OpenAccount(ctx context.Context, opts *Options, mo MapOptions) (*Account, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t, err := openTarget(ctx, opts, mo, log)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", opts.describe(), err)
	}
	return &Account{t: t}, nil
}

// Close logs out.
func (a *Account) Close() error {
	a.t.close()
	return nil
}

// Mailbox returns the target mailbox (UTF-8) of f and whether it exists.
func (a *Account) Mailbox(f archive.Folder) (string, bool) {
	mb := a.t.mailbox(f)
	return mb, a.t.mailboxes[mb] || mb == "INBOX"
}

// Messages calls fn with the UID and the fingerprint of every message in
// mailbox, which must exist.
func (a *Account) Messages(ctx context.Context, mailbox string, fn func(uid uint32, p *mailform.Print) error) error {
	st, err := a.t.state(ctx, mailbox, nil)
	if err != nil {
		return err
	}
	for i, u := range st.unknownUIDs {
		if err := fn(uint32(u), st.prints[i]); err != nil {
			return err
		}
	}
	return nil
}

// KeepsLabels reports whether the account is label-based (Proton Mail
// Bridge, Gmail): see restore.LabelLister.
func (a *Account) KeepsLabels() bool { return a.t.keepsLabels() }

// LabelMailbox returns the mailbox of a label and whether it exists.
func (a *Account) LabelMailbox(label string) (string, bool) {
	mb := a.t.labelMailbox(label)
	return mb, a.t.mailboxes[mb]
}
