package backup_test

import (
	"testing"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/repo/repotest"
	"codeberg.org/planb/planb/dedup"
)

// TestBackupAfterLostPack: when a pack is gone (and the index repaired, or
// not yet), the next backup does not keep the parent's entries of the
// messages whose data went with it: it lists their folders whole and
// stores again what the source still has.
func TestBackupAfterLostPack(t *testing.T) {
	for _, repairIndex := range []bool{false, true} {
		t.Run(map[bool]string{false: "index not repaired", true: "index repaired"}[repairIndex], func(t *testing.T) {
			ctx := t.Context()
			r, be := newRepo(t)
			src := sampleMailbox()
			first, err := backup.Run(ctx, r, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Remove the pack of the INBOX's first message.
			var chunk dedup.ID
			for i, f := range first.Folders {
				if f.Path == "INBOX" {
					r.Entries(ctx, first, i, func(e repo.Entry) error {
						if chunk.IsNull() && len(e.ChunkIDs()) > 0 {
							chunk = e.ChunkIDs()[0]
						}
						return nil
					})
				}
			}
			loc, ok := r.Index().Lookup(chunk)
			if !ok {
				t.Fatal("chunk not indexed")
			}
			pack := r.Index().Pack(loc.Pack)
			if err := be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: pack.String()}); err != nil {
				t.Fatal(err)
			}
			if repairIndex {
				if _, err := r.RepairIndex(ctx, nil); err != nil {
					t.Fatal(err)
				}
			}
			r = reopen(t, be)
			again, err := backup.Run(ctx, r, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			archivetest.Equal(t, src, repotest.Restore(t, r, again))
		})
	}
}

func reopen(t *testing.T, be backend.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Open(t.Context(), be, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var _ archive.Source = (*archivetest.Mailbox)(nil)
