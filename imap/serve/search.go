package serve

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// SEARCH follows RFC 3501 (and RFC 9051's ESEARCH and SEARCHRES):
//
//   - dates (SINCE, BEFORE, ON) compare the date of the internal date, and
//     SENTSINCE, SENTBEFORE, SENTON the date of the Date field, each in its
//     own time zone; a message whose Date does not parse matches none;
//   - strings match case-insensitively (Unicode lower case) as substrings;
//   - HEADER, FROM, TO, CC, BCC and SUBJECT match the unfolded field values
//     with RFC 2047 encoded words decoded, leniently (decodeWords; HEADER
//     with an empty string: the field is there);
//   - BODY matches the text/* and message/* parts of the body, anywhere in
//     the MIME tree (in attached messages too), with their transfer
//     encoding and charset (UTF-7 too) decoded, as Dovecot does; a part in
//     an unknown transfer encoding is no text (RFC 2045 section 6.4);
//   - TEXT matches the whole message (RFC 3501): what BODY matches, or a
//     line of the message's header, of a part's header or of an attached
//     message's header: a field as "Name: value", a line that is no field
//     as it is;
//   - LARGER and SMALLER compare RFC822.SIZE;
//   - no message is \Recent: RECENT and NEW match none, OLD all;
//   - flags are the session's (STORE changes them for the session).
//
// The messages stream through the matcher: memory stays bounded whatever
// their size.

func (ss *session) Search(kind imapserver.NumKind, criteria *goimap.SearchCriteria, options *goimap.SearchOptions) (*goimap.SearchData, error) {
	sel := ss.sel
	var hits []int
	for i := range sel.msgs {
		mc := &matcher{ss: ss, sel: sel, i: i, src: newSource(sel.mbox, i)}
		ok, err := mc.match(criteria)
		mc.src.release()
		if err != nil {
			return nil, ss.serverError("search", err)
		}
		if ok {
			hits = append(hits, i)
		}
	}
	data := &goimap.SearchData{Count: uint32(len(hits))}
	num := func(i int) uint32 {
		if kind == imapserver.NumKindUID {
			return sel.msgs[i].UID
		}
		return uint32(i + 1)
	}
	if len(hits) > 0 {
		data.Min, data.Max = num(hits[0]), num(hits[len(hits)-1])
	}
	if kind == imapserver.NumKindUID {
		var set goimap.UIDSet
		for _, i := range hits {
			set.AddNum(goimap.UID(sel.msgs[i].UID))
		}
		data.All = set
	} else {
		var set goimap.SeqSet
		for _, i := range hits {
			set.AddNum(uint32(i + 1))
		}
		data.All = set
	}
	if options.ReturnSave {
		ss.saved = ss.saved[:0]
		for _, i := range hits {
			ss.saved = append(ss.saved, sel.msgs[i].UID)
		}
	}
	return data, nil
}

// matcher evaluates criteria against one message, reading only what they
// need of it.
type matcher struct {
	ss   *session
	sel  *selected
	i    int
	src  *source
	hdr  *header
	root *part
	ws   *wireSize
}

func (mc *matcher) header() (*header, error) {
	if mc.hdr == nil {
		h, err := mc.ss.srv.header(mc.ss.ctx, mc.src)
		if err != nil {
			return nil, err
		}
		mc.hdr = h
	}
	return mc.hdr, nil
}

func (mc *matcher) size() (int64, error) {
	if mc.ws == nil {
		ws, err := mc.ss.srv.size(mc.ss.ctx, mc.src)
		if err != nil {
			return 0, err
		}
		mc.ws = ws
	}
	return mc.ws.size, nil
}

