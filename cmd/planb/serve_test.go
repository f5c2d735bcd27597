package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// listenWatch reads serve's --json output and sends the address of its
// "listening" line.
type listenWatch struct {
	w    *io.PipeWriter
	addr chan string
}

func newListenWatch() *listenWatch {
	pr, pw := io.Pipe()
	lw := &listenWatch{w: pw, addr: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var l serveLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Type == "listening" {
				lw.addr <- l.Address
			}
		}
		io.Copy(io.Discard, pr)
	}()
	return lw
}

// served is a running planb serve.
type served struct {
	addr, host, port string
	stderr           *lockedBuffer
	stop             func() int // stops the server, returns its exit code
}

// startServe runs `planb serve` on 127.0.0.1 (a free port) with the
// repository of repoFlags and the extra arguments, until stop or the end
// of the test.
func startServe(t *testing.T, repoFlags []string, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lw := newListenWatch()
	s := &served{stderr: &lockedBuffer{}}
	done := make(chan int, 1)
	argv := append([]string{"planb"}, repoFlags...)
	argv = append(argv, "--json", "serve", "--listen", "127.0.0.1:0")
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
	case s.addr = <-lw.addr:
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
// the served account into the maildir tree dir, keeping internal dates.
func mbsyncConfig(t *testing.T, s *served, user, password, dir string) string {
	t.Helper()
	cfg := fmt.Sprintf(`IMAPAccount served
Host %s
Port %s
User %s
Pass %s
SSLType None

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
`, s.host, s.port, user, password, dir, dir)
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
// CRLF), and mbsync's Maildir driver stores LF.
func wireLF(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
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
// date; a second run transfers nothing.
func TestServeMbsync(t *testing.T) {
	needTool(t, "mbsync")
	repoFlags, n := interopRepo(t)
	exported := filepath.Join(t.TempDir(), "export")
	if code, _, stderr := runPlanb(t, append(repoFlags, "--quiet", "export", "latest", "--format", "maildir", "--out", exported)...); code != 0 {
		t.Fatalf("export = %d: %s", code, stderr)
	}
	s := startServe(t, repoFlags, "--users", writeUsers(t, login{"alice", "alice-secret", []string{"*"}}))
	dir := t.TempDir()
	cfg := mbsyncConfig(t, s, "alice", "alice-secret", dir)
	start := time.Now()
	out := runMbsync(t, cfg)
	t.Logf("mbsync pulled %d messages in %s", n, time.Since(start).Round(time.Millisecond))

	want := readMaildir(t, exported)
	got := readMaildir(t, dir)
	total, skipped := 0, 0
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
	t.Logf("%d messages compared, %d without a body skipped by mbsync", total, skipped)

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

var _ = goimap.FlagSeen
