package s3_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/archivetest"
	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/mem"
	"codeberg.org/planb/planb/archive/backend/retry"
	"codeberg.org/planb/planb/archive/backend/s3"
	"codeberg.org/planb/planb/archive/backend/s3/s3test"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// gateway is a versitygw process that a test can kill and start again on
// the same folder and port.
type gateway struct {
	t    *testing.T
	bin  string
	host string
	dir  string
	cmd  *exec.Cmd
}

func (g *gateway) start() {
	g.t.Helper()
	g.cmd = exec.Command(g.bin, "--access", "planbtest", "--secret", "planbtestsecret",
		"--port", g.host, "--quiet", "posix", g.dir)
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	for range 300 {
		if c, err := net.DialTimeout("tcp", g.host, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("versitygw does not listen on %s", g.host)
}

func (g *gateway) kill() {
	if g.cmd != nil {
		g.cmd.Process.Signal(syscall.SIGKILL)
		g.cmd.Wait()
		g.cmd = nil
	}
}

// killAfter is a backend that kills the server once n data files were
// saved through it.
type killAfter struct {
	backend.Backend
	n    int64
	kill func()
	done atomic.Bool
}

func (k *killAfter) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker) error {
	err := k.Backend.Save(ctx, h, rd)
	if err == nil && h.Type == backend.PackFile && atomic.AddInt64(&k.n, -1) == 0 {
		k.done.Store(true)
		k.kill()
	}
	return err
}

// TestServerKilled kills the S3 server in the middle of a backup: the
// backup fails with an error that names the unreachable server. After a
// restart on the same folder and port, the next backup completes, stores
// only the blobs the first one had not uploaded, and checks clean.
func TestServerKilled(t *testing.T) {
	bin, ok := s3test.Binary()
	if !ok {
		s3test.Start(t) // skips (or fails with PLANB_REQUIRE_S3=1)
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	g := &gateway{t: t, bin: bin, host: host, dir: t.TempDir()}
	if err := os.Mkdir(filepath.Join(g.dir, "planb"), 0o700); err != nil {
		t.Fatal(err)
	}
	g.start()
	t.Cleanup(g.kill)

	ctx := t.Context()
	opts := s3.Options{Location: "s3:http://" + host + "/planb/repo", AccessKeyID: "planbtest", SecretAccessKey: "planbtestsecret",
		Addressing: s3.AddressingPath, InsecurePlaintext: true}
	ropts := retry.Options{MaxAttempts: 4, InitialDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond}
	s, err := s3.Create(ctx, opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	params, err := dedup.NewParams()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(ctx, retry.New(s, ropts), password, &repo.Options{PackSize: 1 << 20, Chunker: &params}); err != nil {
		t.Fatalf("repo.Init: %v", err)
	}

	src := archivetest.NewMailbox()
	src.AddFolder(archive.Folder{Path: "INBOX"})
	for i := range 300 {
		src.Add("INBOX", archivetest.Msg{InternalDate: time.Unix(1.7e9+int64(i)*60, 0).UTC(), Body: body(1000+i, 30<<10)})
	}

	// The first backup: the server dies after the third pack.
	s, err = s3.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	k := &killAfter{Backend: s, n: 3, kill: g.kill}
	r, err := repo.Open(ctx, retry.New(k, ropts), password, nil)
	if err != nil {
		t.Fatalf("repo.Open: %v", err)
	}
	_, err = backup.Run(ctx, r, src, nil)
	if !k.done.Load() {
		t.Fatalf("the backup ended (%v) before the server was killed", err)
	}
	var op *net.OpError
	if err == nil || !errors.As(err, &op) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("backup.Run with the server killed = %v, want a connection refused error", err)
	}
	t.Logf("backup with the server killed: %v", err)

	// A clean run elsewhere gives the number of blobs of a whole backup.
	var total int64
	{
		mr, err := repo.Init(ctx, mem.New(), password, &repo.Options{PackSize: 1 << 20, Chunker: &params})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := backup.Run(ctx, mr, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		total = snap.Summary.AddedBlobs
	}

	g.start()
	s, err = s3.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open after restart: %v", err)
	}
	r, err = repo.Open(ctx, retry.New(s, ropts), password, nil)
	if err != nil {
		t.Fatalf("repo.Open after restart: %v", err)
	}
	if n, err := r.RemoveLocks(ctx, true); err != nil || n != 1 {
		t.Errorf("RemoveLocks = %d, %v; want the killed backup's lock", n, err)
	}
	snap, err := backup.Run(ctx, r, src, nil)
	if err != nil {
		t.Fatalf("backup.Run after restart: %v", err)
	}
	archivetest.Equal(t, src, restoreAll(t, r, snap))
	if snap.Summary.AddedBlobs >= total || snap.Summary.AddedBlobs == 0 {
		t.Errorf("backup after restart added %d of %d blobs, want fewer (reuse) but some", snap.Summary.AddedBlobs, total)
	}
	t.Logf("whole backup: %d blobs; after the restart: %d added", total, snap.Summary.AddedBlobs)
	c, err := r.Check(ctx, &repo.CheckOptions{ReadData: true})
	if err != nil || !c.OK() {
		t.Errorf("check --read-data = %+v, %v; want clean", c, err)
	}
}
