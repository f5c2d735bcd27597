package imap

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/mutf7"
)

// gmailServer is a fake of Gmail's IMAP server, of our own, as far as a
// Source needs it, following Gmail's documented behaviour
// (https://developers.google.com/gmail/imap/imap-extensions): it offers
// X-GM-EXT-1 and CONDSTORE, lists its folders with their special-use
// attributes in a plain LIST, and answers the FETCH items X-GM-MSGID (a
// message's id, the same whatever its labels) and X-GM-LABELS (system
// labels as quoted strings with their backslash, user labels as atoms
// or quoted strings in modified UTF-7). A label change raises the
// message's MODSEQ. All Mail holds every message but those of Spam and
// Trash; the label folders (INBOX, Work...) are views and cannot be
// examined here: a test that reads them fails.
//
// Once budget bytes of bodies have been sent, a FETCH of bodies is
// refused with Gmail's "NO [OVERQUOTA] Account exceeded command or
// bandwidth limits. (Failure)"; throttle refuses the next UID FETCHes of
// labels with "NO [THROTTLED]"; loginRefusal refuses every LOGIN.
type gmailServer struct {
	t    *testing.T
	addr string

	mu        sync.Mutex
	boxes     []*gmBox
	modseq    uint64
	nextMsgID uint64
	budget    int64 // body bytes left before OVERQUOTA; < 0: no cap
	// utf8 offers UTF8=ACCEPT: utf8Labels then sends the labels of a
	// connection that enabled it in UTF-8, as RFC 6855 has mailbox names,
	// else in modified UTF-7 all the same.
	utf8, utf8Labels bool
	// loginRefusal, when set, is the answer to every LOGIN.
	loginRefusal string
	throttle     int
	// bodies counts the bodies sent, by X-GM-MSGID.
	bodies map[uint64]int
	// log holds every command received, without its tag.
	log []string
	// sent counts the bytes sent to clients.
	sent atomic.Int64
}

// gmBox is a mailbox of the fake.
type gmBox struct {
	name        string // modified UTF-7, as on the wire
	attrs       string // LIST attributes
	selectable  bool   // holds messages of its own (All Mail, Spam, Trash)
	uidValidity uint32
	uidNext     uint32
	msgs        []*gmMsg
}

type gmMsg struct {
	uid    uint32
	msgID  uint64
	labels []string // as X-GM-LABELS names them: `\Inbox`, "Work"
	flags  []string
	date   time.Time
	body   []byte
	modseq uint64
}

