package graph_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/mailfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/graph"
)

// TestServeFake serves a fake tenant holding the Maildir named by
// PLANB_GRAPH_SERVE until its standard input closes. It is the server
// process of BenchmarkBackupRemote and does nothing otherwise.
func TestServeFake(t *testing.T) {
	dir := os.Getenv("PLANB_GRAPH_SERVE")
	if dir == "" {
		t.Skip("only run as the server of BenchmarkBackupRemote")
	}
	f := newFixture(t)
	mb := f.tenant.AddMailbox("bench@contoso.eu", "Bench")
	n := load(t, mb, dir, "", map[string]string{"Sent": "sentitems", "Drafts": "drafts", "Trash": "deleteditems", "Junk": "junkemail", "Archive": "archive"})
	cert, err := f.srv.WriteCertFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("serving %d %s %s\n", n, f.srv.URL(), cert)
	io.Copy(io.Discard, os.Stdin)
}

// BenchmarkBackupRemote compares, in this process, a backup of the Maildir
// named by PLANB_BENCH_MAILDIR with a backup of the same messages from a
// fake Graph server running in another process (as the real one runs on
// another machine). It reports wall time, this process's CPU time and peak
// RSS for both, and the Graph connector's overhead on each:
//
//	PLANB_BENCH_MAILDIR=DIR go test ./graph -run '^$' -bench BackupRemote -benchtime 1x
func BenchmarkBackupRemote(b *testing.B) {
	dir := os.Getenv("PLANB_BENCH_MAILDIR")
	if dir == "" {
		b.Skip("PLANB_BENCH_MAILDIR not set")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeFake$", "-test.v")
	cmd.Env = append(os.Environ(), "PLANB_GRAPH_SERVE="+dir)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var n int
	var url, certFile string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "serving %d %s %s", &n, &url, &certFile); err == nil {
			break
		}
	}
	if url == "" {
		b.Fatal("fake server did not start")
	}
	go io.Copy(io.Discard, out)
	pem, err := os.ReadFile(certFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16}}

	maildir, err := mailfile.NewMaildirSource(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := graph.NewClient(&graph.Options{Tenant: tenantID, ClientID: clientID, ClientSecret: secret, GraphEndpoint: url, AuthorityHost: url, HTTPClient: hc})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		mw, mc := timedBackup(b, maildir)
		gw, gc := timedBackup(b, c.Source("bench@contoso.eu"))
		b.ReportMetric(mw.Seconds(), "maildir-s")
		b.ReportMetric(gw.Seconds(), "graph-s")
		b.ReportMetric(mc.Seconds(), "maildir-cpu-s")
		b.ReportMetric(gc.Seconds(), "graph-cpu-s")
		b.ReportMetric(100*(gw.Seconds()/mw.Seconds()-1), "wall-overhead-%")
		b.ReportMetric(100*(gc.Seconds()/mc.Seconds()-1), "cpu-overhead-%")
		b.ReportMetric(float64(n)/gw.Seconds(), "graph-msgs/s")
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}

// timedBackup backs src up into a fresh local repository and returns the
// wall time and this process's CPU time (user + system) it took.
func timedBackup(b *testing.B, s archive.Source) (time.Duration, time.Duration) {
	b.Helper()
	be, err := local.Create(b.Context(), b.TempDir()+"/repo")
	if err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(b.Context(), be, "pw", nil)
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	start := time.Now()
	snap, err := backup.Run(b.Context(), r, s, nil)
	if err != nil {
		b.Fatal(err)
	}
	wall, cpu := time.Since(start), cpuTime()-cpu0
	if snap.Partial {
		b.Fatalf("partial: %v", snap.Skipped[:min(3, len(snap.Skipped))])
	}
	b.Logf("%s: %d messages in %v (cpu %v)", strings.SplitN(s.Describe(), ":", 2)[0], snap.Summary.Messages, wall, cpu)
	return wall, cpu
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
