package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// options are mailgen's settings.
type options struct {
	out            string
	messages       int
	size           int64
	oneMessageSize int64 // > 0: write one message of this size instead
	seed           uint64
}

// stats describes what generate wrote.
type stats struct {
	messages  int
	bytes     int64
	attParts  int // attachment parts, reused ones included
	attReused int // attachment parts that repeat an earlier attachment
	attBytes  int64
}

// Random streams, so that the vocabulary does not depend on the plan and
// the plan does not depend on the text.
const (
	streamVocab = iota + 1
	streamWorld
	streamPlan
	streamText
	streamOne
)

var (
	// The mailbox spans three years from epoch.
	epoch = time.Date(2021, time.March, 1, 8, 0, 0, 0, time.UTC)
	span  = 3 * 365 * 24 * time.Hour
)

// The folders of the tree and their share of received threads; "" is
// INBOX. Messages sent by the owner go to sentFolder.
var folders = []struct {
	name   string
	weight int
}{
	{"", 50}, {".Archive", 22}, {".Projects.Alpha", 8}, {".Projects.Beta", 5},
	{".Lists.Golang", 9}, {".Receipts", 6},
}

const (
	sentFolder = ".Sent"
	listFolder = ".Lists.Golang"
	ownerAddr  = "me@example.org"
	bigAttID   = 1 << 30 // attachment id of the -one-message-size attachment
)

var attachmentKinds = []struct{ ext, ctype, magic string }{
	{"pdf", "application/pdf", "%PDF-1.5\n%\xe2\xe3\xcf\xd3\n"},
	{"jpg", "image/jpeg", "\xff\xd8\xff\xe0\x00\x10JFIF\x00"},
	{"png", "image/png", "\x89PNG\r\n\x1a\n"},
	{"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "PK\x03\x04"},
	{"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "PK\x03\x04"},
	{"zip", "application/zip", "PK\x03\x04"},
}

type person struct {
	name   string
	first  string
	addr   string
	domain string
	lang   *language
	sig    string
	zone   *time.Location
}

type thread struct {
	subject string
	lang    *language
	folder  string
	people  []int // indices into generator.people; -1 is the owner
	refs    []string
	last    []byte // plain text of the latest message, for quoting
	from    int
	date    time.Time
	list    bool
}

type attInfo struct{ name, subject string }

type generator struct {
	opts        options
	r           *rand.Rand
	people      []person
	byLang      map[*language][]int
	owner       person
	disclaimers map[string]string
	threads     []*thread // open threads, oldest first
	plan        *plan
	attInfo     map[int32]attInfo
	bw          *bufio.Writer
	debt        int64
	st          stats

	// Scratch buffers reused across messages.
	hdr, plain, html, enc, tmp []byte
}

// generate writes the tree described by opts and reports what it wrote.
func generate(opts options) (stats, error) {
	if err := prepareOut(opts.out); err != nil {
		return stats{}, err
	}
	g := &generator{
		opts:    opts,
		r:       rand.New(rand.NewPCG(opts.seed, streamText)),
		attInfo: make(map[int32]attInfo),
		bw:      bufio.NewWriterSize(nil, 256<<10),
	}
	buildVocabularies(rand.New(rand.NewPCG(opts.seed, streamVocab)))
	g.buildWorld(rand.New(rand.NewPCG(opts.seed, streamWorld)))
	if opts.oneMessageSize > 0 {
		if err := g.makeFolder(""); err != nil {
			return stats{}, err
		}
		err := g.writeOne()
		return g.st, err
	}
	for _, f := range append([]string{sentFolder}, folderNames()...) {
		if err := g.makeFolder(f); err != nil {
			return stats{}, err
		}
	}
	g.plan = makePlan(rand.New(rand.NewPCG(opts.seed, streamPlan)), opts.messages, opts.size)
	for i := 0; i < opts.messages; i++ {
		if err := g.message(i); err != nil {
			return g.st, err
		}
	}
	return g.st, nil
}

func folderNames() []string {
	var s []string
	for _, f := range folders {
		s = append(s, f.name)
	}
	return s
}

// prepareOut creates dir, which must be absent or empty.
func prepareOut(dir string) error {
	if dir == "" {
		return errors.New("prepare output: -out is required")
	}
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) > 0 {
		return fmt.Errorf("prepare output %q: directory is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("prepare output %q: %w", dir, err)
	}
	return nil
}

func (g *generator) makeFolder(name string) error {
	root := filepath.Join(g.opts.out, name)
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return fmt.Errorf("create folder %q: %w", name, err)
		}
	}
	if name != "" {
		marker := filepath.Join(root, "maildirfolder")
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			return fmt.Errorf("create folder %q: %w", name, err)
		}
		if err := os.Chtimes(marker, epoch, epoch); err != nil {
			return fmt.Errorf("create folder %q: %w", name, err)
		}
	}
	return nil
}

