package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/repo"
)

// Lister is what Verify compares a snapshot with: the folders and messages
// of a target account (imap.Account is one).
type Lister interface {
	// Mailbox returns the target mailbox of f and whether it exists.
	Mailbox(f archive.Folder) (string, bool)
	// Messages calls fn with the UID and the fingerprint of every message
	// of an existing mailbox.
	Messages(ctx context.Context, mailbox string, fn func(uid uint32, p *mailform.Print) error) error
}

// LabelLister is a Lister of a label-based account (a LabelKeeper that
// says so): each message is looked for once in its main folder and once
// in each of its labels' mailboxes.
type LabelLister interface {
	Lister
	LabelKeeper
	// LabelMailbox returns the mailbox of a label (a user label of
	// Message.Labels) and whether it exists.
	LabelMailbox(label string) (string, bool)
}

// The classes of messages Verify reports.
const (
	// Exact: the target holds the message's bytes (line ends aside: CRLF
	// on the wire).
	Exact = "exact"
	// Rewritten: the target holds the message changed in a way servers
	// are known to change what they store (Verdict.How names it: headers
	// added, MIME rebuilt).
	Rewritten = "rewritten"
	// Repaired: the target holds a repaired copy (restore --repair) whose
	// original is the message.
	Repaired = "repaired"
	// Missing, Extra, Altered: a message of the snapshot not on the
	// target, one on the target not in the snapshot, and a pair of those
	// that are two versions of one message (same Message-ID, or same
	// Date, From and Subject).
	Missing = "missing"
	Extra   = "extra"
	Altered = "altered"
	// FolderMissing: the target has no mailbox for a folder of the
	// snapshot that holds messages (each is also counted missing).
	FolderMissing = "folder-missing"
)

