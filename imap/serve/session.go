package serve

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// delim is the hierarchy delimiter of every mailbox name.
const delim = '/'

// session is one connection's state. imapserver calls its methods one at
// a time, but for Idle, which runs while the connection waits for DONE.
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	ctx    context.Context
	cancel context.CancelFunc

	name string // the login
	user User
	sel  *selected
	// flags are the flag changes of this session: mailbox key → UID →
	// flags. They are never written anywhere.
	flags map[string]map[uint32][]string
	saved []uint32    // the UIDs SEARCH RETURN (SAVE) kept for "$"
	ahead *ahead      // the message FETCH reads ahead, if any
	work  chan *ahead // to the goroutine that reads ahead, once started
}

// selected is the selected mailbox: a fixed list of messages.
type selected struct {
	name     string
	mbox     Mailbox
	msgs     []Message
	readOnly bool
	key      string // of session.flags
}

var _ imapserver.SessionIMAP4rev2 = (*session)(nil)

func (s *Server) newSession(conn *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ctx, cancel := context.WithCancel(s.ctx)
	return &session{srv: s, conn: conn, ctx: ctx, cancel: cancel, flags: map[string]map[uint32][]string{}}, nil, nil
}

func (ss *session) remote() string {
	if c := ss.conn.NetConn(); c != nil {
		return c.RemoteAddr().String()
	}
	return ""
}

func (ss *session) Close() error {
	ss.cancel()
	ss.takeAhead(nil, -1)
	if ss.work != nil {
		close(ss.work)
		ss.work = nil
	}
	return nil
}

// refusal is the answer to every command that would change the archive.
func refusal(what string) error {
	return &goimap.Error{
		Type: goimap.StatusResponseTypeNo,
		Code: goimap.ResponseCodeCannot,
		Text: what + " refused: this server shows a planb archive, read-only",
	}
}

// serverError answers a command that failed on the server's side; the
// cause goes to the log, not to the client.
func (ss *session) serverError(op string, err error) error {
	ss.srv.log.Error(op, "user", ss.name, "err", err)
	return &goimap.Error{
		Type: goimap.StatusResponseTypeNo,
		Code: goimap.ResponseCodeServerBug,
		Text: op + " failed on the server (its log says why)",
	}
}

func (ss *session) Login(username, password string) error {
	u, err := ss.srv.store.Login(ss.ctx, username, password)
	if err != nil {
		if !errors.Is(err, ErrLogin) {
			return ss.serverError("login", err)
		}
		ss.srv.log.Warn("login refused", "user", username, "remote", ss.remote())
		if ss.srv.delay > 0 {
			select {
			case <-time.After(ss.srv.delay):
			case <-ss.ctx.Done():
			}
		}
		return imapserver.ErrAuthFailed
	}
	ss.name, ss.user = username, u
	ss.srv.log.Info("login", "user", username, "remote", ss.remote())
	return nil
}

// canonical returns a mailbox name as the store knows it: "INBOX" in any
// case is "INBOX".
func canonical(name string) string {
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || name[5] == delim) {
		return "INBOX" + name[5:]
	}
	return name
}

func (ss *session) mailbox(name string) (Mailbox, error) {
	mb, err := ss.user.Mailbox(ss.ctx, canonical(name))
	if errors.Is(err, ErrNoMailbox) {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeNonExistent, Text: "No such mailbox"}
	}
	if err != nil {
		return nil, ss.serverError("open mailbox", err)
	}
	if mb.Info().NoSelect {
		return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "This name holds other mailboxes, no messages"}
	}
	return mb, nil
}

func mailboxKey(name string, uidValidity uint32) string {
	return fmt.Sprintf("%d/%s", uidValidity, name)
}