// buildWorld makes the people, their domains, signatures and disclaimers.
func (g *generator) buildWorld(r *rand.Rand) {
	tlds := map[string][]string{
		"en": {"com", "com", "org", "net", "io", "co.uk"},
		"de": {"de", "de", "com", "at"}, "fr": {"fr", "fr", "com", "be"},
		"es": {"es", "com", "mx"}, "ru": {"ru", "ru", "com"},
	}
	zones := map[string][]int{"en": {-8, -5, 0, 1}, "de": {1}, "fr": {1}, "es": {1, -6}, "ru": {3}}
	g.byLang = make(map[*language][]int)
	g.disclaimers = make(map[string]string)
	var domains []string
	domainLang := map[string]*language{}
	for _, l := range languages {
		for range 6 + l.weight/3 {
			d := ascii(l.rareWord(r)) + "-" + ascii(l.rareWord(r)) + "." + pick(r, tlds[l.code])
			domains = append(domains, d)
			domainLang[d] = l
			if r.IntN(4) == 0 {
				var b []byte
				b = append(b, strings.ToUpper(l.title(r))...)
				b = append(b, ": "...)
				for range 3 + r.IntN(4) {
					b = l.appendSentence(append(b, ' '), r)
				}
				g.disclaimers[d] = string(b)
			}
		}
	}
	for i := range 600 {
		d := domains[r.IntN(len(domains))]
		l := domainLang[d]
		if r.IntN(5) == 0 {
			l = pickLanguage(r)
		}
		p := g.newPerson(r, l, d, zones[l.code][r.IntN(len(zones[l.code]))])
		g.people = append(g.people, p)
		g.byLang[l] = append(g.byLang[l], i)
	}
	g.owner = g.newPerson(r, languages[0], "example.org", 1)
	g.owner.addr = ownerAddr
}

func (g *generator) newPerson(r *rand.Rand, l *language, domain string, zone int) person {
	first, last := pick(r, l.firstNames), pick(r, l.lastNames)
	p := person{
		name: first + " " + last, first: first, domain: domain, lang: l,
		addr: ascii(first) + "." + ascii(last) + "@" + domain,
		zone: time.FixedZone("", zone*3600),
	}
	if r.IntN(5) == 0 {
		p.addr = ascii(first)[:1] + ascii(last) + strconv.Itoa(r.IntN(100)) + "@" + domain
	}
	sig := "-- \n" + p.name + "\n" + l.title(r) + "\n" + strings.SplitN(domain, ".", 2)[0] +
		fmt.Sprintf("\nTel. +%d %d %07d\n", 1+r.IntN(98), 10+r.IntN(900), r.IntN(10000000))
	if r.IntN(3) == 0 {
		sig += "https://www." + domain + "/\n"
	}
	p.sig = sig
	return p
}

func pickLanguage(r *rand.Rand) *language {
	x := r.IntN(100)
	for _, l := range languages {
		if x < l.weight {
			return l
		}
		x -= l.weight
	}
	return languages[0]
}

func (g *generator) person(i int) *person {
	if i < 0 {
		return &g.owner
	}
	return &g.people[i]
}

// somebody returns a person other than the owner, usually one speaking l.
func (g *generator) somebody(l *language) int {
	if ps := g.byLang[l]; len(ps) > 0 && g.r.IntN(5) > 0 {
		return ps[g.r.IntN(len(ps))]
	}
	return g.r.IntN(len(g.people))
}

