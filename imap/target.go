package imap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailform"
)

// capGmail is the capability of Gmail's IMAP extensions (X-GM-LABELS,
// X-GM-MSGID...).
const capGmail = goimap.Cap("X-GM-EXT-1")

// MapOptions say where folders land on a target server.
type MapOptions struct {
	// Map sends a source folder path (and the folders below it) to another
	// target path, both "/"-separated: {"Sent Items": "Sent"}. It wins
	// over the special-use mapping.
	Map map[string]string
}

// target is the control connection to a destination server and what it
// announced: its personal namespace, delimiter and special-use folders.
type target struct {
	opts      *Options
	mo        MapOptions
	log       *slog.Logger
	c         *conn
	prefix    string
	delim     rune
	special   map[string]string // `\Sent` → mailbox (UTF-8)
	createSU  bool
	mailboxes map[string]bool
	noselect  map[string]bool
	// bridge: the server is Proton Mail Bridge (its ID says so), or
	// speaks like it (\Noselect roots "Folders" and "Labels"): user
	// folders go under Folders/, never into All Mail or Starred.
	bridge bool
	// fetch reads messages back (see fetcher); nil until needed.
	fetch *fetcher
	// gmail: the server offers X-GM-EXT-1: a label is a mailbox, and
	// archived mail lives in its \All mailbox.
	gmail bool
	// munges8bit: the server is Cyrus IMAP, which takes a header with
	// 8-bit bytes but stores each of them as "X" (its munge8bit default).
	munges8bit bool
}

func openTarget(ctx context.Context, o *Options, mo MapOptions, log *slog.Logger) (*target, error) {
	c, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	t := &target{opts: o, mo: mo, log: log, c: c, delim: '/', special: map[string]string{}, mailboxes: map[string]bool{}, noselect: map[string]bool{}}
	caps := c.c.Caps()
	t.createSU = caps.Has(goimap.CapCreateSpecialUse)
	t.gmail = caps.Has(capGmail)
	if caps.Has(goimap.CapNamespace) || caps.Has(goimap.CapIMAP4rev2) {
		ns, err := c.c.Namespace().Wait()
		if err != nil {
			c.close()
			return nil, fmt.Errorf("namespace: %w", err)
		}
		if len(ns.Personal) > 0 {
			t.prefix = ns.Personal[0].Prefix
			if ns.Personal[0].Delim != 0 {
				t.delim = ns.Personal[0].Delim
			}
		}
	} else {
		l, err := c.c.List("", "", nil).Collect()
		if err == nil && len(l) > 0 && l[0].Delim != 0 {
			t.delim = l[0].Delim
		}
	}
	if err := t.list(); err != nil {
		c.close()
		return nil, err
	}
	t.bridge = t.noselect["Folders"] && t.noselect["Labels"]
	if caps.Has(goimap.CapID) {
		id, err := c.c.ID(&goimap.IDData{Name: "planb"}).Wait()
		if err == nil && id != nil {
			name := strings.ToLower(id.Name)
			t.bridge = t.bridge || strings.Contains(name, "bridge")
			t.munges8bit = strings.Contains(name, "cyrus")
		}
	}
	if t.bridge {
		log.Debug("the target is Proton Mail Bridge: user folders go under Folders/")
	}
	return t, nil
}

func (t *target) list() error {
	var lo *goimap.ListOptions
	caps := t.c.c.Caps()
	if caps.Has(goimap.CapSpecialUse) && (caps.Has(goimap.CapListExtended) || caps.Has(goimap.CapIMAP4rev2)) {
		lo = &goimap.ListOptions{ReturnSpecialUse: true}
	}
	list, err := t.c.c.List("", "*", lo).Collect()
	if err != nil {
		return fmt.Errorf("list folders: %w", err)
	}
	for _, l := range list {
		t.mailboxes[l.Mailbox] = true
		for _, a := range l.Attrs {
			if strings.EqualFold(string(a), `\Noselect`) || strings.EqualFold(string(a), `\NonExistent`) {
				t.noselect[l.Mailbox] = true
			}
			for _, su := range specialUses {
				if strings.EqualFold(string(a), su) {
					if _, ok := t.special[su]; !ok {
						t.special[su] = l.Mailbox
					}
				}
			}
		}
	}
	return nil
}

func (t *target) close() {
	if t.fetch != nil {
		t.fetch.close()
	}
	t.c.logout()
}

