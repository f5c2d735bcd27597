package restore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// LabelMode says how the labels of a label-based mailbox (Gmail, Proton
// Mail) become folders in a restore or an export.
type LabelMode int

const (
	// LabelsCopies puts one copy of a message in each of its folders and
	// labels' folders, nothing in All Mail or Starred, and a message whose
	// only place was All Mail (Gmail's "archived") in the \Archive folder.
	LabelsCopies LabelMode = iota
	// LabelsKeywords puts one copy of a message in its main folder (INBOX,
	// a special-use folder or one of Proton's Folders/; \Archive when it
	// has none), its other places as IMAP keywords.
	LabelsKeywords
	// LabelsFirst puts one copy of a message in the first of its places
	// (INBOX, special-use folders, Proton's folders, then labels by name),
	// \Archive when it has none.
	LabelsFirst
)

// ParseLabelMode reads "copies", "keywords" or "first".
func ParseLabelMode(s string) (LabelMode, error) {
	switch s {
	case "", "copies":
		return LabelsCopies, nil
	case "keywords":
		return LabelsKeywords, nil
	case "first":
		return LabelsFirst, nil
	}
	return 0, fmt.Errorf("labels %q: want copies, keywords or first", s)
}

func (m LabelMode) String() string {
	return [...]string{"copies", "keywords", "first"}[m]
}

// LabelKeeper is a Sink (or a Lister) into a label-based mailbox (Proton
// Mail Bridge, Gmail): whatever the LabelMode, each message is written
// once, into its main folder, and the sink gives it its labels itself
// (Message.Labels: on Bridge a COPY into Labels/X).
type LabelKeeper interface {
	KeepsLabels() bool
}

func keepsLabels(v any) bool {
	k, ok := v.(LabelKeeper)
	return ok && k.KeepsLabels()
}

// A label-based snapshot has a folder of all mail (\All special use:
// Gmail's [Gmail]/All Mail, Proton's All Mail). Its views (\All,
// \Flagged, \Important) hold messages that live elsewhere; its other
// folders are places: INBOX and the special-use folders (system places),
// Proton's exclusive folders (Folders/...) and labels (Proton's
// Labels/..., any other folder of Gmail), plus the labels a source
// recorded per message (Entry.Labels: Gmail's X-GM-LABELS).

// kind classes a place.
type kind int

const (
	kindView kind = iota
	kindInbox
	kindSystem
	kindExclusive
	kindLabel
)

const important = archive.LabelImportant

func kindOf(f archive.Folder) kind {
	switch {
	case isView(f.SpecialUse):
		return kindView
	case strings.EqualFold(f.Path, "INBOX"):
		return kindInbox
	case f.SpecialUse != "":
		return kindSystem
	case strings.HasPrefix(f.Path, "Folders/"):
		return kindExclusive
	}
	return kindLabel
}

func isView(use string) bool {
	return strings.EqualFold(use, archive.All) || strings.EqualFold(use, archive.Flagged) || strings.EqualFold(use, important)
}

// labelBased returns the All Mail folder of a label-based snapshot, and
// false for a folder-based one.
func labelBased(snap *repo.Snapshot) (int, bool) {
	for i, f := range snap.Folders {
		if strings.EqualFold(f.SpecialUse, archive.All) {
			return i, true
		}
	}
	return -1, false
}

// systemLabels maps Gmail's system labels (X-GM-LABELS) to the special
// use of the folder they stand for; "INBOX" for \Inbox.
var systemLabels = map[string]string{
	`\inbox`: "INBOX", `\sent`: archive.Sent, `\draft`: archive.Drafts, `\drafts`: archive.Drafts,
	`\spam`: archive.Junk, `\junk`: archive.Junk, `\trash`: archive.Trash,
}

// labelOfUse is the system label of a special use, as Gmail spells it.
var labelOfUse = map[string]string{
	strings.ToLower(archive.Sent): `\Sent`, strings.ToLower(archive.Drafts): `\Draft`,
	strings.ToLower(archive.Junk): `\Spam`, strings.ToLower(archive.Trash): `\Trash`,
}

