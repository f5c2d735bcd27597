package imap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive"
)

// Hash is the SHA-256 of a message with its line ends made CRLF and NUL
// bytes made 0x80 (servers such as Dovecot store LF and return CRLF, and
// cannot store NUL, so the raw bytes of a message restored from a Maildir
// do not come back byte for byte).
type Hash [sha256.Size]byte

// Hasher computes a Hash while the message streams through Write, and
// keeps the Message-ID of its header.
type Hasher struct {
	h     hash.Hash
	prev  byte
	n     int64
	head  bytes.Buffer
	inHdr bool
}

// NewHasher returns an empty Hasher.
func NewHasher() *Hasher { return &Hasher{h: sha256.New(), inHdr: true} }

const maxHeader = 64 << 10

// Write adds p to the message.
func (h *Hasher) Write(p []byte) (int, error) {
	if h.inHdr {
		room := maxHeader - h.head.Len()
		h.head.Write(p[:min(room, len(p))])
		if h.head.Len() >= maxHeader || bytes.Contains(h.head.Bytes(), []byte("\n\n")) || bytes.Contains(h.head.Bytes(), []byte("\r\n\r\n")) {
			h.inHdr = false
		}
	}
	n := len(p)
	if bytes.IndexByte(p, 0) >= 0 {
		// IMAP servers cannot store NUL; Dovecot gives 0x80 back.
		p = bytes.ReplaceAll(p, []byte{0}, []byte{0x80})
	}
	start := 0
	for i, b := range p {
		if b == '\n' && (i > 0 && p[i-1] != '\r' || i == 0 && h.prev != '\r') {
			h.h.Write(p[start:i])
			h.h.Write([]byte{'\r'})
			h.n++
			start = i
		}
	}
	h.h.Write(p[start:])
	h.n += int64(len(p))
	if len(p) > 0 {
		h.prev = p[len(p)-1]
	}
	return n, nil
}

// Sum returns the hash of what was written.
func (h *Hasher) Sum() Hash {
	var s Hash
	copy(s[:], h.h.Sum(nil))
	return s
}

// Size is the number of bytes hashed (after the CRLF conversion).
func (h *Hasher) Size() int64 { return h.n }

// MessageID returns the Message-ID header, or "".
func (h *Hasher) MessageID() string {
	b := h.head.Bytes()
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		b = b[:i+2]
	} else if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		b = b[:i+4]
	} else {
		b = append(bytes.Clone(b), "\r\n\r\n"...)
	}
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(m.Header.Get("Message-Id"))
}

// HashOf hashes a whole message.
func HashOf(r io.Reader) (Hash, string, error) {
	h := NewHasher()
	if _, err := io.Copy(h, r); err != nil {
		return Hash{}, "", err
	}
	return h.Sum(), h.MessageID(), nil
}

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
}

func openTarget(ctx context.Context, o *Options, mo MapOptions, log *slog.Logger) (*target, error) {
	c, err := dial(ctx, o)
	if err != nil {
		return nil, err
	}
	t := &target{opts: o, mo: mo, log: log, c: c, delim: '/', special: map[string]string{}, mailboxes: map[string]bool{}}
	caps := c.c.Caps()
	t.createSU = caps.Has(goimap.CapCreateSpecialUse)
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

func (t *target) close() { t.c.logout() }

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
	if !mapped && f.SpecialUse != "" {
		if m, ok := t.special[f.SpecialUse]; ok {
			return m
		}
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
		if i == len(parts) && use != "" && t.createSU {
			co = &goimap.CreateOptions{SpecialUse: []goimap.MailboxAttr{goimap.MailboxAttr(use)}}
		}
		err := t.c.c.Create(name, co).Wait()
		var ie *goimap.Error
		if err != nil && errors.As(err, &ie) && ie.Code == goimap.ResponseCodeAlreadyExists {
			err = nil
		}
		if err != nil && co != nil {
			// Some servers refuse the attribute: create it plainly.
			t.log.Warn("create with special use refused", "mailbox", name, "use", use, "err", err)
			err = t.c.c.Create(name, nil).Wait()
			if err != nil && errors.As(err, &ie) && ie.Code == goimap.ResponseCodeAlreadyExists {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("create %q: %w", name, err)
		}
		t.mailboxes[name] = true
	}
	if use != "" {
		if _, ok := t.special[use]; !ok {
			t.special[use] = mailbox
		}
	}
	return nil
}

// targetMsg is one message found on the target.
type targetMsg struct {
	UID       goimap.UID
	Date      time.Time
	Size      int64
	Flags     []string
	Hash      Hash
	MessageID string
}

// contents lists and hashes every message of mailbox (selected with
// SELECT, so that PERMANENTFLAGS is known); withBodies false only lists.
func (t *target) contents(mailbox string, withBodies bool) ([]targetMsg, *goimap.SelectData, error) {
	sel, err := t.c.c.Select(mailbox, nil).Wait()
	if err != nil {
		return nil, nil, fmt.Errorf("select %q: %w", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil, sel, nil
	}
	fo := &goimap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true}
	if withBodies {
		fo.BodySection = []*goimap.FetchItemBodySection{{Peek: true}}
	}
	var set goimap.SeqSet
	set.AddRange(1, 0)
	cmd := t.c.c.Fetch(set, fo)
	var out []targetMsg
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var m targetMsg
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				m.UID = it.UID
			case imapclient.FetchItemDataInternalDate:
				m.Date = it.Time
			case imapclient.FetchItemDataRFC822Size:
				m.Size = it.Size
			case imapclient.FetchItemDataFlags:
				for _, f := range it.Flags {
					if f != "\\Recent" {
						m.Flags = append(m.Flags, string(f))
					}
				}
			case imapclient.FetchItemDataBodySection:
				h := NewHasher()
				if _, err := io.Copy(h, it.Literal); err != nil {
					cmd.Close()
					return nil, nil, fmt.Errorf("fetch %q: %w", mailbox, err)
				}
				m.Hash, m.MessageID = h.Sum(), h.MessageID()
			}
		}
		out = append(out, m)
	}
	if err := cmd.Close(); err != nil {
		return nil, nil, fmt.Errorf("fetch %q: %w", mailbox, err)
	}
	return out, sel, nil
}