// message writes message i of the plan.
func (g *generator) message(i int) error {
	r := g.r
	n := g.opts.messages
	date := epoch.Add(time.Duration((float64(i) + r.Float64()) / float64(n) * float64(span))).Truncate(time.Second)

	// Planned size, corrected by what earlier messages over- or undershot.
	atts := g.plan.atts[i]
	planned := int64(g.plan.text[i])
	for _, a := range atts {
		planned += base64Size(g.plan.attch[a].size) + attPartHeader
	}
	textTarget := int64(g.plan.text[i]) - g.debt/int64(min(64, n-i))
	textTarget = max(textTarget, 300)

	// Pick the thread: a forward when an attachment is reused, else a
	// reply to a recent thread or a new one.
	var fwd *attInfo
	for _, a := range atts {
		if int(g.plan.attch[a].firstUse) < i {
			info := g.attInfo[a]
			fwd = &info
			break
		}
	}
	var th *thread
	isReply := false
	switch {
	case fwd != nil:
		th = g.newThread(date)
		th.subject = forwardPrefix(th.lang) + fwd.subject
		th.list = false
		if th.folder == listFolder {
			th.folder = ""
		}
	case len(g.threads) > 0 && r.IntN(100) < 55:
		k := len(g.threads) - 1 - min(len(g.threads)-1, int(r.ExpFloat64()*6))
		th = g.threads[k]
		isReply = true
		g.threads = append(append(g.threads[:k:k], g.threads[k+1:]...), th)
	default:
		th = g.newThread(date)
	}

	// Sender and recipients.
	from := th.from
	if isReply {
		switch {
		case th.from >= 0 && !th.list && r.IntN(100) < 35:
			from = -1
		default:
			from = th.people[r.IntN(len(th.people))]
			if from == th.from || r.IntN(5) == 0 {
				from = g.somebody(th.lang)
				if !containsInt(th.people, from) {
					th.people = append(th.people, from)
				}
			}
		}
	}
	var to, cc []int
	if th.list {
		to = nil
	} else {
		for _, p := range th.people {
			if p != from && len(to) < 3 {
				to = append(to, p)
			}
		}
		if from >= 0 && !containsInt(to, -1) {
			to = append([]int{-1}, to...)
		}
		if len(to) == 0 {
			to = []int{g.somebody(th.lang)}
		}
		if r.IntN(10) < 3 {
			for range 1 + r.IntN(3) {
				cc = append(cc, g.somebody(th.lang))
			}
		}
	}
	folder := th.folder
	if from < 0 {
		folder = sentFolder
	}

	subject := th.subject
	if isReply {
		subject = replyPrefix(r, th.lang) + th.subject
	}
	msgID := g.messageID(g.person(from).domain)
	g.hdr = g.headers(g.hdr[:0], from, to, cc, th, subject, msgID, date, isReply, textTarget)

	// Text parts.
	withHTML := r.IntN(100) < 55
	bodyBudget := textTarget - int64(len(g.hdr)) - 300
	plainBudget := bodyBudget
	if withHTML {
		plainBudget = bodyBudget * 10 / 23
	}
	paras := g.compose(from, to, th, isReply, fwd, max(plainBudget, 120))

	// Attachment names are fixed at first use.
	var parts []attPart
	for _, a := range atts {
		info, ok := g.attInfo[a]
		if !ok {
			kind := attachmentKinds[g.plan.attch[a].kind]
			info = attInfo{
				name:    g.fileName(th.lang, date, kind.ext),
				subject: th.subject,
			}
			g.attInfo[a] = info
		} else {
			g.st.attReused++
		}
		parts = append(parts, attPart{id: int64(a), size: g.plan.attch[a].size, kind: g.plan.attch[a].kind, name: info.name})
	}

	flags, isNew := g.flags(folder, i)
	written, err := g.writeMaildir(folder, date, i, flags, isNew, func(w *countWriter) error {
		return g.writeMIME(w, th.lang, paras, withHTML, parts)
	})
	if err != nil {
		return err
	}
	g.debt += written - planned

	// Remember the thread for later replies.
	th.refs = append(th.refs, msgID)
	if len(th.refs) > 12 {
		th.refs = th.refs[len(th.refs)-12:]
	}
	th.last = append(th.last[:0], g.plain[:min(len(g.plain), 24<<10)]...)
	th.from = from
	th.date = date
	return nil
}

