package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/mutf7"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	netmail "net/mail"
)

// The tests of planb serve: real clients (mbsync, NeoMutt) and go-imap's
// client against the served archive of testdata's sample mail and, when
// ../shared/corpus is there, the corpus (interopMaildir). The clients are
// Debian packages (isync, neomutt, tmux) that scripts/test.sh installs;
// the tests that need one skip when it is missing.

// needTool skips the test when a program is not installed.
func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (apt-get install isync neomutt tmux; scripts/test.sh does)", n)
		}
	}
}

// login is a login of a users file.
type login struct {
	name, password string
	sources        []string
}

// writeUsers writes a users file of logins and returns its path.
func writeUsers(t *testing.T, logins ...login) string {
	t.Helper()
	var b strings.Builder
	for _, l := range logins {
		h, err := hashPassword(l.password)
		if err != nil {
			t.Fatal(err)
		}
		q := make([]string, len(l.sources))
		for i, s := range l.sources {
			q[i] = fmt.Sprintf("%q", s)
		}
		fmt.Fprintf(&b, "[[user]]\nname = %q\npassword_hash = %q\nsources = [%s]\n\n", l.name, h, strings.Join(q, ", "))
	}
	p := filepath.Join(t.TempDir(), "users.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// listenWatch reads serve's --json output and sends its "listening"
// line.
type listenWatch struct {
	w         *io.PipeWriter
	listening chan serveLine
}

func newListenWatch() *listenWatch {
	pr, pw := io.Pipe()
	lw := &listenWatch{w: pw, listening: make(chan serveLine, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var l serveLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Type == "listening" {
				lw.listening <- l
			}
		}
		io.Copy(io.Discard, pr)
	}()
	return lw
}

// served is a running planb serve.
type served struct {
	addr, host, port string
	line             serveLine // the "listening" line
	stderr           *syncBuffer
	stop             func() int // stops the server, returns its exit code
	caFile           string     // the certificate it was given, for clients over TLS
}

// startServe runs `planb serve` on 127.0.0.1 (a free port, unless args
// has a --listen) with the repository of repoFlags and the extra
// arguments, until stop or the end of the test.
func startServe(t *testing.T, repoFlags []string, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lw := newListenWatch()
	s := &served{stderr: &syncBuffer{}}
	done := make(chan int, 1)
	argv := append([]string{"planb"}, repoFlags...)
	argv = append(argv, "--json", "serve")
	if !slices.Contains(args, "--listen") {
		argv = append(argv, "--listen", "127.0.0.1:0")
	}
	go func() {
		code := run(ctx, append(argv, args...), nil, lw.w, s.stderr)
		lw.w.Close()
		done <- code
	}()
	var once sync.Once
	code := -1
	s.stop = func() int {
		once.Do(func() {
			cancel()
			code = <-done
		})
		return code
	}
	t.Cleanup(func() { s.stop() })
	select {
	case s.line = <-lw.listening:
		s.addr = s.line.Address
	case code := <-done:
		t.Fatalf("planb serve = %d before listening: %s", code, s.stderr.String())
	case <-time.After(time.Minute):
		t.Fatalf("planb serve did not listen within a minute: %s", s.stderr.String())
	}
	s.host, s.port, _ = net.SplitHostPort(s.addr)
	return s
}

// dial logs in to a served archive with go-imap's client.
func (s *served) dial(t *testing.T, user, password string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(s.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// readMaildir reads a Maildir (Maildir++ or a tree of maildirs) with
// planb's own reader: folder path → messages.
func readMaildir(t *testing.T, dir string) map[string][]archivetest.Recorded {
	t.Helper()
	src, err := mailfile.NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	folders, err := src.Folders(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]archivetest.Recorded{}
	for _, f := range folders {
		var c archivetest.Changes
		if _, err := src.Sync(t.Context(), f, nil, &c); err != nil {
			t.Fatalf("read %s of %s: %v", f.Path, dir, err)
		}
		out[f.Path] = append(out[f.Path], c.Puts...)
	}
	return out
}

// mbsyncConfig writes an mbsync configuration that pulls every folder of
// the served account into the maildir tree dir, keeping internal dates;
// over TLS, trusting s.caFile (made for localhost), when it is set.
func mbsyncConfig(t *testing.T, s *served, user, password, dir string) string {
	t.Helper()
	conn := fmt.Sprintf("Host %s\nSSLType None", s.host)
	if s.caFile != "" {
		conn = "Host localhost\nSSLType IMAPS\nCertificateFile " + s.caFile
	}
	cfg := fmt.Sprintf(`IMAPAccount served
%s
Port %s
User %s
Pass %s

IMAPStore served
Account served

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel pull
Far :served:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
CopyArrivalDate yes
`, conn, s.port, user, password, dir, dir)
	p := filepath.Join(t.TempDir(), "mbsyncrc")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runMbsync runs mbsync on a configuration and returns its output.
func runMbsync(t *testing.T, cfg string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mbsync", append([]string{"-c", cfg, "-a"}, extra...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync: %v\n%s", err, tail(string(out), 40))
	}
	return string(out)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// wireLF is what a message looks like once mbsync has stored it in a
// Maildir: the server sends CRLF line ends (every bare LF and CR made
// CRLF) and each NUL as 0x80 (no literal of BODY[] carries NUL), and
// mbsync's Maildir driver stores LF.
func wireLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	b = bytes.ReplaceAll(b, []byte{0}, []byte{0x80})
	return bytes.ReplaceAll(b, []byte("\r"), []byte("\n"))
}

// dropTUID removes the X-TUID field mbsync adds at the end of a header.
func dropTUID(b []byte) []byte {
	i := bytes.Index(b, []byte("\nX-TUID: "))
	if i < 0 {
		if !bytes.HasPrefix(b, []byte("X-TUID: ")) {
			return b
		}
		i = -1
	}
	j := bytes.IndexByte(b[i+1:], '\n')
	if j < 0 {
		return b[:i+1]
	}
	return append(b[:i+1:i+1], b[i+1+j+1:]...)
}

// systemFlags keeps the flags mbsync stores in a Maildir (no keywords).
func systemFlags(flags []string) string {
	var out []string
	for _, f := range flags {
		switch f {
		case archive.FlagSeen, archive.FlagAnswered, archive.FlagFlagged, archive.FlagDeleted, archive.FlagDraft, archive.FlagForwarded:
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// hasBody reports whether a message has the empty line that ends a
// header: mbsync skips those without ("incomplete header").
func hasBody(b []byte) bool {
	return bytes.HasPrefix(b, []byte("\n")) || bytes.HasPrefix(b, []byte("\r\n")) ||
		bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))
}

// TestServeMbsync (issue 17, acceptance 1): mbsync pulls every folder of a
// served snapshot of testdata and the corpus into a Maildir: each message
// is `planb export` of the same snapshot byte for byte (as mbsync stores
// it: LF line ends, its X-TUID field added), with its flags and internal
// date; a second run transfers nothing; a pull over TLS gets the same.
func TestServeMbsync(t *testing.T) {
	needTool(t, "mbsync")
	repoFlags, n := interopRepo(t)
	exported := filepath.Join(t.TempDir(), "export")
	if code, _, stderr := runPlanb(t, append(repoFlags, "--quiet", "export", "latest", "--format", "maildir", "--out", exported)...); code != 0 {
		t.Fatalf("export = %d: %s", code, stderr)
	}
	users := writeUsers(t, login{"alice", "alice-secret", []string{"*"}})
	s := startServe(t, repoFlags, "--users", users)
	dir := t.TempDir()
	cfg := mbsyncConfig(t, s, "alice", "alice-secret", dir)
	start := time.Now()
	out := runMbsync(t, cfg)
	t.Logf("mbsync pulled %d messages in %s", n, time.Since(start).Round(time.Millisecond))

	want := readMaildir(t, exported)
	got := readMaildir(t, dir)
	total, skipped := 0, 0
	var headerOnly [][2]string // folder, message: what mbsync skips
	for path, msgs := range want {
		// mbsync names the folders by their IMAP names (modified UTF-7).
		var enc []string
		for _, e := range strings.Split(path, "/") {
			enc = append(enc, mutf7.Encode(e))
		}
		gotMsgs := got[strings.Join(enc, "/")]
		delete(got, strings.Join(enc, "/"))
		byContent := map[string][]archivetest.Recorded{}
		for _, g := range gotMsgs {
			k := string(dropTUID(g.Data))
			byContent[k] = append(byContent[k], g)
		}
		for _, w := range msgs {
			total++
			k := string(wireLF(w.Data))
			cands := byContent[k]
			if len(cands) == 0 {
				if !hasBody(w.Data) {
					skipped++ // mbsync: "incomplete header; skipping"
					headerOnly = append(headerOnly, [2]string{path, string(w.Data)})
					continue
				}
				t.Errorf("%s: message %s (%d bytes) not pulled, or not byte for byte", path, w.SourceID, len(w.Data))
				continue
			}
			g := cands[0]
			byContent[k] = cands[1:]
			if systemFlags(g.Flags) != systemFlags(w.Flags) {
				t.Errorf("%s: message %s has flags %q, want %q", path, w.SourceID, systemFlags(g.Flags), systemFlags(w.Flags))
			}
			if !g.InternalDate.Truncate(time.Second).Equal(w.InternalDate.Truncate(time.Second)) {
				t.Errorf("%s: message %s dated %v, want %v", path, w.SourceID, g.InternalDate, w.InternalDate)
			}
		}
		for _, left := range byContent {
			for _, g := range left {
				t.Errorf("%s: pulled a message that is not in the export: %s", path, g.SourceID)
			}
		}
	}
	for path := range got {
		if len(got[path]) > 0 {
			t.Errorf("mbsync made a folder %q that the export does not have", path)
		}
	}
	if total != n {
		t.Errorf("the export holds %d messages, want %d", total, n)
	}
	if warned := strings.Count(out, "incomplete header"); warned != skipped {
		t.Errorf("mbsync skipped %d messages for their header, the export has %d without a body:\n%s", warned, skipped, out)
	}
	// What mbsync skips is served all the same: go-imap's client finds
	// each such message, by its size on the wire, byte for byte.
	c := s.dial(t, "alice", "alice-secret")
	for _, m := range headerOnly {
		wire := bytes.ReplaceAll(wireLF([]byte(m[1])), []byte("\n"), []byte("\r\n"))
		if _, err := c.Select(m[0], &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatalf("select %s: %v", m[0], err)
		}
		data, err := c.UIDSearch(&goimap.SearchCriteria{Larger: int64(len(wire)) - 1, Smaller: int64(len(wire)) + 1}, nil).Wait()
		if err != nil {
			t.Fatalf("%s: search by size: %v", m[0], err)
		}
		found := false
		if uids := data.AllUIDs(); len(uids) > 0 {
			sec := &goimap.FetchItemBodySection{Peek: true}
			msgs, err := c.Fetch(goimap.UIDSetNum(uids...), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{sec}}).Collect()
			if err != nil {
				t.Fatalf("%s: fetch: %v", m[0], err)
			}
			found = slices.ContainsFunc(msgs, func(b *imapclient.FetchMessageBuffer) bool { return bytes.Equal(b.FindBodySection(sec), wire) })
		}
		if !found {
			t.Errorf("%s: a message without a body (%d bytes) is not served byte for byte", m[0], len(m[1]))
		}
	}
	t.Logf("%d messages compared, %d without a body skipped by mbsync and compared over go-imap", total, skipped)

	// A second run transfers nothing: no message body is fetched and the
	// Maildir stays as it is.
	before := listFiles(t, dir)
	out = runMbsync(t, cfg, "-Dn")
	if k := strings.Count(out, "BODY.PEEK["); k > 0 {
		t.Errorf("the second mbsync run fetched %d message bodies", k)
	}
	if after := listFiles(t, dir); !slices.Equal(before, after) {
		t.Errorf("the second mbsync run changed the Maildir")
	}

	// Over TLS, as a client on another machine must connect (and as
	// scripts/bench-serve.sh --tls yes measures): the same messages, with
	// the same flags and dates, as over plaintext.
	certFile, keyFile := certPair(t)
	st := startServe(t, repoFlags, "--users", users, "--tls-cert", certFile, "--tls-key", keyFile)
	st.caFile = certFile
	tlsDir := t.TempDir()
	runMbsync(t, mbsyncConfig(t, st, "alice", "alice-secret", tlsDir))
	archivetest.EqualOpts(t, pulled(readMaildir(t, dir)), pulled(readMaildir(t, tlsDir)), &archivetest.CompareOptions{DateUnit: time.Second})
}

// pulled is a Maildir tree mbsync pulled (readMaildir), without the
// X-TUID field mbsync adds, as a mailbox to compare.
func pulled(folders map[string][]archivetest.Recorded) *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	for path, msgs := range folders {
		for _, r := range msgs {
			mb.Add(path, archivetest.Msg{Body: dropTUID(r.Data), Flags: r.Flags, InternalDate: r.InternalDate})
		}
	}
	return mb
}

// listFiles lists the messages of a maildir tree with their sizes and
// modification times.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasPrefix(fi.Name(), ".") {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// refMsg is a message as the reference search sees it: the exported file
// (its bytes and its modification time, the internal date) and its flags
// from `planb ls --json`.
type refMsg struct {
	uid   uint32
	data  []byte
	flags []string
	date  time.Time
}

// exportedFolders exports the latest snapshot as .eml files and returns
// each folder's messages in the snapshot's order (UIDs 1..N).
func exportedFolders(t *testing.T, repoFlags []string) map[string][]*refMsg {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "eml")
	if code, _, stderr := runPlanb(t, append(repoFlags, "--quiet", "export", "latest", "--format", "eml", "--out", dir)...); code != 0 {
		t.Fatalf("export = %d: %s", code, stderr)
	}
	code, stdout, stderr := runPlanb(t, append(repoFlags, "--json", "ls", "latest")...)
	if code != 0 {
		t.Fatalf("ls = %d: %s", code, stderr)
	}
	out := map[string][]*refMsg{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var f folderLine
		if err := json.Unmarshal([]byte(line), &f); err != nil || f.Type != "folder" {
			continue
		}
		code, msgs, stderr := runPlanb(t, append(repoFlags, "--json", "ls", "latest", f.Path)...)
		if code != 0 {
			t.Fatalf("ls %s = %d: %s", f.Path, code, stderr)
		}
		var elems []string
		for _, e := range strings.Split(f.Path, "/") {
			e = strings.ReplaceAll(e, "%", "%25")
			if strings.HasPrefix(e, ".") {
				e = "%2E" + e[1:]
			}
			elems = append(elems, e)
		}
		folderDir := filepath.Join(append([]string{dir}, elems...)...)
		out[f.Path] = []*refMsg{}
		for _, ml := range strings.Split(strings.TrimSpace(msgs), "\n") {
			var m messageLine
			if err := json.Unmarshal([]byte(ml), &m); err != nil || m.Type != "message" {
				continue
			}
			uid := uint32(len(out[f.Path]) + 1)
			name := filepath.Join(folderDir, fmt.Sprintf("%06d.eml", uid))
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(m.Date) {
				t.Fatalf("%s: modified %v, the snapshot says %v", name, fi.ModTime(), m.Date)
			}
			out[f.Path] = append(out[f.Path], &refMsg{uid: uid, data: data, flags: m.Flags, date: m.Date})
		}
	}
	return out
}

// The reference search: RFC 3501's criteria evaluated over an exported
// message with go-message (which decodes transfer encodings and, with
// its charset package, charsets), independently of the server's own
// streaming MIME parser. The same choices as the server's (imap/serve's
// search.go): dates in their own zone, case-insensitive substrings,
// decoded header fields (serve_ref_test.go), BODY in the text/* and
// message/* parts of the whole MIME tree, TEXT in BODY or a header field
// as "Name: value", of the message, a part or an attached message, sizes
// on the wire.

func refMatch(m *refMsg, c *goimap.SearchCriteria, seq uint32) bool {
	for _, set := range c.SeqNum {
		if !set.Contains(seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(goimap.UID(m.uid)) {
			return false
		}
	}
	if !refDates(m.date, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if !slices.ContainsFunc(m.flags, func(g string) bool { return strings.EqualFold(g, string(f)) }) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if slices.ContainsFunc(m.flags, func(g string) bool { return strings.EqualFold(g, string(f)) }) {
			return false
		}
	}
	size := int64(len(bytes.ReplaceAll(wireLF(m.data), []byte("\n"), []byte("\r\n"))))
	if c.Larger > 0 && size <= c.Larger || c.Smaller > 0 && size >= c.Smaller {
		return false
	}
	e, _ := message.Read(bytes.NewReader(m.data))
	if e == nil {
		e, _ = message.New(message.Header{}, bytes.NewReader(m.data))
	}
	h := mail.Header{Header: e.Header}
	for _, hc := range c.Header {
		found := false
		for fs := h.FieldsByKey(hc.Key); fs.Next(); {
			found = found || strings.Contains(strings.ToLower(refDecode(fs.Value())), strings.ToLower(hc.Value))
		}
		if !found {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		d, err := netmail.ParseDate(h.Get("Date"))
		if err != nil || !refDates(d, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, s := range c.Body {
		if !refBody(m.data, s, false) {
			return false
		}
	}
	for _, s := range c.Text {
		if !refHeaderHas(e.Header, strings.ToLower(s)) && !refBody(m.data, s, true) {
			return false
		}
	}
	for k := range c.Not {
		if refMatch(m, &c.Not[k], seq) {
			return false
		}
	}
	for k := range c.Or {
		if !refMatch(m, &c.Or[k][0], seq) && !refMatch(m, &c.Or[k][1], seq) {
			return false
		}
	}
	return true
}

func refDates(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return (since.IsZero() || !d.Before(since)) && (before.IsZero() || d.Before(before))
}

// refBody reports whether a text/* or message/* part of the message
// holds s or, with headers, the header of a part or attached message.
func refBody(data []byte, s string, headers bool) bool {
	e, _ := message.Read(bytes.NewReader(data))
	if e == nil {
		return false
	}
	return refEntity(e, strings.ToLower(s), 0, false, headers)
}

// refEntity searches an entity; inDigest says it is a part of a
// multipart/digest.
func refEntity(e *message.Entity, s string, depth int, inDigest, headers bool) bool {
	if depth > 30 {
		return false
	}
	if headers && depth > 0 && refHeaderHas(e.Header, s) {
		return true
	}
	t, params, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if p == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return false
			}
			if refEntity(p, s, depth+1, t == "multipart/digest", headers) {
				return true
			}
		}
	}
	switch {
	case inDigest && !e.Header.Has("Content-Type"):
		t = "message/rfc822" // RFC 2046 5.1.5
	case !strings.Contains(t, "/") || strings.HasPrefix(t, "multipart/") && params["boundary"] == "":
		t = "text/plain" // RFC 2045 5.2: a missing or invalid type
	}
	switch {
	case (t == "message/rfc822" || t == "message/global") && refKnownEncoding(e.Header) && !refEncoded(e.Header):
		inner, _ := message.Read(e.Body)
		return inner != nil && refEntity(inner, s, depth+1, false, headers)
	case !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") || !refKnownEncoding(e.Header):
		return false
	}
	b, _ := io.ReadAll(e.Body)
	if refIsUTF7(params["charset"]) {
		b = []byte(refUTF7(b))
	}
	return bytes.Contains(bytes.ToLower(b), []byte(s))
}

// searchCases are RFC 3501's search keys (every one of them, NEW, OLD and
// RECENT in rawSearches), alone and combined.
func searchCases() map[string]*goimap.SearchCriteria {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	on := func(t time.Time) (time.Time, time.Time) { return t, t.Add(24 * time.Hour) }
	flag := func(f goimap.Flag) *goimap.SearchCriteria { return &goimap.SearchCriteria{Flag: []goimap.Flag{f}} }
	unflag := func(f goimap.Flag) *goimap.SearchCriteria { return &goimap.SearchCriteria{NotFlag: []goimap.Flag{f}} }
	hdr := func(k, v string) *goimap.SearchCriteria {
		return &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: k, Value: v}}}
	}
	onSince, onBefore := on(day(2024, 1, 15))
	sentSince, sentBefore := on(day(2001, 5, 15))
	return map[string]*goimap.SearchCriteria{
		"ALL":                            {},
		"ANSWERED":                       flag(goimap.FlagAnswered),
		"UNANSWERED":                     unflag(goimap.FlagAnswered),
		"DELETED":                        flag(goimap.FlagDeleted),
		"UNDELETED":                      unflag(goimap.FlagDeleted),
		"DRAFT":                          flag(goimap.FlagDraft),
		"UNDRAFT":                        unflag(goimap.FlagDraft),
		"FLAGGED":                        flag(goimap.FlagFlagged),
		"UNFLAGGED":                      unflag(goimap.FlagFlagged),
		"SEEN":                           flag(goimap.FlagSeen),
		"UNSEEN":                         unflag(goimap.FlagSeen),
		"KEYWORD $Label1":                flag("$Label1"),
		"KEYWORD $Forwarded":             flag("$Forwarded"),
		"UNKEYWORD work":                 unflag("work"),
		"BEFORE 15-Jan-2024":             {Before: day(2024, 1, 15)},
		"ON 15-Jan-2024":                 {Since: onSince, Before: onBefore},
		"SINCE 15-Jan-2024":              {Since: day(2024, 1, 15)},
		"SENTBEFORE 1-Jan-2001":          {SentBefore: day(2001, 1, 1)},
		"SENTON 15-May-2001":             {SentSince: sentSince, SentBefore: sentBefore},
		"SENTSINCE 1-Jan-2020":           {SentSince: day(2020, 1, 1)},
		"LARGER 5000":                    {Larger: 5000},
		"SMALLER 1500":                   {Smaller: 1500},
		"FROM enron":                     hdr("From", "enron"),
		"FROM Alice":                     hdr("From", "Alice"),
		"TO bob":                         hdr("To", "bob"),
		"CC @":                           hdr("Cc", "@"),
		"BCC com":                        hdr("Bcc", "com"),
		"SUBJECT re:":                    hdr("Subject", "re:"),
		"SUBJECT Ö":                      hdr("Subject", "Ö"),
		"SUBJECT こんにちは":                  hdr("Subject", "こんにちは"),
		"HEADER Message-ID @":            hdr("Message-ID", "@"),
		"HEADER X-Mailer \"\"":           hdr("X-Mailer", ""),
		"HEADER Content-Type multipart":  hdr("Content-Type", "multipart"),
		"BODY the":                       {Body: []string{"the"}},
		"BODY ENRON":                     {Body: []string{"ENRON"}},
		"BODY linux kernel":              {Body: []string{"linux kernel"}},
		"BODY für":                       {Body: []string{"für"}},
		"BODY zzqx (none)":               {Body: []string{"zzqxzzqx"}},
		"TEXT manual":                    {Text: []string{"manual"}},
		"TEXT message-id":                {Text: []string{"message-id"}},
		"UID 2,4:7":                      {UID: []goimap.UIDSet{{{Start: 2, Stop: 2}, {Start: 4, Stop: 7}}}},
		"1:3,10":                         {SeqNum: []goimap.SeqSet{{{Start: 1, Stop: 3}, {Start: 10, Stop: 10}}}},
		"NOT SEEN":                       {Not: []goimap.SearchCriteria{*flag(goimap.FlagSeen)}},
		"OR FLAGGED DRAFT":               {Or: [][2]goimap.SearchCriteria{{*flag(goimap.FlagFlagged), *flag(goimap.FlagDraft)}}},
		"SEEN LARGER 2000 BODY the":      {Flag: []goimap.Flag{goimap.FlagSeen}, Larger: 2000, Body: []string{"the"}},
		"NOT (OR FROM enron BODY linux)": {Not: []goimap.SearchCriteria{{Or: [][2]goimap.SearchCriteria{{*hdr("From", "enron"), {Body: []string{"linux"}}}}}}},
	}
}

