package graph_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/graph/graphtest"
)

func TestMain(m *testing.M) {
	crypto.SetTestKDF()
	os.Exit(m.Run())
}

const (
	tenantID = "11111111-2222-3333-4444-555555555555"
	domain   = "contoso.onmicrosoft.com"
	clientID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	secret   = "s3cret~value"
)

// root returns the repository's top folder.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// corpus returns the shared corpus folder, or "" when it is absent.
func corpus() string {
	dir := filepath.Join(root(), "..", "shared", "corpus")
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.txt")); err != nil {
		return ""
	}
	return dir
}

// fixture is a fake tenant and a client signed in to it.
type fixture struct {
	srv    *graphtest.Server
	tenant *graphtest.Tenant
	boxes  []*graphtest.Mailbox
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	srv := graphtest.NewServer()
	t.Cleanup(srv.Close)
	tn := srv.AddTenant(tenantID, domain)
	tn.AddApp(clientID, secret)
	return &fixture{srv: srv, tenant: tn}
}

func (f *fixture) options() *graph.Options {
	return &graph.Options{
		Tenant: tenantID, ClientID: clientID, ClientSecret: secret,
		GraphEndpoint: f.srv.URL(), AuthorityHost: f.srv.URL(), HTTPClient: f.srv.Client(),
	}
}

func (f *fixture) client(t testing.TB, mod func(*graph.Options)) *graph.Client {
	t.Helper()
	o := f.options()
	if mod != nil {
		mod(o)
	}
	c, err := graph.NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// load reads a Maildir (or a tree of plain message files) and adds its
// messages to mb: INBOX into the inbox, the folders named in wellKnown into
// those well-known folders, any other folder below parent, nested by path.
// Maildir flags become Graph's: \Seen isRead, \Flagged the follow-up flag,
// \Draft isDraft, keywords categories.
func load(t testing.TB, mb *graphtest.Mailbox, dir, parent string, wellKnown map[string]string) int {
	t.Helper()
	src, err := mailfile.NewMaildirSource(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	box, err := archivetest.Collect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	folders, _ := box.Folders(t.Context())
	ids := map[string]string{}
	n := 0
	for _, fo := range folders {
		id := folderFor(mb, ids, fo.Path, parent, wellKnown)
		for _, m := range box.Messages(fo.Path) {
			gm := graphtest.Message{MIME: m.Body, Received: m.InternalDate.UTC().Truncate(time.Second)}
			for _, fl := range m.Flags {
				switch fl {
				case archive.FlagSeen:
					gm.IsRead = true
				case archive.FlagFlagged:
					gm.Flagged = true
				case archive.FlagDraft:
					gm.IsDraft = true
				default:
					if !strings.HasPrefix(fl, `\`) {
						gm.Categories = append(gm.Categories, fl)
					}
				}
			}
			mb.AddMessage(id, gm)
			n++
		}
	}
	return n
}

func folderFor(mb *graphtest.Mailbox, ids map[string]string, path, parent string, wellKnown map[string]string) string {
	if id, ok := ids[path]; ok {
		return id
	}
	if path == "INBOX" && parent == "" {
		return mb.WellKnown("inbox")
	}
	if wk, ok := wellKnown[path]; ok {
		return mb.WellKnown(wk)
	}
	dir, name := "", path
	if i := strings.LastIndex(path, "/"); i >= 0 {
		dir, name = path[:i], path[i+1:]
	}
	pid := parent
	if dir != "" {
		pid = folderFor(mb, ids, dir, parent, wellKnown)
	}
	id := mb.AddFolder(pid, name, false)
	ids[path] = id
	return id
}

// tenant3 fills the fixture with three mailboxes: alice holds testdata/mail
// (its Sent, Drafts, Trash, Junk and Archive in the well-known folders),
// bob holds testdata again below Inbox/Old and, with the shared corpus,
// enron-dev; carol holds the other corpus sets in nested folders (or
// testdata below a hidden folder without the corpus). A user without a
// mailbox is listed too.
func (f *fixture) tenant3(t *testing.T) int {
	t.Helper()
	td := filepath.Join(root(), "testdata", "mail", "maildir")
	alice := f.tenant.AddMailbox("alice@contoso.eu", "Alice")
	bob := f.tenant.AddMailbox("bob@contoso.eu", "Bob")
	f.tenant.AddUser("printer@contoso.eu", "Printer")
	carol := f.tenant.AddMailbox("carol@contoso.eu", "Carol")
	f.boxes = []*graphtest.Mailbox{alice, bob, carol}
	wk := map[string]string{"Sent": "sentitems", "Drafts": "drafts", "Trash": "deleteditems", "Junk": "junkemail", "Archive": "archive"}
	n := load(t, alice, td, "", wk)
	old := bob.AddFolder("inbox", "Old", false)
	n += load(t, bob, td, old, nil)
	hidden := carol.AddFolder("", "Hidden stuff", true)
	if c := corpus(); c != "" {
		n += load(t, bob, filepath.Join(c, "enron-dev"), bob.AddFolder("", "Enron", false), nil)
		lists := carol.AddFolder("", "Lists", false)
		n += load(t, carol, filepath.Join(c, "lists-linux-man"), carol.AddFolder(lists, "linux-man", false), nil)
		n += load(t, carol, filepath.Join(c, "mime-edge"), carol.AddFolder(hidden, "MIME edge cases", false), nil)
	} else {
		t.Log("shared corpus absent: testdata only")
		n += load(t, carol, td, hidden, nil)
	}
	return n
}

// want is what a backup of mb must give back, from the fake's own state:
// paths from display names (the inbox as INBOX), flags mapped.
func want(mb *graphtest.Mailbox) *archivetest.Mailbox {
	out := archivetest.NewMailbox()
	for path, msgs := range mb.Messages() {
		if path == "Inbox" {
			path = "INBOX"
		} else if p, ok := strings.CutPrefix(path, "Inbox/"); ok {
			path = "INBOX/" + p
		}
		for _, m := range msgs {
			out.Add(path, archivetest.Msg{SourceID: m.ID, Flags: flagsOf(m), InternalDate: m.Received, Body: m.MIME})
		}
	}
	return out
}

func flagsOf(m graphtest.Message) []string {
	var fl []string
	if m.IsRead {
		fl = append(fl, archive.FlagSeen)
	}
	if m.Flagged {
		fl = append(fl, archive.FlagFlagged)
	}
	if m.IsDraft {
		fl = append(fl, archive.FlagDraft)
	}
	for _, c := range m.Categories {
		fl = append(fl, graph.Keyword(c))
	}
	return fl
}

// newRepo makes an in-memory repository.
func newRepo(t *testing.T) *repo.Repository {
	t.Helper()
	r, err := repo.Init(t.Context(), mem.New(), "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// backupRestore backs src up into r and restores the snapshot into a new
// in-memory mailbox.
func backupRestore(t *testing.T, ctx context.Context, r *repo.Repository, src archive.Source) (*repo.Snapshot, *archivetest.Mailbox) {
	t.Helper()
	snap, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatalf("backup %s: %v", src.Describe(), err)
	}
	got := archivetest.NewMailbox()
	if _, err := restore.Run(ctx, r, snap, got, nil); err != nil {
		t.Fatalf("restore %s: %v", src.Describe(), err)
	}
	return snap, got
}

// check compares a restored mailbox with the fake's content, ignoring the
// fake's empty folders.
func check(t *testing.T, mb *graphtest.Mailbox, got *archivetest.Mailbox) {
	t.Helper()
	archivetest.EqualOpts(t, want(mb), got, &archivetest.CompareOptions{IgnoreEmptyFolders: true})
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
