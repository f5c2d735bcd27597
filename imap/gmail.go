package imap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mutf7"
)

// Label mode. Gmail is not a folder mailbox: a message carries labels,
// and over IMAP it shows up once per label, again in All Mail (\All) and
// again in Starred (\Flagged) when flagged. Where the server offers
// Gmail's extensions (X-GM-EXT-1) and All Mail is among the folders to
// back up, a Source reads only the folders that hold messages All Mail
// lacks, All Mail itself, Spam (\Junk) and Trash (\Trash), and reads All
// Mail with each message's labels (X-GM-LABELS) and Gmail's stable id
// (X-GM-MSGID, which a message keeps whatever its labels and UID): every
// message is read once, and a label added or removed later reaches the
// next snapshot through archive.Relabeler, without reading the message
// again.
//
// go-imap's client stops at FETCH items it does not know, so the labels
// and ids are read on a second connection of planb's own (fetcher.go);
// the bodies still come through go-imap, by sequence number, as in any
// folder.

// gmFingerprint is the fingerprint of a message stored in label mode,
// under its X-GM-MSGID: Gmail never changes a message under its id.
const gmFingerprint = "x-gm-msgid"

// gmItems are the items of a message's metadata in label mode.
const gmItems = "UID FLAGS INTERNALDATE RFC822.SIZE X-GM-MSGID X-GM-LABELS"

// labelFolders returns, of folders, those that label mode reads (All
// Mail, Spam, Trash) and the path of All Mail; "" when there is no All
// Mail among them (it is hidden from IMAP, or not wanted): the account
// is then read folder by folder.
func labelFolders(folders []archive.Folder) ([]archive.Folder, string) {
	var (
		kept []archive.Folder
		all  string
	)
	for _, f := range folders {
		switch f.SpecialUse {
		case archive.All:
			if all == "" {
				all = f.Path
				kept = append(kept, f)
			}
		case archive.Junk, archive.Trash:
			kept = append(kept, f)
		}
	}
	if all == "" {
		return folders, ""
	}
	return kept, all
}

// labelFolder reports whether f is read in label mode.
func (s *Source) labelFolder(f archive.Folder) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allMail != "" && f.Path == s.allMail
}

// gmRun is the state of label mode during one attempt at All Mail.
type gmRun struct {
	f     *fetcher
	delim string // the account's hierarchy delimiter, for label paths
	// names are the mailbox names (UTF-8) the account listed.
	names map[string]bool
	// keys are the source IDs and fingerprints of the messages met,
	// by UID.
	keys map[goimap.UID]gmKey
}

// gmKey is how a message is stored: under its X-GM-MSGID, or, stored by
// an earlier planb that read All Mail as a plain folder (or sent without
// an X-GM-MSGID), under its UID as any folder's message.
type gmKey struct{ id, fp string }

// dialLabels opens the connection that reads labels and examines All
// Mail on it. The end of ctx closes it; close it with stop.
func (r *folderRun) dialLabels(ctx context.Context, mailbox string) (stop func(), err error) {
	fe, err := dialFetcher(ctx, &r.s.opts)
	if err != nil {
		return nil, fmt.Errorf("connect to read labels: %w", err)
	}
	fe.a.timeout = r.s.opts.ioTimeout()
	cancel := context.AfterFunc(ctx, func() { fe.a.raw.Close() })
	stop = func() {
		cancel()
		fe.close()
	}
	v, err := fe.examine(mailbox, r.c.condstore)
	if err == nil && v != r.cur.UIDValidity {
		err = fmt.Errorf("examine %q: UIDVALIDITY %d on one connection, %d on the other", mailbox, r.cur.UIDValidity, v)
	}
	if err != nil {
		stop()
		return nil, err
	}
	r.gm.f = fe
	return stop, nil
}

