package archive

import (
	"context"
	"errors"
	"io"
	"time"
)

// Folder describes one mail folder.
//
// Path uses "/" as its separator and is UTF-8, whatever the source's own
// separator and encoding; Name keeps the source's original spelling (for
// example IMAP modified UTF-7 with "." separators) so that a restore to the
// same kind of server can use it again.
type Folder struct {
	Path       string `json:"path"`
	Name       string `json:"name,omitempty"`
	Delimiter  string `json:"delim,omitempty"`
	SpecialUse string `json:"special_use,omitempty"` // RFC 6154 attribute such as `\Sent`, or ""
}

// Well-known RFC 6154 special-use attributes.
const (
	All     = `\All`
	Archive = `\Archive`
	Drafts  = `\Drafts`
	Flagged = `\Flagged`
	Junk    = `\Junk`
	Sent    = `\Sent`
	Trash   = `\Trash`
)

// IMAP system flags as they travel in Message.Flags. Any other entry is a
// keyword.
const (
	FlagSeen     = `\Seen`
	FlagAnswered = `\Answered`
	FlagFlagged  = `\Flagged`
	FlagDeleted  = `\Deleted`
	FlagDraft    = `\Draft`
	// FlagForwarded is the common keyword for a forwarded message (Maildir "P").
	FlagForwarded = `$Forwarded`
)

// Message is one message as it travels from a source to the repository or
// from the repository to a sink.
//
// Body streams the raw RFC 5322 bytes, exactly as stored by the source; it is
// only valid during the call that hands the Message over. Size is the number
// of bytes Body yields, or -1 when the source does not know it in advance.
type Message struct {
	Folder       string    // Folder.Path
	SourceID     string    // IMAP UID, Graph id, Maildir unique name, mbox ordinal...
	Flags        []string  // system flags (`\Seen`...) and keywords
	InternalDate time.Time // when the message arrived in the mailbox
	Size         int64
	Body         io.Reader

	// Fingerprint, when not empty, lets a source say cheaply "this is the
	// same message as last time" (Maildir: size and mtime). See Changes.Have.
	Fingerprint string

	// Labels are the labels of a message of a label-based mailbox (Gmail's
	// X-GM-LABELS), besides the folder it is read from: label names as
	// folder paths ("Work", "Receipts/2024") and system labels as Gmail
	// spells them (`\Inbox`, `\Sent`, `\Important`...). A source reads
	// such a message once, from its All Mail folder, whatever its labels.
	Labels []string

	// Digest, when not empty, names the message's content for a sink: the
	// repository's ID of the message (the hex SHA-256 of its bytes). A
	// sink that keeps a journal of what it delivered uses it to recognise
	// the message later without reading it.
	Digest string
}

// Cursor is a source's opaque position in one folder (IMAP UIDVALIDITY,
// UIDNEXT, HIGHESTMODSEQ; a Graph delta link). It is stored in the snapshot
// next to the folder it belongs to, so data and state commit together.
type Cursor []byte

// Changes receives what changed in one folder during Source.Sync. The
// methods are called from the goroutine that runs Sync, one at a time.
type Changes interface {
	// Reset says that a full listing follows: every message not reported
	// again through Put or Keep before Sync returns leaves the folder.
	Reset() error
	// Have reports whether the parent snapshot already holds the message
	// with this source ID and fingerprint; the source may then call Keep
	// instead of reading the body.
	Have(sourceID, fingerprint string) bool
	// Keep keeps a known message, with new flags (nil flags mean unchanged).
	Keep(sourceID string, flags []string) error
	// Put adds or replaces a message. Body is read before Put returns.
	Put(m *Message) error
	// Delete removes a message from the folder.
	Delete(sourceID string) error
	// Skip reports a message the source could not read. The run goes on:
	// the message is named in the report, the folder keeps the version the
	// parent snapshot had (if any) and the snapshot is marked partial.
	Skip(sourceID string, err error) error
}

// Relabeler is a Changes that also keeps new labels (Message.Labels) of a
// known message: a source of labels calls it instead of Keep when a
// message's labels changed, so that the message is not read again.
type Relabeler interface {
	// Relabel keeps a known message with new flags (nil: unchanged) and
	// new labels.
	Relabel(sourceID string, flags, labels []string) error
}

// Source is where mail comes from. Implementations must be safe for
// concurrent Sync calls on different folders.
type Source interface {
	// Describe says what this source is, for the snapshot ("maildir:/path",
	// "imaps://alice@host"). It must not contain secrets.
	Describe() string
	// Folders lists the folders to back up.
	Folders(ctx context.Context) ([]Folder, error)
	// Sync reports the changes in f since cursor (nil: from scratch, which
	// starts with Reset) and returns the folder's new cursor.
	Sync(ctx context.Context, f Folder, since Cursor, c Changes) (Cursor, error)
}

// Sink is where mail goes back to (export, restore). A sink is used from one
// goroutine unless its documentation says otherwise.
type Sink interface {
	// Folder is called once per folder, before its messages.
	Folder(ctx context.Context, f Folder) error
	// Put writes one message into the folder last opened with Folder.
	Put(ctx context.Context, m *Message) error
	// Close finishes the sink's work and releases it.
	Close() error
}

// Progress receives progress reports from long operations. Every method may
// be called from several goroutines at once; implementations must be quick.
// A nil Progress is never passed: use NoProgress.
type Progress interface {
	// Start announces the amount of work, when known (-1 otherwise).
	Start(total Counts)
	// Add reports work done since the last call.
	Add(done Counts)
	// Event reports a notable event (a skipped message, a folder done...).
	Event(e Event)
}

// Counts is an amount of work: messages and bytes.
type Counts struct {
	Messages int64 `json:"messages"`
	Bytes    int64 `json:"bytes"`
}

// Event is one notable thing that happened during an operation.
type Event struct {
	Kind     string `json:"kind"` // "skip", "folder", "warn"...
	Folder   string `json:"folder,omitempty"`
	SourceID string `json:"source_id,omitempty"`
	Err      error  `json:"-"`
	Message  string `json:"message,omitempty"`
}

// NoProgress discards every report.
var NoProgress Progress = noProgress{}

type noProgress struct{}

func (noProgress) Start(Counts) {}
func (noProgress) Add(Counts)   {}
func (noProgress) Event(Event)  {}

// ErrSkipped marks an error that cost one message but not the run: the
// message is named in the report, the snapshot is partial.
var ErrSkipped = errors.New("message skipped")