// mailbox returns the target mailbox (UTF-8) for f, and whether it is
// the special-use folder of the target.
func (t *target) mailbox(f archive.Folder) string {
	p := f.Path
	mapped := false
	for from, to := range t.mo.Map {
		if p == from {
			p, mapped = to, true
			break
		}
		if strings.HasPrefix(p, from+"/") {
			p, mapped = to+p[len(from):], true
			break
		}
	}
	if !mapped && f.SpecialUse != "" && !viewUse(f.SpecialUse) {
		if m, ok := t.special[f.SpecialUse]; ok {
			return m
		}
		if m, ok := t.special[archive.All]; ok && t.gmail && strings.EqualFold(f.SpecialUse, archive.Archive) {
			// Gmail's archived mail is mail in All Mail only.
			return m
		}
	}
	if t.bridge && !mapped && !strings.EqualFold(p, "INBOX") && !strings.HasPrefix(p, "Folders/") && !strings.HasPrefix(p, "Labels/") {
		p = "Folders/" + p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if t.delim != '/' && strings.ContainsRune(s, t.delim) {
			segs[i] = strings.ReplaceAll(s, string(t.delim), "_")
		}
	}
	if strings.EqualFold(segs[0], "INBOX") {
		segs[0] = "INBOX"
		return strings.Join(segs, string(t.delim))
	}
	return t.prefix + strings.Join(segs, string(t.delim))
}

// keepsLabels reports whether the target is label-based: a message is
// stored once and its labels are mailboxes it is copied into.
func (t *target) keepsLabels() bool { return t.bridge || t.gmail }

// labelMailbox returns the mailbox of a user label (a folder path):
// Labels/... on Bridge, the label itself on Gmail.
func (t *target) labelMailbox(label string) string {
	if t.bridge && !strings.HasPrefix(label, "Labels/") {
		label = "Labels/" + label
	}
	return t.mailbox(archive.Folder{Path: label})
}

// viewUse reports whether a special use marks a view of messages held in
// other folders (RFC 6154 \All and \Flagged: Gmail's and Bridge's All
// Mail and Starred), which is never a target to append into: such a
// source folder is restored as a plain folder.
func viewUse(use string) bool {
	return strings.EqualFold(use, archive.All) || strings.EqualFold(use, archive.Flagged)
}

// alreadyExists reports whether a CREATE failed because the mailbox is
// there: NO [ALREADYEXISTS] (RFC 5530), or a NO without the code that says
// so in words (Cyrus IMAP: "NO Mailbox already exists", also for a
// mailbox a killed connection left half made, which LIST does not show).
func alreadyExists(err error) bool {
	var ie *goimap.Error
	if err == nil || !errors.As(err, &ie) || ie.Type != goimap.StatusResponseTypeNo {
		return false
	}
	return ie.Code == goimap.ResponseCodeAlreadyExists || strings.Contains(strings.ToLower(ie.Text), "already exists")
}

