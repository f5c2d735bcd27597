package backup_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/archive/retention"
	"codeberg.org/planb/planb/dedup"
)

func TestMain(m *testing.M) {
	crypto.SetTestKDF()
	os.Exit(m.Run())
}

const password = repotest.Password

func newRepo(t *testing.T) (*repo.Repository, *mem.Mem) {
	t.Helper()
	be := mem.New()
	return repotest.New(t, be), be
}

func date(i int) time.Time {
	return time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * 97 * time.Minute)
}

// message builds a plausible message with a secret-looking subject.
func message(i int, extra string) []byte {
	return []byte(fmt.Sprintf("From: Alice Example <alice@example.eu>\r\nTo: bob@example.eu\r\nSubject: Quarterly numbers %d\r\nMessage-ID: <%d@example.eu>\r\n\r\nHello Bob,\r\nhere are the numbers %d.\r\n%s", i, i, i, extra))
}

// attachment returns n pseudo-random bytes, base64-encoded in 76-char lines.
func attachment(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var b bytes.Buffer
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

func sampleMailbox() *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	mb.AddFolder(archive.Folder{Path: "Vertraulich/Entwürfe", SpecialUse: archive.Drafts})
	mb.AddFolder(archive.Folder{Path: "Sent", SpecialUse: archive.Sent})
	for i := range 30 {
		mb.Add("INBOX", archivetest.Msg{Flags: []string{archive.FlagSeen}, InternalDate: date(i), Body: message(i, "")})
	}
	mb.Add("INBOX", archivetest.Msg{InternalDate: date(40), Body: nil})                             // empty
	mb.Add("INBOX", archivetest.Msg{InternalDate: date(41), Body: []byte("no newline\x00NUL\rCR")}) // odd bytes
	big := message(99, string(attachment(1, 300<<10)))                                              // several chunks
	mb.Add("Vertraulich/Entwürfe", archivetest.Msg{Flags: []string{archive.FlagDraft, "$Label1"}, InternalDate: date(50), Body: big})
	mb.Add("Sent", archivetest.Msg{Flags: []string{archive.FlagSeen, archive.FlagAnswered}, InternalDate: date(51), Body: message(3, "")}) // same as INBOX #3
	return mb
}

func TestRoundTrip(t *testing.T) {
	r, _ := newRepo(t)
	src := sampleMailbox()
	snap, err := backup.Run(t.Context(), r, src, nil)
	if err != nil {
		t.Fatalf("backup.Run: %v", err)
	}
	if snap.Partial || snap.Summary.Messages != 34 {
		t.Fatalf("snapshot partial=%v messages=%d, want false, 34", snap.Partial, snap.Summary.Messages)
	}
	archivetest.Equal(t, src, repotest.Restore(t, r, snap))

	// Reopen from the backend with the password: same content.
	r2, err := repo.Open(t.Context(), r.Backend(), password, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s2, err := r2.FindSnapshot(t.Context(), "latest")
	if err != nil {
		t.Fatalf("FindSnapshot(latest): %v", err)
	}
	archivetest.Equal(t, src, repotest.Restore(t, r2, s2))
	for _, f := range s2.Folders {
		if f.Path == "Sent" && f.SpecialUse != archive.Sent {
			t.Errorf("Sent folder special use = %q, want %q", f.SpecialUse, archive.Sent)
		}
	}
}

func TestWrongPassword(t *testing.T) {
	r, _ := newRepo(t)
	_, err := repo.Open(t.Context(), r.Backend(), "not it", nil)
	if !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("Open(wrong) = %v, want ErrWrongPassword", err)
	}
	if err.Error() != "wrong password" {
		t.Errorf("error text = %q, want %q", err, "wrong password")
	}
}