func (ss *session) Select(name string, options *goimap.SelectOptions) (*goimap.SelectData, error) {
	mb, err := ss.mailbox(name)
	if err != nil {
		return nil, err
	}
	sel := &selected{
		name: canonical(name), mbox: mb, msgs: mb.Messages(), readOnly: options.ReadOnly,
		key: mailboxKey(mb.Info().Name, mb.UIDValidity()),
	}
	ss.takeAhead(nil, -1)
	ss.sel = sel
	data := &goimap.SelectData{
		NumMessages:    uint32(len(sel.msgs)),
		UIDValidity:    mb.UIDValidity(),
		UIDNext:        goimap.UID(uidNext(sel.msgs)),
		PermanentFlags: []goimap.Flag{}, // changes last for the session only
	}
	flags := map[string]bool{}
	for _, f := range []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`} {
		flags[f] = true
		data.Flags = append(data.Flags, goimap.Flag(f))
	}
	for i := range sel.msgs {
		fl := ss.flagsOf(sel, i)
		for _, f := range fl {
			if !flags[f] {
				flags[f] = true
				data.Flags = append(data.Flags, goimap.Flag(f))
			}
		}
		if data.FirstUnseenSeqNum == 0 && !hasFlag(fl, `\Seen`) {
			data.FirstUnseenSeqNum = uint32(i + 1)
		}
	}
	return data, nil
}

func uidNext(msgs []Message) uint32 {
	if len(msgs) == 0 {
		return 1
	}
	return msgs[len(msgs)-1].UID + 1
}

func (ss *session) Unselect() error {
	ss.takeAhead(nil, -1)
	ss.sel = nil
	return nil
}

// flagsOf returns the flags message i of sel has in this session.
func (ss *session) flagsOf(sel *selected, i int) []string {
	if m := ss.flags[sel.key]; m != nil {
		if f, ok := m[sel.msgs[i].UID]; ok {
			return f
		}
	}
	return sel.msgs[i].Flags
}

func (ss *session) setFlags(sel *selected, i int, flags []string) {
	m := ss.flags[sel.key]
	if m == nil {
		m = map[uint32][]string{}
		ss.flags[sel.key] = m
	}
	m[sel.msgs[i].UID] = flags
}

func hasFlag(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(g string) bool { return strings.EqualFold(f, g) })
}

func imapFlags(flags []string) []goimap.Flag {
	out := make([]goimap.Flag, len(flags))
	for i, f := range flags {
		out[i] = goimap.Flag(f)
	}
	return out
}

// indexes returns the indexes into sel.msgs that numSet names, ascending.
func (ss *session) indexes(numSet goimap.NumSet) []int {
	msgs := ss.sel.msgs
	var out []int
	switch set := numSet.(type) {
	case goimap.SeqSet:
		n := uint32(len(msgs))
		for _, r := range set {
			lo, hi := r.Start, r.Stop
			if lo == 0 {
				lo = n
			}
			if hi == 0 {
				hi = n
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			for q := max(lo, 1); q <= min(hi, n); q++ {
				out = append(out, int(q-1))
			}
		}
	case goimap.UIDSet:
		if goimap.IsSearchRes(set) {
			for _, u := range ss.saved {
				if i, ok := findUID(msgs, u); ok {
					out = append(out, i)
				}
			}
			break
		}
		last := uidNext(msgs) - 1
		for _, r := range set {
			lo, hi := uint32(r.Start), uint32(r.Stop)
			if lo == 0 {
				lo = last
			}
			if hi == 0 {
				hi = last
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			i := sort.Search(len(msgs), func(i int) bool { return msgs[i].UID >= lo })
			for ; i < len(msgs) && msgs[i].UID <= hi; i++ {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func findUID(msgs []Message, uid uint32) (int, bool) {
	i := sort.Search(len(msgs), func(i int) bool { return msgs[i].UID >= uid })
	return i, i < len(msgs) && msgs[i].UID == uid
}

func (ss *session) Store(w *imapserver.FetchWriter, numSet goimap.NumSet, flags *goimap.StoreFlags, options *goimap.StoreOptions) error {
	sel := ss.sel
	_, byUID := numSet.(goimap.UIDSet)
	for _, i := range ss.indexes(numSet) {
		cur := ss.flagsOf(sel, i)
		var next []string
		switch flags.Op {
		case goimap.StoreFlagsSet:
			for _, f := range flags.Flags {
				if !hasFlag(next, string(f)) {
					next = append(next, string(f))
				}
			}
		case goimap.StoreFlagsAdd:
			next = slices.Clone(cur)
			for _, f := range flags.Flags {
				if !hasFlag(next, string(f)) {
					next = append(next, string(f))
				}
			}
		case goimap.StoreFlagsDel:
			next = slices.DeleteFunc(slices.Clone(cur), func(g string) bool {
				return slices.ContainsFunc(flags.Flags, func(f goimap.Flag) bool { return strings.EqualFold(string(f), g) })
			})
		}
		next = slices.DeleteFunc(next, func(f string) bool { return strings.EqualFold(f, `\Recent`) })
		ss.setFlags(sel, i, next)
		if flags.Silent {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		if byUID {
			rw.WriteUID(goimap.UID(sel.msgs[i].UID))
		}
		rw.WriteFlags(imapFlags(next))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// The commands that would change the archive.

func (ss *session) Create(string, *goimap.CreateOptions) error { return refusal("CREATE") }
func (ss *session) Delete(string) error                        { return refusal("DELETE") }
func (ss *session) Rename(string, string, *goimap.RenameOptions) error {
	return refusal("RENAME")
}
func (ss *session) Append(string, goimap.LiteralReader, *goimap.AppendOptions) (*goimap.AppendData, error) {
	return nil, refusal("APPEND")
}
func (ss *session) Copy(goimap.NumSet, string) (*goimap.CopyData, error) {
	return nil, refusal("COPY")
}
func (ss *session) Move(*imapserver.MoveWriter, goimap.NumSet, string) error {
	return refusal("MOVE")
}

// Expunge refuses EXPUNGE and UID EXPUNGE. CLOSE calls it too, with a
// zero ExpungeWriter that reports nothing: CLOSE expunges nothing and
// succeeds.
func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *goimap.UIDSet) error {
	if uids == nil && *w == (imapserver.ExpungeWriter{}) {
		return nil
	}
	return refusal("EXPUNGE")
}

// Subscriptions are accepted and forgotten: every mailbox is subscribed.
func (ss *session) Subscribe(string) error   { return nil }
func (ss *session) Unsubscribe(string) error { return nil }

func (ss *session) Namespace() (*goimap.NamespaceData, error) {
	return &goimap.NamespaceData{Personal: []goimap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// Poll reports nothing: a selected mailbox never changes.
func (ss *session) Poll(*imapserver.UpdateWriter, bool) error { return nil }

// Idle waits: a selected mailbox never changes (a new snapshot shows at
// the next SELECT).
func (ss *session) Idle(_ *imapserver.UpdateWriter, stop <-chan struct{}) error {
	select {
	case <-stop:
	case <-ss.ctx.Done():
	}
	return nil
}