// newThread starts a thread and adds it to the open ones.
func (g *generator) newThread(date time.Time) *thread {
	r := g.r
	th := &thread{lang: pickLanguage(r), date: date}
	x := r.IntN(100)
	for _, f := range folders {
		if x < f.weight {
			th.folder = f.name
			break
		}
		x -= f.weight
	}
	th.list = th.folder == listFolder
	if th.list {
		th.lang = languages[0]
	}
	th.subject = th.lang.title(r)
	if th.folder == ".Receipts" {
		th.subject = fmt.Sprintf("%s #%d", th.subject, 100000+r.IntN(900000))
	}
	th.from = g.somebody(th.lang)
	if !th.list && r.IntN(100) < 18 {
		th.from = -1
	}
	th.people = []int{th.from}
	for range 1 + r.IntN(3) {
		th.people = append(th.people, g.somebody(th.lang))
	}
	if th.from >= 0 && th.folder != "" && r.IntN(3) == 0 {
		th.people = append(th.people, -1)
	}
	g.threads = append(g.threads, th)
	if len(g.threads) > 80 {
		g.threads = g.threads[1:]
	}
	return th
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func replyPrefix(r *rand.Rand, l *language) string {
	switch {
	case l.code == "de" && r.IntN(2) == 0:
		return "AW: "
	case r.IntN(5) == 0:
		return "RE: "
	}
	return "Re: "
}

func forwardPrefix(l *language) string {
	switch l.code {
	case "de":
		return "WG: "
	case "fr":
		return "TR: "
	case "es":
		return "RV: "
	}
	return "Fwd: "
}

func (g *generator) messageID(domain string) string {
	r := g.r
	switch r.IntN(3) {
	case 0:
		return string(randomBase64([]byte("<CA"), r, 40)) + "@mail.gmail.com>"
	case 1:
		return fmt.Sprintf("<%016x.%08x@%s>", r.Uint64(), r.Uint32(), domain)
	}
	return fmt.Sprintf("<%08X-%04X-%04X-%012X@%s>", r.Uint32(), r.IntN(1<<16), r.IntN(1<<16), r.Uint64()>>16, domain)
}

func (g *generator) fileName(l *language, date time.Time, ext string) string {
	var b []byte
	b = appendCapitalized(b, ascii(l.rareWord(g.r)))
	b = append(b, '_')
	b = appendASCII(b, l.rareWord(g.r))
	b = append(b, '_')
	b = date.AppendFormat(b, "2006-01")
	return string(b) + "." + ext
}

func address(p *person) string {
	return (&mail.Address{Name: p.name, Address: p.addr}).String()
}

func addressList(g *generator, ps []int) string {
	var s []string
	for _, p := range ps {
		s = append(s, address(g.person(p)))
	}
	return strings.Join(s, ", ")
}

const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// headers appends the message's header section, without Content-Type.
func (g *generator) headers(b []byte, from int, to, cc []int, th *thread, subject, msgID string, date time.Time, isReply bool, budget int64) []byte {
	r := g.r
	fp := g.person(from)
	local := date.In(fp.zone)
	if from >= 0 {
		b = header(b, "Return-Path", "<"+fp.addr+">")
		b = header(b, "Delivered-To", ownerAddr)
		hops := 1
		if budget > 3500 {
			hops = 2 + r.IntN(3)
		}
		t := date.Add(time.Duration(hops*2+r.IntN(30)) * time.Second)
		b = header(b, "Received", fmt.Sprintf("from mx1.example.org ([10.0.0.%d]) by imap.example.org with LMTP id %s (envelope-from <%s>) for <%s>; %s",
			2+r.IntN(200), randomBase64(nil, r, 22), fp.addr, ownerAddr, t.Format(dateLayout)))
		for h := 1; h < hops; h++ {
			t = t.Add(-time.Duration(1+r.IntN(3)) * time.Second)
			host := fmt.Sprintf("mail-%s%d.%s", ascii(fp.lang.rareWord(r)), r.IntN(100), fp.domain)
			if h == 1 {
				b = header(b, "Received", fmt.Sprintf("from %s (%s [%d.%d.%d.%d]) (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256) (No client certificate requested) by mx1.example.org (Postfix) with ESMTPS id 4%s for <%s>; %s",
					host, host, 1+r.IntN(223), r.IntN(256), r.IntN(256), 1+r.IntN(254), randomBase64(nil, r, 11), ownerAddr, t.Format(dateLayout)))
			} else {
				b = header(b, "Received", fmt.Sprintf("by %s with SMTP id %s; %s", host, randomBase64(nil, r, 28), t.In(fp.zone).Format(dateLayout)))
			}
		}
		if budget > 5000 && r.IntN(5) == 0 {
			b = header(b, "ARC-Seal", string(foldedBase64([]byte(fmt.Sprintf("i=1; a=rsa-sha256; t=%d; cv=none; d=%s; s=arc-20240605; b=", date.Unix(), fp.domain)), r, 344)))
			b = header(b, "ARC-Message-Signature", string(foldedBase64([]byte(fmt.Sprintf("i=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=arc-20240605; h=to:subject:message-id:date:from:mime-version:dkim-signature; bh=%s; fh=%s; b=", fp.domain, string(randomBase64(nil, r, 43))+"=", string(randomBase64(nil, r, 43))+"=")), r, 344)))
		}
		if budget > 2500 || r.IntN(3) == 0 {
			sel := fmt.Sprintf("%d", 20200000+r.IntN(50000))
			b = header(b, "DKIM-Signature", string(foldedBase64([]byte(fmt.Sprintf(
				"v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=%s; t=%d; x=%d; h=to:subject:message-id:date:from:mime-version:from:to:cc:subject:date:message-id:reply-to; bh=%s=; b=",
				fp.domain, sel, date.Unix(), date.Unix()+604800, randomBase64(nil, r, 43))), r, 344)))
			b = header(b, "Authentication-Results", fmt.Sprintf("mx1.example.org; dkim=pass (2048-bit key; unprotected) header.d=%s header.i=@%s header.a=rsa-sha256 header.s=%s header.b=%s; spf=pass (sender IP is %d.%d.%d.%d) smtp.mailfrom=%s; dmarc=pass (p=none dis=none) header.from=%s",
				fp.domain, fp.domain, sel, randomBase64(nil, r, 8), 1+r.IntN(223), r.IntN(256), r.IntN(256), 1+r.IntN(254), fp.addr, fp.domain))
		}
	}
	b = header(b, "MIME-Version", "1.0")
	b = header(b, "From", address(fp))
	if th.list {
		b = header(b, "To", "golang-nuts <golang-nuts@googlegroups.com>")
	} else {
		b = header(b, "To", addressList(g, to))
	}
	if len(cc) > 0 {
		b = header(b, "Cc", addressList(g, cc))
	}
	b = header(b, "Subject", encodeHeaderText(r, subject))
	b = header(b, "Date", local.Format(dateLayout))
	b = header(b, "Message-ID", msgID)
	if isReply && len(th.refs) > 0 {
		b = header(b, "In-Reply-To", th.refs[len(th.refs)-1])
		b = header(b, "References", strings.Join(th.refs, " "))
	}
	if th.list {
		b = header(b, "List-Id", "<golang-nuts.googlegroups.com>")
		b = header(b, "List-Archive", "<https://groups.google.com/group/golang-nuts/>")
		b = header(b, "List-Unsubscribe", "<mailto:golang-nuts+unsubscribe@googlegroups.com>, <https://groups.google.com/group/golang-nuts/subscribe>")
		b = header(b, "Precedence", "list")
	}
	switch r.IntN(4) {
	case 0:
		b = header(b, "User-Agent", "Mozilla Thunderbird")
	case 1:
		b = header(b, "X-Mailer", "Apple Mail (2.3774.300.61.1.2)")
	}
	return b
}

// foldedBase64 appends n random base64 characters to prefix, with a space
// every 72 characters so that the header folds.
func foldedBase64(prefix []byte, r *rand.Rand, n int) []byte {
	b := prefix
	for n > 0 {
		k := min(n, 72)
		b = randomBase64(b, r, k)
		n -= k
		if n > 0 {
			b = append(b, ' ')
		}
	}
	return b
}

// A paragraph of a message's text; quoted ones are lines of earlier text.
type paragraph struct {
	text   []byte
	quoted bool
}

// compose builds the text of a message, about budget bytes of plain text:
// greeting, new paragraphs, closing, signature, and the quote of the
// thread's previous message. It leaves the wrapped plain text in g.plain.
func (g *generator) compose(from int, to []int, th *thread, isReply bool, fwd *attInfo, budget int64) []paragraph {
	r := g.r
	l := th.lang
	fp := g.person(from)
	var quote []byte
	var attribution string
	if isReply && len(th.last) > 0 {
		quoteBudget := budget * int64(40+r.IntN(45)) / 100
		last := th.last
		if int64(len(last))+int64(len(last))/30 > quoteBudget {
			cut := int(quoteBudget * 30 / 32)
			for cut > 0 && last[cut-1] != '\n' {
				cut--
			}
			last = last[:cut]
		}
		for _, line := range strings.SplitAfter(string(last), "\n") {
			if line == "" {
				continue
			}
			if line[0] == '>' || line == "\n" {
				quote = append(quote, '>')
			} else {
				quote = append(quote, "> "...)
			}
			quote = append(quote, line...)
		}
		attribution = fmt.Sprintf(l.wrote, th.date.In(fp.zone).Format("Mon, Jan 2, 2006 at 3:04 PM"), g.person(th.from).name)
	}

	var paras []paragraph
	size := int64(len(quote))
	add := func(s []byte) {
		paras = append(paras, paragraph{text: s})
		size += int64(len(s)) + 2
	}
	if !th.list && r.IntN(5) > 0 {
		name := g.person(-1).first
		if len(to) > 0 {
			name = g.person(to[0]).first
		}
		add([]byte(fmt.Sprintf(pick(r, l.greetings), name)))
	}
	if fwd != nil {
		add([]byte(fmt.Sprintf("%s\n%s: %s", l.forward, "Subject", fwd.subject)))
	}
	tail := int64(len(fp.sig)) + 40
	if d, ok := g.disclaimers[fp.domain]; ok {
		tail += int64(len(d))
	}
	for first := true; first || size+tail < budget; first = false {
		add(l.appendParagraph(nil, r))
	}
	add([]byte(pick(r, l.closings) + "\n" + fp.first))
	sig := paragraph{text: []byte(strings.TrimSuffix(fp.sig, "\n"))}
	paras = append(paras, sig)
	if d, ok := g.disclaimers[fp.domain]; ok {
		add([]byte(d))
	}
	if th.list {
		add([]byte("--\nYou received this message because you are subscribed to the Google Groups \"golang-nuts\" group.\nTo unsubscribe from this group and stop receiving emails from it, send an email to golang-nuts+unsubscribe@googlegroups.com."))
	}
	if quote != nil {
		q := []paragraph{{text: []byte(attribution)}, {text: quote, quoted: true}}
		if r.IntN(4) == 0 {
			// Bottom-posting: quote first.
			paras = append(q, paras...)
		} else {
			paras = append(paras, q...)
		}
	}

	g.plain = g.plain[:0]
	for k, p := range paras {
		if k > 0 {
			g.plain = append(g.plain, '\n')
		}
		if p.quoted || p.text[0] == '-' {
			g.plain = append(g.plain, p.text...)
			if p.text[len(p.text)-1] != '\n' {
				g.plain = append(g.plain, '\n')
			}
			continue
		}
		g.plain = wrap(g.plain, p.text, 72, "")
	}
	return paras
}

// renderHTML appends an HTML rendering of paras.
func renderHTML(b []byte, paras []paragraph) []byte {
	b = append(b, "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head><body><div dir=\"ltr\">\n"...)
	for _, p := range paras {
		if p.quoted {
			b = append(b, "<blockquote class=\"gmail_quote\" style=\"margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex\">\n"...)
			for _, line := range strings.Split(strings.TrimRight(string(p.text), "\n"), "\n") {
				line = strings.TrimPrefix(strings.TrimPrefix(line, ">"), " ")
				b = htmlEscape(b, []byte(line))
				b = append(b, "<br>\n"...)
			}
			b = append(b, "</blockquote>\n"...)
			continue
		}
		b = append(b, "<div>"...)
		for i, line := range strings.Split(string(p.text), "\n") {
			if i > 0 {
				b = append(b, "<br>"...)
			}
			b = htmlEscape(b, []byte(line))
		}
		b = append(b, "</div><div><br></div>\n"...)
	}
	return append(b, "</div></body></html>\n"...)
}

// flags returns the Maildir flags of message i in folder and whether it is
// still in new/.
func (g *generator) flags(folder string, i int) (string, bool) {
	r := g.r
	if folder == sentFolder {
		return "S", false
	}
	if folder == "" && i >= g.opts.messages*995/1000 && r.IntN(10) < 7 {
		return "", true
	}
	switch x := r.IntN(100); {
	case x < 6:
		return "", false
	case x < 14:
		return "RS", false
	case x < 17:
		return "FS", false
	case x < 18:
		return "FRS", false
	}
	return "S", false
}

type attPart struct {
	id   int64
	size int64
	kind uint8
	name string
}

// attachmentReader returns the bytes of attachment id: a magic number for
// its kind, then pseudo-random bytes that depend only on the seed and id.
func (g *generator) attachmentReader(a attPart) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], g.opts.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(a.id))
	copy(key[16:], "mailgen-attach")
	magic := attachmentKinds[a.kind].magic
	if a.size <= int64(len(magic)) {
		return strings.NewReader(magic[:a.size])
	}
	return io.MultiReader(strings.NewReader(magic), io.LimitReader(rand.NewChaCha8(key), a.size-int64(len(magic))))
}