func TestIncremental(t *testing.T) {
	r, be := newRepo(t)
	src := sampleMailbox()
	first, err := backup.Run(t.Context(), r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := totalSize(t, be)

	// Unchanged: nothing new but the snapshot file.
	second, err := backup.Run(t.Context(), r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.Summary.AddedBlobs != 0 || second.Summary.NewMessages != 0 {
		t.Errorf("unchanged backup added %d blobs, %d messages; want 0, 0", second.Summary.AddedBlobs, second.Summary.NewMessages)
	}
	if grown := totalSize(t, be) - before; grown > 4096 {
		t.Errorf("unchanged backup grew the repository by %d bytes, want < 4096", grown)
	}
	if second.Parent == nil || *second.Parent != first.ID {
		t.Errorf("parent = %v, want %s", second.Parent, first.ID)
	}
	samePages := func(a, b *repo.Snapshot, path string) bool {
		for _, fa := range a.Folders {
			for _, fb := range b.Folders {
				if fa.Path == path && fb.Path == path {
					return slices.Equal(fa.Pages, fb.Pages) && fa.Messages == fb.Messages && fa.Bytes == fb.Bytes
				}
			}
		}
		t.Fatalf("no folder %q in both snapshots", path)
		return false
	}
	for _, f := range first.Folders {
		if !samePages(first, second, f.Path) {
			t.Errorf("unchanged folder %q: pages or counts differ from the parent's", f.Path)
		}
	}

	// Change: 5 new, 3 flag changes, 2 deletions.
	msgs := src.Messages("INBOX")
	for i := range 5 {
		src.Add("INBOX", archivetest.Msg{InternalDate: date(100 + i), Body: message(100+i, "")})
	}
	for _, m := range msgs[:3] {
		src.SetFlags("INBOX", m.SourceID, []string{archive.FlagSeen, archive.FlagFlagged})
	}
	src.Remove("INBOX", msgs[5].SourceID)
	src.Remove("INBOX", msgs[6].SourceID)
	third, err := backup.Run(t.Context(), r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if third.Summary.NewMessages != 5 {
		t.Errorf("incremental stored %d new messages, want 5", third.Summary.NewMessages)
	}
	archivetest.Equal(t, src, repotest.Restore(t, r, third))
	if samePages(second, third, "INBOX") || !samePages(second, third, "Sent") {
		t.Error("after changes to INBOX only: INBOX kept its pages, or Sent did not")
	}
	// Flags only: the folder is listed again.
	src.SetFlags("Sent", src.Messages("Sent")[0].SourceID, []string{archive.FlagSeen})
	fourth, err := backup.Run(t.Context(), r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if samePages(third, fourth, "Sent") || !samePages(third, fourth, "INBOX") {
		t.Error("after a flag change in Sent: Sent kept its pages, or INBOX did not")
	}
	archivetest.Equal(t, src, repotest.Restore(t, r, fourth))
	// The first snapshot is unchanged.
	archivetest.Equal(t, sampleMailbox(), repotest.Restore(t, r, first))
}

func totalSize(t *testing.T, be backend.Backend) int64 {
	t.Helper()
	var n int64
	for _, ft := range backend.Types() {
		be.List(t.Context(), ft, func(fi backend.FileInfo) error { n += fi.Size; return nil })
	}
	return n
}

func TestDedup(t *testing.T) {
	r, be := newRepo(t)
	att := attachment(7, 2<<20) // 2 MB binary, ~2.7 MB base64
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	mb.AddFolder(archive.Folder{Path: "Archive"})
	for i := range 3 {
		// The same attachment forwarded three times, at different offsets.
		body := append(message(i, strings.Repeat("> quoted line\r\n", 17*i+1)), att...)
		mb.Add("INBOX", archivetest.Msg{InternalDate: date(i), Body: body})
	}
	same := message(500, "")
	mb.Add("INBOX", archivetest.Msg{InternalDate: date(9), Body: same})
	mb.Add("Archive", archivetest.Msg{InternalDate: date(9), Body: same})
	snap, err := backup.Run(t.Context(), r, mb, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored := totalSize(t, be)
	if max := int64(len(att)) * 115 / 100; stored > max {
		t.Errorf("three messages with the same %d-byte attachment stored in %d bytes, want <= %d", len(att), stored, max)
	}
	st, err := r.Stats(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 4 {
		t.Errorf("Stats.Messages = %d, want 4 distinct", st.Messages)
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, snap))

	// A second account holding the same message adds no data blob.
	other := archivetest.NewMailbox()
	other.AddFolder(archive.Folder{Path: "INBOX"})
	other.Add("INBOX", archivetest.Msg{InternalDate: date(9), Body: same})
	s2, err := backup.Run(t.Context(), r, other, &backup.Options{Host: "other"})
	if err != nil {
		t.Fatal(err)
	}
	// Only the folder page (a tree blob) is new.
	if s2.Summary.AddedBlobs != 1 {
		t.Errorf("second account added %d blobs, want 1 (its folder page)", s2.Summary.AddedBlobs)
	}
}

func TestNothingInClear(t *testing.T) {
	r, be := newRepo(t)
	if _, err := backup.Run(t.Context(), r, sampleMailbox(), nil); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"Entwürfe", "Vertraulich", "alice@example.eu", "Quarterly numbers", "Hello Bob", "INBOX", "Sent", "$Label1"}
	for h, data := range be.Contents() {
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s contains %q in clear", h, s)
			}
		}
	}
}

// TestTamperDetected flips one byte at many places of every file and
// requires each change to be detected by opening, loading or checking.
func TestTamperDetected(t *testing.T) {
	r, be := newRepo(t)
	if _, err := backup.Run(t.Context(), r, sampleMailbox(), nil); err != nil {
		t.Fatal(err)
	}
	for h, data := range be.Contents() {
		if h.Type == backend.KeyFile || h.Type == backend.LockFile {
			continue
		}
		for _, off := range []int{0, 1, len(data) / 3, len(data) / 2, len(data) - 5, len(data) - 1} {
			t.Run(fmt.Sprintf("%s@%d", h, off), func(t *testing.T) {
				cp := mem.New()
				for h2, d2 := range be.Contents() {
					cp.Save(t.Context(), h2, bytes.NewReader(d2))
				}
				if err := cp.Corrupt(h, int64(off)); err != nil {
					t.Fatal(err)
				}
				r2, err := repo.Open(t.Context(), cp, password, nil)
				if err != nil {
					return // detected at open
				}
				rep, err := r2.Check(t.Context(), &repo.CheckOptions{ReadData: true})
				if err != nil {
					return // detected
				}
				if rep.OK() {
					t.Errorf("flipping byte %d of %s went undetected", off, h)
				}
			})
		}
	}
}

func TestCheckNamesDamagedMessages(t *testing.T) {
	r, be := newRepo(t)
	src := sampleMailbox()
	snap, err := backup.Run(t.Context(), r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(t.Context(), &repo.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() {
		t.Fatalf("Check on a good repository = %+v, %v", rep, err)
	}
	// Damage a frame holding only a chunk of the big draft.
	var target repo.Entry
	for i, f := range snap.Folders {
		if f.Path == "Vertraulich/Entwürfe" {
			r.Entries(t.Context(), snap, i, func(e repo.Entry) error { target = e; return nil })
		}
	}
	var loc dedup.Location
	for _, c := range target.ChunkIDs() {
		if l, _ := r.Index().Lookup(c); l.FrameRaw == l.Length {
			loc = l // a chunk with a frame of its own
		}
	}
	if loc.Length == 0 {
		t.Fatal("no chunk of the draft has a frame of its own")
	}
	packID := r.Index().Pack(loc.Pack)
	h := backend.Handle{Type: backend.PackFile, Name: packID.String()}
	if err := be.Corrupt(h, int64(loc.FrameOffset)+100); err != nil {
		t.Fatal(err)
	}
	r2, err := repo.Open(t.Context(), be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = r2.Check(t.Context(), &repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Errors) != 1 || rep.Errors[0].File != h.String() {
		t.Fatalf("Check errors = %+v, want one naming %s", rep.Errors, h)
	}
	if ms := rep.Errors[0].Messages; len(ms) != 1 || ms[0].Folder != "Vertraulich/Entwürfe" {
		t.Errorf("affected messages = %+v, want the draft only", ms)
	}
	// Every other message still restores.
	got := archivetest.NewMailbox()
	res, err := restore.Run(t.Context(), r2, snap, got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 1 || res.Messages != 33 {
		t.Errorf("restore: %d messages, skipped %+v; want 33 and the draft", res.Messages, res.Skipped)
	}
}

func TestForgetPrune(t *testing.T) {
	r, be := newRepo(t)
	src := sampleMailbox()
	var snaps []*repo.Snapshot
	for day := range 4 {
		// Each day brings one large unique message.
		src.Add("INBOX", archivetest.Msg{InternalDate: date(200 + day), Body: message(200+day, string(attachment(uint64(100+day), 200<<10)))})
		s, err := backup.Run(t.Context(), r, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
		// Delete it again so that only this snapshot holds it.
		ms := src.Messages("INBOX")
		src.Remove("INBOX", ms[len(ms)-1].SourceID)
	}
	all, _ := r.Snapshots(t.Context())
	keep, remove := retention.Split(all, retention.Policy{Last: 2})
	if len(keep) != 2 || len(remove) != 2 || keep[0].ID != snaps[2].ID && keep[0].ID != snaps[3].ID {
		t.Fatalf("Split(last 2) kept %d, removed %d", len(keep), len(remove))
	}
	before := totalSize(t, be)
	var ids []dedup.ID
	for _, s := range remove {
		ids = append(ids, s.ID)
	}
	if err := r.Forget(t.Context(), ids); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Prune(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	freed := before - totalSize(t, be)
	if freed < 2*200<<10 {
		t.Errorf("prune freed %d bytes (report %+v), want >= %d", freed, rep, 2*200<<10)
	}
	left, _ := r.Snapshots(t.Context())
	if len(left) != 2 {
		t.Fatalf("%d snapshots left, want 2", len(left))
	}
	for i, s := range left {
		got := repotest.Restore(t, r, s)
		if n := len(got.Messages("INBOX")); n != 33 {
			t.Errorf("kept snapshot %d restores %d INBOX messages, want 33", i, n)
		}
	}
	if c, err := r.Check(t.Context(), &repo.CheckOptions{ReadData: true}); err != nil || !c.OK() || len(c.Unreferenced) != 0 {
		t.Errorf("check after prune = %+v, %v", c, err)
	}
}

func TestLocks(t *testing.T) {
	r, _ := newRepo(t)
	ctx := t.Context()
	a, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Lock(ctx, false)
	if err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	if _, err := r.Lock(ctx, true); !errors.Is(err, repo.ErrLocked) {
		t.Errorf("exclusive lock while shared held = %v, want ErrLocked", err)
	}
	if _, err := r.Prune(ctx, nil); !errors.Is(err, repo.ErrLocked) {
		t.Errorf("prune while a backup holds a lock = %v, want ErrLocked", err)
	}
	a.Unlock()
	b.Unlock()
	x, err := r.Lock(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(ctx, r, sampleMailbox(), nil); !errors.Is(err, repo.ErrLocked) {
		t.Errorf("backup while prune holds the lock = %v, want ErrLocked", err)
	}
	x.Unlock()
	if locks, _ := r.Locks(ctx); len(locks) != 0 {
		t.Errorf("locks left: %+v", locks)
	}
}

// skippingSource reports one message as unreadable.
type skippingSource struct {
	*archivetest.Mailbox
	skip string
}

func (s *skippingSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	return s.Mailbox.Sync(ctx, f, nil, &skipper{Changes: c, skip: s.skip})
}

type skipper struct {
	archive.Changes
	skip string
}

func (s *skipper) Put(m *archive.Message) error {
	if m.SourceID == s.skip {
		return s.Changes.Skip(m.SourceID, errors.New("permission denied"))
	}
	return s.Changes.Put(m)
}

func (s *skipper) Keep(id string, flags []string) error {
	if id == s.skip {
		return s.Changes.Skip(id, errors.New("permission denied"))
	}
	return s.Changes.Keep(id, flags)
}

func TestSkippedMessage(t *testing.T) {
	r, _ := newRepo(t)
	mb := sampleMailbox()
	victim := mb.Messages("INBOX")[4].SourceID
	// Unreadable on the first run: named, partial, absent.
	snap, err := backup.Run(t.Context(), r, &skippingSource{mb, victim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Partial || len(snap.Skipped) != 1 || snap.Skipped[0].SourceID != victim || snap.Skipped[0].Folder != "INBOX" {
		t.Fatalf("snapshot partial=%v skipped=%+v, want partial naming INBOX/%s", snap.Partial, snap.Skipped, victim)
	}
	if snap.Summary.Messages != 33 {
		t.Errorf("snapshot holds %d messages, want 33", snap.Summary.Messages)
	}
	// Readable: whole. Unreadable again: the parent's copy is kept.
	if _, err := backup.Run(t.Context(), r, mb, nil); err != nil {
		t.Fatal(err)
	}
	third, err := backup.Run(t.Context(), r, &skippingSource{mb, victim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !third.Partial || third.Summary.Messages != 34 {
		t.Errorf("third snapshot partial=%v messages=%d, want true, 34 (parent's copy kept)", third.Partial, third.Summary.Messages)
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, third))
}

// retryingSource starts each folder again after the body of one message
// broke off, as a source does after a dropped connection.
type retryingSource struct {
	*archivetest.Mailbox
	victim string
}

func (s *retryingSource) Sync(ctx context.Context, f archive.Folder, since archive.Cursor, c archive.Changes) (archive.Cursor, error) {
	if _, err := s.Mailbox.Sync(ctx, f, nil, &breaker{Changes: c, victim: s.victim}); err != nil {
		return nil, err
	}
	return s.Mailbox.Sync(ctx, f, nil, c)
}

type breaker struct {
	archive.Changes
	victim string
}

func (b *breaker) Put(m *archive.Message) error {
	if m.SourceID != b.victim {
		return b.Changes.Put(m)
	}
	broken := *m
	broken.Body = io.MultiReader(io.LimitReader(m.Body, 10), iotest.ErrReader(errors.New("connection reset by peer")))
	return b.Changes.Put(&broken)
}

// TestRetriedFolder: a message whose body broke off is not named skipped
// when the source's new listing of the folder (Reset) stores it.
func TestRetriedFolder(t *testing.T) {
	r, _ := newRepo(t)
	mb := sampleMailbox()
	victim := mb.Messages("INBOX")[4].SourceID
	snap, err := backup.Run(t.Context(), r, &retryingSource{mb, victim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Partial || len(snap.Skipped) != 0 {
		t.Errorf("snapshot partial=%v skipped=%+v, want whole", snap.Partial, snap.Skipped)
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, snap))
}

// TestFolderFrames: the small messages of two folders backed up at once
// are stored in frames of their own folder, so that reading one folder
// back (restore, planb serve) opens each frame once.
func TestFolderFrames(t *testing.T) {
	r, _ := newRepo(t)
	mb := archivetest.NewMailbox()
	folders := []string{"INBOX", "Archive"}
	for _, f := range folders {
		mb.AddFolder(archive.Folder{Path: f})
	}
	for i := range 400 {
		for k, f := range folders {
			// ~2.5 KB each: 400 of them fill about four frames.
			mb.Add(f, archivetest.Msg{InternalDate: date(i), Body: message(1000*k+i, strings.Repeat("filler line\r\n", 190))})
		}
	}
	snap, err := backup.Run(t.Context(), r, mb, &backup.Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	type frame struct{ pack, off uint32 }
	owner := make(map[frame]string)
	for k := range snap.Folders {
		path := snap.Folders[k].Path
		err := r.Entries(t.Context(), snap, k, func(e repo.Entry) error {
			for _, c := range e.ChunkIDs() {
				loc, ok := r.Index().Lookup(c)
				if !ok {
					return fmt.Errorf("chunk of %s not indexed", path)
				}
				f := frame{loc.Pack, loc.FrameOffset}
				if o, ok := owner[f]; ok && o != path {
					return fmt.Errorf("a frame holds messages of %s and %s", o, path)
				}
				owner[f] = path
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(owner) < 6 {
		t.Errorf("%d frames for 800 messages of 2.5 KB, want at least 6", len(owner))
	}
	archivetest.Equal(t, mb, repotest.Restore(t, r, snap))
}