// labelIndex knows, for a label-based snapshot, where each message lives:
// by content, the places it is held in (views left out) and the labels
// recorded with it.
type labelIndex struct {
	snap      *repo.Snapshot
	members   map[dedup.ID][]int // folders holding the message, views left out
	labels    map[dedup.ID][]string
	important map[dedup.ID]bool
	special   map[string]archive.Folder // by lower-case special use, "inbox" for INBOX
	paths     map[string]bool           // the non-view folder paths of the snapshot
	// bridge: the snapshot is of Proton Mail Bridge (folders under
	// Folders/, labels under Labels/), whose prefixes are Bridge's own
	// and not part of the names.
	bridge bool
}

func newLabelIndex(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, selected []int) (*labelIndex, error) {
	x := &labelIndex{
		snap: snap, members: map[dedup.ID][]int{}, labels: map[dedup.ID][]string{}, important: map[dedup.ID]bool{},
		special: map[string]archive.Folder{}, paths: map[string]bool{},
	}
	for _, f := range snap.Folders {
		switch kindOf(f.Folder) {
		case kindInbox:
			x.special["inbox"] = f.Folder
		case kindSystem:
			if _, ok := x.special[strings.ToLower(f.SpecialUse)]; !ok {
				x.special[strings.ToLower(f.SpecialUse)] = f.Folder
			}
		}
		if kindOf(f.Folder) != kindView {
			x.paths[f.Path] = true
		}
		if strings.HasPrefix(f.Path, "Folders/") || strings.HasPrefix(f.Path, "Labels/") {
			x.bridge = true
		}
	}
	for _, i := range selected {
		f := snap.Folders[i]
		k := kindOf(f.Folder)
		imp := strings.EqualFold(f.SpecialUse, important)
		err := r.Entries(ctx, snap, i, func(e repo.Entry) error {
			if k != kindView {
				if l := x.members[e.ID]; len(l) == 0 || l[len(l)-1] != i {
					x.members[e.ID] = append(l, i)
				}
			}
			if imp {
				x.important[e.ID] = true
			}
			if len(e.Labels) > 0 {
				x.labels[e.ID] = e.Labels
				for _, l := range e.Labels {
					if strings.EqualFold(l, important) {
						x.important[e.ID] = true
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return x, nil
}

// labelFolder returns the folder a recorded label stands for, and false
// for a label that is no place (\Important, \Starred...).
func (x *labelIndex) labelFolder(label string) (archive.Folder, bool) {
	if !strings.HasPrefix(label, `\`) {
		return archive.Folder{Path: label}, true
	}
	use, ok := systemLabels[strings.ToLower(label)]
	if !ok {
		return archive.Folder{}, false
	}
	if use == "INBOX" {
		return archive.Folder{Path: "INBOX"}, true
	}
	if f, ok := x.special[strings.ToLower(use)]; ok {
		return f, true
	}
	return archive.Folder{Path: strings.TrimPrefix(use, `\`), SpecialUse: use}, true
}

// name returns the name a place of the snapshot has in a restore or an
// export: Bridge's "Folders/" and "Labels/" dropped (a folder-based
// target shows them as plain folders; a Bridge target puts them back).
func (x *labelIndex) name(p string) string {
	if !x.bridge {
		return p
	}
	for _, prefix := range []string{"Folders/", "Labels/"} {
		if rest, ok := strings.CutPrefix(p, prefix); ok && rest != "" {
			return rest
		}
	}
	return p
}

// places returns the places of a message, in order: INBOX, the
// special-use folders, Proton's folders, then labels by name.
func (x *labelIndex) places(id dedup.ID) []archive.Folder {
	var fs []archive.Folder
	add := func(f archive.Folder) {
		if !slices.ContainsFunc(fs, func(g archive.Folder) bool { return g.Path == f.Path }) {
			fs = append(fs, f)
		}
	}
	for _, i := range x.members[id] {
		add(x.snap.Folders[i].Folder)
	}
	for _, l := range x.labels[id] {
		if f, ok := x.labelFolder(l); ok {
			add(f)
		}
	}
	slices.SortStableFunc(fs, func(a, b archive.Folder) int {
		if ka, kb := kindOf(a), kindOf(b); ka != kb {
			return int(ka) - int(kb)
		}
		if kindOf(a) == kindLabel {
			return strings.Compare(a.Path, b.Path)
		}
		return 0
	})
	return fs
}

// member reports whether the message is held in a snapshot folder of
// path p.
func (x *labelIndex) member(id dedup.ID, p string) bool {
	return slices.ContainsFunc(x.members[id], func(i int) bool { return x.snap.Folders[i].Path == p })
}

// main returns the folder where the single copy of a message goes: with
// LabelsFirst its first place, else its first place that is INBOX, a
// special-use folder or one of Proton's folders; \Archive when it has
// none.
func (x *labelIndex) main(id dedup.ID, mode LabelMode) archive.Folder {
	ps := x.places(id)
	if len(ps) > 0 && (mode == LabelsFirst || kindOf(ps[0]) != kindLabel) {
		return ps[0]
	}
	return x.archive()
}

// archive is the folder of archived mail: the snapshot's \Archive folder,
// else one named Archive.
func (x *labelIndex) archive() archive.Folder {
	if f, ok := x.special[strings.ToLower(archive.Archive)]; ok {
		return f
	}
	return archive.Folder{Path: "Archive", SpecialUse: archive.Archive}
}

// labelsOf returns the labels of a message as Message.Labels carries them:
// the system labels of its system places (`\Inbox`, `\Sent`...),
// `\Important`, then its other places by path.
func (x *labelIndex) labelsOf(id dedup.ID) []string {
	var sys, other []string
	for _, f := range x.places(id) {
		switch kindOf(f) {
		case kindInbox:
			sys = append(sys, `\Inbox`)
		case kindSystem:
			if l, ok := labelOfUse[strings.ToLower(f.SpecialUse)]; ok {
				sys = append(sys, l)
			}
		case kindExclusive:
			// Kept as it is: a label-keeping target tells an exclusive
			// folder (the message's main folder) from a label by it.
			other = append(other, f.Path)
		default:
			other = append(other, x.name(f.Path))
		}
	}
	if x.important[id] {
		sys = append(sys, important)
	}
	return append(sys, other...)
}

// source is one snapshot folder read for a placement: pick says which of
// its entries go there.
type source struct {
	from int
	pick func(e *repo.Entry) bool
}

// placement is one target folder of a restore and where its messages
// come from. label marks a label's folder (not INBOX, a special-use or
// an exclusive folder).
type placement struct {
	target  archive.Folder
	label   bool
	sources []source
}

func all(*repo.Entry) bool { return true }

// plan is where the messages of a snapshot go.
type plan struct {
	placements []placement
	// x is the label index of a label-based snapshot, nil otherwise.
	x *labelIndex
	// total is what a label-based snapshot's placements hold.
	total archive.Counts
}

// labels returns the labels of an entry (Message.Labels), nil for a
// folder-based snapshot.
func (p *plan) labels(e *repo.Entry) []string {
	if p.x == nil {
		return nil
	}
	return p.x.labelsOf(e.ID)
}

// keywords returns the keywords that LabelsKeywords gives an entry
// written to folder: its other places, and $Important.
func (p *plan) keywords(e *repo.Entry, folder string) []string {
	if p.x == nil {
		return nil
	}
	var out []string
	for _, f := range p.x.places(e.ID) {
		l := p.x.name(f.Path)
		if l == folder {
			continue
		}
		switch kindOf(f) {
		case kindInbox:
			l = "Inbox"
		case kindSystem:
			if s, ok := labelOfUse[strings.ToLower(f.SpecialUse)]; ok {
				l = s
			}
		}
		out = append(out, archive.Keyword(l))
	}
	if p.x.important[e.ID] {
		out = append(out, archive.Important)
	}
	return out
}

// layout returns where the messages of the selected folders of snap go.
// A folder-based snapshot goes as it is, folder for folder. A label-based
// one goes as mode says (see LabelMode); with oneCopy (a target that
// keeps labels itself) each message goes once, to its main folder, as
// with LabelsKeywords.
func layout(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, selected []int, mode LabelMode, oneCopy bool) (*plan, error) {
	allMail, ok := labelBased(snap)
	if !ok {
		p := &plan{}
		for _, i := range selected {
			p.placements = append(p.placements, placement{target: snap.Folders[i].Folder, sources: []source{{from: i, pick: all}}})
		}
		return p, nil
	}
	x, err := newLabelIndex(ctx, r, snap, selected)
	if err != nil {
		return nil, err
	}
	p := &plan{x: x}
	byPath := map[string]int{}
	add := func(target archive.Folder, src source) {
		label := kindOf(target) == kindLabel
		target.Path = x.name(target.Path)
		k, ok := byPath[target.Path]
		if !ok {
			k = len(p.placements)
			byPath[target.Path] = k
			p.placements = append(p.placements, placement{target: target, label: label})
		}
		p.placements[k].sources = append(p.placements[k].sources, src)
	}
	withAll := slices.Contains(selected, allMail)
	if oneCopy {
		mode = LabelsKeywords
	}
	if mode == LabelsCopies {
		for _, i := range selected {
			if f := snap.Folders[i]; kindOf(f.Folder) != kindView {
				add(f.Folder, source{from: i, pick: all})
			}
		}
		if !withAll {
			return p, nil
		}
		// The places only recorded labels name (Gmail's X-GM-LABELS): a
		// copy of each message from All Mail, unless a snapshot folder of
		// that path holds it.
		for _, lf := range x.recordedPlaces() {
			add(lf, source{from: allMail, pick: func(e *repo.Entry) bool {
				if x.member(e.ID, lf.Path) {
					return false
				}
				return slices.ContainsFunc(x.labels[e.ID], func(l string) bool {
					f, ok := x.labelFolder(l)
					return ok && f.Path == lf.Path
				})
			}})
		}
		// Archived mail: in All Mail only.
		add(x.archive(), source{from: allMail, pick: func(e *repo.Entry) bool { return len(x.places(e.ID)) == 0 }})
		for _, pl := range p.placements {
			for _, src := range pl.sources {
				err := r.Entries(ctx, snap, src.from, func(e repo.Entry) error {
					if src.pick(&e) {
						p.total.Messages++
						p.total.Bytes += e.Size
					}
					return nil
				})
				if err != nil {
					return nil, err
				}
			}
		}
		return p, nil
	}
	// One copy of each message, in its main folder, read from the first
	// snapshot folder that holds it (All Mail last).
	from := slices.DeleteFunc(slices.Clone(selected), func(i int) bool { return kindOf(snap.Folders[i].Folder) == kindView })
	if withAll {
		from = append(from, allMail)
	}
	placed := map[dedup.ID]bool{}
	type key struct {
		from int
		path string
	}
	seen := map[key]bool{}
	taken := map[dedup.ID]bool{}
	for _, i := range from {
		err := r.Entries(ctx, snap, i, func(e repo.Entry) error {
			if placed[e.ID] {
				return nil
			}
			placed[e.ID] = true
			p.total.Messages++
			p.total.Bytes += e.Size
			m := x.main(e.ID, mode)
			if seen[key{i, m.Path}] {
				return nil
			}
			seen[key{i, m.Path}] = true
			add(m, source{from: i, pick: func(e *repo.Entry) bool {
				if taken[e.ID] || x.main(e.ID, mode).Path != m.Path {
					return false
				}
				taken[e.ID] = true
				return true
			}})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// recordedPlaces returns, sorted by path, the places that recorded labels
// name.
func (x *labelIndex) recordedPlaces() []archive.Folder {
	seen := map[string]archive.Folder{}
	for _, ls := range x.labels {
		for _, l := range ls {
			if f, ok := x.labelFolder(l); ok {
				seen[f.Path] = f
			}
		}
	}
	out := make([]archive.Folder, 0, len(seen))
	for _, f := range seen {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b archive.Folder) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// Labels returns, for a label-based snapshot, the labels of each message
// (as Message.Labels carries them: the system labels of its system
// places, then its other places by path) and the kind of each folder
// ("view", "inbox", "system", "folder" or "label"); nil and nil for a
// folder-based snapshot.
func Labels(ctx context.Context, r *repo.Repository, snap *repo.Snapshot) (func(e *repo.Entry) []string, []string, error) {
	if _, ok := labelBased(snap); !ok {
		return nil, nil, nil
	}
	all := make([]int, len(snap.Folders))
	kinds := make([]string, len(snap.Folders))
	for i, f := range snap.Folders {
		all[i] = i
		kinds[i] = [...]string{"view", "inbox", "system", "folder", "label"}[kindOf(f.Folder)]
	}
	x, err := newLabelIndex(ctx, r, snap, all)
	if err != nil {
		return nil, nil, err
	}
	return func(e *repo.Entry) []string { return x.labelsOf(e.ID) }, kinds, nil
}
