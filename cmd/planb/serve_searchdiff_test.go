package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	netmail "net/mail"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-message"
)

// compareSearches (part of TestServeDovecotDiff) asks Dovecot and planb
// serve the same SEARCH keys, made of the words, dates and sizes of
// messages picked at random in each mailbox (the same every run), with
// the system flags, NOT and OR, and
// compares the messages each finds, paired by their bytes. Dovecot is the
// reference for what a user expects SEARCH to find. Where Dovecot reads
// the mail otherwise than the RFCs, a narrow exception says so and logs
// each case; a difference on any other message fails the test:
//   - SENTBEFORE, SENTON, SENTSINCE on a message whose Date does not
//     parse (or is before 1970): Dovecot takes it for 1 January 1970,
//     planb matches none (RFC 3501 compares the Date field's date);
//   - FROM, TO, CC, BCC and HEADER of an address field whose addresses
//     Dovecot cannot parse: Dovecot searches what it made of them
//     (MISSING_DOMAIN, SYNTAX_ERROR), planb the field's text;
//   - LARGER and SMALLER of a message with a bare CR, which Dovecot counts
//     as one byte and planb sends as CRLF (crlfCR);
//   - BODY and TEXT of a message with a transfer encoding that is no
//     token or empty ("8 bit"), which Dovecot's BODYSTRUCTURE reads as
//     7bit and its search as unknown, with a Content-Type that does not
//     parse, which Dovecot's search reads as not text and planb (RFC 2045
//     section 5.2) as text/plain, or with an attached message in base64,
//     which planb searches decoded and Dovecot not at all.
func compareSearches(t *testing.T, d, p *diffSide, dmsgs, pmsgs []diffMsg) {
	pByHash := map[[32]byte]diffMsg{}
	for _, m := range pmsgs {
		pByHash[m.hash] = m
	}
	// Each mailbox of Dovecot and its mailbox of planb.
	boxes := map[string]string{}
	for _, m := range dmsgs {
		h := m.hash
		if m.bareCR {
			h = m.crlfHash
		}
		if pm, ok := pByHash[h]; ok {
			boxes[m.mailbox] = pm.mailbox
		}
	}
	rng := rand.New(rand.NewPCG(17, 4))
	searches, excused, differ := 0, 0, 0
	for _, dbox := range slices.Sorted(maps.Keys(boxes)) {
		pbox := boxes[dbox]
		dinfo := d.searchInfo(t, dbox, dmsgs)
		pinfo := p.searchInfo(t, pbox, pmsgs)
		keys := searchKeys(pinfo, rng)
		for _, k := range keys {
			searches++
			dfound := d.searchHashes(t, dbox, dinfo, k)
			pfound := p.searchHashes(t, pbox, pinfo, k)
			var fails []string
			for _, only := range []struct {
				side, other map[string]*searchMsg
				name        string
			}{{dfound, pfound, "Dovecot"}, {pfound, dfound, "planb"}} {
				for h, m := range only.side {
					if only.other[h] != nil {
						continue
					}
					if why := excuse(k, m, dinfo.byHash[h]); why != "" {
						excused++
						t.Logf("%s %s: %s uid %d found by %s alone: %s", dbox, k.name, only.name, m.uid, only.name, why)
						continue
					}
					fails = append(fails, fmt.Sprintf("%s uid %d", only.name, m.uid))
				}
			}
			if len(fails) > 0 {
				differ++
				slices.Sort(fails)
				t.Errorf("%s: SEARCH %s: found by one server alone: %s", dbox, k.name, strings.Join(fails, ", "))
			}
		}
	}
	t.Logf("%d searches compared, %d differ; %d messages found by one server alone, as an exception says", searches, differ, excused)
}

// searchKey is a SEARCH key and its kind: "body", "sent", "addr", "size"
// or "" (another header key).
type searchKey struct {
	name string
	kind string
	crit *goimap.SearchCriteria
}

