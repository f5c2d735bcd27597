package serve

import (
	"sort"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// tree returns the user's mailboxes with their missing parents (as
// NoSelect containers), sorted by name with INBOX first, and which names
// have children.
func (ss *session) tree() ([]MailboxInfo, map[string]bool, error) {
	infos, err := ss.user.Mailboxes(ss.ctx)
	if err != nil {
		return nil, nil, ss.serverError("list mailboxes", err)
	}
	byName := map[string]bool{}
	for _, mi := range infos {
		byName[mi.Name] = true
	}
	children := map[string]bool{}
	for _, mi := range infos {
		name := mi.Name
		for {
			i := strings.LastIndexByte(name, delim)
			if i <= 0 {
				break
			}
			name = name[:i]
			children[name] = true
			if !byName[name] {
				byName[name] = true
				infos = append(infos, MailboxInfo{Name: name, NoSelect: true})
			}
		}
	}
	sort.Slice(infos, func(i, j int) bool {
		a, b := infos[i].Name, infos[j].Name
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
	return infos, children, nil
}

func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *goimap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter.
		return w.WriteList(&goimap.ListData{Attrs: []goimap.MailboxAttr{goimap.MailboxAttrNoSelect}, Delim: delim})
	}
	infos, children, err := ss.tree()
	if err != nil {
		return err
	}
	for _, mi := range infos {
		if !matchAny(mi.Name, ref, patterns) {
			continue
		}
		if options.SelectSpecialUse && mi.SpecialUse == "" {
			continue
		}
		// Every mailbox is subscribed; containers are not mailboxes.
		if options.SelectSubscribed && mi.NoSelect {
			continue
		}
		data := &goimap.ListData{Mailbox: mi.Name, Delim: delim}
		if mi.NoSelect {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrNoSelect)
		} else if options.SelectSubscribed || options.ReturnSubscribed {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrSubscribed)
		}
		if children[mi.Name] {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasNoChildren)
		}
		if mi.SpecialUse != "" {
			data.Attrs = append(data.Attrs, goimap.MailboxAttr(mi.SpecialUse))
		}
		if options.ReturnStatus != nil && !mi.NoSelect {
			if data.Status, err = ss.status(mi.Name, options.ReturnStatus); err != nil {
				return err
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
		// INBOX matches its pattern in any case.
		if name == "INBOX" && imapserver.MatchList(name, delim, ref, canonical(p)) {
			return true
		}
	}
	return false
}

func (ss *session) Status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	return ss.status(name, options)
}

func (ss *session) status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	mb, err := ss.mailbox(name)
	if err != nil {
		return nil, err
	}
	msgs := mb.Messages()
	sel := &selected{msgs: msgs, key: mailboxKey(mb.Info().Name, mb.UIDValidity())}
	data := &goimap.StatusData{Mailbox: name, UIDNext: goimap.UID(uidNext(msgs)), UIDValidity: mb.UIDValidity()}
	var unseen, deleted, zero uint32
	var size int64
	for i, m := range msgs {
		fl := ss.flagsOf(sel, i)
		if !hasFlag(fl, `\Seen`) {
			unseen++
		}
		if hasFlag(fl, `\Deleted`) {
			deleted++
		}
		if options.Size {
			// At least the sum of RFC822.SIZE: the wire size where it is
			// known, else its bound (every byte a bare line end).
			if m.Wire > 0 {
				size += m.Wire
			} else if ws, ok := ss.srv.sizes.get(m.ID); ok {
				size += ws.size
			} else {
				size += 2 * m.Size
			}
		}
	}
	n := uint32(len(msgs))
	if options.NumMessages {
		data.NumMessages = &n
	}
	if options.NumUnseen {
		data.NumUnseen = &unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &deleted
	}
	if options.NumRecent {
		data.NumRecent = &zero
	}
	if options.Size {
		data.Size = &size
	}
	return data, nil
}
