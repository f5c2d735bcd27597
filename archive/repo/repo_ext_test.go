package repo_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
)

// The package's TestMain (main_test.go) sets the cheap test KDF.

const password = "correct horse battery staple"

func date(i int) time.Time {
	return time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i) * 97 * time.Minute)
}

func message(i int) []byte {
	return fmt.Appendf(nil, "From: alice@example.eu\r\nTo: bob@example.eu\r\nSubject: Report %d\r\nMessage-ID: <%d@example.eu>\r\n\r\nNumbers %d.\r\n", i, i, i)
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// smallMailbox has 6 messages: 3 distinct small ones, one twice (in two
// folders), an empty one and a large one of several chunks.
func smallMailbox() *archivetest.Mailbox {
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	mb.AddFolder(archive.Folder{Path: "Archive"})
	for i := range 3 {
		mb.Add("INBOX", archivetest.Msg{InternalDate: date(i), Flags: []string{archive.FlagSeen}, Body: message(i)})
	}
	mb.Add("Archive", archivetest.Msg{InternalDate: date(0), Body: message(0)})
	mb.Add("Archive", archivetest.Msg{InternalDate: date(5), Body: nil})
	mb.Add("Archive", archivetest.Msg{InternalDate: date(6), Body: append(message(6), randomBytes(1, 600<<10)...)})
	return mb
}

func list(t *testing.T, be backend.Backend, ft backend.FileType) []backend.FileInfo {
	t.Helper()
	var out []backend.FileInfo
	if err := be.List(t.Context(), ft, func(fi backend.FileInfo) error { out = append(out, fi); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAdoptPacks(t *testing.T) {
	ctx := t.Context()
	be, err := local.Create(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := repotest.New(t, be)
	src := smallMailbox()
	snap, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	blobs := r.Index().Len()
	packs := list(t, be, backend.PackFile)
	if len(packs) < 2 {
		t.Fatalf("backup wrote %d packs, want data and tree packs", len(packs))
	}

	// A killed run: packs written, no index file.
	for _, fi := range list(t, be, backend.IndexFile) {
		if err := be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: fi.Name}); err != nil {
			t.Fatal(err)
		}
	}
	// And a pack whose upload was damaged: it stays unindexed.
	junk := dedup.Hash([]byte("junk")).String()
	if err := be.Save(ctx, backend.Handle{Type: backend.PackFile, Name: junk}, bytes.NewReader(randomBytes(2, 1000))); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r2, err := repo.Open(ctx, be, password, &repo.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Index().Len() != 0 {
		t.Fatalf("index without index files has %d blobs", r2.Index().Len())
	}
	if rep, err := r2.Check(ctx, nil); err != nil || rep.OK() || len(rep.Unreferenced) != len(packs)+1 {
		t.Errorf("Check before adopting = %+v, %v; want errors (pages not indexed) and %d unreferenced packs", rep, err, len(packs)+1)
	}

	n, err := r2.AdoptPacks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(packs) {
		t.Errorf("AdoptPacks() = %d, want %d", n, len(packs))
	}
	if r2.Index().Len() != blobs {
		t.Errorf("after AdoptPacks: %d blobs indexed, want %d", r2.Index().Len(), blobs)
	}
	if !strings.Contains(logs.String(), "unreadable pack left unindexed") || !strings.Contains(logs.String(), junk) {
		t.Errorf("log = %q, want a warning naming pack %s", logs.String(), junk)
	}
	if idx := list(t, be, backend.IndexFile); len(idx) != 1 {
		t.Errorf("AdoptPacks wrote %d index files, want 1", len(idx))
	}
	archivetest.Equal(t, src, repotest.Restore(t, r2, snap))
	if n, err := r2.AdoptPacks(ctx); n != 0 || err != nil {
		t.Errorf("second AdoptPacks() = %d, %v; want 0, nil", n, err)
	}

	// The new index file is enough for a fresh Open.
	r3, err := repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r3.EnsureIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if r3.Index().Len() != blobs {
		t.Errorf("reopened: %d blobs indexed, want %d", r3.Index().Len(), blobs)
	}
	archivetest.Equal(t, src, repotest.Restore(t, r3, snap))
	rep, err := r3.Check(ctx, &repo.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || len(rep.Unreferenced) != 1 || rep.Unreferenced[0] != junk {
		t.Errorf("Check after adopting = %+v, %v; want OK with the junk pack unreferenced", rep, err)
	}
}

func TestFindSnapshot(t *testing.T) {
	ctx := t.Context()
	r := repotest.New(t, mem.New())
	if _, err := r.FindSnapshot(ctx, "latest"); !errors.Is(err, repo.ErrNoSnapshot) {
		t.Errorf("FindSnapshot(latest) in an empty repository = %v, want ErrNoSnapshot", err)
	}
	// 17 snapshots: two of them share their first hex digit.
	var snaps []*repo.Snapshot
	byDigit := make(map[byte][]*repo.Snapshot)
	for i := range 17 {
		s := &repo.Snapshot{Time: date(i * 10), Host: "h", Source: "mem:", Folders: []repo.FolderEntry{}}
		if err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
		d := s.ID.String()[0]
		byDigit[d] = append(byDigit[d], s)
	}
	var ambiguous string
	for d, ss := range byDigit {
		if len(ss) > 1 {
			ambiguous = string(d)
		}
	}
	newest := snaps[16]
	tests := []struct {
		ref     string
		want    *repo.Snapshot
		wantErr string
	}{
		{"latest", newest, ""},
		{newest.ID.String(), newest, ""},
		{snaps[3].ID.Short(), snaps[3], ""},
		{strings.ToUpper(snaps[5].ID.String()[:12]), snaps[5], ""},
		{ambiguous, nil, fmt.Sprintf("prefix matches %d snapshots", len(byDigit[ambiguous[0]]))},
		{"", nil, "no such snapshot"},
		{"Latest", nil, "no such snapshot"},
		{strings.Repeat("0", 64), nil, "no such snapshot"},
		{newest.ID.String() + "0", nil, "no such snapshot"},
		{"xyz", nil, "no such snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := r.FindSnapshot(ctx, tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FindSnapshot(%q) = %v, %v; want an error containing %q", tt.ref, got, err, tt.wantErr)
				}
				if tt.wantErr == "no such snapshot" && !errors.Is(err, repo.ErrNoSnapshot) {
					t.Errorf("FindSnapshot(%q) = %v, want it to wrap ErrNoSnapshot", tt.ref, err)
				}
				return
			}
			if err != nil || got.ID != tt.want.ID || !got.Time.Equal(tt.want.Time) || got.Version != repo.SnapshotVersion {
				t.Errorf("FindSnapshot(%q) = %+v, %v; want snapshot %s", tt.ref, got, err, tt.want.ID.Short())
			}
		})
	}

	// Snapshots come oldest first; the name is the hash of the file.
	all, err := r.Snapshots(ctx)
	if err != nil || len(all) != 17 {
		t.Fatalf("Snapshots() = %d, %v", len(all), err)
	}
	for i, s := range all {
		if s.ID != snaps[i].ID {
			t.Errorf("Snapshots()[%d] = %s, want %s", i, s.ID.Short(), snaps[i].ID.Short())
		}
	}
	be := r.Backend()
	for _, fi := range list(t, be, backend.SnapshotFile) {
		data, err := backend.ReadAll(ctx, be, backend.Handle{Type: backend.SnapshotFile, Name: fi.Name})
		if err != nil || dedup.Hash(data).String() != fi.Name {
			t.Errorf("snapshots/%s is not named by its content's hash (%v)", fi.Name, err)
		}
	}

	// Forget removes them.
	if err := r.Forget(ctx, []dedup.ID{newest.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.FindSnapshot(ctx, newest.ID.String()); !errors.Is(err, repo.ErrNoSnapshot) {
		t.Errorf("FindSnapshot(forgotten) = %v, want ErrNoSnapshot", err)
	}
	if got, err := r.FindSnapshot(ctx, "latest"); err != nil || got.ID != snaps[15].ID {
		t.Errorf("FindSnapshot(latest) after forget = %v, %v; want %s", got, err, snaps[15].ID.Short())
	}
}

func TestStats(t *testing.T) {
	ctx := t.Context()
	r := repotest.New(t, mem.New())
	src := smallMailbox()
	first, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Expected numbers, from the mailbox: distinct messages by content.
	bodies := make(map[dedup.ID][]byte)
	for _, f := range []string{"INBOX", "Archive"} {
		for _, m := range src.Messages(f) {
			bodies[dedup.Hash(m.Body)] = m.Body
		}
	}
	var raw int64
	chunks := 0
	for _, b := range bodies {
		raw += int64(len(b))
		switch {
		case len(b) == 0:
		case len(b) < int(r.Config().Chunker.MinSize):
			chunks++
		default:
			c := dedup.NewChunker(r.Config().Chunker, bytes.NewReader(b))
			for {
				if _, err := c.Next(nil); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				chunks++
			}
		}
	}
	if len(bodies) != 5 || chunks < 5 {
		t.Fatalf("test mailbox: %d distinct messages, %d chunks; want 5 and more than 5", len(bodies), chunks)
	}
	storedSize := func() int64 {
		var n int64
		for _, ft := range backend.Types() {
			if ft == backend.LockFile {
				continue
			}
			for _, fi := range list(t, r.Backend(), ft) {
				n += fi.Size
			}
		}
		return n
	}

	st, err := r.Stats(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := repo.Stats{Snapshots: 1, Messages: 5, RawBytes: raw, Blobs: int64(chunks), BlobBytes: raw, StoredBytes: storedSize()}
	want.Ratio = float64(want.StoredBytes) / float64(raw)
	if st != want {
		t.Errorf("Stats(nil) = %+v, want %+v", st, want)
	}

	// A second snapshot with one more message.
	extra := message(100)
	src.Add("INBOX", archivetest.Msg{InternalDate: date(100), Body: extra})
	if _, err := backup.Run(ctx, r, src, nil); err != nil {
		t.Fatal(err)
	}
	st2, err := r.Stats(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want2 := repo.Stats{Snapshots: 2, Messages: 6, RawBytes: raw + int64(len(extra)), Blobs: int64(chunks) + 1, BlobBytes: raw + int64(len(extra)), StoredBytes: storedSize()}
	want2.Ratio = float64(want2.StoredBytes) / float64(want2.RawBytes)
	if st2 != want2 {
		t.Errorf("Stats(nil) after a second backup = %+v, want %+v", st2, want2)
	}
	// Only the first snapshot: its numbers, with today's stored size.
	st1, err := r.Stats(ctx, []*repo.Snapshot{first})
	if err != nil {
		t.Fatal(err)
	}
	want.StoredBytes = want2.StoredBytes
	want.Ratio = float64(want.StoredBytes) / float64(raw)
	if st1 != want {
		t.Errorf("Stats(first) = %+v, want %+v", st1, want)
	}
}

// TestRefreshIndex: a repository kept open learns the index files
// another process writes, and forgets the packs another process's prune
// removes, so that it stores their blobs again rather than referring to
// data that is gone.
func TestRefreshIndex(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	long := repotest.New(t, be) // the watch's, kept open
	other, err := repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := smallMailbox()
	snap, err := backup.Run(ctx, other, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if long.Index().Len() != 0 {
		t.Fatalf("before refresh: %d blobs indexed, want 0", long.Index().Len())
	}
	if err := long.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := long.Index().Len(), other.Index().Len(); got != want {
		t.Fatalf("after refresh: %d blobs indexed, want %d", got, want)
	}
	archivetest.Equal(t, src, repotest.Restore(t, long, snap))

	// The other process forgets everything and prunes: every pack goes.
	if err := other.Forget(ctx, []dedup.ID{snap.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Prune(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := long.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if n := long.Index().Len(); n != 0 {
		t.Errorf("after the other's prune: %d blobs still indexed, want 0", n)
	}
	// A backup through the long-lived handle stores everything again.
	snap2, err := backup.Run(ctx, long, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := long.Check(ctx, &repo.CheckOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("Check = %+v, %v", rep, err)
	}
	archivetest.Equal(t, src, repotest.Restore(t, long, snap2))
	// Nothing changed: a refresh is one listing.
	if err := long.RefreshIndex(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestIndexDuringSave: a pack, and its index file, that a backup of the
// same Repository saves while RefreshIndex lists index/ or AdoptPacks
// lists the packs, are not taken for ones a prune removed. A migrate
// --plan runs several backups in one process: before this, one account's
// backup dropped the packs another had just indexed, and a restore of
// that other account then failed with "blob ...: not in index".
func TestIndexDuringSave(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  backend.FileType
		call func(*repo.Repository, context.Context) error
	}{
		{"RefreshIndex", backend.IndexFile, (*repo.Repository).RefreshIndex},
		{"AdoptPacks", backend.PackFile, func(r *repo.Repository, ctx context.Context) error { _, err := r.AdoptPacks(ctx); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			lb := &listHookBackend{Backend: mem.New(), typ: tc.typ}
			r := repotest.New(t, lb)
			data := []byte("a blob saved while another backup lists the " + tc.name)
			id := dedup.Hash(data)
			lb.afterList = func() {
				// The listing is taken; a backup of the same handle now
				// saves a pack and writes its index file.
				s := r.NewSaver(ctx)
				if _, err := s.Add(pack.DataBlob, id, data); err != nil {
					t.Error(err)
				}
				if _, err := s.Flush(); err != nil {
					t.Error(err)
				}
			}
			if err := tc.call(r, ctx); err != nil {
				t.Fatal(err)
			}
			if lb.afterList != nil {
				t.Fatal("the listing was not taken")
			}
			if got, err := r.LoadBlob(ctx, id); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("LoadBlob = %q, %v; want the blob saved during the listing", got, err)
			}
		})
	}
}

// listHookBackend calls afterList once, after the first listing of files
// of type typ is taken and before it is returned.
type listHookBackend struct {
	backend.Backend
	typ       backend.FileType
	afterList func()
}

func (b *listHookBackend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	var infos []backend.FileInfo
	if err := b.Backend.List(ctx, t, func(fi backend.FileInfo) error { infos = append(infos, fi); return nil }); err != nil {
		return err
	}
	if t == b.typ && b.afterList != nil {
		f := b.afterList
		b.afterList = nil
		f()
	}
	for _, fi := range infos {
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// countingBackend counts the pack loads of the backend it wraps.
type countingBackend struct {
	backend.Backend
	mu    sync.Mutex
	packs int
}

func (c *countingBackend) Load(ctx context.Context, h backend.Handle, offset, length int64) (io.ReadCloser, error) {
	if h.Type == backend.PackFile {
		c.mu.Lock()
		c.packs++
		c.mu.Unlock()
	}
	return c.Backend.Load(ctx, h, offset, length)
}

// TestSetFrameCache: blobs read again soon come from the frame cache,
// which keeps as many frames as SetFrameCache says.
func TestSetFrameCache(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	w := repotest.New(t, be)
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	for i := range 30 {
		// Random bytes: one chunk of 64 KiB or more, a frame of its own.
		mb.Add("INBOX", archivetest.Msg{InternalDate: date(i), Body: append(message(i), randomBytes(uint64(i+10), 100<<10)...)})
	}
	snap, err := backup.Run(ctx, w, mb, &backup.Options{Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, frames := range []int{0, 64} {
		cb := &countingBackend{Backend: be}
		r, err := repo.Open(ctx, cb, password, nil)
		if err != nil {
			t.Fatal(err)
		}
		if frames > 0 {
			r.SetFrameCache(frames)
		}
		var entries []repo.Entry
		if err := r.Entries(ctx, snap, 0, func(e repo.Entry) error { entries = append(entries, e); return nil }); err != nil {
			t.Fatal(err)
		}
		read := func() int {
			before := cb.packs
			for _, e := range entries {
				for _, id := range e.ChunkIDs() {
					if _, err := r.LoadBlob(ctx, id); err != nil {
						t.Fatal(err)
					}
				}
			}
			return cb.packs - before
		}
		first, second := read(), read()
		switch {
		case first <= 16:
			t.Fatalf("%d pack loads: want more frames than the default cache keeps", first)
		case frames == 0 && second == 0:
			t.Errorf("the default cache of 16 frames kept all %d", first)
		case frames == 64 && second != 0:
			t.Errorf("a cache of 64 frames: %d pack loads to read %d frames again, want 0", second, first)
		}
	}
}

// vanishing lists one snapshot more than it holds: one that another
// process removed after the listing.
type vanishing struct {
	backend.Backend
	gone string
}

func (v vanishing) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := v.Backend.List(ctx, t, fn); err != nil {
		return err
	}
	if t == backend.SnapshotFile {
		return fn(backend.FileInfo{Name: v.gone, Size: 100})
	}
	return nil
}

// TestSnapshotsWhileForgotten: a snapshot removed between the listing and
// its loading (a watch's retention runs while `planb snapshots` lists) is
// left out, not an error; a damaged one still is.
func TestSnapshotsWhileForgotten(t *testing.T) {
	ctx := t.Context()
	be := mem.New()
	r := repotest.New(t, be)
	for i := range 3 {
		if err := r.SaveSnapshot(ctx, &repo.Snapshot{Time: date(i), Host: "h", Source: "mem:", Folders: []repo.FolderEntry{}}); err != nil {
			t.Fatal(err)
		}
	}
	r2, err := repo.Open(ctx, vanishing{be, dedup.Hash([]byte("forgotten")).String()}, repotest.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r2.Snapshots(ctx)
	if err != nil || len(snaps) != 3 {
		t.Fatalf("Snapshots = %d snapshots, %v; want 3 and no error", len(snaps), err)
	}
	if _, err := r2.FindSnapshot(ctx, "latest"); err != nil {
		t.Errorf("FindSnapshot(latest) = %v", err)
	}
	// A file that is there but damaged is still named.
	bad := dedup.Hash([]byte("damaged")).String()
	if err := be.Save(ctx, backend.Handle{Type: backend.SnapshotFile, Name: bad}, strings.NewReader("not sealed")); err != nil {
		t.Fatal(err)
	}
	if snaps, err := r2.Snapshots(ctx); !errors.Is(err, repo.ErrDamaged) || len(snaps) != 3 {
		t.Errorf("Snapshots with a damaged one = %d snapshots, %v; want 3 and ErrDamaged", len(snaps), err)
	}
}

// TestCiphers: a repository made with either cipher keeps it, opens with
// its password, checks clean with every frame read, and gives its
// messages back byte for byte.
func TestCiphers(t *testing.T) {
	for _, c := range []crypto.Cipher{crypto.XChaCha20Poly1305, crypto.XAES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			r, _ := backupReopen(t, &repo.Options{Cipher: c}, smallMailbox())
			if r.Cipher() != c {
				t.Fatalf("reopened repository seals with %v, want %v", r.Cipher(), c)
			}
		})
	}
}

// TestCompressions: a repository made with either compression keeps it,
// checks clean with every frame read and gives its messages back byte for
// byte; base64 attachments take about a third more room with fast than
// with max. A config naming a compression this planb does not know opens,
// with a warning, and writes as max does.
func TestCompressions(t *testing.T) {
	mb := archivetest.NewMailbox()
	mb.AddFolder(archive.Folder{Path: "INBOX"})
	for i := range 4 {
		body := fmt.Appendf(nil, "From: alice@example.eu\nSubject: Scan %d\nContent-Type: image/jpeg\nContent-Transfer-Encoding: base64\n\n", i)
		enc := base64.StdEncoding.EncodeToString(randomBytes(uint64(10+i), 300<<10))
		for ; len(enc) > 76; enc = enc[76:] {
			body = append(append(body, enc[:76]...), '\n')
		}
		mb.Add("INBOX", archivetest.Msg{InternalDate: date(i), Body: append(append(body, enc...), '\n')})
	}
	// max stores base64 lines decoded, and so does a repository made with
	// it, reopened; fast and repositories made before (base64_lines absent
	// from the config) keep them as they are.
	size := map[string]int64{}
	for _, tc := range []struct {
		name  string
		comp  pack.Compression
		lines bool
	}{{"max", pack.CompressionMax, true}, {"fast", pack.CompressionFast, false}, {"max before", pack.CompressionMax, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var edit func(*repo.Config)
			if !tc.lines && tc.comp == pack.CompressionMax {
				edit = func(c *repo.Config) { c.Base64Lines = false }
			}
			r, be := backupReopenEdit(t, &repo.Options{Compression: tc.comp}, edit, mb)
			if r.Compression() != tc.comp || r.Config().Base64Lines != tc.lines || r.Codec().Base64Lines() != tc.lines {
				t.Fatalf("reopened repository compresses with %v, base64 lines %v (codec %v); want %v, %v",
					r.Compression(), r.Config().Base64Lines, r.Codec().Base64Lines(), tc.comp, tc.lines)
			}
			decoded := 0
			r.Index().Each(func(id dedup.ID, loc dedup.Location) {
				if loc.Flags&pack.FlagBase64 != 0 {
					decoded++
				}
			})
			if (decoded > 0) != tc.lines {
				t.Errorf("%d blobs in frames of base64 lines decoded, want them %v", decoded, tc.lines)
			}
			for _, fi := range list(t, be, backend.PackFile) {
				size[tc.name] += fi.Size
			}
		})
	}
	for _, c := range []struct {
		a, b   string
		lo, hi float64
	}{{"fast", "max", 1.28, 1.40}, {"fast", "max before", 1.25, 1.40}, {"max", "max before", 0.95, 1.0}} {
		if ratio := float64(size[c.a]) / float64(size[c.b]); !(ratio >= c.lo && ratio <= c.hi) {
			t.Errorf("packs: %s %d bytes, %s %d: ratio %.3f, want %.2f-%.2f", c.a, size[c.a], c.b, size[c.b], ratio, c.lo, c.hi)
		}
	}

	ctx := t.Context()
	be := mem.New()
	r, err := repo.Init(ctx, be, password, &repo.Options{Compression: pack.CompressionFast})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.RewriteConfig(r, func(c *repo.Config) { c.Compression = "later" }); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	r, err = repo.Open(ctx, be, password, &repo.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatalf("open with compression \"later\": %v", err)
	}
	if r.Compression() != pack.CompressionMax || !strings.Contains(logged.String(), "unknown compression") || !strings.Contains(logged.String(), "later") {
		t.Errorf("compression \"later\" opens as %v, logging %q; want max and a warning", r.Compression(), logged.String())
	}
}

// backupReopen makes a repository with opts, backs mb up into it, reopens
// it and checks it with every frame read and every message read back byte
// for byte. It returns the reopened repository and its backend.
func backupReopen(t *testing.T, opts *repo.Options, mb *archivetest.Mailbox) (*repo.Repository, backend.Backend) {
	t.Helper()
	return backupReopenEdit(t, opts, nil, mb)
}

// backupReopenEdit is backupReopen with the new repository's config
// changed by edit (unless nil) before the backup, as another planb might
// have written it.
func backupReopenEdit(t *testing.T, opts *repo.Options, edit func(*repo.Config), mb *archivetest.Mailbox) (*repo.Repository, backend.Backend) {
	t.Helper()
	ctx := t.Context()
	be := mem.New()
	r, err := repo.Init(ctx, be, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		if err := repo.RewriteConfig(r, edit); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if r, err = repo.Open(ctx, be, password, nil); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := backup.Run(ctx, r, mb, &backup.Options{Host: "a"})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err = repo.Open(ctx, be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	rep, err := r.Check(ctx, &repo.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || rep.PacksRead == 0 {
		t.Fatalf("check --read-data = %+v, %v", rep, err)
	}
	for fi, f := range snap.Folders {
		var got [][]byte
		err := r.Entries(ctx, snap, fi, func(e repo.Entry) error {
			var b []byte
			for _, id := range e.ChunkIDs() {
				blob, err := r.LoadBlob(ctx, id)
				if err != nil {
					return err
				}
				b = append(b, blob...)
			}
			got = append(got, b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := mb.Messages(f.Path)
		if len(got) != len(want) {
			t.Fatalf("%s: %d messages, want %d", f.Path, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i].Body) {
				t.Errorf("%s message %d: %d bytes differ from the %d stored", f.Path, i, len(got[i]), len(want[i].Body))
			}
		}
	}
	return r, be
}