func (g *generator) boundary() string {
	r := g.r
	switch r.IntN(3) {
	case 0:
		return fmt.Sprintf("000000000000%016x", r.Uint64())
	case 1:
		return fmt.Sprintf("----=_Part_%d_%d.%d", r.IntN(1000000), r.IntN(1<<31), 1600000000000+r.Int64N(1e11))
	}
	return fmt.Sprintf("Apple-Mail=_%08X-%04X-%04X-%04X-%012X", r.Uint32(), r.IntN(1<<16), r.IntN(1<<16), r.IntN(1<<16), r.Uint64()>>16)
}

// writeMIME writes the headers in g.hdr and the body: the text of paras
// (and its HTML alternative) and the attachments.
func (g *generator) writeMIME(w *countWriter, l *language, paras []paragraph, withHTML bool, atts []attPart) error {
	r := g.r
	// Encode the plain text.
	cte := "7bit"
	for _, c := range g.plain {
		if c >= 0x80 {
			cte = "8bit"
			break
		}
	}
	if l.code != "en" || cte != "7bit" {
		switch x := r.IntN(100); {
		case x < 35:
			cte = "quoted-printable"
		case x < 50:
			cte = "base64"
		}
	}
	plainEnc := g.encode(g.plain, cte)
	plainHdr := "Content-Type: text/plain; charset=\"UTF-8\"\nContent-Transfer-Encoding: " + cte + "\n"
	var htmlEnc []byte
	if withHTML {
		g.html = renderHTML(g.html[:0], paras)
		g.tmp = appendQuotedPrintable(g.tmp[:0], g.html)
		htmlEnc = g.tmp
	}

	w.Write(g.hdr)
	var outer string
	if len(atts) > 0 {
		outer = g.boundary()
		fmt.Fprintf(w, "Content-Type: multipart/mixed; boundary=\"%s\"\n\n", outer)
		if r.IntN(2) == 0 {
			w.WriteString("This is a multi-part message in MIME format.\n")
		}
		fmt.Fprintf(w, "\n--%s\n", outer)
	}
	if withHTML {
		alt := g.boundary()
		fmt.Fprintf(w, "Content-Type: multipart/alternative; boundary=\"%s\"\n\n--%s\n%s\n", alt, alt, plainHdr)
		w.Write(plainEnc)
		fmt.Fprintf(w, "\n--%s\nContent-Type: text/html; charset=\"UTF-8\"\nContent-Transfer-Encoding: quoted-printable\n\n", alt)
		w.Write(htmlEnc)
		fmt.Fprintf(w, "\n--%s--\n", alt)
	} else {
		w.WriteString(plainHdr + "\n")
		w.Write(plainEnc)
	}
	for _, a := range atts {
		kind := attachmentKinds[a.kind]
		fmt.Fprintf(w, "\n--%s\nContent-Type: %s; name=\"%s\"\nContent-Disposition: attachment; filename=\"%s\"\nContent-Transfer-Encoding: base64\nX-Attachment-Id: f_%s\nContent-ID: <f_%s>\n\n",
			outer, kind.ctype, a.name, a.name, randomBase64(nil, r, 9), randomBase64(nil, r, 9))
		if err := writeBase64(w, g.attachmentReader(a)); err != nil {
			return err
		}
		g.st.attParts++
		g.st.attBytes += a.size
	}
	if outer != "" {
		fmt.Fprintf(w, "--%s--\n", outer)
	}
	return nil
}

