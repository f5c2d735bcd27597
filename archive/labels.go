package archive

import (
	"strings"

	"codeberg.org/planb/planb/archive/mutf7"
)

// LabelImportant is Gmail's system label of the messages it deems
// important (Message.Labels).
const LabelImportant = `\Important`

// Important is the keyword of RFC 8457 that a message carrying
// LabelImportant gets where labels become keywords.
const Important = "$Important"

// LabelFolders returns the user labels among labels (Message.Labels): the
// labels a label-keeping target gives a message besides the folder it is
// written to. System labels (`\Inbox`...), Proton's exclusive folders
// (Folders/...) and folder itself are left out.
func LabelFolders(labels []string, folder string) []string {
	var out []string
	for _, l := range labels {
		if !strings.HasPrefix(l, `\`) && !strings.HasPrefix(l, "Folders/") && l != folder {
			out = append(out, l)
		}
	}
	return out
}

// Keyword returns a label as an IMAP keyword: an atom (modified UTF-7 for
// what is not ASCII, "_" for the characters an atom cannot hold, no
// leading backslash).
func Keyword(label string) string {
	k := []byte(mutf7.Encode(label))
	for i, c := range k {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			k[i] = '_'
		}
	}
	return strings.TrimLeft(string(k), `\`)
}

// LabelKeywords returns the keywords that stand for m's labels where a
// label can only be a keyword (a Maildir export): its user labels (see
// LabelFolders) and Important for LabelImportant.
func (m *Message) LabelKeywords() []string {
	var out []string
	for _, l := range LabelFolders(m.Labels, "") {
		out = append(out, Keyword(l))
	}
	for _, l := range m.Labels {
		if strings.EqualFold(l, LabelImportant) {
			out = append(out, Important)
		}
	}
	return out
}

// takeoutNames are the names Google Takeout gives system labels in its
// X-Gmail-Labels header.
var takeoutNames = map[string]string{
	`\inbox`: "Inbox", `\sent`: "Sent", `\draft`: "Drafts", `\drafts`: "Drafts", `\spam`: "Spam",
	`\junk`: "Spam", `\trash`: "Trash", `\important`: "Important", `\starred`: "Starred",
}

// GmailLabels returns m's labels as Google Takeout writes them in an
// X-Gmail-Labels header field: comma-separated, system labels by name
// (Inbox, Sent, Important...), Starred for a \Flagged message, a label
// holding a comma or a quote in quotes; "" when m has no labels.
func (m *Message) GmailLabels() string {
	if len(m.Labels) == 0 {
		return ""
	}
	var names []string
	add := func(n string) {
		for _, o := range names {
			if o == n {
				return
			}
		}
		names = append(names, n)
	}
	for _, l := range m.Labels {
		if strings.HasPrefix(l, `\`) {
			if n, ok := takeoutNames[strings.ToLower(l)]; ok {
				add(n)
			}
			continue
		}
		add(l)
	}
	for _, f := range m.Flags {
		if strings.EqualFold(f, FlagFlagged) {
			add("Starred")
		}
	}
	for i, n := range names {
		n = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, n)
		if strings.ContainsAny(n, `,"`) {
			n = `"` + strings.ReplaceAll(n, `"`, `""`) + `"`
		}
		names[i] = n
	}
	return strings.Join(names, ",")
}