// searchMsg is what the exceptions need to know of a message.
type searchMsg struct {
	uid    goimap.UID
	hash   string
	raw    []byte
	env    *goimap.Envelope
	bareCR bool
}

// searchMailbox is the messages of a mailbox, in order, and by the hash
// of their bytes (as planb sends them).
type searchMailbox struct {
	msgs   []*searchMsg
	byHash map[string]*searchMsg
}

// searchInfo fetches every message of a mailbox.
func (s *diffSide) searchInfo(t *testing.T, mailbox string, msgs []diffMsg) *searchMailbox {
	t.Helper()
	s.selectMailbox(t, mailbox)
	sec := &goimap.FetchItemBodySection{Peek: true}
	all := goimap.SeqSet{{Start: 1, Stop: 0}}
	fetched, err := s.c.Fetch(all, &goimap.FetchOptions{UID: true, Envelope: true, BodySection: []*goimap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		t.Fatalf("%s: fetch %s: %v", s.name, mailbox, err)
	}
	hashes := map[goimap.UID]diffMsg{}
	for _, m := range msgs {
		if m.mailbox == mailbox {
			hashes[m.uid] = m
		}
	}
	info := &searchMailbox{byHash: map[string]*searchMsg{}}
	for _, f := range fetched {
		m := hashes[f.UID]
		h := m.hash
		if m.bareCR {
			h = m.crlfHash
		}
		sm := &searchMsg{uid: f.UID, hash: fmt.Sprintf("%x", h), raw: f.FindBodySection(sec), env: f.Envelope, bareCR: m.bareCR}
		info.msgs = append(info.msgs, sm)
		info.byHash[sm.hash] = sm
	}
	return info
}

// searchHashes returns the messages a UID SEARCH finds, by hash.
func (s *diffSide) searchHashes(t *testing.T, mailbox string, info *searchMailbox, k searchKey) map[string]*searchMsg {
	t.Helper()
	s.selectMailbox(t, mailbox)
	data, err := s.c.UIDSearch(k.crit, nil).Wait()
	if err != nil {
		t.Fatalf("%s: %s: UID SEARCH %s: %v", s.name, mailbox, k.name, err)
	}
	byUID := map[goimap.UID]*searchMsg{}
	for _, m := range info.msgs {
		byUID[m.uid] = m
	}
	out := map[string]*searchMsg{}
	for _, uid := range data.AllUIDs() {
		if m := byUID[uid]; m != nil {
			out[m.hash] = m
		}
	}
	return out
}

// searchKeys makes the keys for a mailbox from up to 12 of its messages,
// as planb serves them.
func searchKeys(info *searchMailbox, rng *rand.Rand) []searchKey {
	var keys []searchKey
	add := func(kind, name string, crit *goimap.SearchCriteria) {
		keys = append(keys, searchKey{name: name, kind: kind, crit: crit})
	}
	header := func(k, v string) *goimap.SearchCriteria {
		return &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: k, Value: v}}}
	}
	pick := func(words []string) (string, bool) {
		if len(words) == 0 {
			return "", false
		}
		return words[rng.IntN(len(words))], true
	}
	for _, f := range []goimap.Flag{goimap.FlagSeen, goimap.FlagAnswered, goimap.FlagFlagged, goimap.FlagDeleted, goimap.FlagDraft} {
		add("", "KEYWORD "+string(f), &goimap.SearchCriteria{Flag: []goimap.Flag{f}})
		add("", "NOT KEYWORD "+string(f), &goimap.SearchCriteria{NotFlag: []goimap.Flag{f}})
	}
	for range min(12, len(info.msgs)) {
		m := info.msgs[rng.IntN(len(info.msgs))]
		raw := m.raw
		body := bodyWords(raw)
		if w, ok := pick(body); ok {
			add("body", "BODY "+w, &goimap.SearchCriteria{Body: []string{w}})
		}
		if w, ok := pick(body); ok {
			add("body", "TEXT "+w, &goimap.SearchCriteria{Text: []string{w}})
		}
		if env := m.env; env != nil {
			if w, ok := pick(searchWords(env.Subject)); ok {
				add("", "SUBJECT "+w, header("Subject", w))
			}
			for _, l := range []struct {
				key   string
				addrs []goimap.Address
			}{{"From", env.From}, {"To", env.To}, {"Cc", env.Cc}} {
				var words []string
				for _, a := range l.addrs {
					words = append(words, searchWords(a.Name+" "+a.Mailbox+" "+a.Host)...)
				}
				if w, ok := pick(words); ok {
					add("addr", strings.ToUpper(l.key)+" "+w, header(l.key, w))
				}
			}
			if !env.Date.IsZero() {
				day := time.Date(env.Date.Year(), env.Date.Month(), env.Date.Day(), 0, 0, 0, 0, time.UTC)
				name := day.Format("2-Jan-2006")
				add("sent", "SENTON "+name, &goimap.SearchCriteria{SentSince: day, SentBefore: day.AddDate(0, 0, 1)})
				add("sent", "SENTBEFORE "+name, &goimap.SearchCriteria{SentBefore: day})
				add("sent", "SENTSINCE "+name, &goimap.SearchCriteria{SentSince: day})
			}
		}
		size := int64(len(raw))
		add("size", fmt.Sprintf("LARGER %d", size-1), &goimap.SearchCriteria{Larger: size - 1})
		add("size", fmt.Sprintf("SMALLER %d", size+1), &goimap.SearchCriteria{Smaller: size + 1})
		if e, _ := message.Read(bytes.NewReader(raw)); e != nil {
			var fields [][2]string
			for f := e.Header.Fields(); f.Next(); {
				for _, w := range searchWords(refDecode(f.Value())) {
					fields = append(fields, [2]string{f.Key(), w})
				}
			}
			if len(fields) > 0 {
				f := fields[rng.IntN(len(fields))]
				kind := ""
				if addressField(f[0]) {
					kind = "addr"
				}
				add(kind, "HEADER "+f[0]+" "+f[1], header(f[0], f[1]))
			}
		}
	}
	// NOT and OR of the body keys.
	var body []searchKey
	for _, k := range keys {
		if k.kind == "body" {
			body = append(body, k)
		}
	}
	for i := range min(4, len(body)) {
		a, b := body[rng.IntN(len(body))], body[rng.IntN(len(body))]
		keys = append(keys, searchKey{name: "NOT " + a.name, kind: "body", crit: &goimap.SearchCriteria{Not: []goimap.SearchCriteria{*a.crit}}})
		if i%2 == 0 {
			keys = append(keys, searchKey{name: "OR " + a.name + " " + b.name, kind: "body", crit: &goimap.SearchCriteria{Or: [][2]goimap.SearchCriteria{{*a.crit, *b.crit}}}})
		}
	}
	return keys
}