// encode returns src in the transfer encoding cte, in g.enc.
func (g *generator) encode(src []byte, cte string) []byte {
	switch cte {
	case "quoted-printable":
		g.enc = appendQuotedPrintable(g.enc[:0], src)
	case "base64":
		g.enc = g.enc[:0]
		var w sliceWriter
		w.b = g.enc
		writeBase64(&w, strings.NewReader(string(src)))
		g.enc = w.b
	default:
		g.enc = append(g.enc[:0], src...)
	}
	return g.enc
}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

// writeMaildir writes one message file into folder through tmp/, names it
// the Dovecot way with its size, sets its mtime and returns its size.
func (g *generator) writeMaildir(folder string, date time.Time, i int, flags string, isNew bool, write func(*countWriter) error) (int64, error) {
	dir := filepath.Join(g.opts.out, folder)
	base := fmt.Sprintf("%d.M%dP%dQ%d.mailgen.example", date.Unix(), (i*7919)%1000000, 1000+(i*31)%30000, i+1)
	tmp := filepath.Join(dir, "tmp", base)
	f, err := os.Create(tmp)
	if err != nil {
		return 0, fmt.Errorf("write message %d: %w", i+1, err)
	}
	g.bw.Reset(f)
	w := &countWriter{w: g.bw}
	err = write(w)
	if err == nil {
		err = g.bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write message %d: %w", i+1, err)
	}
	name := fmt.Sprintf("%s,S=%d,W=%d", base, w.n, w.n+w.lines)
	sub := "new"
	if !isNew {
		sub = "cur"
		name += ":2," + flags
	}
	final := filepath.Join(dir, sub, name)
	if err := os.Rename(tmp, final); err != nil {
		return 0, fmt.Errorf("write message %d: %w", i+1, err)
	}
	if err := os.Chtimes(final, date, date); err != nil {
		return 0, fmt.Errorf("write message %d: %w", i+1, err)
	}
	g.st.messages++
	g.st.bytes += w.n
	return w.n, nil
}