// gmFull lists every message of All Mail with its labels: known ones are
// kept with their current flags and labels, the others are fetched.
func (r *folderRun) gmFull() error {
	if err := r.reset(); err != nil {
		return err
	}
	if r.cur.Messages == 0 {
		return nil
	}
	var fetch []meta
	err := r.gmFetch("1:*", gmItems, 0, 1, func(m gmMessage) error {
		mt, known := r.gmMeta(m)
		if known {
			return r.relabel(r.sourceID(mt.uid), mt.flags, mt.labels)
		}
		fetch = append(fetch, mt)
		return nil
	})
	if err != nil {
		return err
	}
	return r.gmBodies(fetch)
}

// gmIncremental uses CONDSTORE: the messages whose flags or labels
// changed from CHANGEDSINCE, the present ones and their ids from one
// listing of UIDs and X-GM-MSGIDs, and new messages from UIDs >= the old
// UIDNEXT. Gmail raises a message's MODSEQ when its labels change.
func (r *folderRun) gmIncremental(prev *cursor) error {
	if err := r.reset(); err != nil {
		return err
	}
	if r.cur.Messages == 0 {
		return nil
	}
	var (
		metas   []meta
		missing goimap.UIDSet
	)
	if prev.UIDNext > 1 {
		old := "1:" + strconv.FormatUint(uint64(prev.UIDNext-1), 10)
		changed := make(map[goimap.UID]gmMessage)
		err := r.gmFetch(old, "UID FLAGS X-GM-LABELS", prev.ModSeq, 1, func(m gmMessage) error {
			if m.HasFlags && m.HasLabels {
				changed[m.UID] = m
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = r.gmFetch(old, "UID X-GM-MSGID", 0, 1, func(m gmMessage) error {
			if m.UID >= goimap.UID(prev.UIDNext) {
				return nil
			}
			key, known := r.gmKeyOf(m)
			if !known {
				missing.AddNum(m.UID)
				return nil
			}
			c, ok := changed[m.UID]
			if !ok {
				if err := r.ch.Keep(key.id, nil); err != nil {
					return changesError{err}
				}
				return nil
			}
			return r.relabel(key.id, canonFlags(c.Flags), r.labelPaths(c.Labels))
		})
		if err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		// Present, but the parent lacks them.
		sent := make(map[goimap.UID]bool)
		err := r.gmFetch(missing.String(), gmItems, 0, 1, func(m gmMessage) error {
			if missing.Contains(m.UID) && !sent[m.UID] {
				sent[m.UID] = true
				mt, _ := r.gmMeta(m)
				metas = append(metas, mt)
			}
			return nil
		})
		if err != nil {
			return err
		}
		var unsent []goimap.UID
		for _, rg := range missing {
			for uid := rg.Start; uid <= rg.Stop && uid != 0; uid++ {
				if !sent[uid] {
					unsent = append(unsent, uid)
				}
			}
		}
		if err := r.unsent(unsent); err != nil {
			return err
		}
	}
	if r.cur.UIDNext == 0 || r.cur.UIDNext > prev.UIDNext {
		set := strconv.FormatUint(uint64(prev.UIDNext), 10) + ":*"
		err := r.gmFetch(set, gmItems, 0, goimap.UID(prev.UIDNext), func(m gmMessage) error {
			mt, known := r.gmMeta(m)
			if known {
				// A message All Mail had under another UID (back from
				// Trash): its labels only.
				return r.relabel(r.sourceID(mt.uid), mt.flags, mt.labels)
			}
			metas = append(metas, mt)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return r.gmBodies(metas)
}

// gmFetch sends UID FETCH set (items), with CHANGEDSINCE when
// changedSince is not 0, on the labels connection, and hands each
// answer with a UID >= min to fn as it comes.
func (r *folderRun) gmFetch(set, items string, changedSince uint64, min goimap.UID, fn func(gmMessage) error) error {
	cmd := "UID FETCH " + set + " (" + items + ")"
	if changedSince > 0 {
		cmd += " (CHANGEDSINCE " + strconv.FormatUint(changedSince, 10) + ")"
	}
	err := r.gm.f.command(cmd, func(p *itemParser) error {
		m, err := p.gmMessage()
		if err != nil {
			return err
		}
		if m.UID == 0 || m.UID < min {
			return nil // not an answer to this command
		}
		return fn(m)
	})
	if err != nil {
		return fmt.Errorf("fetch labels %q: %w", r.f.Path, err)
	}
	return nil
}

// gmKeyOf returns the key of message m and whether the parent holds it.
// A message is stored under its X-GM-MSGID; one that an earlier planb
// stored under its UID (All Mail read as a plain folder) is found, and
// kept, there.
func (r *folderRun) gmKeyOf(m gmMessage) (gmKey, bool) {
	uidKey := gmKey{id: strconv.FormatUint(uint64(m.UID), 10), fp: r.folderFingerprint(m.UID)}
	key := uidKey
	if m.HasMsgID {
		key = gmKey{id: strconv.FormatUint(m.MsgID, 10), fp: gmFingerprint}
	}
	known := r.known(key)
	if !known && key != uidKey && r.known(uidKey) {
		key, known = uidKey, true
	}
	r.gm.keys[m.UID] = key
	return key, known
}

func (r *folderRun) known(k gmKey) bool { return r.ch.Have(k.id, k.fp) }

// gmMeta returns the metadata of m and whether the parent holds it.
func (r *folderRun) gmMeta(m gmMessage) (meta, bool) {
	_, known := r.gmKeyOf(m)
	return meta{uid: m.UID, flags: canonFlags(m.Flags), date: m.Date, size: m.Size, labels: r.labelPaths(m.Labels)}, known
}

// relabel keeps a known message with its flags and labels; a Changes
// that keeps no labels keeps it with its flags.
func (r *folderRun) relabel(id string, flags, labels []string) error {
	var err error
	if rl, ok := r.ch.(archive.Relabeler); ok {
		err = rl.Relabel(id, flags, labels)
	} else {
		err = r.ch.Keep(id, flags)
	}
	if err != nil {
		return changesError{err}
	}
	return nil
}

// gmBodies fetches the bodies of metas through go-imap, once their
// sequence numbers there are known (they came from the other
// connection).
func (r *folderRun) gmBodies(metas []meta) error {
	if len(metas) == 0 {
		return nil
	}
	slices.SortFunc(metas, func(a, b meta) int { return cmp.Compare(a.uid, b.uid) })
	var set goimap.UIDSet
	for _, m := range metas {
		set.AddNum(m.uid)
	}
	if len(set) > 1000 {
		set = goimap.UIDSet{{Start: 1, Stop: 0}} // shorter to ask for all
	}
	if err := r.renumberSet(metas, set); err != nil {
		return err
	}
	return r.fetchBodies(metas)
}

// labelPaths turns labels as X-GM-LABELS names them into archive labels:
// system labels (`\Inbox`, `\Important`) as they are, the others as
// folder paths (see labelName), with "/" for the account's delimiter.
func (r *folderRun) labelPaths(labels []string) []string {
	out := make([]string, 0, len(labels))
	for _, l := range labels {
		if l == "" {
			continue
		}
		if !strings.HasPrefix(l, `\`) {
			l = r.gm.labelName(l, r.gm.f.a.utf8)
			if r.gm.delim != "" && r.gm.delim != "/" {
				l = strings.ReplaceAll(l, r.gm.delim, "/")
			}
		}
		out = append(out, l)
	}
	return out
}

// labelName returns a user label as a mailbox name in UTF-8. X-GM-LABELS
// names labels as LIST names mailboxes: in modified UTF-7, or in UTF-8
// on a connection that enabled UTF8=ACCEPT (utf8). On such a connection
// a label whose decoding, and only that, is the name of a listed mailbox
// is decoded all the same: a server may go on with modified UTF-7 there.
func (g *gmRun) labelName(l string, utf8 bool) string {
	d, err := mutf7.Decode(l)
	if err != nil || d == l {
		return l
	}
	if !utf8 || g.names[d] && !g.names[l] {
		return d
	}
	return l
}

// canonFlags maps flags as a server spells them to archive flags (see
// convertFlags); never nil.
func canonFlags(flags []string) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if f, ok := canonFlag(f); ok {
			out = append(out, f)
		}
	}
	return out
}

// Answers of a server that asks for a pause or refuses to send more.
var (
	// Gmail's daily cap on IMAP downloads: "[OVERQUOTA] Account exceeded
	// command or bandwidth limits. (Failure)".
	overQuotaRE = regexp.MustCompile(`(?i)\[OVERQUOTA\]|exceeded command or bandwidth limits|bandwidth limit exceeded`)
	// Gmail's [THROTTLED] and RFC 5530's [UNAVAILABLE] ("try again
	// later").
	pauseRE = regexp.MustCompile(`(?i)\[(THROTTLED|UNAVAILABLE)\]`)
	byeRE   = regexp.MustCompile(`(?i)\* BYE ([^\r\n]*)`)
)

// overQuota reports whether a server's answer (its response code and
// text) says that the account may download no more for now. A code that
// asks for a pause ([THROTTLED]) wins over the text: Gmail words both
// alike.
func overQuota(code, text string) bool {
	switch strings.ToUpper(code) {
	case "OVERQUOTA":
		return true
	case "THROTTLED", "UNAVAILABLE":
		return false
	}
	return overQuotaRE.MatchString(text) && !pauseRE.MatchString(text)
}

// throttled reports whether a server's answer asks for a pause, and how
// long (0: as long as the backoff says): Microsoft 365's "Suggested
// Backoff Time", Gmail's [THROTTLED], RFC 5530's [UNAVAILABLE].
func throttled(code, text string) (time.Duration, bool) {
	if d, ok := throttleDelay(text); ok {
		return d, true
	}
	switch strings.ToUpper(code) {
	case "THROTTLED", "UNAVAILABLE":
		return 0, true
	}
	return 0, pauseRE.MatchString(text)
}

// pauses reports whether a command's refusal asks for a pause or says
// the download limit is reached: the folder stops, rather than asking
// for its messages one by one.
func pauses(err error) bool {
	var ie *goimap.Error
	if !errors.As(err, &ie) {
		return false
	}
	_, ok := throttled(string(ie.Code), ie.Text)
	return ok || overQuota(string(ie.Code), ie.Text)
}

// byeText returns the text of the last BYE in what a connection read
// last, or "".
func byeText(tail string) string {
	m := byeRE.FindAllStringSubmatch(tail, -1)
	if m == nil {
		return ""
	}
	return m[len(m)-1][1]
}

// downloadLimit returns the server's words when err (or the BYE that
// closed c) says the download limit is reached.
func downloadLimit(err error, c *conn) (string, bool) {
	var (
		ie *goimap.Error
		se *statusError
	)
	switch {
	case errors.As(err, &ie) && overQuota(string(ie.Code), ie.Text):
		if ie.Code != "" {
			return "[" + string(ie.Code) + "] " + ie.Text, true
		}
		return ie.Text, true
	case errors.As(err, &se) && overQuota(se.code, se.text):
		if se.code != "" {
			return "[" + se.code + "] " + se.text, true
		}
		return se.text, true
	case c != nil && (c.broken() || connDropped(err)):
		if t := byeText(c.tail.last()); overQuota("", t) {
			return t, true
		}
	}
	return "", false
}

// limitError is the error of a sync that the download limit stopped.
func limitError(server string) error {
	return fmt.Errorf("%w: the server sends no more mail for now (%s)", ErrDownloadLimit, server)
}
