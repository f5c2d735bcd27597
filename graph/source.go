package graph

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"codeberg.org/planb/planb/archive"
)

// Source is one mailbox as an archive.Source. Make it with Client.Source.
// It is safe for concurrent Sync calls on different folders; Folders must
// have been called before Sync.
type Source struct {
	c       *Client
	mailbox string
	lim     limiter
	// valuePrefix is the URL of the mailbox's messages, with a slash.
	valuePrefix string

	mu  sync.Mutex
	ids map[string]string // folder path → folder id, from Folders
}

var _ archive.Source = (*Source)(nil)

// Source returns the source of one mailbox, named by its user id, user
// principal name or (for most mailboxes) mail address.
func (c *Client) Source(mailbox string) *Source {
	return &Source{
		c: c, mailbox: mailbox, lim: newLimiter(c.opts.Connections),
		valuePrefix: c.endpoint + "/v1.0/users/" + url.PathEscape(mailbox) + "/messages/",
	}
}

// Describe implements archive.Source: "graph://TENANT/MAILBOX".
func (s *Source) Describe() string {
	return "graph://" + s.c.opts.Tenant + "/" + s.mailbox
}

// specialUse maps Graph's well-known folder names to RFC 6154 attributes.
var specialUse = []struct{ name, attr string }{
	{"inbox", ""},
	{"sentitems", archive.Sent},
	{"drafts", archive.Drafts},
	{"deleteditems", archive.Trash},
	{"junkemail", archive.Junk},
	{"archive", archive.Archive},
}