// writeOne writes the single large message of -one-message-size.
func (g *generator) writeOne() error {
	date := epoch.Add(span / 2)
	th := &thread{lang: languages[0], subject: "Full backup of the project share", date: date}
	from := g.somebody(th.lang)
	th.from, th.people = from, []int{from}
	g.hdr = g.headers(g.hdr[:0], from, []int{-1}, nil, th, th.subject, g.messageID(g.person(from).domain), date, false, 10000)
	paras := g.compose(from, []int{-1}, th, false, nil, 1500)
	a := attPart{id: bigAttID, kind: 5, name: "project-share.zip"}

	// Measure everything but the attachment's base64, then size the
	// attachment to fill the rest. The MIME writer draws the same random
	// numbers both times, whatever the attachment's size.
	g.r = rand.New(rand.NewPCG(g.opts.seed, streamOne))
	probe := &countWriter{w: bufio.NewWriter(io.Discard)}
	if err := g.writeMIME(probe, th.lang, paras, false, []attPart{a}); err != nil {
		return err
	}
	g.r = rand.New(rand.NewPCG(g.opts.seed, streamOne))
	g.st = stats{}
	avail := g.opts.oneMessageSize - probe.n
	a.size = max(0, avail*57/77)
	for a.size > 0 && base64Size(a.size) > avail {
		a.size--
	}
	_, err := g.writeMaildir("", date, 0, "S", false, func(w *countWriter) error {
		return g.writeMIME(w, th.lang, paras, false, []attPart{a})
	})
	return err
}