// TestServeSearch (issue 17, acceptance 3): every SEARCH criterion, in
// every folder of the served snapshot of testdata and the corpus, gives
// the messages the reference search finds in the exported files.
func TestServeSearch(t *testing.T) {
	repoFlags, _ := interopRepo(t)
	folders := exportedFolders(t, repoFlags)
	s := startServe(t, repoFlags, "--users", writeUsers(t, login{"alice", "alice-secret", []string{"*"}}))
	c := s.dial(t, "alice", "alice-secret")
	raw := s.rawDial(t)
	raw.command(t, "LOGIN alice alice-secret")
	cases := searchCases()
	names := slices.Sorted(maps.Keys(cases))
	hits := map[string]int{}
	for path, msgs := range folders {
		sel, err := c.Select(path, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("select %s: %v", path, err)
		}
		if int(sel.NumMessages) != len(msgs) {
			t.Fatalf("%s: %d messages served, %d exported", path, sel.NumMessages, len(msgs))
		}
		for _, name := range names {
			crit := cases[name]
			data, err := c.UIDSearch(crit, nil).Wait()
			if err != nil {
				t.Errorf("%s: UID SEARCH %s: %v", path, name, err)
				continue
			}
			var want []goimap.UID
			for i, m := range msgs {
				if refMatch(m, crit, uint32(i+1)) {
					want = append(want, goimap.UID(m.uid))
				}
			}
			got := data.AllUIDs()
			if !slices.Equal(got, want) {
				t.Errorf("%s: UID SEARCH %s = %v, want %v", path, name, got, want)
			}
			hits[name] += len(want)
		}
		// imapclient cannot say NEW, OLD or RECENT: no message is \Recent.
		raw.command(t, "EXAMINE "+quote(mutf7.Encode(path)))
		for key, want := range map[string]int{"RECENT": 0, "NEW": 0, "OLD": len(msgs)} {
			got := 0
			for _, l := range raw.command(t, "SEARCH "+key) {
				if rest, ok := strings.CutPrefix(l, "* SEARCH"); ok {
					got = len(strings.Fields(rest))
				}
			}
			if got != want {
				t.Errorf("%s: SEARCH %s found %d, want %d", path, key, got, want)
			}
		}
	}
	for _, name := range names {
		t.Logf("%-32s %5d messages", name, hits[name])
	}
}

