package main

// The gluon connector of one account: what Proton Mail Bridge's
// imapservice.Connector does against the Proton API, done here against a
// local model of Proton's mail (proton-bridge
// internal/services/imapservice/connector.go for the rules; go-proton-api's
// test server, server/backend/message.go, for how the API places a message
// when it is labelled or unlabelled).
//
// Proton's model: a message has at most one location (Inbox, Sent or
// Drafts, which follow from its kind; Archive, Spam, Trash or a user
// folder; or none), any number of user labels, and a star. "All Mail"
// shows every message, Spam and Trash included, and "Starred" the starred
// ones. Gluon only changes the mailbox a client acts on; the rest (All
// Mail, Starred, a message leaving INBOX when copied into a folder)
// reaches gluon afterwards as updates, as Bridge's event loop delivers
// them.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"slices"
	"sync"
	"time"

	"github.com/ProtonMail/gluon/connector"
	"github.com/ProtonMail/gluon/imap"
	"github.com/ProtonMail/gluon/rfc5322"
	"github.com/ProtonMail/gluon/rfc822"
)

// Proton's system label IDs (go-proton-api label_types.go).
const (
	inboxID     = "0"
	trashID     = "3"
	spamID      = "4"
	allMailID   = "5"
	archiveID   = "6"
	sentID      = "7"
	draftsID    = "8"
	starredID   = "10"
	scheduledID = "12"
)

// Proton label types (go-proton-api LabelType).
const (
	typeLabel  = 1
	typeFolder = 3
)

// Bridge's prefixes for user folders and labels; they are also the IDs of
// the two \Noselect placeholder mailboxes.
const (
	folderPrefix = "Folders"
	labelPrefix  = "Labels"
)

// What a message is, by Proton's message flags: it decides where Inbox,
// Sent and Drafts put it.
const (
	kindReceived = iota
	kindSent
	kindDraft
)

var (
	errNoSuchMessage = errors.New("no such message")
	errNoSuchLabel   = errors.New("no such label") // go-proton-api ErrNoSuchLabel
)

type label struct {
	id, parent, name string
	typ              int
}

type message struct {
	id     string
	kind   int
	loc    *string // nil: where its kind puts it; "": no location; else a label ID
	labels []string
	unread bool
	// starred and replied are Proton's star and IsReplied.
	starred, replied bool
	date             time.Time
}

// systemMailbox is one of Bridge's system mailboxes, in the order Bridge
// lists them.
type systemMailbox struct{ id, name, attr string }

var systemMailboxes = []systemMailbox{
	{inboxID, imap.Inbox, ""},
	{draftsID, "Drafts", imap.AttrDrafts},
	{sentID, "Sent", imap.AttrSent},
	{starredID, "Starred", imap.AttrFlagged},
	{archiveID, "Archive", imap.AttrArchive},
	{spamID, "Spam", imap.AttrJunk},
	{trashID, "Trash", imap.AttrTrash},
	{allMailID, "All Mail", imap.AttrAll},
	{scheduledID, "Scheduled", ""},
}

func isSystem(id string) bool {
	return slices.ContainsFunc(systemMailboxes, func(m systemMailbox) bool { return m.id == id })
}

func isAllMailOrScheduled(id imap.MailboxID) bool { return id == allMailID || id == scheduledID }

// defaultFlags are Bridge's (gluon v0.17 era) mailbox flags and permanent
// flags: no keywords, no \Answered, no \Draft.
func defaultFlags() imap.FlagSet {
	return imap.NewFlagSet(imap.FlagSeen, imap.FlagFlagged, imap.FlagDeleted)
}

// account is one user: the connector gluon talks to, and its mail.
type account struct {
	name, password string
	st             *store
	upd            *updater

	mu     sync.Mutex
	labels map[string]*label
	msgs   map[string]*message
}

func loadAccount(st *store, name, password string) (*account, error) {
	labels, err := st.labels(name)
	if err != nil {
		return nil, err
	}
	msgs, err := st.messages(name)
	if err != nil {
		return nil, err
	}
	a := &account{name: name, password: password, st: st, labels: labels, msgs: map[string]*message{}}
	for _, m := range msgs {
		a.msgs[m.id] = m
	}
	a.upd = newUpdater(a)
	return a, nil
}

