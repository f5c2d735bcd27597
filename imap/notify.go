package imap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive/mutf7"
)

// ErrNoNotify is the error of Notify on a server that does not offer
// NOTIFY (RFC 5465), or refuses the events Notify asks for.
var ErrNoNotify = errors.New("the server does not offer NOTIFY")

// notifySet asks for an event on every mailbox of the account: new and
// expunged messages, flag changes (reported for mailboxes that are not
// selected as STATUS responses) and mailboxes created, renamed or deleted
// (LIST responses).
const notifySet = "NOTIFY SET (personal (MessageNew MessageExpunge FlagChange MailboxName))"

// notifyGrace is how long Notify goes on collecting events after the
// first: a message delivered into several folders, or several messages,
// wake the caller once.
const notifyGrace = 200 * time.Millisecond

// notifier is Notify's connection, of planb's own (go-imap has no NOTIFY
// command and drops STATUS responses it did not ask for), outside the
// pool, with NOTIFY SET in effect. A reader goroutine hands its lines
// over.
type notifier struct {
	a     *appender
	idle  bool // the server offers IDLE: events are waited for in it
	lines chan string
	done  chan struct{} // closed when the reader stops; err says why
	err   error
}

func (n *notifier) read() {
	defer close(n.done)
	for {
		l, err := n.a.readLineKeeping(maxNotifyLiteral)
		if err != nil {
			n.err = err
			return
		}
		n.lines <- l
	}
}

// maxNotifyLiteral is the largest literal the notifier keeps in a line (a
// mailbox name: Dovecot sends a name that is not ASCII as a literal of
// its UTF-8 bytes in the STATUS of an event); larger ones are skipped.
const maxNotifyLiteral = 4096

func (n *notifier) close() { n.a.nc.Close() }

