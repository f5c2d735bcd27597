package graphtest

import (
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

type deltaItem struct {
	id      string
	removed bool
}

// deltaSession is a delta round being paged through ($skiptoken).
type deltaSession struct {
	mb       *Mailbox
	folder   string
	items    []deltaItem
	pos      int
	upto     uint64
	sel      []string
	pageSize int
}

// deltaToken is the state a $deltatoken stands for.
type deltaToken struct {
	mb       *Mailbox
	folder   string
	seq      uint64
	sel      []string
	pageSize int
}

// prefer returns the Prefer header's preferences, lower-cased names.
func prefer(r *http.Request) map[string]string {
	out := make(map[string]string)
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
			out[strings.ToLower(strings.TrimSpace(name))] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return out
}

func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request, rest string) {
	prefs := prefer(r)
	s.mu.Lock()
	s.requests++
	if prefs["idtype"] != "ImmutableId" {
		s.noImmID++
	}
	s.mu.Unlock()

	t, app, user := s.authorize(w, r)
	if t == nil {
		return
	}
	if r.Method != http.MethodGet {
		graphError(w, http.StatusMethodNotAllowed, "BadRequest", "only GET is supported by this fake")
		return
	}
	var segs []string
	for _, p := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/v1.0/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			graphError(w, http.StatusBadRequest, "BadRequest", "bad path")
			return
		}
		segs = append(segs, u)
	}
	if len(segs) == 0 || segs[0] != "users" {
		graphError(w, http.StatusNotFound, "UnknownError", "no such resource: "+rest)
		return
	}
	if len(segs) == 1 {
		if s.throttled(w, nil) {
			return
		}
		s.serveUsers(w, r, t)
		return
	}

	s.mu.Lock()
	var mb *Mailbox
	for _, u := range t.users {
		if strings.EqualFold(u.ID, segs[1]) || strings.EqualFold(u.Address, segs[1]) {
			mb = u
		}
	}
	s.mu.Unlock()
	if mb == nil {
		graphError(w, http.StatusNotFound, "ErrorInvalidUser", "The requested user '"+segs[1]+"' is invalid.")
		return
	}

	st, over, wait := s.begin(mb)
	defer s.end(mb)
	if over != "" {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		graphError(w, http.StatusTooManyRequests, "ApplicationThrottled", over)
		return
	}
	if s.throttled(w, st) {
		return
	}
	s.mu.Lock()
	// A user signed in (delegated Mail.Read) reads only their own mailbox.
	denied, noMailbox := mb.denied || (app != nil && app.NoMailRead) || (user != nil && user != mb), mb.noMailbox
	s.mu.Unlock()
	if denied {
		graphError(w, http.StatusForbidden, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
		return
	}
	if noMailbox {
		graphError(w, http.StatusNotFound, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")
		return
	}

	p := segs[2:]
	switch {
	case len(p) == 1 && p[0] == "mailFolders":
		s.serveFolders(w, r, mb, "")
	case len(p) == 2 && p[0] == "mailFolders":
		s.serveFolder(w, r, mb, p[1])
	case len(p) == 3 && p[0] == "mailFolders" && p[2] == "childFolders":
		s.serveFolders(w, r, mb, p[1])
	case len(p) == 4 && p[0] == "mailFolders" && p[2] == "messages" && isDelta(p[3]):
		s.serveDelta(w, r, mb, p[1], prefs)
	case len(p) == 3 && p[0] == "messages" && p[2] == "$value":
		s.serveValue(w, r, mb, "", p[1], st)
	case len(p) == 5 && p[0] == "mailFolders" && p[2] == "messages" && p[4] == "$value":
		s.serveValue(w, r, mb, p[1], p[3], st)
	default:
		graphError(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+strings.Join(p, "/")+"'.")
	}
}

func isDelta(seg string) bool {
	switch seg {
	case "delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()":
		return true
	}
	return false
}

// begin counts a request to mb. A request over the mailbox's limit of
// concurrent requests or over its budget gets a reason and how long to
// wait, and is to be answered 429.
func (s *Server) begin(mb *Mailbox) (st *MailboxStats, reason string, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := strings.ToLower(mb.Address)
	st = s.stats[addr]
	st.Requests++
	st.InFlight++
	st.MaxConcurrent = max(st.MaxConcurrent, st.InFlight)
	if st.InFlight > ConcurrencyLimit {
		st.OverLimit++
		st.Throttled++
		return st, "Application is over its MailboxConcurrency limit.", time.Second
	}
	if wait, over := s.overBudget(addr, st); over {
		return st, "Application is over its request limit for this mailbox.", wait
	}
	return st, "", 0
}

func (s *Server) end(mb *Mailbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats[strings.ToLower(mb.Address)].InFlight--
}

// throttled answers a request with the configured fault, at the
// configured rate, and reports whether it did.
func (s *Server) throttled(w http.ResponseWriter, st *MailboxStats) bool {
	s.mu.Lock()
	hit := s.throttleRate > 0 && s.rng.Float64() < s.throttleRate
	if hit && s.throttleLimit < 0 {
		hit = false
	}
	if hit {
		if s.throttleLimit > 0 {
			s.throttleLimit--
			if s.throttleLimit == 0 {
				s.throttleLimit = -1
			}
		}
		if st != nil {
			st.Throttled++
		}
	}
	status, ra := s.throttleStatus, s.retryAfter
	s.mu.Unlock()
	if !hit {
		return false
	}
	if ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	if status == http.StatusServiceUnavailable {
		graphError(w, status, "ServiceUnavailable", "The service is temporarily unavailable.")
	} else {
		graphError(w, status, "TooManyRequests", "Too many requests. Please retry later.")
	}
	return true
}

func (s *Server) serveUsers(w http.ResponseWriter, r *http.Request, t *Tenant) {
	q := r.URL.Query()
	s.mu.Lock()
	size := s.usersPageSize
	if n, err := strconv.Atoi(q.Get("$top")); err == nil && n > 0 {
		size = min(n, 999, size) // $top is an upper bound, as in Graph
	}
	off, _ := strconv.Atoi(q.Get("$skiptoken"))
	users := slices.Clone(t.users)
	link := s.linkBase(r)
	var vals []any
	for i := off; i < len(users) && i < off+size; i++ {
		u := users[i]
		var mail any = u.Address
		if u.noMailbox {
			mail = nil
		}
		vals = append(vals, map[string]any{"id": u.ID, "userPrincipalName": u.Address, "mail": mail, "displayName": u.DisplayName})
	}
	s.mu.Unlock()
	resp := map[string]any{"@odata.context": "https://" + r.Host + "/v1.0/$metadata#users", "value": nonNil(vals)}
	if off+size < len(users) {
		q.Set("$skiptoken", strconv.Itoa(off+size))
		resp["@odata.nextLink"] = link + r.URL.Path + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

func (s *Server) folderJSON(mb *Mailbox, f *Folder) map[string]any {
	unread := 0
	for _, id := range f.msgs {
		if !mb.messages[id].IsRead {
			unread++
		}
	}
	return map[string]any{
		"id": f.ID, "displayName": f.DisplayName, "parentFolderId": f.ParentID,
		"childFolderCount": len(f.children), "unreadItemCount": unread, "totalItemCount": len(f.msgs),
		"isHidden": f.Hidden,
	}
}

func folderNotFound(w http.ResponseWriter) {
	graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
}

func (s *Server) serveFolder(w http.ResponseWriter, r *http.Request, mb *Mailbox, id string) {
	s.mu.Lock()
	f := mb.folder(id)
	var v map[string]any
	if f != nil {
		v = s.folderJSON(mb, f)
	}
	s.mu.Unlock()
	if f == nil {
		folderNotFound(w)
		return
	}
	v["@odata.context"] = "https://" + r.Host + "/v1.0/$metadata#users('" + mb.ID + "')/mailFolders/$entity"
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) serveFolders(w http.ResponseWriter, r *http.Request, mb *Mailbox, parentID string) {
	q := r.URL.Query()
	hidden := strings.EqualFold(q.Get("includeHiddenFolders"), "true")
	s.mu.Lock()
	parent := mb.folder(parentID)
	if parent == nil {
		s.mu.Unlock()
		folderNotFound(w)
		return
	}
	size := s.foldersPageSize
	if n, err := strconv.Atoi(q.Get("$top")); err == nil && n > 0 {
		size = n
	}
	skip, _ := strconv.Atoi(q.Get("$skip"))
	var all []*Folder
	for _, c := range parent.children {
		if hidden || !c.Hidden {
			all = append(all, c)
		}
	}
	var vals []any
	for i := skip; i < len(all) && i < skip+size; i++ {
		vals = append(vals, s.folderJSON(mb, all[i]))
	}
	link := s.linkBase(r)
	s.mu.Unlock()
	resp := map[string]any{"@odata.context": "https://" + r.Host + "/v1.0/$metadata#users('" + mb.ID + "')/mailFolders", "value": nonNil(vals)}
	if skip+size < len(all) {
		q.Set("$skip", strconv.Itoa(skip+size))
		resp["@odata.nextLink"] = link + r.URL.Path + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
}

func syncStateNotFound(w http.ResponseWriter) {
	graphError(w, http.StatusGone, "SyncStateNotFound", "The sync state generation is not found. The delta token is expired and data must be synchronized again.")
}

func (s *Server) serveDelta(w http.ResponseWriter, r *http.Request, mb *Mailbox, folderID string, prefs map[string]string) {
	q := r.URL.Query()
	pageSize := 0
	if n, err := strconv.Atoi(prefs["odata.maxpagesize"]); err == nil && n > 0 {
		pageSize = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := mb.folder(folderID)
	if f == nil {
		folderNotFound(w)
		return
	}
	var sess *deltaSession
	skipTok := q.Get("$skiptoken")
	switch deltaTok := q.Get("$deltatoken"); {
	case skipTok != "":
		sess = s.sessions[skipTok]
		if sess == nil || sess.mb != mb || sess.folder != f.ID {
			syncStateNotFound(w)
			return
		}
		delete(s.sessions, skipTok)
	case deltaTok != "":
		dt := s.deltas[deltaTok]
		if dt == nil || dt.mb != mb || dt.folder != f.ID {
			syncStateNotFound(w)
			return
		}
		sess = &deltaSession{mb: mb, folder: f.ID, upto: mb.seq, sel: dt.sel, pageSize: dt.pageSize}
		for _, id := range f.msgs {
			if mb.messages[id].changed > dt.seq {
				sess.items = append(sess.items, deltaItem{id: id})
			}
		}
		var gone []string
		for id, seq := range f.removed {
			if seq > dt.seq {
				gone = append(gone, id)
			}
		}
		slices.Sort(gone)
		for _, id := range gone {
			sess.items = append(sess.items, deltaItem{id: id, removed: true})
		}
	default:
		var sel []string
		if v := q.Get("$select"); v != "" {
			sel = strings.Split(v, ",")
		}
		sess = &deltaSession{mb: mb, folder: f.ID, upto: mb.seq, sel: sel}
		for _, id := range f.msgs {
			sess.items = append(sess.items, deltaItem{id: id})
		}
	}
	if pageSize > 0 {
		sess.pageSize = pageSize
	}
	size := sess.pageSize
	if size <= 0 {
		size = s.deltaPageSize
	}
	if pageSize > 0 {
		w.Header().Set("Preference-Applied", "odata.maxpagesize="+strconv.Itoa(pageSize))
	}
	vals := []messageOut{}
	end := min(sess.pos+size, len(sess.items))
	for _, it := range sess.items[sess.pos:end] {
		m := mb.messages[it.id]
		if it.removed || m == nil || m.FolderID != f.ID {
			vals = append(vals, messageOut{Type: "#microsoft.graph.message", ID: it.id, Removed: &removedOut{Reason: "deleted"}})
			continue
		}
		vals = append(vals, messageJSON(m, sess.sel))
	}
	sess.pos = end
	st := s.stats[strings.ToLower(mb.Address)]
	st.Delta++
	base := s.linkBase(r) + r.URL.Path + "?"
	resp := deltaResponse{Context: "https://" + r.Host + "/v1.0/$metadata#Collection(message)", Value: vals}
	if sess.pos < len(sess.items) {
		tok := newID(18)
		s.sessions[tok] = sess
		resp.NextLink = base + url.Values{"$skiptoken": {tok}}.Encode()
	} else {
		tok := newID(18)
		s.deltas[tok] = &deltaToken{mb: mb, folder: f.ID, seq: sess.upto, sel: sess.sel, pageSize: sess.pageSize}
		resp.DeltaLink = base + url.Values{"$deltatoken": {tok}}.Encode()
	}
	writeJSON(w, http.StatusOK, &resp)
}

// deltaResponse is a page of a delta query: exactly one of NextLink and
// DeltaLink is set.
type deltaResponse struct {
	Context   string       `json:"@odata.context"`
	Value     []messageOut `json:"value"`
	NextLink  string       `json:"@odata.nextLink,omitempty"`
	DeltaLink string       `json:"@odata.deltaLink,omitempty"`
}

// messageOut is a message as Graph renders it: the properties not selected
// are nil and left out. A removed message has only its type, id and
// "@removed". (A struct rather than a map: encoding/json sorts and
// allocates a map's keys, which made the delta pages most of the fake's
// CPU time in BenchmarkBackupRemote.)
type messageOut struct {
	Type                 string      `json:"@odata.type"`
	ETag                 string      `json:"@odata.etag,omitempty"`
	ID                   string      `json:"id"`
	CreatedDateTime      *string     `json:"createdDateTime,omitempty"`
	LastModifiedDateTime *string     `json:"lastModifiedDateTime,omitempty"`
	ChangeKey            *string     `json:"changeKey,omitempty"`
	Categories           *[]string   `json:"categories,omitempty"`
	ReceivedDateTime     *string     `json:"receivedDateTime,omitempty"`
	ParentFolderID       *string     `json:"parentFolderId,omitempty"`
	IsRead               *bool       `json:"isRead,omitempty"`
	IsDraft              *bool       `json:"isDraft,omitempty"`
	Flag                 *flagOut    `json:"flag,omitempty"`
	HasAttachments       *bool       `json:"hasAttachments,omitempty"`
	Body                 *bodyOut    `json:"body,omitempty"`
	Removed              *removedOut `json:"@removed,omitempty"`
}

type flagOut struct {
	FlagStatus string `json:"flagStatus"`
}

type bodyOut struct {
	ContentType string `json:"contentType"`
	Content     string `json:"content"`
}

type removedOut struct {
	Reason string `json:"reason"`
}

// messageJSON renders a message with the selected properties (all when
// sel is empty).
func messageJSON(m *Message, sel []string) messageOut {
	ck := m.ChangeKey()
	out := messageOut{Type: "#microsoft.graph.message", ETag: `W/"` + ck + `"`, ID: m.ID}
	if len(sel) == 0 {
		for _, k := range messageProps {
			setMessageProp(&out, m, k, ck)
		}
		out.Body = &bodyOut{ContentType: "text", Content: "(the fake does not render bodies)"}
		return out
	}
	for _, k := range sel {
		k = strings.TrimSpace(k)
		for _, name := range messageProps {
			if strings.EqualFold(name, k) {
				setMessageProp(&out, m, name, ck)
			}
		}
	}
	return out
}

// messageProps are the message properties the fake knows.
var messageProps = []string{"createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime",
	"parentFolderId", "isRead", "isDraft", "flag", "hasAttachments"}

// setMessageProp sets the property name of out from m; ck is m's change key.
func setMessageProp(out *messageOut, m *Message, name, ck string) {
	switch name {
	case "createdDateTime", "lastModifiedDateTime", "receivedDateTime":
		t := m.Received.UTC().Format(time.RFC3339)
		switch name {
		case "createdDateTime":
			out.CreatedDateTime = &t
		case "lastModifiedDateTime":
			out.LastModifiedDateTime = &t
		default:
			out.ReceivedDateTime = &t
		}
	case "changeKey":
		out.ChangeKey = &ck
	case "categories":
		c := append([]string{}, m.Categories...)
		out.Categories = &c
	case "parentFolderId":
		id := m.FolderID
		out.ParentFolderID = &id
	case "isRead":
		v := m.IsRead
		out.IsRead = &v
	case "isDraft":
		v := m.IsDraft
		out.IsDraft = &v
	case "flag":
		out.Flag = &flagOut{FlagStatus: flagStatus(m.Flagged)}
	case "hasAttachments":
		v := false
		out.HasAttachments = &v
	}
}

func flagStatus(flagged bool) string {
	if flagged {
		return "flagged"
	}
	return "notFlagged"
}

func (s *Server) serveValue(w http.ResponseWriter, r *http.Request, mb *Mailbox, folderID, id string, st *MailboxStats) {
	s.mu.Lock()
	delay := s.valueDelay
	s.mu.Unlock()
	if delay > 0 {
		// Exchange takes its time to find and convert a message; a client
		// that gives up meanwhile gets nothing, and the call is not counted.
		t := time.NewTimer(delay)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	s.mu.Lock()
	m := mb.messages[id]
	if m != nil && folderID != "" {
		if f := mb.folder(folderID); f == nil || f.ID != m.FolderID {
			m = nil
		}
	}
	fail := mb.failValue[id]
	var body []byte
	if m != nil && fail == 0 {
		body = m.MIME
		st.ValueCalls++
	}
	s.mu.Unlock()
	if m != nil && fail != 0 {
		if fail == http.StatusTooManyRequests || fail == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "0")
		}
		graphError(w, fail, "ErrorInternalServerError", "The server failed to read the message.")
		return
	}
	if m == nil {
		graphError(w, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
