package graphtest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Tenant is a fake Entra ID tenant with its apps and mailboxes.
type Tenant struct {
	s      *Server
	ID     string
	Domain string
	apps   map[string]*App
	users  []*Mailbox // in creation order
}

// AddTenant adds a tenant known by id (a GUID, say) and domain
// ("contoso.onmicrosoft.com"); either names it at the token endpoint.
func (s *Server) AddTenant(id, domain string) *Tenant {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &Tenant{s: s, ID: id, Domain: domain, apps: make(map[string]*App)}
	s.tenants[strings.ToLower(id)] = t
	if domain != "" {
		s.tenants[strings.ToLower(domain)] = t
	}
	return t
}

// Mailbox is a user of the tenant and the mailbox it holds.
type Mailbox struct {
	t           *Tenant
	ID          string
	Address     string // userPrincipalName and mail
	DisplayName string
	// NoMailbox: a user without an Exchange mailbox (mailFolders gives 404
	// MailboxNotEnabledForRESTAPI).
	noMailbox bool
	denied    bool
	seq       uint64
	folders   map[string]*Folder // by id
	wellKnown map[string]*Folder // by well-known name
	root      *Folder            // msgfolderroot
	messages  map[string]*Message
	failValue map[string]int // message id → status its $value answers
}

// Folder is one mail folder.
type Folder struct {
	ID          string
	ParentID    string
	DisplayName string
	WellKnown   string
	Hidden      bool
	children    []*Folder
	msgs        []string          // message ids, in arrival order
	removed     map[string]uint64 // message id → seq it left the folder
}

// Message is one message as the fake serves it.
type Message struct {
	ID         string
	FolderID   string
	MIME       []byte
	IsRead     bool
	IsDraft    bool
	Flagged    bool
	Categories []string
	Received   time.Time
	version    int
	changed    uint64
}

// ChangeKey is the message's version as Graph reports it.
func (m *Message) ChangeKey() string {
	v := strconv.Itoa(m.version)
	if len(v) < 8 {
		v = "00000000"[len(v):] + v
	}
	return "CQAAABYAAAD" + v
}

var wellKnownFolders = []struct{ name, display string }{
	{"inbox", "Inbox"}, {"drafts", "Drafts"}, {"sentitems", "Sent Items"},
	{"deleteditems", "Deleted Items"}, {"junkemail", "Junk Email"}, {"archive", "Archive"},
	{"outbox", "Outbox"}, {"conversationhistory", "Conversation History"},
}

// AddMailbox adds a user with a mailbox holding the usual well-known
// folders (Inbox, Drafts, Sent Items, Deleted Items, Junk Email, Archive,
// Outbox, Conversation History) and a hidden folder.
func (t *Tenant) AddMailbox(address, displayName string) *Mailbox {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	mb := &Mailbox{
		t: t, ID: newGUID(), Address: address, DisplayName: displayName,
		folders: make(map[string]*Folder), wellKnown: make(map[string]*Folder), messages: make(map[string]*Message),
	}
	mb.root = &Folder{ID: "AAMkRoot" + newID(12), DisplayName: "Top of Information Store", WellKnown: "msgfolderroot", removed: map[string]uint64{}}
	mb.folders[mb.root.ID] = mb.root
	mb.wellKnown["msgfolderroot"] = mb.root
	for _, wk := range wellKnownFolders {
		f := mb.addFolder(mb.root, wk.display, false)
		f.WellKnown = wk.name
		mb.wellKnown[wk.name] = f
	}
	mb.addFolder(mb.root, "Sync Issues", true)
	t.users = append(t.users, mb)
	if t.s.stats[strings.ToLower(address)] == nil {
		t.s.stats[strings.ToLower(address)] = &MailboxStats{}
	}
	return mb
}

// AddUser adds a user without a mailbox: it is listed in /users but its
// mailFolders answer 404.
func (t *Tenant) AddUser(address, displayName string) *Mailbox {
	mb := t.AddMailbox(address, displayName)
	t.s.mu.Lock()
	mb.noMailbox = true
	t.s.mu.Unlock()
	return mb
}