// rawConn speaks IMAP on a bare connection: for what imapclient cannot
// say.
type rawConn struct {
	c   net.Conn
	br  *bufio.Reader
	tag int
}

func (s *served) rawDial(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{c: c, br: bufio.NewReader(c)}
	if _, err := r.br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return r
}

// command sends a command and returns its untagged answers; a NO or BAD
// fails the test.
func (r *rawConn) command(t *testing.T, cmd string) []string {
	t.Helper()
	r.tag++
	tag := fmt.Sprintf("r%d", r.tag)
	r.c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := fmt.Fprintf(r.c, "%s %s\r\n", tag, cmd); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		l = strings.TrimRight(l, "\r\n")
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				t.Fatalf("%s: %s", cmd, rest)
			}
			return out
		}
		out = append(out, l)
	}
}

func quote(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }

// copyMaildir copies testdata's sample Maildir to dir/NAME/Maildir (a
// source "maildir:.../NAME/Maildir", shown as NAME) and returns its path.
func copyMaildir(t *testing.T, dir, name string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", "testdata", "mail", "maildir"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name, "Maildir")
	if err := os.CopyFS(p, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	return p
}

// addMessage adds a message to a Maildir folder ("" for INBOX).
func addMessage(t *testing.T, maildir, folder, subject string) {
	t.Helper()
	dir := filepath.Join(maildir, "cur")
	if folder != "" {
		dir = filepath.Join(maildir, "."+folder, "cur")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	msg := fmt.Sprintf("From: someone@example.org\nSubject: %s\nMessage-ID: <%s@example.org>\n\nA message of its own.\n", subject, strings.ReplaceAll(subject, " ", "."))
	name := filepath.Join(dir, fmt.Sprintf("1800000000.M%dP1Q1.test:2,S", time.Now().UnixNano()))
	if err := os.WriteFile(name, []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mailboxNames lists the mailboxes a login sees.
func mailboxNames(t *testing.T, c *imapclient.Client) []string {
	t.Helper()
	data, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range data {
		if !slices.Contains(d.Attrs, goimap.MailboxAttrNoSelect) {
			out = append(out, d.Mailbox)
		}
	}
	return out
}

// uidMap describes every selectable mailbox a login sees: its UIDVALIDITY
// and, per UID, the message's size and Message-ID.
func uidMap(t *testing.T, c *imapclient.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range mailboxNames(t, c) {
		sel, err := c.Select(name, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("select %s: %v", name, err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "uidvalidity %d uidnext %d", sel.UIDValidity, sel.UIDNext)
		if sel.NumMessages > 0 {
			msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, RFC822Size: true, Envelope: true}).Collect()
			if err != nil {
				t.Fatalf("fetch %s: %v", name, err)
			}
			for _, m := range msgs {
				fmt.Fprintf(&b, "; %d %d %s", m.UID, m.RFC822Size, m.Envelope.MessageID)
			}
		}
		out[name] = b.String()
	}
	return out
}

// TestServeLogins (issue 17, acceptance 3 and the layout): a login
// confined to its source cannot LIST or SELECT another's folders; a wrong
// password or user is refused; every write command is refused; a login of
// several sources gets one top-level folder per source; a new snapshot
// shows without a restart, older ones under Snapshots/; UIDVALIDITY and
// UIDs are the same after a restart.
func TestServeLogins(t *testing.T) {
	dir := t.TempDir()
	alice := copyMaildir(t, dir, "alice")
	bob := copyMaildir(t, dir, "bob")
	addMessage(t, bob, "BobOnly", "for bob only")
	addMessage(t, bob, "", "bob's inbox")
	repoDir := filepath.Join(dir, "repo")
	pwFile := filepath.Join(dir, "repo-pw")
	if err := os.WriteFile(pwFile, []byte("serve\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repoFlags := []string{"--repo", repoDir, "--password-file", pwFile}
	planb := func(args ...string) {
		t.Helper()
		if code, _, stderr := runPlanb(t, append(repoFlags, args...)...); code != 0 {
			t.Fatalf("planb %s = %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	planb("init")
	planb("--quiet", "backup", "maildir", "--path", alice)
	planb("--quiet", "backup", "maildir", "--path", bob)
	users := writeUsers(t,
		login{"alice", "alice-pw", []string{"maildir:*/alice/Maildir"}},
		login{"bob", "bob-pw", []string{"maildir:*/bob/*"}},
		login{"carol", "carol-pw", []string{"maildir:*"}},
	)
	s := startServe(t, repoFlags, "--users", users, "--poll", "0s")

	// Wrong passwords and unknown users.
	for _, l := range [][2]string{{"alice", "bob-pw"}, {"alice", ""}, {"mallory", "alice-pw"}} {
		c, err := imapclient.DialInsecure(s.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ie *goimap.Error
		if err := c.Login(l[0], l[1]).Wait(); !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeAuthenticationFailed {
			t.Errorf("LOGIN %s %q = %v, want NO [AUTHENTICATIONFAILED]", l[0], l[1], err)
		}
		c.Close()
	}

	// Confinement.
	ca := s.dial(t, "alice", "alice-pw")
	cb := s.dial(t, "bob", "bob-pw")
	aliceNames, bobNames := mailboxNames(t, ca), mailboxNames(t, cb)
	if slices.Contains(aliceNames, "BobOnly") || !slices.Contains(bobNames, "BobOnly") || !slices.Contains(aliceNames, "Sent") {
		t.Errorf("alice sees %q, bob sees %q", aliceNames, bobNames)
	}
	for _, name := range []string{"BobOnly", "bob/BobOnly", "Snapshots"} {
		if _, err := ca.Select(name, nil).Wait(); err == nil {
			t.Errorf("alice can SELECT %s", name)
		}
		if _, err := ca.Status(name, &goimap.StatusOptions{NumMessages: true}).Wait(); err == nil {
			t.Errorf("alice can STATUS %s", name)
		}
	}
	if _, err := ca.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if data, err := ca.UIDSearch(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "bob's inbox"}}}, nil).Wait(); err != nil || len(data.AllUIDs()) != 0 {
		t.Errorf("alice's INBOX holds bob's message: %v, %v", data, err)
	}

	// IDLE: the server's "+ idling" and its answer to DONE arrive at
	// once, although the server's connections hold small writes back
	// (serve.Corked) until it reads.
	idleDone := make(chan error, 1)
	go func() {
		cmd, err := ca.Idle()
		if err == nil {
			err = cmd.Close()
			if err == nil {
				err = cmd.Wait()
			}
		}
		idleDone <- err
	}()
	select {
	case err := <-idleDone:
		if err != nil {
			t.Errorf("IDLE: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("IDLE not answered within 10 s")
	}
	if err := ca.Noop().Wait(); err != nil {
		t.Errorf("NOOP after IDLE: %v", err)
	}

	// Every write command is refused, with a reason.
	cannot := func(what string, err error) {
		t.Helper()
		var ie *goimap.Error
		if !errors.As(err, &ie) || ie.Code != goimap.ResponseCodeCannot || ie.Text == "" {
			t.Errorf("%s = %v, want NO [CANNOT] with a reason", what, err)
		}
	}
	app := ca.Append("INBOX", 4, nil)
	app.Write([]byte("x\r\n\r\n"[:4]))
	app.Close()
	_, err := app.Wait()
	cannot("APPEND", err)
	_, err = ca.Copy(goimap.SeqSetNum(1), "Sent").Wait()
	cannot("COPY", err)
	_, err = ca.Move(goimap.SeqSetNum(1), "Sent").Wait()
	cannot("MOVE", err)
	cannot("EXPUNGE", ca.Expunge().Close())
	cannot("CREATE", ca.Create("New", nil).Wait())
	cannot("DELETE", ca.Delete("Sent").Wait())
	cannot("RENAME", ca.Rename("Sent", "Sent2", nil).Wait())

	// Several sources: one top-level folder each, and an empty INBOX.
	carolNames := mailboxNames(t, s.dial(t, "carol", "carol-pw"))
	for _, want := range []string{"INBOX", "alice/INBOX", "alice/Sent", "bob/INBOX", "bob/BobOnly", "bob/Projects/2026/Q1"} {
		if !slices.Contains(carolNames, want) {
			t.Errorf("carol does not see %s: %q", want, carolNames)
		}
	}

	// A new snapshot of alice's mail shows without a restart: the old one
	// goes under Snapshots/ with its UIDs; INBOX, which changed, has a new
	// UIDVALIDITY; Sent, which did not, keeps its own and its UIDs.
	before := uidMap(t, ca)
	addMessage(t, alice, "", "new mail")
	planb("--quiet", "backup", "maildir", "--path", alice)
	after := uidMap(t, ca)
	var old string
	for name := range after {
		if strings.HasPrefix(name, "Snapshots/") && strings.HasSuffix(name, "/INBOX") {
			old = strings.TrimSuffix(name, "INBOX")
		}
	}
	if old == "" {
		t.Fatalf("no Snapshots/DATE/INBOX after a second backup: %q", slices.Sorted(maps.Keys(after)))
	}
	for name, desc := range before {
		if after[old+name] != desc {
			t.Errorf("%s%s = %s, want %s (the old top level)", old, name, after[old+name], desc)
		}
	}
	if after["Sent"] != before["Sent"] {
		t.Errorf("Sent changed with the new snapshot: %s, was %s", after["Sent"], before["Sent"])
	}
	if after["INBOX"] == before["INBOX"] || uidValidityOf(after["INBOX"]) <= uidValidityOf(before["INBOX"]) {
		t.Errorf("INBOX after a new snapshot: %s, before %s: want a greater UIDVALIDITY", after["INBOX"], before["INBOX"])
	}

	t.Logf("old snapshot at %s; INBOX %s; Sent %s; carol sees %d mailboxes", old, after["INBOX"][:40], after["Sent"][:40], len(carolNames))

	// The same after a restart.
	if code := s.stop(); code != 0 {
		t.Fatalf("planb serve = %d: %s", code, s.stderr.String())
	}
	s2 := startServe(t, repoFlags, "--users", users)
	if again := uidMap(t, s2.dial(t, "alice", "alice-pw")); !maps.Equal(again, after) {
		for name := range after {
			if again[name] != after[name] {
				t.Errorf("after a restart %s = %s, was %s", name, again[name], after[name])
			}
		}
	}
}

func uidValidityOf(desc string) uint32 {
	var v uint32
	fmt.Sscanf(desc, "uidvalidity %d", &v)
	return v
}

// tmuxSession runs a program in a detached tmux session of 160x45 for the
// test's life.
type tmuxSession struct {
	t    *testing.T
	name string
}

func startTmux(t *testing.T, env []string, argv ...string) *tmuxSession {
	t.Helper()
	name := fmt.Sprintf("planb-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	args := append([]string{"new-session", "-d", "-s", name, "-x", "160", "-y", "45", "--", "env"}, env...)
	if out, err := exec.Command("tmux", append(args, argv...)...).CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	s := &tmuxSession{t: t, name: name}
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", name).Run() })
	return s
}

// keys types keys (tmux send-keys names: "Enter", "Tab", "Escape", or text).
func (s *tmuxSession) keys(keys ...string) {
	s.t.Helper()
	if out, err := exec.Command("tmux", append([]string{"send-keys", "-t", s.name}, keys...)...).CombinedOutput(); err != nil {
		s.t.Fatalf("tmux send-keys %q: %v: %s", keys, err, out)
	}
}

// screen returns what the session shows.
func (s *tmuxSession) screen() string {
	out, err := exec.Command("tmux", "capture-pane", "-p", "-t", s.name).Output()
	if err != nil {
		return ""
	}
	return string(out)
}

// waitFor waits until the screen shows every one of texts, and returns it.
func (s *tmuxSession) waitFor(what string, texts ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		scr := s.screen()
		if !slices.ContainsFunc(texts, func(x string) bool { return !strings.Contains(scr, x) }) {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: the screen does not show %q after 30 s:\n%s", what, texts, scr)
		}
		time.Sleep(100 * time.Millisecond) // polling a terminal: nothing to wait on
	}
}

// sampleRepo makes a repository in dir with one backup of testdata's
// sample Maildir (as dir/alice/Maildir) and returns the flags that open
// it.
func sampleRepo(t *testing.T, dir string) []string {
	t.Helper()
	maildir := copyMaildir(t, dir, "alice")
	repoFlags := []string{"--repo", filepath.Join(dir, "repo"), "--password-file", filepath.Join(dir, "pw")}
	if err := os.WriteFile(repoFlags[3], []byte("serve\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init"}, {"--quiet", "backup", "maildir", "--path", maildir}} {
		if code, _, stderr := runPlanb(t, append(repoFlags, args...)...); code != 0 {
			t.Fatalf("planb %s = %d: %s", args[0], code, stderr)
		}
	}
	return repoFlags
}

// TestServeNeoMutt (issue 17, acceptance 2): NeoMutt, driven in tmux,
// reads the served archive: it lists the folders, opens a message and
// shows its subject and its body text.
func TestServeNeoMutt(t *testing.T) {
	needTool(t, "neomutt", "tmux")
	dir := t.TempDir()
	repoFlags := sampleRepo(t, dir)
	s := startServe(t, repoFlags, "--users", writeUsers(t, login{"alice", "alice-pw", []string{"*"}}))
	muttrc := filepath.Join(dir, "muttrc")
	cfg := fmt.Sprintf(`set folder = "imap://alice@%s:%s/"
set imap_pass = "alice-pw"
set spoolfile = "+INBOX"
set ssl_starttls = no
set ssl_force_tls = no
set header_cache = ""
set message_cachedir = ""
set mail_check = 0
set timeout = 0
set sort = mailbox-order
set beep = no
set wait_key = no
set mailcap_path = ""
set imap_check_subscribed = no
set imap_list_subscribed = no
`, s.host, s.port)
	if err := os.WriteFile(muttrc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)
	tm := startTmux(t, []string{"HOME=" + home, "TERM=screen"}, "neomutt", "-n", "-F", muttrc)

	// The index of INBOX.
	tm.waitFor("INBOX's index", "Plain LF", "Mixed line ends", "Attachment", "Msgs:17")
	// The folder list: change folder, list, IMAP folders.
	tm.keys("c")
	tm.waitFor("the change-folder prompt", "Open mailbox")
	tm.keys("?")
	tm.waitFor("the mailbox browser", "Mailboxes")
	tm.keys("Tab")
	scr := tm.waitFor("the folder list", "Sent", "Drafts", "Projects/", "Entwürfe", "日本語")
	t.Logf("NeoMutt's folder list:\n%s", nonEmptyLines(scr))
	tm.keys("q")
	tm.waitFor("back in the index", "Plain LF")
	// Message 13 (a multipart message with an attachment) in the pager.
	tm.keys("13", "Enter")
	tm.keys("Enter")
	scr = tm.waitFor("the message", "Subject: Attachment", "See the attachment.", "data.bin")
	t.Logf("NeoMutt shows:\n%s", nonEmptyLines(scr))
	// Message 1, plain text, after going back to the index.
	tm.keys("i")
	tm.waitFor("back in the index", "Plain LF")
	tm.keys("1", "Enter")
	tm.keys("Enter")
	tm.waitFor("message 1", "Subject: Plain LF", "this is plain text with LF line ends.")
	tm.keys("q", "q")
}

func nonEmptyLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, " "))
		}
	}
	return strings.Join(out, "\n")
}
