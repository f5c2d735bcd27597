package graph_test

import (
	"os"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
)

// BenchmarkBackup backs up the Maildir named by PLANB_BENCH_MAILDIR (for
// example `go run ./cmd/mailgen -messages 20000 -size 200M -out DIR`) into
// a fresh local repository, either straight from the Maildir or from a
// fake Graph mailbox holding the same messages in memory. Run each one in
// a process of its own to read its peak RSS:
//
//	PLANB_BENCH_MAILDIR=DIR go test ./graph -run '^$' -bench 'Backup/maildir' -benchtime 1x
//	PLANB_BENCH_MAILDIR=DIR go test ./graph -run '^$' -bench 'Backup/graph' -benchtime 1x
func BenchmarkBackup(b *testing.B) {
	dir := os.Getenv("PLANB_BENCH_MAILDIR")
	if dir == "" {
		b.Skip("PLANB_BENCH_MAILDIR not set")
	}
	b.Run("maildir", func(b *testing.B) {
		src, err := mailfile.NewMaildirSource(dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		benchBackup(b, src)
	})
	b.Run("graph", func(b *testing.B) {
		f := newFixture(b)
		mb := f.tenant.AddMailbox("bench@contoso.eu", "Bench")
		n := load(b, mb, dir, "", map[string]string{"Sent": "sentitems", "Drafts": "drafts", "Trash": "deleteditems", "Junk": "junkemail", "Archive": "archive"})
		b.Logf("fake mailbox holds %d messages", n)
		c := f.client(b, nil)
		benchBackup(b, c.Source(mb.Address))
	})
}

func benchBackup(b *testing.B, src archive.Source) {
	ctx := b.Context()
	var msgs int64
	var elapsed time.Duration
	for b.Loop() {
		be, err := local.Create(ctx, b.TempDir()+"/repo")
		if err != nil {
			b.Fatal(err)
		}
		r, err := repo.Init(ctx, be, "pw", nil)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		snap, err := backup.Run(ctx, r, src, nil)
		if err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		if snap.Partial {
			b.Fatalf("partial: %v", snap.Skipped[:min(3, len(snap.Skipped))])
		}
		msgs += snap.Summary.Messages
	}
	b.ReportMetric(float64(msgs)/elapsed.Seconds(), "msgs/s")
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}
