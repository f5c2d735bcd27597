package backup_test

import (
	"testing"

	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
)

// BenchmarkBackup measures a first backup of the crash-test mailbox
// (about 12 MB of text and attachments) into a local repository.
func BenchmarkBackup(b *testing.B) {
	mb := crashMailbox()
	var size int64
	for _, f := range []string{"INBOX", "Archiv/2025", "Sent"} {
		for _, m := range mb.Messages(f) {
			size += int64(len(m.Body))
		}
	}
	b.SetBytes(size)
	for b.Loop() {
		be, err := local.Create(b.Context(), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		r, err := repo.Init(b.Context(), be, password, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := backup.Run(b.Context(), r, mb, nil); err != nil {
			b.Fatal(err)
		}
	}
}