func newID() string {
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.URLEncoding.EncodeToString(b)
}

// path is a label's or folder's name with its parents'.
func (a *account) path(l *label) []string {
	var p []string
	for ; l != nil; l = a.labels[l.parent] {
		p = append([]string{l.name}, p...)
		if l.parent == "" {
			break
		}
	}
	return p
}

func (a *account) mailboxOf(l *label) imap.Mailbox {
	prefix := labelPrefix
	if l.typ == typeFolder {
		prefix = folderPrefix
	}
	return imap.Mailbox{
		ID:             imap.MailboxID(l.id),
		Name:           append([]string{prefix}, a.path(l)...),
		Flags:          defaultFlags(),
		PermanentFlags: defaultFlags(),
		Attributes:     imap.NewFlagSet(),
	}
}

// mailboxes lists the IMAP mailboxes of a message.
func (a *account) mailboxes(m *message) []imap.MailboxID {
	ids := []imap.MailboxID{allMailID}
	if m.starred {
		ids = append(ids, starredID)
	}
	switch {
	case m.loc == nil:
		ids = append(ids, natural(m.kind))
	case *m.loc != "":
		ids = append(ids, imap.MailboxID(*m.loc))
	}
	for _, l := range m.labels {
		ids = append(ids, imap.MailboxID(l))
	}
	return ids
}

func natural(kind int) imap.MailboxID {
	switch kind {
	case kindReceived:
		return inboxID
	case kindSent:
		return sentID
	}
	return draftsID
}

func (m *message) flags() imap.FlagSet {
	f := imap.NewFlagSet()
	if !m.unread {
		f.AddToSelf(imap.FlagSeen)
	}
	if m.starred {
		f.AddToSelf(imap.FlagFlagged)
	}
	if m.kind == kindDraft {
		f.AddToSelf(imap.FlagDraft)
	}
	if m.replied {
		f.AddToSelf(imap.FlagAnswered)
	}
	return f
}

// addLabel is the API's LabelMessages for one message: Inbox, Sent and
// Drafts send it back where its kind puts it, Archive, Spam, Trash and
// user folders move it there, Starred stars it, a user label is added.
func (a *account) addLabel(m *message, id string) {
	switch id {
	case inboxID, sentID, draftsID, scheduledID:
		m.loc = nil
	case trashID, spamID, archiveID:
		m.loc = &id
	case starredID:
		m.starred = true
	default:
		l, ok := a.labels[id]
		if !ok {
			return
		}
		if l.typ == typeFolder {
			m.loc = &id
		} else if !slices.Contains(m.labels, id) {
			m.labels = append(m.labels, id)
		}
	}
}

// removeLabel is the API's UnlabelMessages for one message.
func (a *account) removeLabel(m *message, id string) {
	none := ""
	switch id {
	case inboxID, sentID, draftsID, scheduledID:
		if m.loc == nil {
			m.loc = &none
		}
	case starredID:
		m.starred = false
	default:
		if m.loc != nil && *m.loc == id {
			m.loc = &none
		}
		m.labels = slices.DeleteFunc(m.labels, func(l string) bool { return l == id })
	}
}

func (a *account) Authorize(_ context.Context, username string, password []byte) bool {
	return username == a.name && string(password) == a.password
}