func (mc *matcher) match(c *goimap.SearchCriteria) (bool, error) {
	m := mc.sel.msgs[mc.i]
	n := uint32(len(mc.sel.msgs))
	for _, set := range c.SeqNum {
		if !inRanges(len(set), func(k int) (uint32, uint32) { return set[k].Start, set[k].Stop }, uint32(mc.i+1), n) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if goimap.IsSearchRes(set) {
			found := false
			for _, u := range mc.ss.saved {
				found = found || u == m.UID
			}
			if !found {
				return false, nil
			}
			continue
		}
		if !inRanges(len(set), func(k int) (uint32, uint32) { return uint32(set[k].Start), uint32(set[k].Stop) }, m.UID, uidNext(mc.sel.msgs)-1) {
			return false, nil
		}
	}
	if !inDates(m.Date, c.Since, c.Before) {
		return false, nil
	}
	flags := mc.ss.flagsOf(mc.sel, mc.i)
	for _, f := range c.Flag {
		if strings.EqualFold(string(f), `\Recent`) || !hasFlag(flags, string(f)) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if !strings.EqualFold(string(f), `\Recent`) && hasFlag(flags, string(f)) {
			return false, nil
		}
	}
	if c.Larger > 0 || c.Smaller > 0 {
		size, err := mc.size()
		if err != nil {
			return false, err
		}
		if c.Larger > 0 && size <= c.Larger || c.Smaller > 0 && size >= c.Smaller {
			return false, nil
		}
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h, err := mc.header()
		if err != nil {
			return false, err
		}
		for _, hc := range c.Header {
			if !headerMatch(h.fields, hc.Key, hc.Value) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := mail.ParseDate(get(h.fields, "Date"))
			if err != nil || !inDates(t, c.SentSince, c.SentBefore) {
				return false, nil
			}
		}
	}
	for _, s := range c.Body {
		ok, err := mc.body(s, false)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, s := range c.Text {
		h, err := mc.header()
		if err != nil {
			return false, err
		}
		if textMatch(h.fields, s) {
			continue
		}
		ok, err := mc.body(s, true)
		if err != nil || !ok {
			return false, err
		}
	}
	for k := range c.Not {
		ok, err := mc.match(&c.Not[k])
		if err != nil || ok {
			return false, err
		}
	}
	for k := range c.Or {
		ok, err := mc.match(&c.Or[k][0])
		if err != nil {
			return false, err
		}
		if !ok {
			if ok, err = mc.match(&c.Or[k][1]); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

// inRanges reports whether q is in the ranges of a sequence or UID set, in
// which 0 ("*") stands for star.
func inRanges(n int, rng func(int) (uint32, uint32), q, star uint32) bool {
	for k := range n {
		lo, hi := rng(k)
		if lo == 0 {
			lo = star
		}
		if hi == 0 {
			hi = star
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo <= q && q <= hi {
			return true
		}
	}
	return false
}

// inDates compares the date of t, in t's own zone, with since and before
// (dates at midnight UTC, zero when absent).
func inDates(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return (since.IsZero() || !d.Before(since)) && (before.IsZero() || d.Before(before))
}

func headerMatch(fs []field, name, pattern string) bool {
	pattern = strings.ToLower(pattern)
	for _, f := range fs {
		if f.name != "" && strings.EqualFold(f.name, name) && strings.Contains(strings.ToLower(decodeWords(f.value)), pattern) {
			return true
		}
	}
	return false
}

func textMatch(fs []field, pattern string) bool {
	pattern = strings.ToLower(pattern)
	for _, f := range fs {
		line := f.value
		if f.name != "" {
			line = f.name + ": " + line
		}
		if strings.Contains(strings.ToLower(decodeWords(line)), pattern) {
			return true
		}
	}
	return false
}

// body reports whether the body of the message holds s: a text/* or
// message/* part (decoded) or, with headers, the header of a part or of
// an attached message too, as Dovecot searches them (RFC 3501's TEXT
// covers the whole message). A part in an unknown transfer encoding is
// no text (RFC 2045 section 6.4).
func (mc *matcher) body(s string, headers bool) (bool, error) {
	if mc.root == nil {
		// The structure, then each text part: read the message once.
		if err := mc.src.load(mc.ss.ctx); err != nil {
			return false, err
		}
		root, ws, err := mc.ss.srv.structure(mc.ss.ctx, mc.src)
		if err != nil {
			return false, err
		}
		mc.root, mc.ws = root, ws
	}
	pattern := []byte(strings.ToLower(s))
	var walk func(p *part) (bool, error)
	walk = func(p *part) (bool, error) {
		if headers && p != mc.root {
			if ok, err := mc.partHeaderMatch(p, s); ok || err != nil {
				return ok, err
			}
		}
		switch {
		case p.typ == "multipart" && len(p.children) > 0:
			for _, c := range p.children {
				if ok, err := walk(c); ok || err != nil {
					return ok, err
				}
			}
			return false, nil
		case p.message != nil && identity(p.encoding):
			return walk(p.message)
		case p.typ != "text" && p.typ != "message":
			return false, nil
		}
		// A text/* or message/* leaf; an attached message in base64 or
		// quoted-printable (which RFC 2046 section 5.2.1 forbids) too,
		// read as text, decoded.
		rc, err := mc.ss.srv.wire(mc.ss.ctx, mc.src, mc.ws, p.bodyStart, p.end-p.bodyStart)
		if err != nil {
			return false, err
		}
		defer rc.Close()
		r, ok := decoder(rc, p.encoding)
		if !ok {
			return false, nil
		}
		if cs := strings.ToLower(p.params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
			if d, err := charsetReader(cs, r); err == nil {
				r = d
			}
		}
		return containsFold(r, pattern)
	}
	return walk(mc.root)
}

// identity reports whether a transfer encoding leaves the bytes as they
// are.
func identity(cte string) bool {
	switch cte {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// partHeaderMatch reports whether a line of p's header (its first
// maxPartHeader bytes) holds s, as textMatch matches the message's.
func (mc *matcher) partHeaderMatch(p *part, s string) (bool, error) {
	rc, err := mc.ss.srv.wire(mc.ss.ctx, mc.src, mc.ws, p.start, min(p.bodyStart-p.start, maxPartHeader))
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h, err := io.ReadAll(rc)
	if err != nil {
		return false, err
	}
	return textMatch(headerFields(h), s), nil
}

// containsFold reports whether the UTF-8 text r gives holds pattern (in
// lower case), ignoring case. It reads r in pieces, bounded in memory.
func containsFold(r io.Reader, pattern []byte) (bool, error) {
	if len(pattern) == 0 {
		return true, nil
	}
	block := getBlock()
	defer putBlock(block)
	buf := *block
	var tail, pending []byte
	for {
		n, err := r.Read(buf)
		text := append(pending, buf[:n]...)
		pending = nil
		if err == nil {
			// Keep a rune cut by the end of the piece for the next one.
			i := len(text) - 1
			for i >= 0 && i > len(text)-utf8.UTFMax && !utf8.RuneStart(text[i]) {
				i--
			}
			if i >= 0 && !utf8.FullRune(text[i:]) {
				pending = append([]byte(nil), text[i:]...)
				text = text[:i]
			}
		}
		hay := append(tail, bytes.ToLower(text)...)
		if bytes.Contains(hay, pattern) {
			return true, nil
		}
		tail = append([]byte(nil), hay[max(0, len(hay)-len(pattern)+1):]...)
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}
