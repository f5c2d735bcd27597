package serve

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors a Store returns.
var (
	// ErrLogin says that a name and password do not open any account.
	ErrLogin = errors.New("wrong user name or password")
	// ErrNoMailbox says that the user has no mailbox of that name.
	ErrNoMailbox = errors.New("no such mailbox")
	// ErrDamaged says that a message cannot be read, now or later: its
	// stored bytes failed their checks or are gone. A message reader's
	// error that wraps it makes the server refuse the message from then
	// on, where another error is tried again at the next command.
	ErrDamaged = errors.New("damaged in the archive")
)

// Store is the read-only mail a Server serves. Its methods are called
// from many sessions at once.
type Store interface {
	// Login checks a user's name and password and returns what the user
	// may read, or an error wrapping ErrLogin.
	Login(ctx context.Context, name, password string) (User, error)
}

// User is the mail one login may read: a tree of mailboxes. Its methods
// are called from the user's sessions, possibly at once.
type User interface {
	// Mailboxes lists the user's mailboxes as they are now (a mailbox that
	// appeared since the last call is listed). Containers of other
	// mailboxes that hold no mail of their own are listed with NoSelect;
	// a mailbox's parents need not be listed (the server adds them).
	Mailboxes(ctx context.Context) ([]MailboxInfo, error)
	// Mailbox returns one mailbox's messages as they are now, or an error
	// wrapping ErrNoMailbox. The Mailbox never changes: a later call may
	// return a newer one.
	Mailbox(ctx context.Context, name string) (Mailbox, error)
}

// MailboxInfo describes one mailbox.
type MailboxInfo struct {
	// Name is the mailbox's full name, UTF-8, with "/" between the levels;
	// the inbox is "INBOX".
	Name string
	// SpecialUse is an RFC 6154 attribute such as `\Sent`, or "".
	SpecialUse string
	// NoSelect marks a container that holds no messages.
	NoSelect bool
}

// Mailbox is a fixed list of messages. Its methods are safe for
// concurrent use.
type Mailbox interface {
	Info() MailboxInfo
	// UIDValidity is the mailbox's UIDVALIDITY: as long as it is the
	// same, a UID names the same message.
	UIDValidity() uint32
	// Messages returns the messages in ascending UID order; the caller
	// must not modify the slice.
	Messages() []Message
	// Open returns the bytes of the message Messages()[i], exactly as
	// stored (Size bytes). The reader's Seek must support every offset
	// from io.SeekStart and io.SeekCurrent; its errors wrap ErrDamaged
	// where the message cannot be read at all. The caller closes it.
	Open(ctx context.Context, i int) (io.ReadSeekCloser, error)
}

// Message is one message of a Mailbox.
type Message struct {
	UID   uint32
	Flags []string // IMAP system flags and keywords
	Date  time.Time
	Size  int64 // bytes as stored
	// Wire is the message's size on the wire (with CRLF line ends), or 0
	// when the store does not know it: the server then reads the
	// message to learn it.
	Wire int64
	// ID names the message's content: two messages with the same ID have
	// the same bytes. The server keys its caches of what it learnt by
	// reading a message (its size on the wire, its MIME structure) by it.
	ID [32]byte
}