// startGmail starts the fake with Gmail's folders, empty, on 127.0.0.1.
// It stops when the test ends.
func startGmail(t *testing.T) *gmailServer {
	t.Helper()
	s := &gmailServer{t: t, budget: -1, bodies: map[uint64]int{}, modseq: 100, nextMsgID: 1600000000000000000}
	for i, b := range []struct {
		name, attrs string
		sel         bool
	}{
		{"INBOX", `\HasNoChildren`, false},
		{"[Gmail]", `\HasChildren \Noselect`, false},
		{"[Gmail]/All Mail", `\All \HasNoChildren`, true},
		{"[Gmail]/Drafts", `\Drafts \HasNoChildren`, false},
		{"[Gmail]/Important", `\HasNoChildren \Important`, false},
		{"[Gmail]/Sent Mail", `\HasNoChildren \Sent`, false},
		{"[Gmail]/Spam", `\HasNoChildren \Junk`, true},
		{"[Gmail]/Starred", `\Flagged \HasNoChildren`, false},
		{"[Gmail]/Trash", `\HasNoChildren \Trash`, true},
		{"R&-D", `\HasNoChildren`, false},
		{"Re&AOc-us", `\HasNoChildren`, false},
		{"Work", `\HasChildren`, false},
		{"Work/Receipts", `\HasNoChildren`, false},
	} {
		s.boxes = append(s.boxes, &gmBox{name: b.name, attrs: b.attrs, selectable: b.sel, uidValidity: uint32(10 + i), uidNext: 1})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	var (
		wg    sync.WaitGroup
		cmu   sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			conns = append(conns, c)
			cmu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *gmailServer) box(name string) *gmBox {
	for _, b := range s.boxes {
		if b.name == name {
			return b
		}
	}
	return nil
}

// add puts a message into All Mail (or Spam, Trash) with labels and
// flags, and returns its X-GM-MSGID.
func (s *gmailServer) add(mailbox string, body string, labels, flags []string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.box(mailbox)
	s.modseq++
	s.nextMsgID += 17
	b.msgs = append(b.msgs, &gmMsg{
		uid: b.uidNext, msgID: s.nextMsgID, labels: labels, flags: flags, modseq: s.modseq,
		date: time.Date(2026, 3, 1, 10, int(b.uidNext), 0, 0, time.UTC), body: []byte(strings.ReplaceAll(body, "\n", "\r\n")),
	})
	b.uidNext++
	return s.nextMsgID
}

// label adds a label to the message of All Mail with X-GM-MSGID id, as
// the web interface would: its MODSEQ goes up.
func (s *gmailServer) label(id uint64, label string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.box("[Gmail]/All Mail").msgs {
		if m.msgID == id {
			s.modseq++
			m.labels = append(m.labels, label)
			m.modseq = s.modseq
			return
		}
	}
	s.t.Fatalf("no message %d", id)
}

// commands returns the commands received so far, and forgets them.
func (s *gmailServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.log
	s.log = nil
	return out
}

const gmCaps = "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS ENABLE MOVE CONDSTORE SPECIAL-USE"

func (s *gmailServer) serve(c net.Conn) {
	br := bufio.NewReader(c)
	bw := bufio.NewWriter(&countedWriter{w: c, n: &s.sent})
	defer bw.Flush()
	fmt.Fprintf(bw, "* OK Gimap ready for requests from 127.0.0.1 fake\r\n")
	var (
		sel     *gmBox
		enabled bool // UTF8=ACCEPT
	)
	s.mu.Lock()
	caps := gmCaps
	if s.utf8 {
		caps += " UTF8=ACCEPT"
	}
	s.mu.Unlock()
	for {
		if bw.Flush() != nil {
			return
		}
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		tag, rest, _ := strings.Cut(line, " ")
		name, args, _ := strings.Cut(rest, " ")
		name = strings.ToUpper(name)
		uid := false
		if name == "UID" {
			uid = true
			name, args, _ = strings.Cut(args, " ")
			name = strings.ToUpper(name)
		}
		s.mu.Lock()
		s.log = append(s.log, rest)
		s.mu.Unlock()
		switch name {
		case "CAPABILITY":
			fmt.Fprintf(bw, "* CAPABILITY %s\r\n%s OK Thats all she wrote!\r\n", caps, tag)
		case "LOGIN":
			toks := gmTokens(args)
			s.mu.Lock()
			refusal := s.loginRefusal
			s.mu.Unlock()
			if refusal != "" {
				fmt.Fprintf(bw, "%s %s\r\n", tag, refusal)
				continue
			}
			if len(toks) != 2 || toks[0] != "alice@gmail.com" || toks[1] != "app-password" {
				fmt.Fprintf(bw, "%s NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n", tag)
				continue
			}
			fmt.Fprintf(bw, "%s OK [CAPABILITY %s] alice@gmail.com authenticated (Success)\r\n", tag, caps)
		case "ENABLE":
			if strings.Contains(strings.ToUpper(args), "UTF8=ACCEPT") && strings.Contains(caps, "UTF8=ACCEPT") {
				enabled = true
				fmt.Fprintf(bw, "* ENABLED UTF8=ACCEPT\r\n")
			}
			fmt.Fprintf(bw, "%s OK Success\r\n", tag)
		case "NOOP", "ID":
			fmt.Fprintf(bw, "%s OK Success\r\n", tag)
		case "LOGOUT":
			fmt.Fprintf(bw, "* BYE LOGOUT Requested\r\n%s OK 73 good day (Success)\r\n", tag)
			return
		case "LIST":
			s.mu.Lock()
			for _, b := range s.boxes {
				name := b.name
				if d, err := mutf7.Decode(name); err == nil && enabled {
					name = d
				}
				fmt.Fprintf(bw, "* LIST (%s) \"/\" \"%s\"\r\n", b.attrs, name)
			}
			s.mu.Unlock()
			fmt.Fprintf(bw, "%s OK Success\r\n", tag)
		case "SELECT", "EXAMINE":
			toks := gmTokens(args)
			s.mu.Lock()
			b := s.box(toks[0])
			if b == nil || !b.selectable {
				s.mu.Unlock()
				// Not so on Gmail: the test fails if a Source reads a view.
				s.t.Errorf("%s %s: a view of All Mail was read", name, toks[0])
				fmt.Fprintf(bw, "%s NO [NONEXISTENT] Unknown Mailbox: %s (Failure)\r\n", tag, toks[0])
				continue
			}
			sel = b
			fmt.Fprintf(bw, "* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing)\r\n")
			fmt.Fprintf(bw, "* OK [PERMANENTFLAGS ()] Flags permitted.\r\n")
			fmt.Fprintf(bw, "* OK [UIDVALIDITY %d] UIDs valid.\r\n", b.uidValidity)
			fmt.Fprintf(bw, "* %d EXISTS\r\n* 0 RECENT\r\n", len(b.msgs))
			fmt.Fprintf(bw, "* OK [UIDNEXT %d] Predicted next UID.\r\n", b.uidNext)
			fmt.Fprintf(bw, "* OK [HIGHESTMODSEQ %d]\r\n", s.modseq)
			s.mu.Unlock()
			fmt.Fprintf(bw, "%s OK [READ-ONLY] %s selected. (Success)\r\n", tag, toks[0])
		case "CLOSE", "UNSELECT":
			sel = nil
			fmt.Fprintf(bw, "%s OK Returned to authenticated state. (Success)\r\n", tag)
		case "FETCH":
			if sel == nil {
				fmt.Fprintf(bw, "%s BAD Could not parse command\r\n", tag)
				continue
			}
			s.fetch(bw, tag, sel, uid, args, enabled)
		case "SEARCH":
			if sel == nil {
				fmt.Fprintf(bw, "%s BAD Could not parse command\r\n", tag)
				continue
			}
			s.search(bw, tag, sel, uid, args)
		default:
			fmt.Fprintf(bw, "%s BAD Unknown command\r\n", tag)
		}
	}
}

// gmTokens splits command arguments into atoms and quoted strings.
func gmTokens(args string) []string {
	var out []string
	for args = strings.TrimSpace(args); args != ""; args = strings.TrimSpace(args) {
		if args[0] != '"' {
			tok, rest, _ := strings.Cut(args, " ")
			out = append(out, tok)
			args = rest
			continue
		}
		var b strings.Builder
		i := 1
		for ; i < len(args) && args[i] != '"'; i++ {
			if args[i] == '\\' {
				i++
			}
			b.WriteByte(args[i])
		}
		out = append(out, b.String())
		args = args[min(i+1, len(args)):]
	}
	return out
}

// inSet reports whether n is in an IMAP sequence set, * being max.
func inSet(set string, n, max uint32) bool {
	num := func(s string) uint32 {
		if s == "*" {
			return max
		}
		v, _ := strconv.ParseUint(s, 10, 32)
		return uint32(v)
	}
	for _, r := range strings.Split(set, ",") {
		a, b, ok := strings.Cut(r, ":")
		lo, hi := num(a), num(a)
		if ok {
			hi = num(b)
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

var changedSinceRE = regexp.MustCompile(`(?i)\(CHANGEDSINCE (\d+)\)\s*$`)

func (s *gmailServer) fetch(bw *bufio.Writer, tag string, b *gmBox, uid bool, args string, utf8 bool) {
	set, items, _ := strings.Cut(args, " ")
	var since uint64
	if m := changedSinceRE.FindStringSubmatch(items); m != nil {
		since, _ = strconv.ParseUint(m[1], 10, 64)
		items = items[:len(items)-len(m[0])]
	}
	items = strings.ToUpper(strings.Trim(strings.TrimSpace(items), "()"))
	has := func(item string) bool { return slices.Contains(strings.Fields(items), item) }
	body := has("BODY.PEEK[]") || has("BODY[]") || has("RFC822")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.throttle > 0 && has("X-GM-LABELS") {
		s.throttle--
		fmt.Fprintf(bw, "%s NO [THROTTLED] Request throttled, try again later. (Failure)\r\n", tag)
		return
	}
	var max uint32
	if n := len(b.msgs); n > 0 {
		max = uint32(n)
		if uid {
			max = b.msgs[n-1].uid
		}
	}
	for i, m := range b.msgs {
		seq := uint32(i + 1)
		key := seq
		if uid {
			key = m.uid
		}
		if !inSet(set, key, max) || m.modseq <= since {
			continue
		}
		if body && s.budget >= 0 && int64(len(m.body)) > s.budget {
			fmt.Fprintf(bw, "%s NO [OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)\r\n", tag)
			return
		}
		var f []string
		if uid || has("UID") {
			f = append(f, fmt.Sprintf("UID %d", m.uid))
		}
		if has("FLAGS") {
			f = append(f, "FLAGS ("+strings.Join(m.flags, " ")+")")
		}
		if has("INTERNALDATE") {
			f = append(f, "INTERNALDATE "+strconv.Quote(m.date.Format("02-Jan-2006 15:04:05 -0700")))
		}
		if has("RFC822.SIZE") {
			f = append(f, fmt.Sprintf("RFC822.SIZE %d", len(m.body)))
		}
		if has("X-GM-MSGID") {
			f = append(f, fmt.Sprintf("X-GM-MSGID %d", m.msgID))
		}
		if has("X-GM-LABELS") {
			var ls []string
			for _, l := range m.labels {
				if d, err := mutf7.Decode(l); err == nil && utf8 && s.utf8Labels {
					l = d
				}
				if strings.HasPrefix(l, `\`) || strings.ContainsAny(l, ` "()`) || !isASCII(l) {
					l = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(l) + `"`
				}
				ls = append(ls, l)
			}
			f = append(f, "X-GM-LABELS ("+strings.Join(ls, " ")+")")
		}
		if has("MODSEQ") || since > 0 {
			f = append(f, fmt.Sprintf("MODSEQ (%d)", m.modseq))
		}
		fmt.Fprintf(bw, "* %d FETCH (%s", seq, strings.Join(f, " "))
		if body {
			if len(f) > 0 {
				bw.WriteString(" ")
			}
			fmt.Fprintf(bw, "BODY[] {%d}\r\n", len(m.body))
			bw.Write(m.body)
			s.bodies[m.msgID]++
			if s.budget >= 0 {
				s.budget -= int64(len(m.body))
			}
		}
		bw.WriteString(")\r\n")
	}
	fmt.Fprintf(bw, "%s OK Success\r\n", tag)
}

func (s *gmailServer) search(bw *bufio.Writer, tag string, b *gmBox, uid bool, args string) {
	toks := gmTokens(args)
	s.mu.Lock()
	defer s.mu.Unlock()
	var max uint32
	if n := len(b.msgs); n > 0 {
		max = b.msgs[n-1].uid
	}
	var found []string
	for i, m := range b.msgs {
		if len(toks) == 2 && strings.EqualFold(toks[0], "UID") && !inSet(toks[1], m.uid, max) {
			continue
		}
		n := uint32(i + 1)
		if uid {
			n = m.uid
		}
		found = append(found, strconv.FormatUint(uint64(n), 10))
	}
	bw.WriteString("* SEARCH")
	for _, n := range found {
		bw.WriteString(" " + n)
	}
	fmt.Fprintf(bw, "\r\n%s OK SEARCH completed (Success)\r\n", tag)
}

// countedWriter counts the bytes written through it.
type countedWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countedWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