// Verdict is what Verify found for one message.
type Verdict struct {
	Class     string    `json:"class"`
	How       string    `json:"how,omitempty"` // the rewrite, or the repaired copy's X-Planb-Repaired
	Folder    string    `json:"folder"`
	Mailbox   string    `json:"mailbox"`
	SourceID  string    `json:"source_id,omitempty"`
	UID       uint32    `json:"uid,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	Date      time.Time `json:"date,omitzero"`
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Messages int64            `json:"messages"` // in the snapshot's folders compared
	Counts   map[string]int64 `json:"counts"`   // messages per class
	Rewrites map[string]int64 `json:"rewrites"` // rewritten and repaired messages per How
	// Differences lists every missing, extra and altered message, and
	// every missing folder.
	Differences []Verdict `json:"differences"`
}

// VerifyOptions tune Verify. A nil *VerifyOptions means defaults.
type VerifyOptions struct {
	// Folders, when not empty, compares only the folders that match (see
	// Match).
	Folders []string
	// Labels is the LabelMode the restore used.
	Labels   LabelMode
	Progress archive.Progress
}

// Verify compares the folders of snap with what l holds, message by
// message: each message of the snapshot is matched to one on the target,
// at the closest level mailform.Set knows (exact, headers added, repaired,
// rebuilt), every level for every message before the next level; what is
// left is missing, extra or altered. A message is read from the
// repository once and from the target once; only fingerprints are kept.
func Verify(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, l Lister, opts *VerifyOptions) (*VerifyReport, error) {
	if opts == nil {
		opts = &VerifyOptions{}
	}
	prog := opts.Progress
	if prog == nil {
		prog = archive.NoProgress
	}
	rep := &VerifyReport{Counts: map[string]int64{}, Rewrites: map[string]int64{}}
	selected, total, err := selectFolders(snap, opts.Folders)
	if err != nil {
		return nil, err
	}
	ll, _ := l.(LabelLister)
	oneCopy := ll != nil && ll.KeepsLabels()
	pl, err := layout(ctx, r, snap, selected, opts.Labels, oneCopy)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if pl.x != nil {
		total = pl.total
	}
	prog.Start(total)
	// Into a label-keeping account, what each label's mailbox must hold,
	// compared once every main folder is.
	var labels []*group
	byLabel := map[string]*group{}
	for _, p := range pl.placements {
		g := &group{folder: p.target.Path}
		g.mailbox, g.exists = l.Mailbox(p.target)
		for _, src := range p.sources {
			err := r.Entries(ctx, snap, src.from, func(e repo.Entry) error {
				if !src.pick(&e) {
					return nil
				}
				p, err := mailform.Fingerprint(NewReader(ctx, r, &e))
				if err != nil {
					var be *repo.BlobError
					if errors.As(err, &be) {
						return err
					}
					return fmt.Errorf("message %s: %w", e.SourceID, err)
				}
				w := wanted{sourceID: e.SourceID, date: e.Date, print: p}
				g.want = append(g.want, w)
				if oneCopy {
					for _, lb := range archive.LabelFolders(pl.labels(&e), g.folder) {
						lg := byLabel[lb]
						if lg == nil {
							lg = &group{folder: lb}
							lg.mailbox, lg.exists = ll.LabelMailbox(lb)
							byLabel[lb] = lg
							labels = append(labels, lg)
						}
						lg.want = append(lg.want, w)
					}
				}
				prog.Add(archive.Counts{Messages: 1, Bytes: e.Size})
				return nil
			})
			if err != nil {
				return rep, fmt.Errorf("verify %q: %w", snap.Folders[src.from].Path, err)
			}
		}
		if err := g.compare(ctx, l, rep); err != nil {
			return rep, fmt.Errorf("verify %q: %w", p.target.Path, err)
		}
	}
	for _, g := range labels {
		if err := g.compare(ctx, l, rep); err != nil {
			return rep, fmt.Errorf("verify label %q: %w", g.folder, err)
		}
	}
	return rep, nil
}

// wanted is a message of the snapshot.
type wanted struct {
	sourceID string
	date     time.Time
	print    *mailform.Print
}

// group is what one target mailbox must hold.
type group struct {
	folder, mailbox string
	exists          bool
	want            []wanted
}

// compare matches g's messages with what its mailbox holds.
func (g *group) compare(ctx context.Context, l Lister, rep *VerifyReport) error {
	want := g.want
	rep.Messages += int64(len(want))
	verdict := func(class string, w *wanted) Verdict {
		v := Verdict{Class: class, Folder: g.folder, Mailbox: g.mailbox}
		if w != nil {
			v.SourceID, v.MessageID, v.Date = w.sourceID, w.print.MessageID, w.date
		}
		return v
	}
	if !g.exists {
		if len(want) > 0 {
			rep.Differences = append(rep.Differences, verdict(FolderMissing, nil))
			for k := range want {
				rep.Counts[Missing]++
				rep.Differences = append(rep.Differences, verdict(Missing, &want[k]))
			}
		}
		return nil
	}
	var got mailform.Set
	prints := map[uint32]*mailform.Print{}
	err := l.Messages(ctx, g.mailbox, func(uid uint32, p *mailform.Print) error {
		got.Add(int(uid), p)
		prints[uid] = p
		return nil
	})
	if err != nil {
		return err
	}
	matched := make([]bool, len(want))
	for level := mailform.Exact; level <= mailform.Rebuilt; level++ {
		for k := range want {
			if matched[k] {
				continue
			}
			uid, ok := got.MatchAt(want[k].print, level)
			if !ok {
				continue
			}
			matched[k] = true
			class, how := Exact, ""
			switch level {
			case mailform.HeadersAdded:
				class, how = Rewritten, "headers added: "+strings.Join(prints[uint32(uid)].Added, ", ")
			case mailform.Repaired:
				class, how = Repaired, prints[uint32(uid)].Repaired
			case mailform.Rebuilt:
				class, how = Rewritten, "MIME rebuilt"
			}
			rep.Counts[class]++
			if how != "" {
				rep.Rewrites[how]++
			}
		}
	}
	// What is left: pair the versions of one message, by Message-ID, then
	// by Date, From and Subject.
	extra := got.Unmatched()
	used := make([]bool, len(extra))
	pair := func(w *wanted, same func(p *mailform.Print) bool) bool {
		for n, uid := range extra {
			if !used[n] && same(prints[uint32(uid)]) {
				used[n] = true
				v := verdict(Altered, w)
				v.UID = uint32(uid)
				rep.Counts[Altered]++
				rep.Differences = append(rep.Differences, v)
				return true
			}
		}
		return false
	}
	for k := range want {
		w := &want[k]
		if !matched[k] && w.print.MessageID != "" {
			matched[k] = pair(w, func(p *mailform.Print) bool { return p.MessageID == w.print.MessageID })
		}
	}
	for k := range want {
		w := &want[k]
		if !matched[k] {
			matched[k] = pair(w, func(p *mailform.Print) bool { return p.Envelope == w.print.Envelope })
		}
	}
	for k := range want {
		if !matched[k] {
			rep.Counts[Missing]++
			rep.Differences = append(rep.Differences, verdict(Missing, &want[k]))
		}
	}
	for n, uid := range extra {
		if used[n] {
			continue
		}
		v := verdict(Extra, nil)
		v.UID, v.MessageID = uint32(uid), prints[uint32(uid)].MessageID
		rep.Counts[Extra]++
		rep.Differences = append(rep.Differences, v)
	}
	return nil
}