func (a *account) CreateMailbox(_ context.Context, name []string) (imap.Mailbox, error) {
	if len(name) < 2 {
		return imap.Mailbox{}, fmt.Errorf("invalid mailbox name %q: %w", name, connector.ErrOperationNotAllowed)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch name[0] {
	case folderPrefix:
		return a.createFolder(name[1:])
	case labelPrefix:
		if len(name) != 2 {
			return imap.Mailbox{}, fmt.Errorf("a label cannot have children: %w", connector.ErrOperationNotAllowed)
		}
		return a.create(&label{id: newID(), name: name[1], typ: typeLabel})
	}
	return imap.Mailbox{}, fmt.Errorf("invalid mailbox name %q: %w", name, connector.ErrOperationNotAllowed)
}

func (a *account) createFolder(name []string) (imap.Mailbox, error) {
	parent, err := a.parentFolder(name)
	if err != nil {
		return imap.Mailbox{}, err
	}
	return a.create(&label{id: newID(), parent: parent, name: name[len(name)-1], typ: typeFolder})
}

// parentFolder finds the folder that holds the folder path name.
func (a *account) parentFolder(name []string) (string, error) {
	if len(name) == 1 {
		return "", nil
	}
	for _, l := range a.labels {
		if l.typ == typeFolder && slices.Equal(a.path(l), name[:len(name)-1]) {
			return l.id, nil
		}
	}
	return "", fmt.Errorf("parent folder %q does not exist: %w", name[:len(name)-1], connector.ErrOperationNotAllowed)
}

func (a *account) create(l *label) (imap.Mailbox, error) {
	if err := a.st.putLabel(a.name, l); err != nil {
		return imap.Mailbox{}, err
	}
	a.labels[l.id] = l
	mbox := a.mailboxOf(l)
	// The API's event for the new label: gluon already has the mailbox
	// unless the CREATE that made it failed further on (Labels/x/y).
	a.upd.mailboxCreated(mbox)
	return mbox, nil
}

func (a *account) UpdateMailboxName(_ context.Context, id imap.MailboxID, name []string) error {
	if len(name) < 2 {
		return fmt.Errorf("invalid mailbox name %q: %w", name, connector.ErrOperationNotAllowed)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.labels[string(id)]
	switch name[0] {
	case folderPrefix:
		parent, err := a.parentFolder(name[1:])
		if err != nil {
			return err
		}
		if !ok || l.typ != typeFolder {
			return errNoSuchLabel
		}
		l.parent, l.name = parent, name[len(name)-1]
	case labelPrefix:
		if len(name) != 2 {
			return fmt.Errorf("a label cannot have children: %w", connector.ErrOperationNotAllowed)
		}
		if !ok || l.typ != typeLabel {
			return errNoSuchLabel
		}
		l.name = name[1]
	default:
		return fmt.Errorf("invalid mailbox name %q: %w", name, connector.ErrOperationNotAllowed)
	}
	return a.st.putLabel(a.name, l)
}

func (a *account) DeleteMailbox(_ context.Context, id imap.MailboxID) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.labels[string(id)]; !ok {
		return errNoSuchLabel
	}
	// The API deletes a folder with its subfolders.
	gone := map[string]bool{string(id): true}
	for changed := true; changed; {
		changed = false
		for _, l := range a.labels {
			if !gone[l.id] && gone[l.parent] {
				gone[l.id], changed = true, true
			}
		}
	}
	for lid := range gone {
		if err := a.st.deleteLabel(a.name, lid); err != nil {
			return err
		}
		delete(a.labels, lid)
		if lid != string(id) {
			a.upd.mailboxDeleted(imap.MailboxID(lid))
		}
	}
	for _, m := range a.msgs {
		changed := false
		for lid := range gone {
			before := len(m.labels)
			wasThere := m.loc != nil && *m.loc == lid
			a.removeLabel(m, lid)
			changed = changed || wasThere || len(m.labels) != before
		}
		if changed {
			if err := a.st.putMessage(a.name, m); err != nil {
				return err
			}
			a.upd.message(m.id)
		}
	}
	return nil
}

func (a *account) GetMessageLiteral(_ context.Context, id imap.MessageID) ([]byte, error) {
	return a.st.literal(a.name, string(id))
}

func (a *account) GetMailboxVisibility(_ context.Context, id imap.MailboxID) imap.MailboxVisibility {
	if id == scheduledID {
		return imap.HiddenIfEmpty
	}
	return imap.Visible
}

func (a *account) CreateMessage(_ context.Context, mboxID imap.MailboxID, literal []byte, flags imap.FlagSet, _ time.Time) (imap.Message, []byte, error) {
	// Bridge refuses All Mail itself. Starred and Scheduled it passes to
	// the API, which takes neither as the place of a new message: refused
	// here alike (a guess at the API's answer).
	if mboxID == allMailID || mboxID == starredID || mboxID == scheduledID {
		return imap.Message{}, nil, connector.ErrOperationNotAllowed
	}
	drafts := mboxID == draftsID
	if err := checkAppend(literal, drafts); err != nil {
		return imap.Message{}, nil, err
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	if !isSystem(string(mboxID)) {
		if _, ok := a.labels[string(mboxID)]; !ok {
			// The \Noselect placeholders: the API knows no such label.
			return imap.Message{}, nil, fmt.Errorf("failed to prepare message for import: %w", errNoSuchLabel)
		}
	}
	m := &message{
		id:      newID(),
		unread:  !flags.Contains(imap.FlagSeen),
		starred: flags.Contains(imap.FlagFlagged),
		replied: flags.Contains(imap.FlagAnswered),
		date:    time.Now(),
	}
	header, _ := rfc822.Parse(literal).ParseHeader()
	switch {
	case drafts:
		// Bridge makes a draft through the API's draft call, which takes
		// neither the star nor the replied flag of the APPEND.
		m.kind, m.unread, m.starred, m.replied = kindDraft, false, false, false
	case mboxID == inboxID:
		m.kind = kindReceived
	case mboxID == sentID:
		m.kind = kindSent
	case header != nil && header.Has("Received"):
		m.kind = kindReceived
	default:
		m.kind = kindSent
	}
	// The API dates a message by its Date header; Bridge ignores the date
	// the client gives to APPEND.
	if header != nil && !drafts {
		if d, err := rfc5322.ParseDateTime(header.Get("Date")); err == nil {
			m.date = d
		}
	}
	a.addLabel(m, string(mboxID))

	// Bridge hands gluon the message as the API rebuilds it; this server
	// only normalises line ends to CRLF as that rebuild does.
	out := crlf(literal)
	if err := a.st.addMessage(a.name, m, out); err != nil {
		return imap.Message{}, nil, err
	}
	a.msgs[m.id] = m
	a.upd.message(m.id)
	return imap.Message{ID: imap.MessageID(m.id), Flags: m.flags(), Date: m.date}, out, nil
}

// crlf turns every lone LF into CRLF.
func crlf(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// each runs fn on every known message of ids, saves it and tells gluon.
func (a *account) each(ids []imap.MessageID, fn func(m *message) (deleted bool, err error)) error {
	for _, id := range ids {
		m, ok := a.msgs[string(id)]
		if !ok {
			continue
		}
		deleted, err := fn(m)
		if err != nil {
			return err
		}
		if deleted {
			if err := a.st.deleteMessage(a.name, m.id); err != nil {
				return err
			}
			delete(a.msgs, m.id)
		} else if err := a.st.putMessage(a.name, m); err != nil {
			return err
		}
		a.upd.message(m.id)
	}
	return nil
}

func (a *account) AddMessagesToMailbox(_ context.Context, ids []imap.MessageID, mboxID imap.MailboxID) error {
	if isAllMailOrScheduled(mboxID) {
		return connector.ErrOperationNotAllowed
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.each(ids, func(m *message) (bool, error) {
		a.addLabel(m, string(mboxID))
		return false, nil
	})
}

func (a *account) RemoveMessagesFromMailbox(_ context.Context, ids []imap.MessageID, mboxID imap.MailboxID) error {
	if isAllMailOrScheduled(mboxID) {
		return connector.ErrOperationNotAllowed
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.each(ids, func(m *message) (bool, error) {
		a.removeLabel(m, string(mboxID))
		// Expunged from Trash or Drafts, a message that is nowhere else
		// (All Mail aside; Starred counts) is deleted for good.
		if mboxID == trashID || mboxID == draftsID {
			return len(a.mailboxes(m)) == 1, nil
		}
		return false, nil
	})
}

func (a *account) MoveMessages(_ context.Context, ids []imap.MessageID, from, to imap.MailboxID) (bool, error) {
	if (from == inboxID && to == sentID) || (from == sentID && to == inboxID) ||
		isAllMailOrScheduled(from) || isAllMailOrScheduled(to) {
		return false, connector.ErrOperationNotAllowed
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// A move leaves the source when it is a label or the target a folder
	// (system mailboxes, Starred too, count as folders).
	expunge := false
	if l, ok := a.labels[string(from)]; ok && l.typ == typeLabel {
		expunge = true
	}
	if l, ok := a.labels[string(to)]; isSystem(string(to)) || (ok && l.typ == typeFolder) {
		expunge = true
	}
	err := a.each(ids, func(m *message) (bool, error) {
		a.addLabel(m, string(to))
		if expunge {
			a.removeLabel(m, string(from))
		}
		return false, nil
	})
	return expunge, err
}

func (a *account) MarkMessagesSeen(_ context.Context, ids []imap.MessageID, seen bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.each(ids, func(m *message) (bool, error) {
		m.unread = !seen
		return false, nil
	})
}

func (a *account) MarkMessagesFlagged(_ context.Context, ids []imap.MessageID, flagged bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.each(ids, func(m *message) (bool, error) {
		m.starred = flagged
		return false, nil
	})
}

func (a *account) GetUpdates() <-chan imap.Update { return a.upd.ch }

func (a *account) Close(context.Context) error {
	a.upd.stop()
	return nil
}

// systemMailbox returns the gluon mailbox of a system label, as Bridge's
// newSystemMailboxCreatedUpdate makes it.
func (s systemMailbox) mailbox() imap.Mailbox {
	attrs := imap.NewFlagSet(imap.AttrNoInferiors)
	if s.attr != "" {
		attrs.AddToSelf(s.attr)
	}
	flags := defaultFlags()
	if s.id == allMailID {
		flags = imap.NewFlagSet(imap.FlagSeen, imap.FlagFlagged)
	}
	return imap.Mailbox{ID: imap.MailboxID(s.id), Name: []string{s.name}, Flags: flags, PermanentFlags: flags, Attributes: attrs}
}

// placeholder returns one of the \Noselect roots "Folders" and "Labels".
func placeholder(name string) imap.Mailbox {
	return imap.Mailbox{
		ID:             imap.MailboxID(name),
		Name:           []string{name},
		Flags:          defaultFlags(),
		PermanentFlags: defaultFlags(),
		Attributes:     imap.NewFlagSet(imap.AttrNoSelect),
	}
}

// sync makes gluon's view match the account at start: every mailbox, and
// after a crash (reconcile) every message with its mailboxes and flags and
// every message deleted since the last clean stop.
func (a *account) sync(ctx context.Context, reconcile bool) error {
	var mboxes []imap.Mailbox
	for _, s := range systemMailboxes {
		mboxes = append(mboxes, s.mailbox())
	}
	mboxes = append(mboxes, placeholder(folderPrefix), placeholder(labelPrefix))
	a.mu.Lock()
	var user []imap.Mailbox
	for _, l := range a.labels {
		user = append(user, a.mailboxOf(l))
	}
	a.mu.Unlock()
	// Parents before children.
	slices.SortFunc(user, func(x, y imap.Mailbox) int { return len(x.Name) - len(y.Name) })
	for _, mb := range append(mboxes, user...) {
		if err := a.upd.push(ctx, imap.NewMailboxCreated(mb)); err != nil {
			return fmt.Errorf("create mailbox %v: %w", mb.Name, err)
		}
	}
	if !reconcile {
		return nil
	}
	return a.reconcile(ctx)
}

func (a *account) reconcile(ctx context.Context) error {
	a.mu.Lock()
	msgs, err := a.st.messages(a.name)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	const batch = 32
	for i := 0; i < len(msgs); i += batch {
		var created []*imap.MessageCreated
		for _, m := range msgs[i:min(i+batch, len(msgs))] {
			lit, err := a.st.literal(a.name, m.id)
			if err != nil {
				return err
			}
			parsed, err := imap.NewParsedMessage(lit)
			if err != nil {
				log.Printf("%s: message %s: %v", a.name, m.id, err)
				continue
			}
			a.mu.Lock()
			created = append(created, &imap.MessageCreated{
				Message:       imap.Message{ID: imap.MessageID(m.id), Flags: m.flags(), Date: m.date},
				Literal:       lit,
				MailboxIDs:    a.mailboxes(m),
				ParsedMessage: parsed,
			})
			a.mu.Unlock()
		}
		if err := a.upd.push(ctx, imap.NewMessagesCreated(true, created...)); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		a.mu.Lock()
		u := imap.NewMessageMailboxesUpdated(imap.MessageID(m.id), a.mailboxes(m), m.flags())
		a.mu.Unlock()
		if err := a.upd.push(ctx, u); err != nil {
			log.Printf("%s: message %s: %v", a.name, m.id, err)
		}
	}
	gone, err := a.st.tombstones(a.name)
	if err != nil {
		return err
	}
	for _, id := range gone {
		if err := a.upd.push(ctx, imap.NewMessagesDeleted(imap.MessageID(id))); err != nil {
			log.Printf("%s: deleted message %s: %v", a.name, id, err)
		}
	}
	return nil
}