// Notify waits on a connection of its own until a folder of the account
// changes (a message arrives, is expunged or flagged, a folder is created,
// renamed or deleted) or until wait has passed. It returns the paths of
// the folders that changed, and all when it cannot say which (a new
// connection: anything may have changed while none watched; a folder
// created or renamed; a mailbox it does not know). Notify must not be
// called concurrently with itself; Sync and Changed may run meanwhile.
// The connection stays open between calls; a call on a connection that
// dropped dials a new one, once (the caller paces its retries). On a
// server without NOTIFY it returns ErrNoNotify: use Idle and Changed.
func (s *Source) Notify(ctx context.Context, wait time.Duration) (folders []string, all bool, err error) {
	n, fresh, err := s.notifyConn(ctx)
	if err != nil {
		return nil, false, err
	}
	if fresh {
		return nil, true, nil
	}
	stop := context.AfterFunc(ctx, n.close)
	defer stop()
	fail := func(err error) ([]string, bool, error) {
		s.dropNotify(n)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, false, fmt.Errorf("notify: %w", err)
	}
	write := func(l string) error {
		n.a.nc.SetWriteDeadline(time.Now().Add(n.a.timeout))
		n.a.bw.WriteString(l + "\r\n")
		return n.a.bw.Flush()
	}
	tag := ""
	if n.idle {
		tag = n.a.nextTag()
		if err := write(tag + " IDLE"); err != nil {
			return fail(err)
		}
	}
	seen := map[string]bool{}
	// note takes in one line: it reports whether it was the tagged answer
	// to IDLE.
	note := func(l string) (bool, error) {
		switch {
		case strings.HasPrefix(l, "+"), trimCRLF(l) == "":
			return false, nil
		case strings.HasPrefix(l, "* "):
			if hasPrefixFold(l, "* STATUS ") {
				name, ok := statusMailbox(l[len("* STATUS "):], n.a.utf8)
				if p, known := s.pathOf(name); ok && known {
					seen[p] = true
				} else {
					all = true
				}
			} else if hasPrefixFold(l, "* LIST ") {
				all = true
			}
			return false, n.a.untagged(l)
		}
		t, ans, err := parseTagged(l)
		if err != nil {
			return false, err
		}
		if t != tag {
			return false, fmt.Errorf("answer for unknown tag %q", t)
		}
		if ans.status != "OK" {
			return true, fmt.Errorf("IDLE: %s %s", ans.status, ans.text)
		}
		return true, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	got := false
wait:
	for {
		select {
		case l := <-n.lines:
			if _, err := note(l); err != nil {
				return fail(err)
			}
			if !got && (all || len(seen) > 0) {
				got = true
				timer.Reset(notifyGrace)
			}
		case <-timer.C:
			break wait
		case <-n.done:
			return fail(n.err)
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	if n.idle {
		if err := write("DONE"); err != nil {
			return fail(err)
		}
		end := time.NewTimer(n.a.timeout)
		defer end.Stop()
		for done := false; !done; {
			select {
			case l := <-n.lines:
				if done, err = note(l); err != nil {
					return fail(err)
				}
			case <-end.C:
				return fail(errors.New("no answer to DONE"))
			case <-n.done:
				return fail(n.err)
			case <-ctx.Done():
				return fail(ctx.Err())
			}
		}
	}
	for p := range seen {
		folders = append(folders, p)
	}
	return folders, all, nil
}

// notifyConn returns Notify's connection, and whether it is new.
func (s *Source) notifyConn(ctx context.Context) (*notifier, bool, error) {
	s.mu.Lock()
	n := s.notifier
	s.mu.Unlock()
	if n != nil {
		select {
		case <-n.done:
			s.dropNotify(n)
			n = nil
		default:
			return n, false, nil
		}
	}
	a, err := dialRaw(ctx, &s.opts)
	if err != nil {
		return nil, false, fmt.Errorf("notify: %w", err)
	}
	s.pool.connected.Store(true)
	if !a.caps["NOTIFY"] {
		(&fetcher{a: a}).close()
		return nil, false, ErrNoNotify
	}
	a.nc.SetDeadline(time.Now().Add(a.timeout))
	ans, err := a.simple(notifySet)
	if err != nil {
		a.nc.Close()
		return nil, false, fmt.Errorf("notify: %w", err)
	}
	a.nc.SetDeadline(time.Time{})
	if ans.status != "OK" {
		// BADEVENT, NOTIFICATIONOVERFLOW...: as if it had no NOTIFY.
		s.log.Info("the server refused NOTIFY", "answer", ans.status+" "+ans.text)
		(&fetcher{a: a}).close()
		return nil, false, ErrNoNotify
	}
	n = &notifier{a: a, idle: a.caps["IDLE"] || a.caps["IMAP4REV2"], lines: make(chan string, 64), done: make(chan struct{})}
	go n.read()
	s.mu.Lock()
	s.notifier = n
	s.mu.Unlock()
	return n, true, nil
}

// dropNotify closes the connection of Notify.
func (s *Source) dropNotify(n *notifier) {
	s.mu.Lock()
	if s.notifier == n {
		s.notifier = nil
	}
	s.mu.Unlock()
	n.close()
}

// pathOf returns the folder path of mailbox name (UTF-8), as the last
// Folders listed it.
func (s *Source) pathOf(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, m := range s.mailboxes {
		if m == name {
			return p, true
		}
	}
	return "", false
}

// statusMailbox returns the mailbox a STATUS response names (rest is what
// follows "* STATUS "), in UTF-8: a quoted string, an atom or a literal
// (whose bytes notifier.readLine keeps). A name of ASCII bytes is modified
// UTF-7 unless utf8 (UTF8=ACCEPT is enabled); one with 8-bit bytes is
// taken as UTF-8 (Dovecot's literals). ok is false when rest names none.
func statusMailbox(rest string, utf8 bool) (name string, ok bool) {
	switch {
	case strings.HasPrefix(rest, `"`):
		var b strings.Builder
		for i := 1; i < len(rest); i++ {
			switch c := rest[i]; c {
			case '\\':
				if i+1 < len(rest) {
					i++
					b.WriteByte(rest[i])
				}
			case '"':
				name, ok = b.String(), true
				i = len(rest)
			default:
				b.WriteByte(c)
			}
		}
		if !ok {
			return "", false
		}
	case strings.HasPrefix(rest, "{"):
		head, body, found := strings.Cut(rest, "\r\n")
		k, isLit := literalAtEnd(head)
		if !found || !isLit || int64(len(body)) < k {
			return "", false
		}
		name = body[:k]
	default:
		name, _, _ = strings.Cut(rest, " ")
		if name == "" {
			return "", false
		}
	}
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", true
	}
	if !utf8 && isASCII(name) {
		d, err := mutf7.Decode(name)
		if err != nil {
			return "", false
		}
		name = d
	}
	return name, true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