func newGUID() string {
	b := []byte(newID(16))
	h := fmt.Sprintf("%x", b)[:32]
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (mb *Mailbox) addFolder(parent *Folder, name string, hidden bool) *Folder {
	f := &Folder{ID: "AAMkF" + newID(18), ParentID: parent.ID, DisplayName: name, Hidden: hidden, removed: map[string]uint64{}}
	parent.children = append(parent.children, f)
	mb.folders[f.ID] = f
	return f
}

// Deny makes every request for this mailbox answer 403 ErrorAccessDenied
// (an application access policy that leaves it out), or undoes it.
func (mb *Mailbox) Deny(deny bool) {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	mb.denied = deny
}

// WellKnown returns the id of a well-known folder ("inbox"...).
func (mb *Mailbox) WellKnown(name string) string {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	if f := mb.wellKnown[name]; f != nil {
		return f.ID
	}
	return ""
}

// AddFolder adds a folder under parentID ("" for the top level, or a
// well-known name) and returns its id.
func (mb *Mailbox) AddFolder(parentID, name string, hidden bool) string {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	parent := mb.folder(parentID)
	if parent == nil {
		panic("graphtest: AddFolder: no folder " + parentID)
	}
	for _, c := range parent.children {
		if strings.EqualFold(c.DisplayName, name) {
			// Exchange refuses it too (ErrorFolderExists).
			panic("graphtest: AddFolder: a folder named " + name + " exists")
		}
	}
	return mb.addFolder(parent, name, hidden).ID
}

// RenameFolder changes a folder's displayName.
func (mb *Mailbox) RenameFolder(id, name string) {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	if f := mb.folder(id); f != nil {
		f.DisplayName = name
	}
}

// RemoveFolder deletes a folder, its subfolders and their messages.
func (mb *Mailbox) RemoveFolder(id string) {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	f := mb.folder(id)
	if f == nil || f == mb.root {
		return
	}
	if p := mb.folders[f.ParentID]; p != nil {
		p.children = slices.DeleteFunc(p.children, func(c *Folder) bool { return c == f })
	}
	var drop func(*Folder)
	drop = func(f *Folder) {
		for _, c := range f.children {
			drop(c)
		}
		for _, m := range f.msgs {
			delete(mb.messages, m)
		}
		delete(mb.folders, f.ID)
	}
	drop(f)
}

// folder resolves an id or a well-known name; "" is the root.
func (mb *Mailbox) folder(id string) *Folder {
	if id == "" {
		return mb.root
	}
	if f := mb.folders[id]; f != nil {
		return f
	}
	return mb.wellKnown[strings.ToLower(id)]
}

// AddMessage adds a message to a folder (id or well-known name) and
// returns its (immutable) id. m.ID and m.FolderID are ignored.
func (mb *Mailbox) AddMessage(folderID string, m Message) string {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	f := mb.folder(folderID)
	if f == nil {
		panic("graphtest: AddMessage: no folder " + folderID)
	}
	m.ID = "AAkALg" + newID(24)
	m.FolderID = f.ID
	m.Categories = slices.Clone(m.Categories)
	if m.Received.IsZero() {
		m.Received = time.Now().UTC().Truncate(time.Second)
	}
	mb.seq++
	m.changed = mb.seq
	m.version = 1
	mm := m
	mb.messages[m.ID] = &mm
	f.msgs = append(f.msgs, m.ID)
	delete(f.removed, m.ID)
	return m.ID
}

// UpdateMessage changes a message with fn (which must not change ID or
// FolderID); its changeKey changes. It reports whether the message exists.
func (mb *Mailbox) UpdateMessage(id string, fn func(m *Message)) bool {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	m := mb.messages[id]
	if m == nil {
		return false
	}
	fn(m)
	mb.seq++
	m.changed = mb.seq
	m.version++
	return true
}

// MoveMessage moves a message to another folder; with immutable ids it
// keeps its id. It is reported as removed from the old folder's delta and
// new in the new folder's.
func (mb *Mailbox) MoveMessage(id, folderID string) bool {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	m, to := mb.messages[id], mb.folder(folderID)
	if m == nil || to == nil {
		return false
	}
	from := mb.folders[m.FolderID]
	mb.seq++
	from.msgs = slices.DeleteFunc(from.msgs, func(s string) bool { return s == id })
	from.removed[id] = mb.seq
	to.msgs = append(to.msgs, id)
	delete(to.removed, id)
	m.FolderID = to.ID
	m.changed = mb.seq
	m.version++
	return true
}

// RemoveMessage deletes a message for good. It reports whether it existed.
func (mb *Mailbox) RemoveMessage(id string) bool {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	m := mb.messages[id]
	if m == nil {
		return false
	}
	f := mb.folders[m.FolderID]
	mb.seq++
	f.msgs = slices.DeleteFunc(f.msgs, func(s string) bool { return s == id })
	f.removed[id] = mb.seq
	delete(mb.messages, id)
	return true
}

// FailValue makes the $value of a message answer status (with Retry-After:
// 0 for 429 and 503) until called again with status 0.
func (mb *Mailbox) FailValue(id string, status int) {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	if mb.failValue == nil {
		mb.failValue = make(map[string]int)
	}
	if status == 0 {
		delete(mb.failValue, id)
		return
	}
	mb.failValue[id] = status
}

// Message returns a copy of a message, or false.
func (mb *Mailbox) Message(id string) (Message, bool) {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	m := mb.messages[id]
	if m == nil {
		return Message{}, false
	}
	c := *m
	c.Categories = slices.Clone(m.Categories)
	return c, true
}

// Messages returns copies of every message of the mailbox, by folder path
// (display names joined with "/", below the root).
func (mb *Mailbox) Messages() map[string][]Message {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	out := make(map[string][]Message)
	var walk func(f *Folder, path string)
	walk = func(f *Folder, path string) {
		for _, id := range f.msgs {
			c := *mb.messages[id]
			c.Categories = slices.Clone(c.Categories)
			out[path] = append(out[path], c)
		}
		for _, ch := range f.children {
			p := ch.DisplayName
			if path != "" {
				p = path + "/" + p
			}
			walk(ch, p)
		}
	}
	walk(mb.root, "")
	return out
}

// FolderPath returns the display-name path of a folder.
func (mb *Mailbox) FolderPath(id string) string {
	mb.t.s.mu.Lock()
	defer mb.t.s.mu.Unlock()
	var parts []string
	for f := mb.folder(id); f != nil && f != mb.root; f = mb.folders[f.ParentID] {
		parts = append(parts, f.DisplayName)
	}
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}
