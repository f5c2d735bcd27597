package s3_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/faulty"
	"codeberg.org/planb/planb/archive/backend/retry"
	"codeberg.org/planb/planb/archive/backend/s3"
	"codeberg.org/planb/planb/archive/backend/s3/s3test"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/archive/retention"
	"codeberg.org/planb/planb/dedup"
)

func TestMain(m *testing.M) {
	crypto.SetTestKDF()
	os.Exit(m.Run())
}

const password = "correct horse battery staple"

// body returns a message of about size bytes, unique for i.
func body(i, size int) []byte {
	rng := rand.New(rand.NewPCG(uint64(i), 17))
	b := fmt.Appendf(nil, "From: Alice <alice@example.eu>\r\nTo: bob@example.eu\r\nSubject: Report %d\r\nMessage-ID: <%d@example.eu>\r\n\r\n", i, i)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for len(b) < size {
		line := make([]byte, 76)
		for j := range line {
			line[j] = alphabet[rng.IntN(len(alphabet))]
		}
		b = append(append(b, line...), '\r', '\n')
	}
	return b
}

func restoreAll(t *testing.T, r *repo.Repository, snap *repo.Snapshot) *archivetest.Mailbox {
	t.Helper()
	got := archivetest.NewMailbox()
	rep, err := restore.Run(t.Context(), r, snap, got, nil)
	if err != nil {
		t.Fatalf("restore.Run: %v", err)
	}
	if len(rep.Skipped) != 0 {
		t.Fatalf("restore skipped %v", rep.Skipped)
	}
	return got
}

// TestRepository runs backups, byte-exact restores, forget, prune and
// check --read-data on a repository in versitygw, through the retry
// wrapper, once as it is and once with 20% of the requests failing.
func TestRepository(t *testing.T) {
	srv := s3test.Start(t)
	for _, rate := range []float64{0, 0.2} {
		t.Run(fmt.Sprintf("faults=%v", rate), func(t *testing.T) {
			ctx := t.Context()
			opts := srv.Options(fmt.Sprintf("repo-%v", rate))
			s, err := s3.Create(ctx, opts)
			if err != nil {
				t.Fatalf("Create(%q) = %v", opts.Location, err)
			}
			var be backend.Backend = s
			var f *faulty.Faulty
			if rate > 0 {
				f = faulty.New(s, faulty.Options{Seed: 1, Rate: rate})
				be = f
			}
			ropts := retry.Options{MaxAttempts: 12, InitialDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}
			be = retry.New(be, ropts)
			r, err := repo.Init(ctx, be, password, nil)
			if err != nil {
				t.Fatalf("repo.Init on %s: %v", opts.Location, err)
			}

			src := archivetest.NewMailbox()
			src.AddFolder(archive.Folder{Path: "INBOX"})
			src.AddFolder(archive.Folder{Path: "Archiv/2024", SpecialUse: archive.Archive})
			for i := range 20 {
				src.Add("INBOX", archivetest.Msg{Flags: []string{archive.FlagSeen}, InternalDate: time.Unix(1.7e9+int64(i)*3600, 0).UTC(), Body: body(i, 2000+i*500)})
			}
			src.Add("Archiv/2024", archivetest.Msg{InternalDate: time.Unix(1.7e9, 0).UTC(), Body: body(100, 3<<20)})
			for day := range 4 {
				// Each day brings a large unique message, removed again
				// after the backup so that only that snapshot holds it.
				id := src.Add("INBOX", archivetest.Msg{InternalDate: time.Unix(1.8e9+int64(day)*86400, 0).UTC(), Body: body(200+day, 400<<10)})
				snap, err := backup.Run(ctx, r, src, nil)
				if err != nil {
					t.Fatalf("day %d: backup.Run: %v", day, err)
				}
				archivetest.Equal(t, src, restoreAll(t, r, snap))
				src.Remove("INBOX", id)
			}

			all, err := r.Snapshots(ctx)
			if err != nil {
				t.Fatalf("Snapshots: %v", err)
			}
			_, remove := retention.Split(all, retention.Policy{Last: 2})
			var ids []dedup.ID
			for _, s := range remove {
				ids = append(ids, s.ID)
			}
			if len(ids) != 2 {
				t.Fatalf("retention removes %d snapshots, want 2", len(ids))
			}
			if err := r.Forget(ctx, ids); err != nil {
				t.Fatalf("Forget: %v", err)
			}
			rep, err := r.Prune(ctx, nil)
			if err != nil {
				t.Fatalf("Prune: %v", err)
			}
			if rep.RemovedPacks == 0 {
				t.Errorf("Prune removed no packs (report %+v), want the forgotten messages' packs", rep)
			}

			// A fresh connection sees the same repository.
			s2, err := s3.Open(ctx, opts)
			if err != nil {
				t.Fatalf("Open(%q) = %v", opts.Location, err)
			}
			r2, err := repo.Open(ctx, retry.New(s2, ropts), password, nil)
			if err != nil {
				t.Fatalf("repo.Open: %v", err)
			}
			c, err := r2.Check(ctx, &repo.CheckOptions{ReadData: true})
			if err != nil || !c.OK() || len(c.Unreferenced) != 0 {
				t.Errorf("check --read-data after prune = %+v, %v; want clean", c, err)
			}
			left, err := r2.Snapshots(ctx)
			if err != nil || len(left) != 2 {
				t.Fatalf("Snapshots after prune = %d, %v; want 2", len(left), err)
			}
			for _, s := range left {
				got := restoreAll(t, r2, s)
				if n := len(got.Messages("INBOX")); n != 21 {
					t.Errorf("snapshot %v restores %d INBOX messages, want 21", s.ID, n)
				}
				if ms := got.Messages("Archiv/2024"); len(ms) != 1 || string(ms[0].Body) != string(body(100, 3<<20)) {
					t.Errorf("snapshot %v: Archiv/2024 differs", s.ID)
				}
			}
			if f != nil {
				t.Logf("%d faults injected", f.Injected())
				if f.Injected() < 20 {
					t.Errorf("only %d faults injected, want at least 20", f.Injected())
				}
			}
		})
	}
}