// Folders implements archive.Source: the whole folder tree, hidden folders
// included. The inbox is "INBOX" (whatever its display name), other paths
// are display names joined with "/" (a "/" inside a name becomes "∕",
// U+2215); Folder.Name keeps the display names.
func (s *Source) Folders(ctx context.Context) ([]archive.Folder, error) {
	ctx = withLimiter(ctx, s.lim)
	mf := s.c.gsc.Users().ByUserId(s.mailbox).MailFolders()
	wk := make(map[string]string) // folder id → well-known name
	for _, w := range specialUse {
		f, err := mf.ByMailFolderId(w.name).Get(ctx, &users.ItemMailFoldersMailFolderItemRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.ItemMailFoldersMailFolderItemRequestBuilderGetQueryParameters{Select: []string{"id"}},
		})
		if err != nil {
			err = s.c.apiError(fmt.Sprintf("mailbox %s: folder %s", s.mailbox, w.name), err)
			if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNoMailbox) {
				continue // no archive folder, say
			}
			return nil, err
		}
		wk[deref(f.GetId())] = w.name
	}

	hidden := "true"
	var out []archive.Folder
	ids := make(map[string]string)
	type node struct {
		id, path, name string
		children       int32
	}
	add := func(parent node, f models.MailFolderable) node {
		id, dn := deref(f.GetId()), deref(f.GetDisplayName())
		n := node{id: id, children: deref(f.GetChildFolderCount())}
		seg := strings.ReplaceAll(dn, "/", "\u2215")
		if parent.path == "" {
			n.path, n.name = seg, dn
		} else {
			n.path, n.name = parent.path+"/"+seg, parent.name+"/"+dn
		}
		use := ""
		switch w := wk[id]; w {
		case "inbox":
			if parent.path == "" {
				n.path = "INBOX"
			}
		case "":
		default:
			for _, su := range specialUse {
				if su.name == w {
					use = su.attr
				}
			}
		}
		if _, dup := ids[n.path]; dup {
			n.path += " (" + shortID(id) + ")"
		}
		ids[n.path] = id
		out = append(out, archive.Folder{Path: n.path, Name: n.name, Delimiter: "/", SpecialUse: use})
		return n
	}
	var walk func(parent node, list func() ([]models.MailFolderable, error)) error
	walk = func(parent node, list func() ([]models.MailFolderable, error)) error {
		folders, err := list()
		if err != nil {
			return err
		}
		for _, f := range folders {
			n := add(parent, f)
			if n.children == 0 {
				continue
			}
			err := walk(n, func() ([]models.MailFolderable, error) {
				resp, err := mf.ByMailFolderId(n.id).ChildFolders().Get(ctx, &users.ItemMailFoldersItemChildFoldersRequestBuilderGetRequestConfiguration{
					QueryParameters: &users.ItemMailFoldersItemChildFoldersRequestBuilderGetQueryParameters{IncludeHiddenFolders: &hidden},
				})
				return s.folderPages(ctx, "list folders of "+n.name, resp, err)
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(node{}, func() ([]models.MailFolderable, error) {
		resp, err := mf.Get(ctx, &users.ItemMailFoldersRequestBuilderGetRequestConfiguration{
			QueryParameters: &users.ItemMailFoldersRequestBuilderGetQueryParameters{IncludeHiddenFolders: &hidden},
		})
		return s.folderPages(ctx, "list folders", resp, err)
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.ids = ids
	s.mu.Unlock()
	return out, nil
}

// folderPages collects every page of a folder list.
func (s *Source) folderPages(ctx context.Context, op string, resp models.MailFolderCollectionResponseable, err error) ([]models.MailFolderable, error) {
	var out []models.MailFolderable
	for {
		if err != nil {
			return nil, s.c.apiError("mailbox "+s.mailbox+": "+op, err)
		}
		out = append(out, resp.GetValue()...)
		next := resp.GetOdataNextLink()
		if next == nil || *next == "" {
			return out, nil
		}
		if err := s.c.checkLink("next link", *next); err != nil {
			return nil, fmt.Errorf("mailbox %s: %s: %w", s.mailbox, op, err)
		}
		resp, err = s.c.gsc.Users().ByUserId(s.mailbox).MailFolders().WithUrl(*next).Get(ctx, nil)
	}
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

// Cursor format: version byte 1, uvarint length and folder id, delta link.
const cursorVersion = 1

func encodeCursor(folderID, deltaLink string) archive.Cursor {
	b := []byte{cursorVersion}
	b = binary.AppendUvarint(b, uint64(len(folderID)))
	b = append(b, folderID...)
	return append(b, deltaLink...)
}

// decodeCursor returns the folder id and delta link of a cursor, or false
// for a nil or foreign one.
func decodeCursor(c archive.Cursor) (folderID, deltaLink string, ok bool) {
	if len(c) < 2 || c[0] != cursorVersion {
		return "", "", false
	}
	n, k := binary.Uvarint(c[1:])
	if k <= 0 || n > uint64(len(c)-1-k) {
		return "", "", false
	}
	rest := c[1+k:]
	folderID, deltaLink = string(rest[:n]), string(rest[n:])
	if !strings.HasPrefix(deltaLink, "https://") {
		return "", "", false
	}
	return folderID, deltaLink, true
}

var messageFields = []string{"id", "changeKey", "receivedDateTime", "isRead", "isDraft", "flag", "categories"}

// Sync implements archive.Source. With a cursor of the same folder it
// follows the stored delta link; otherwise, or when the link expired, it
// lists the folder whole (after Reset).
func (s *Source) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	s.mu.Lock()
	id, ok := s.ids[f.Path]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("mailbox %s: sync %q: unknown folder", s.mailbox, f.Path)
	}
	ctx = withLimiter(ctx, s.lim)
	link := ""
	if fid, dl, ok := decodeCursor(since); ok && fid == id {
		link = dl
		if err := s.c.checkLink("stored delta link", dl); err != nil {
			// Another endpoint than the last run's (a changed cloud or
			// graph_endpoint): list the folder again.
			s.c.log.Warn("delta link of the last run not followed, listing the folder again", "mailbox", s.mailbox, "folder", f.Path, "err", err)
			link = ""
		}
	}
	if link == "" {
		if err := c.Reset(); err != nil {
			return nil, err
		}
	}
	p := &pipeline{s: s, c: c, folder: f.Path}
	defer p.abort()
	first := s.c.endpoint + "/v1.0/users/" + url.PathEscape(s.mailbox) + "/mailFolders/" + url.PathEscape(id) +
		"/messages/delta?" + url.Values{"$select": {strings.Join(messageFields, ",")}}.Encode()
	if link == "" {
		link = first
	}
	// The next page is asked for while this page's messages are fetched
	// and stored, so that the bodies' pipeline does not run dry at every
	// page boundary waiting for the server to build the next page.
	pctx, cancel := context.WithCancel(ctx)
	var pending <-chan pageResult
	defer func() {
		cancel()
		if pending != nil {
			<-pending
		}
	}()
	pending = s.fetchPage(pctx, link)
	restarted := false
	for {
		r := <-pending
		pending = nil
		if r.err != nil {
			err := s.c.apiError(fmt.Sprintf("mailbox %s: sync %q", s.mailbox, f.Path), r.err)
			if errors.Is(err, errSyncState) && !restarted {
				// Expired: list the folder again; dedup makes it cheap.
				s.c.log.Info("delta token expired, listing the folder again", "mailbox", s.mailbox, "folder", f.Path)
				restarted = true
				if err := c.Reset(); err != nil {
					return nil, err
				}
				pending = s.fetchPage(pctx, first)
				continue
			}
			return nil, err
		}
		page := r.page
		for _, l := range []struct{ what, link string }{{"next link", page.NextLink}, {"delta link", page.DeltaLink}} {
			if l.link == "" {
				continue
			}
			if err := s.c.checkLink(l.what, l.link); err != nil {
				return nil, fmt.Errorf("mailbox %s: sync %q: %w", s.mailbox, f.Path, err)
			}
		}
		if page.NextLink != "" {
			pending = s.fetchPage(pctx, page.NextLink)
		}
		for i := range page.Value {
			if err := p.item(ctx, &page.Value[i]); err != nil {
				return nil, err
			}
		}
		if err := p.drain(ctx); err != nil {
			return nil, err
		}
		switch {
		case page.NextLink != "":
		case page.DeltaLink != "":
			return encodeCursor(id, page.DeltaLink), nil
		default:
			return nil, fmt.Errorf("mailbox %s: sync %q: delta page without next or delta link", s.mailbox, f.Path)
		}
	}
}

type pageResult struct {
	page *deltaPage
	err  error
}

// fetchPage gets one delta page in the background. Its request takes a
// slot of the mailbox's limiter like any other and holds it only until
// the page is read, so it never waits on the caller.
func (s *Source) fetchPage(ctx context.Context, link string) <-chan pageResult {
	ch := make(chan pageResult, 1)
	go func() {
		page := new(deltaPage)
		err := s.c.getJSON(ctx, link, "odata.maxpagesize="+strconv.Itoa(s.c.opts.PageSize), page)
		ch <- pageResult{page: page, err: err}
	}()
	return ch
}

// deltaPage is a page of a messages delta query, with the properties of
// messageFields. It is read with encoding/json rather than the SDK's
// models: kiota's parse nodes cost about as much CPU per message as the
// rest of the connector (see BenchmarkBackupRemote).
type deltaPage struct {
	Value     []deltaMessage `json:"value"`
	NextLink  string         `json:"@odata.nextLink"`
	DeltaLink string         `json:"@odata.deltaLink"`
}

// deltaMessage is a message of a delta page: changed, new, or removed (a
// "@removed" annotation and the id only).
type deltaMessage struct {
	ID               string     `json:"id"`
	ChangeKey        string     `json:"changeKey"`
	ReceivedDateTime *time.Time `json:"receivedDateTime"`
	IsRead           bool       `json:"isRead"`
	IsDraft          bool       `json:"isDraft"`
	Flag             *struct {
		FlagStatus string `json:"flagStatus"`
	} `json:"flag"`
	Categories []string        `json:"categories"`
	Removed    json.RawMessage `json:"@removed"`
}

// flagsOf maps a message's state to IMAP flags and keywords.
func flagsOf(m *deltaMessage) []string {
	flags := []string{}
	if m.IsRead {
		flags = append(flags, archive.FlagSeen)
	}
	if m.Flag != nil && m.Flag.FlagStatus == "flagged" {
		flags = append(flags, archive.FlagFlagged)
	}
	if m.IsDraft {
		flags = append(flags, archive.FlagDraft)
	}
	for _, cat := range m.Categories {
		if k := Keyword(cat); k != "" {
			flags = append(flags, k)
		}
	}
	return flags
}

// Keyword turns an Outlook category into an IMAP keyword: characters an
// IMAP atom cannot hold (space, controls, ( ) { % * " \ ]) become "_".
// "Red category" is "Red_category".
func Keyword(category string) string {
	b := []byte(strings.TrimSpace(category))
	for i, c := range b {
		if c <= ' ' || c == 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			b[i] = '_'
		}
	}
	return string(b)
}

// op is one change reported in order: a kept, deleted or fetched message.
type op struct {
	kind  byte // 'k' keep, 'd' delete, 'p' put
	id    string
	flags []string
	msg   archive.Message
	done  chan fetched
}

type fetched struct {
	body io.ReadCloser
	size int64
	err  error
}

// pipeline reads up to Connections bodies ahead while reporting changes
// in the order the delta query gave them. Slots of the mailbox's limiter
// are taken in order, and only ever waited for with no fetch of this
// folder outstanding, so folders sharing a mailbox cannot deadlock.
type pipeline struct {
	s      *Source
	c      archive.Changes
	folder string
	queue  []*op
	puts   int // fetches in queue
	// work feeds the fetches to Connections long-lived goroutines, started
	// with the first: a goroutine per message would grow its stack through
	// the HTTP client's calls every time (about 2% of the backup's CPU).
	work chan *op
}

// fetch has o's body fetched by a worker; the caller holds a slot of the
// limiter, which the worker releases if the request fails.
func (p *pipeline) fetch(ctx context.Context, o *op) {
	if p.work == nil {
		n := cap(p.s.lim)
		work := make(chan *op, n)
		p.work = work
		held := withSlotHeld(ctx)
		for range n {
			go func() {
				for o := range work {
					body, size, err := p.s.value(held, o.id)
					if err != nil {
						p.s.lim.release()
					}
					o.done <- fetched{body: body, size: size, err: err}
				}
			}()
		}
	}
	p.work <- o
}

func (p *pipeline) item(ctx context.Context, m *deltaMessage) error {
	id := m.ID
	if id == "" {
		return nil
	}
	if m.Removed != nil {
		p.queue = append(p.queue, &op{kind: 'd', id: id})
		return nil
	}
	flags := flagsOf(m)
	fp := m.ChangeKey
	if p.c.Have(id, fp) {
		p.queue = append(p.queue, &op{kind: 'k', id: id, flags: flags})
		return nil
	}
	o := &op{kind: 'p', id: id, done: make(chan fetched, 1), msg: archive.Message{
		Folder: p.folder, SourceID: id, Flags: flags, Fingerprint: fp,
	}}
	if t := m.ReceivedDateTime; t != nil {
		o.msg.InternalDate = t.UTC()
	}
	// Take a slot, consuming our own queue while none is free.
	for !p.s.lim.tryAcquire() {
		if p.puts > 0 {
			if err := p.next(ctx); err != nil {
				return err
			}
			continue
		}
		if err := p.s.lim.acquire(ctx); err != nil {
			return err
		}
		break
	}
	p.queue = append(p.queue, o)
	p.puts++
	p.fetch(ctx, o)
	return nil
}

// next reports the first queued change.
func (p *pipeline) next(ctx context.Context) error {
	o := p.queue[0]
	p.queue = p.queue[1:]
	switch o.kind {
	case 'k':
		return p.c.Keep(o.id, o.flags)
	case 'd':
		return p.c.Delete(o.id)
	}
	p.puts--
	r := <-o.done
	if r.err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.s.c.log.Warn("message unreadable", "mailbox", p.s.mailbox, "folder", p.folder, "source_id", o.id, "err", r.err)
		return p.c.Skip(o.id, r.err)
	}
	o.msg.Body, o.msg.Size = r.body, r.size
	err := p.c.Put(&o.msg)
	r.body.Close()
	return err
}

// drain reports every queued change.
func (p *pipeline) drain(ctx context.Context) error {
	for len(p.queue) > 0 {
		if err := p.next(ctx); err != nil {
			return err
		}
	}
	return nil
}

// abort closes the bodies of fetches still queued (after an error) and
// stops the workers.
func (p *pipeline) abort() {
	for _, o := range p.queue {
		if o.kind == 'p' {
			if r := <-o.done; r.err == nil {
				r.body.Close()
			}
		}
	}
	p.queue = nil
	if p.work != nil {
		close(p.work)
		p.work = nil
	}
}

// value opens the raw MIME of a message (GET
// /users/{mailbox}/messages/{id}/$value). The request is built here, not
// by the SDK's request adapter, whose URI template engine and
// authentication cost more than the rest of the request; it carries the
// same bearer token (from the client's cached credential) and goes through
// the same HTTP client (headers, retries, limits). The body is read as a
// stream, unlike the SDK's Content().Get, which returns []byte. The caller
// holds a limiter slot, released when the body is closed.
func (s *Source) value(ctx context.Context, id string) (io.ReadCloser, int64, error) {
	resp, err := s.c.get(withStream(ctx), s.valuePrefix+url.PathEscape(id)+"/$value", "")
	if err != nil {
		return nil, 0, fmt.Errorf("mailbox %s: message %s: %w", s.mailbox, id, err)
	}
	return &releaseBody{ReadCloser: resp.Body, release: s.lim.release}, resp.ContentLength, nil
}

// get sends a GET request for url, which must be on the Graph endpoint's
// host (checkLink), with the client's bearer token (and Prefer: prefer,
// if not empty) through its HTTP client (headers, retries,
// the mailbox's limit of requests in flight, from ctx). An answer other
// than 200 is an *Error.
func (c *Client) get(ctx context.Context, url, prefer string) (*http.Response, error) {
	if err := c.checkLink("request", url); err != nil {
		return nil, err
	}
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return nil, c.authError(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header["Authorization"] = []string{"Bearer " + tok.Token}
	if prefer != "" {
		req.Header["Prefer"] = []string{prefer}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errorFromResponse(resp)
	}
	return resp, nil
}

// getJSON GETs url and decodes the JSON answer into v.
func (c *Client) getJSON(ctx context.Context, url, prefer string, v any) error {
	resp, err := c.get(ctx, url, prefer)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("read %s: %w", resp.Request.URL.Path, err)
	}
	// Read to the end (a chunked body's last chunk), or the connection
	// cannot carry the next request.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}