// ensure creates mailbox and its parents when missing; use is the
// special-use attribute to give it (when the server lets us).
func (t *target) ensure(mailbox, use string) error {
	if t.mailboxes[mailbox] || strings.EqualFold(mailbox, "INBOX") {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(mailbox, t.prefix), string(t.delim))
	for i := 1; i <= len(parts); i++ {
		name := t.prefix + strings.Join(parts[:i], string(t.delim))
		if t.mailboxes[name] || strings.EqualFold(name, "INBOX") {
			continue
		}
		var co *goimap.CreateOptions
		if i == len(parts) && use != "" && !viewUse(use) && t.createSU {
			co = &goimap.CreateOptions{SpecialUse: []goimap.MailboxAttr{goimap.MailboxAttr(use)}}
		}
		err := t.c.c.Create(name, co).Wait()
		if alreadyExists(err) {
			err = nil
		}
		if err != nil && co != nil {
			// Some servers refuse the attribute: create it plainly.
			t.log.Warn("create with special use refused", "mailbox", name, "use", use, "err", err)
			err = t.c.c.Create(name, nil).Wait()
			if alreadyExists(err) {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("create %q: %w", name, err)
		}
		t.mailboxes[name] = true
	}
	if use != "" && !viewUse(use) {
		if _, ok := t.special[use]; !ok {
			t.special[use] = mailbox
		}
	}
	return nil
}

// folderState is what a target mailbox holds, as a restore sees it.
type folderState struct {
	sel *goimap.SelectData
	// known: by UID, the digests of the messages the journal recorded that
	// are still there; unknownUIDs and prints: the other messages.
	known       map[uint32]string
	unknownUIDs []goimap.UID
	prints      []*mailform.Print
}

// state selects mailbox (SELECT, so that PERMANENTFLAGS is known) and
// learns what it holds: the UIDs that j (when not nil) recorded, and the
// fingerprints of every other message, read from the server once.
func (t *target) state(ctx context.Context, mailbox string, j Journal) (*folderState, error) {
	sel, err := t.c.c.Select(mailbox, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("select %q: %w", mailbox, err)
	}
	st := &folderState{sel: sel, known: map[uint32]string{}}
	if sel.NumMessages == 0 {
		return st, nil
	}
	uids, err := t.uids(mailbox)
	if err != nil {
		return nil, err
	}
	var recorded map[uint32]string
	if j != nil {
		if recorded, err = j.Load(mailbox, sel.UIDValidity); err != nil {
			t.log.Warn("restore journal unreadable: comparing every message", "mailbox", mailbox, "err", err)
			recorded = nil
		}
	}
	for _, u := range uids {
		if d, ok := recorded[uint32(u)]; ok {
			st.known[uint32(u)] = d
		} else {
			st.unknownUIDs = append(st.unknownUIDs, u)
		}
	}
	if len(st.unknownUIDs) == 0 {
		return st, nil
	}
	byUID := map[goimap.UID]*mailform.Print{}
	err = t.fetchPrints(ctx, mailbox, st.unknownUIDs, func(m TargetMessage) error {
		byUID[m.UID] = m.Print
		return nil
	})
	if err != nil {
		return nil, err
	}
	var kept []goimap.UID
	for _, u := range st.unknownUIDs {
		if p := byUID[u]; p != nil {
			kept = append(kept, u)
			st.prints = append(st.prints, p)
		}
	}
	st.unknownUIDs = kept
	return st, nil
}

// uids returns the UIDs of the selected mailbox.
func (t *target) uids(mailbox string) ([]goimap.UID, error) {
	var set goimap.SeqSet
	set.AddRange(1, 0)
	msgs, err := t.c.c.Fetch(set, &goimap.FetchOptions{UID: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("fetch %q: %w", mailbox, err)
	}
	out := make([]goimap.UID, 0, len(msgs))
	for _, m := range msgs {
		if m.UID != 0 {
			out = append(out, m.UID)
		}
	}
	return out, nil
}

// TargetMessage is one message of a target mailbox, as a verify or a
// resume sees it.
type TargetMessage struct {
	UID   goimap.UID
	Size  int64
	Flags []string // without \Recent
	Print *mailform.Print
}

// fetchPrints reads the messages uids of mailbox on the target's fetcher
// (dialled on first use) and calls fn for each.
func (t *target) fetchPrints(ctx context.Context, mailbox string, uids []goimap.UID, fn func(TargetMessage) error) error {
	if t.fetch == nil {
		f, err := dialFetcher(ctx, t.opts)
		if err != nil {
			return err
		}
		t.fetch = f
	}
	return t.fetch.fetchPrints(ctx, mailbox, uids, fn)
}

// settle waits until no mailbox of the account changes, by its number of
// messages and its UIDNEXT, for quiet: a run killed with APPENDs sent
// leaves the server storing them, and a folder listed meanwhile would get
// them again (see NewSink). It polls every quarter of quiet, and gives up
// waiting after a minute.
func (t *target) settle(ctx context.Context, quiet time.Duration) error {
	step := max(quiet/4, time.Millisecond)
	deadline := time.Now().Add(time.Minute)
	var last map[string][2]uint32
	var changed time.Time // when the counts were last seen to change
	for {
		now, err := t.counts()
		if err != nil {
			return err
		}
		if last == nil || !maps.Equal(now, last) {
			last, changed = now, time.Now()
		} else if time.Since(changed) >= quiet {
			return nil
		}
		if time.Now().After(deadline) {
			t.log.Warn("the target's mailboxes kept changing: going on", "waited", time.Minute)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
	}
}

// counts returns the number of messages and UIDNEXT of each selectable
// mailbox, asked all at once (pipelined STATUS commands).
func (t *target) counts() (map[string][2]uint32, error) {
	opts := &goimap.StatusOptions{NumMessages: true, UIDNext: true}
	names := slices.Sorted(maps.Keys(t.mailboxes))
	cmds := make([]*imapclient.StatusCommand, 0, len(names))
	for _, mb := range names {
		if t.noselect[mb] {
			continue
		}
		cmds = append(cmds, t.c.c.Status(mb, opts))
	}
	out := make(map[string][2]uint32, len(cmds))
	var first error
	for _, c := range cmds {
		st, err := c.Wait()
		if err != nil {
			// A mailbox deleted meanwhile, or one the server will not
			// show: not a change to wait for.
			var ie *goimap.Error
			if first == nil && !(errors.As(err, &ie) && ie.Type == goimap.StatusResponseTypeNo) {
				first = err
			}
			continue
		}
		var n uint32
		if st.NumMessages != nil {
			n = *st.NumMessages
		}
		out[st.Mailbox] = [2]uint32{n, uint32(st.UIDNext)}
	}
	if first != nil {
		return nil, fmt.Errorf("status: %w", first)
	}
	return out, nil
}