// searchWords splits text into words of letters and digits, 3 to 200
// (go-imap's server takes no literal of more than 4,096 bytes in a
// SEARCH, which a user does not type).
func searchWords(s string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if n := len([]rune(w)); n >= 3 && n <= 200 {
			out = append(out, w)
		}
	}
	return out
}

// bodyWords returns the words of a message's text parts, as go-message
// decodes them.
func bodyWords(raw []byte) []string {
	var out []string
	walkEntities(raw, func(e *message.Entity) bool {
		if t, _, _ := e.Header.ContentType(); t == "" || strings.HasPrefix(t, "text/") {
			b, _ := io.ReadAll(io.LimitReader(e.Body, 1<<20))
			out = append(out, searchWords(string(b))...)
		}
		return true
	})
	return out
}

// walkEntities calls visit for each entity of a message, parents before
// their parts, 10 levels deep at most, until visit returns false.
func walkEntities(raw []byte, visit func(*message.Entity) bool) {
	e, _ := message.Read(bytes.NewReader(raw))
	var walk func(e *message.Entity, depth int) bool
	walk = func(e *message.Entity, depth int) bool {
		if e == nil || depth > 10 {
			return true
		}
		if !visit(e) {
			return false
		}
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if p == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
					return true
				}
				if !walk(p, depth+1) {
					return false
				}
			}
		}
		return true
	}
	walk(e, 0)
}

