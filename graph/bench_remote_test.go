package graph_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
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
// another machine). It reports for both the wall time, this process's CPU
// time and peak RSS (Linux), the fake's CPU time during the Graph backup,
// and the Graph connector's overhead on each; the CPU profile labels each
// side src=maildir or src=graph (pprof -tagfocus):
//
//	PLANB_BENCH_MAILDIR=DIR go test ./graph -run '^$' -bench BackupRemote -benchtime 3x
//
// PLANB_BENCH_HTTP2=1 uses an HTTP/2 transport instead of the client's
// default (HTTP/1.1); PLANB_BENCH_FAKE_PROFILE=FILE writes the fake's CPU
// profile.
func BenchmarkBackupRemote(b *testing.B) {
	dir := os.Getenv("PLANB_BENCH_MAILDIR")
	if dir == "" {
		b.Skip("PLANB_BENCH_MAILDIR not set")
	}
	args := []string{"-test.run=^TestServeFake$", "-test.v"}
	if prof := os.Getenv("PLANB_BENCH_FAKE_PROFILE"); prof != "" {
		args = append(args, "-test.cpuprofile="+prof)
	}
	cmd := exec.Command(os.Args[0], args...)
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
	// The client's own default transport, trusting the fake; or, to
	// compare, HTTP/2.
	tr := graph.DefaultTransport()
	if os.Getenv("PLANB_BENCH_HTTP2") != "" {
		tr = &http.Transport{ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16}
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	hc := &http.Client{Transport: tr}

	maildir, err := mailfile.NewMaildirSource(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := graph.NewClient(&graph.Options{Tenant: tenantID, ClientID: clientID, ClientSecret: secret, GraphEndpoint: url, AuthorityHost: url, HTTPClient: hc})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m := timedBackup(b, maildir, 0)
		g := timedBackup(b, c.Source("bench@contoso.eu"), cmd.Process.Pid)
		b.ReportMetric(m.wall.Seconds(), "maildir-s")
		b.ReportMetric(g.wall.Seconds(), "graph-s")
		b.ReportMetric(m.cpu.Seconds(), "maildir-cpu-s")
		b.ReportMetric(g.cpu.Seconds(), "graph-cpu-s")
		b.ReportMetric(g.fakeCPU.Seconds(), "fake-cpu-s")
		b.ReportMetric(100*(g.wall.Seconds()/m.wall.Seconds()-1), "wall-overhead-%")
		b.ReportMetric(100*(g.cpu.Seconds()/m.cpu.Seconds()-1), "cpu-overhead-%")
		b.ReportMetric(float64(n)/g.wall.Seconds(), "graph-msgs/s")
		b.ReportMetric(float64(n)/m.wall.Seconds(), "maildir-msgs/s")
		if m.peakRSS > 0 && g.peakRSS > 0 {
			b.ReportMetric(float64(m.peakRSS)/(1<<20), "maildir-peak-RSS-MiB")
			b.ReportMetric(float64(g.peakRSS)/(1<<20), "graph-peak-RSS-MiB")
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}

// timing is what one timed backup cost.
type timing struct {
	wall, cpu time.Duration
	fakeCPU   time.Duration // the fake server's CPU time, when it runs apart
	peakRSS   int64         // this process's peak RSS during the backup (Linux), or 0
}

// timedBackup backs src up into a fresh local repository and returns the
// wall time, this process's CPU time (user + system) and peak RSS it took,
// and the CPU time of the process fakePID (if not 0). The CPU profile
// gets the label src=maildir or src=graph.
func timedBackup(b *testing.B, s archive.Source, fakePID int) timing {
	b.Helper()
	be, err := local.Create(b.Context(), b.TempDir()+"/repo")
	if err != nil {
		b.Fatal(err)
	}
	r, err := repo.Init(b.Context(), be, "pw", nil)
	if err != nil {
		b.Fatal(err)
	}
	kind := strings.SplitN(s.Describe(), ":", 2)[0]
	runtime.GC()
	resetPeakRSS()
	fake0 := procCPU(fakePID)
	cpu0 := cpuTime()
	start := time.Now()
	var snap *repo.Snapshot
	pprof.Do(b.Context(), pprof.Labels("src", kind), func(ctx context.Context) {
		snap, err = backup.Run(ctx, r, s, nil)
	})
	if err != nil {
		b.Fatal(err)
	}
	t := timing{wall: time.Since(start), cpu: cpuTime() - cpu0, fakeCPU: procCPU(fakePID) - fake0, peakRSS: peakRSS()}
	if snap.Partial {
		b.Fatalf("partial: %v", snap.Skipped[:min(3, len(snap.Skipped))])
	}
	b.Logf("%s: %d messages in %v (cpu %v, fake cpu %v, peak RSS %.1f MiB)", kind, snap.Summary.Messages, t.wall, t.cpu, t.fakeCPU, float64(t.peakRSS)/(1<<20))
	return t
}

// resetPeakRSS resets this process's peak RSS (Linux: VmHWM).
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns this process's peak RSS since resetPeakRSS, or 0.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// procCPU returns the CPU time (user + system) of process pid so far
// (Linux), or 0.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (in parentheses): utime and stime are
	// the 12th and 13th, in clock ticks (100 per second on Linux).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSourceAlone reads every message of a source and throws it away: the
// source's own cost, without the archive's (chunking, compression,
// encryption). It is run by scripts/bench-graph.sh with PLANB_SOURCE_ALONE
// set to "maildir DIR" or "graph URL" (the fake's, trusted through
// SSL_CERT_FILE), and does nothing otherwise. Folders are read two at a
// time, as backup.Run does.
func TestSourceAlone(t *testing.T) {
	kind, arg, _ := strings.Cut(os.Getenv("PLANB_SOURCE_ALONE"), " ")
	var src archive.Source
	switch kind {
	case "":
		t.Skip("only run by scripts/bench-graph.sh")
	case "maildir":
		m, err := mailfile.NewMaildirSource(arg, nil)
		if err != nil {
			t.Fatal(err)
		}
		src = m
	case "graph":
		c, err := graph.NewClient(&graph.Options{Tenant: tenantID, ClientID: clientID, ClientSecret: secret, GraphEndpoint: arg, AuthorityHost: arg})
		if err != nil {
			t.Fatal(err)
		}
		src = c.Source("bench@contoso.eu")
	default:
		t.Fatalf("PLANB_SOURCE_ALONE=%q: want \"maildir DIR\" or \"graph URL\"", kind)
	}
	ctx := t.Context()
	cpu0, start := cpuTime(), time.Now()
	folders, err := src.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu          sync.Mutex
		msgs, bytes int64
		firstErr    error
		wg          sync.WaitGroup
		sem         = make(chan struct{}, 2)
	)
	for _, f := range folders {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := &discard{}
			_, err := src.Sync(ctx, f, nil, d)
			mu.Lock()
			defer mu.Unlock()
			msgs, bytes = msgs+d.msgs, bytes+d.bytes
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	wall, cpu := time.Since(start), cpuTime()-cpu0
	fmt.Printf("source-alone %s messages %d bytes %d wall %.3f cpu %.3f\n", kind, msgs, bytes, wall.Seconds(), cpu.Seconds())
}

// discard is an archive.Changes that reads every body and keeps nothing.
type discard struct{ msgs, bytes int64 }

func (d *discard) Reset() error                    { return nil }
func (d *discard) Have(string, string) bool        { return false }
func (d *discard) Keep(string, []string) error     { return nil }
func (d *discard) Delete(string) error             { return nil }
func (d *discard) Skip(id string, err error) error { return fmt.Errorf("message %s: %w", id, err) }
func (d *discard) Put(m *archive.Message) error {
	n, err := io.Copy(io.Discard, m.Body)
	d.msgs, d.bytes = d.msgs+1, d.bytes+n
	return err
}