func addressField(name string) bool {
	switch strings.ToLower(name) {
	case "from", "sender", "reply-to", "to", "cc", "bcc":
		return true
	}
	return false
}

// excuse returns why a message found by one server alone is an exception
// of compareSearches, or "". dm is the message as Dovecot serves it.
func excuse(k searchKey, m, dm *searchMsg) string {
	switch k.kind {
	case "sent":
		if d, err := netmail.ParseDate(firstDate(m.raw)); err != nil || d.Year() < 1970 {
			return "a Date that does not parse or is before 1970"
		}
	case "addr":
		if dm != nil && dm.env != nil && unparsedAddresses(dm.env) {
			return "addresses Dovecot cannot parse (MISSING_DOMAIN, SYNTAX_ERROR)"
		}
	case "size":
		if dm != nil && dm.bareCR {
			return "a bare CR, one byte to Dovecot, CRLF from planb"
		}
	case "body":
		if why := unreadableMIME(m.raw); why != "" {
			return why
		}
		if encodedMessage(m.raw) {
			return "an attached message in base64 or quoted-printable (RFC 2046 section 5.2.1 forbids it), which Dovecot does not decode, planb does"
		}
	}
	return ""
}

func unparsedAddresses(env *goimap.Envelope) bool {
	for _, l := range [][]goimap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		for _, a := range l {
			if a.Host == "SYNTAX_ERROR" || a.Host == "MISSING_DOMAIN" || a.Mailbox == "MISSING_MAILBOX" || a.Mailbox == "" && a.Host == "" && a.Name == "" {
				return true
			}
		}
	}
	return false
}

// firstDate returns the value of the first Date field of a message's
// header, unfolded.
func firstDate(raw []byte) string {
	header := raw
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		header = raw[:i+2]
	}
	m := dateField.FindSubmatch(header)
	if m == nil {
		return ""
	}
	return strings.Join(strings.Fields(string(m[1])), " ")
}

var (
	dateField = regexp.MustCompile(`(?im)^Date:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)`)
	cteField  = regexp.MustCompile(`(?im)^Content-Transfer-Encoding:[ \t]*([^\r\n]*)`)
	ctField   = regexp.MustCompile(`(?im)^Content-Type:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)`)
)

// unreadableMIME says whether a message has a transfer encoding or a
// Content-Type that Dovecot's search reads otherwise than planb.
func unreadableMIME(raw []byte) string {
	for _, m := range cteField.FindAllSubmatch(raw, -1) {
		switch strings.ToLower(strings.TrimSpace(string(m[1]))) {
		case "7bit", "8bit", "binary", "base64", "quoted-printable":
		default:
			return fmt.Sprintf("Content-Transfer-Encoding %q", m[1])
		}
	}
	for _, m := range ctField.FindAllSubmatch(raw, -1) {
		v := strings.Join(strings.Fields(string(m[1])), " ")
		if _, _, err := mime.ParseMediaType(v); err != nil {
			return fmt.Sprintf("Content-Type %q that does not parse", v)
		}
	}
	return ""
}

// encodedMessage reports whether a message has an attached message in
// base64 or quoted-printable.
func encodedMessage(raw []byte) bool {
	found := false
	walkEntities(raw, func(e *message.Entity) bool {
		t, _, _ := e.Header.ContentType()
		found = (t == "message/rfc822" || t == "message/global") && refEncoded(e.Header)
		return !found
	})
	return found
}
