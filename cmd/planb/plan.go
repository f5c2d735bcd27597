package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/atomicfile"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/archive/restore"
	"codeberg.org/planb/planb/cmd/planb/internal/engine"
	"codeberg.org/planb/planb/imap"
)

// A plan file moves many mailboxes at once (`planb restore --plan FILE`,
// `planb migrate --plan FILE`): a CSV file with a header row and one
// mailbox per line.

// planLine is one mailbox of a plan.
type planLine struct {
	Line   int    // in the file, the header being line 1
	Source string // restore: a snapshot source; migrate: the source's URL
	To     string // the target account's URL
	// The target's secret: exactly one of these.
	PasswordFile, PasswordEnv, TokenCommand string
	// migrate: the source's secret (else the target's is used).
	FromPasswordFile, FromPasswordEnv string
	Map                               map[string]string
	MapText                           string // as written, for the line's identity
	Folders                           []string
}

// key is the line's identity in the plan's state: what it moves where.
func (l *planLine) key() string {
	return strings.Join([]string{l.Source, l.To, l.MapText, strings.Join(l.Folders, ";")}, "\x00")
}

// label is how the line is named to the user: its target.
func (l *planLine) label() string { return l.To }

var planColumns = []string{"source", "to", "password_file", "password_env", "oauth2_token_command",
	"from_password_file", "from_password_env", "map", "folder"}

// readPlan reads a plan file. Every problem is an error naming the file
// and the line.
func readPlan(file string, migrate bool) ([]planLine, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, usageErrorf("plan: %v", err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, usageErrorf("plan %s: no header row: %v", file, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if !slices.Contains(planColumns, h) {
			return nil, usageErrorf("plan %s line 1: unknown column %q (want %s)", file, h, strings.Join(planColumns, ", "))
		}
		if !migrate && strings.HasPrefix(h, "from_") {
			return nil, usageErrorf("plan %s line 1: column %q is for migrate --plan", file, h)
		}
		if _, dup := col[h]; dup {
			return nil, usageErrorf("plan %s line 1: column %q twice", file, h)
		}
		col[h] = i
	}
	for _, need := range []string{"source", "to"} {
		if _, ok := col[need]; !ok {
			return nil, usageErrorf("plan %s line 1: no column %q", file, need)
		}
	}
	var lines []planLine
	seen := map[string]int{}
	for n := 2; ; n++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, usageErrorf("plan %s: %v", file, err)
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		if strings.Join(rec, "") == "" || strings.HasPrefix(strings.TrimSpace(rec[0]), "#") {
			continue // empty or commented out
		}
		l := planLine{
			Line: n, Source: get("source"), To: get("to"),
			PasswordFile: get("password_file"), PasswordEnv: get("password_env"), TokenCommand: get("oauth2_token_command"),
			FromPasswordFile: get("from_password_file"), FromPasswordEnv: get("from_password_env"),
			MapText: get("map"),
		}
		bad := func(format string, args ...any) error {
			return usageErrorf("plan %s line %d: %s", file, n, fmt.Sprintf(format, args...))
		}
		if l.Source == "" || l.To == "" {
			return nil, bad("source and to are required")
		}
		secrets := 0
		for _, s := range []string{l.PasswordFile, l.PasswordEnv, l.TokenCommand} {
			if s != "" {
				secrets++
			}
		}
		if secrets != 1 {
			return nil, bad("give the target's secret in exactly one of password_file, password_env and oauth2_token_command")
		}
		if l.FromPasswordFile != "" && l.FromPasswordEnv != "" {
			return nil, bad("give from_password_file or from_password_env, not both")
		}
		if l.MapText != "" {
			m, err := parseMap(strings.Split(l.MapText, ";"))
			if err != nil {
				return nil, bad("map: %v", err)
			}
			l.Map = m
		}
		if f := get("folder"); f != "" {
			l.Folders = strings.Split(f, ";")
			for _, pat := range l.Folders {
				if _, err := restore.Match([]string{pat}, "x"); err != nil {
					return nil, bad("folder: %v", err)
				}
			}
		}
		if prev, dup := seen[l.To]; dup {
			return nil, bad("target %s is already the target of line %d", l.To, prev)
		}
		seen[l.To] = n
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return nil, usageErrorf("plan %s: no mailbox in it", file)
	}
	return lines, nil
}

// planOptions are the flags of a --plan run; they apply to every line.
type planOptions struct {
	Op          string // "restore" or "migrate"
	File        string
	Parallel    int
	Connections int
	Pipeline    int
	Repair      bool
	Labels      restore.LabelMode
	Verify      bool
	// Target (and, for migrate, IMAP source) connection flags.
	InsecurePlaintext, InsecureSkipVerify bool
	CAFile                                string
	Select                                selection           // restore: narrows the snapshots further
	Graph                                 *graphBackupOptions // migrate: sign-in for graph:// sources
}

// The statuses of an account of a plan.
const (
	planDone    = "done"         // every message is there
	planPartial = "partial"      // some messages were skipped (named)
	planFailed  = "failed"       // the account could not be done (the error says why)
	planEarlier = "already done" // done by an earlier run of the plan
)

// accountResult is what a plan run did for one line.
type accountResult struct {
	Type       string           `json:"type"` // "account"
	Line       int              `json:"line"`
	Source     string           `json:"source"`
	To         string           `json:"to"`
	Status     string           `json:"status"`
	Error      string           `json:"error,omitempty"`
	Snapshot   string           `json:"snapshot,omitempty"`
	Appended   int64            `json:"appended"`
	Present    int64            `json:"present"`
	Bytes      int64            `json:"bytes"`
	Repaired   int              `json:"repaired"`
	Skipped    []repo.Skipped   `json:"skipped"`
	Verify     map[string]int64 `json:"verify,omitempty"`
	DurationMS int64            `json:"duration_ms"`
}

// planSummary is the --json summary of a plan run.
type planSummary struct {
	Type        string          `json:"type"` // "summary"
	Op          string          `json:"op"`
	Plan        string          `json:"plan"`
	Accounts    []accountResult `json:"accounts"`
	Done        int             `json:"done"`
	Partial     int             `json:"partial"`
	Failed      int             `json:"failed"`
	AlreadyDone int             `json:"already_done"`
	Appended    int64           `json:"appended"`
	DurationMS  int64           `json:"duration_ms"`
}

// planState remembers, in the state folder, which lines of a plan are
// done, so that a run again skips them. It is safe for concurrent use.
type planState struct {
	file string
	mu   sync.Mutex
	Done map[string]time.Time `json:"done"` // by planLine.key
}

func openPlanState(op, plan string) (*planState, error) {
	dir, err := engine.DefaultStateDir()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(plan)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(op + "\x00" + abs))
	st := &planState{file: filepath.Join(dir, "plans", hex.EncodeToString(sum[:12])+".json"), Done: map[string]time.Time{}}
	b, err := os.ReadFile(st.file)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("plan state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("plan state %s: %w", st.file, err)
	}
	if st.Done == nil {
		st.Done = map[string]time.Time{}
	}
	return st, nil
}

func (st *planState) done(l *planLine) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.Done[l.key()]
	return ok
}

// mark records whether l is done now, and writes the state (atomically).
func (st *planState) mark(l *planLine, done bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if done {
		st.Done[l.key()] = time.Now().UTC()
	} else {
		delete(st.Done, l.key())
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(st.file), 0o700); err != nil {
		return fmt.Errorf("plan state: %w", err)
	}
	if err := atomicfile.Write(st.file, b, 0o600); err != nil {
		return fmt.Errorf("plan state: %w", err)
	}
	return nil
}

// runPlan runs every line of the plan, opts.Parallel at a time, and
// prints the report: one line per account, or with --json one "account"
// object per account as it ends and a "summary". The exit status is the
// worst of the accounts': failed (1), partial (3), done (0).
func runPlan(ctx context.Context, opts planOptions, g *globalOptions) error {
	start := time.Now()
	lines, err := readPlan(opts.File, opts.Op == "migrate")
	if err != nil {
		return err
	}
	if opts.Parallel < 1 {
		return usageErrorf("--parallel must be at least 1")
	}
	st, err := openPlanState(opts.Op, opts.File)
	if err != nil {
		return err
	}
	workers := min(opts.Parallel, len(lines)) // accounts at once
	defer raiseMemoryLimit(workers)()
	run := func(r *repo.Repository) error {
		if r != nil {
			r.SetFrameCache(planFrames(workers))
		}
		var snaps []planSnap
		if opts.Op == "restore" {
			var err error
			if snaps, err = planSnapshots(ctx, r, lines, opts.Select); err != nil {
				return err
			}
		}
		order := planOrder(len(lines), snaps)
		results := make([]accountResult, len(lines))
		b := newBoard(g, opts.Op, len(lines))
		defer b.stop()
		jobs := make(chan int)
		var wg sync.WaitGroup
		lend := newLender(max(opts.Connections, lentMax))
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					// No line is left to start: lend this runner's
					// connections to the accounts still running.
					if ctx.Err() == nil {
						lend.give(opts.Connections)
					}
				}()
				for i := range jobs {
					l := &lines[i]
					var ps *planSnap
					if snaps != nil {
						ps = &snaps[i]
					}
					res := planAccount(ctx, r, l, ps, &opts, st, b, lend, g)
					results[i] = res
					if res.Status == planDone || res.Status == planPartial {
						// A partial account is done again, to retry what
						// was skipped; only a done one is left alone.
						if err := st.mark(l, res.Status == planDone); err != nil {
							b.logf("planb: warning: %v", err)
						}
					}
					b.finish(res)
					if g.json != nil {
						g.json.write(res)
					}
				}
			}()
		}
		for _, i := range order {
			select {
			case jobs <- i:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
		}
		close(jobs)
		wg.Wait()
		b.stop()
		for i := range results {
			if results[i].Type == "" {
				// Not started: interrupted.
				results[i] = accountResult{Type: "account", Line: lines[i].Line, Source: lines[i].Source, To: lines[i].To,
					Status: planFailed, Error: "not started: interrupted", Skipped: []repo.Skipped{}}
			}
		}
		return reportPlan(opts, results, time.Since(start), g)
	}
	if opts.Op == "restore" {
		return withRepo(ctx, g, run)
	}
	if g.Repo != "" {
		// One repository for every line.
		g2 := *g
		r, err := migrateRepo(ctx, "plan:"+opts.File, &g2)
		if err != nil {
			return err
		}
		defer r.Close()
		return run(r)
	}
	return run(nil)
}

// planConnections is the IMAP connections of each account of a plan:
// --connections when given, else its default shared among the --parallel
// accounts (at least one each). With 4 connections for each of 4 accounts
// at once, the 20-account bulk restore into Dovecot took 19.8 s against
// 14.5 s with one each: 16 logins where 4 do, each batch of APPENDs
// smaller, and the server's processes contending for the same two cores.
func planConnections(c *cli.Context) int {
	if c.IsSet("connections") {
		return c.Int("connections")
	}
	return max(1, c.Int("connections")/max(1, c.Int("parallel")))
}

// planBuffered is the memory budget of each of parallel accounts' sinks:
// one sink's default (24 MiB) shared among them, but at least 8 MiB each
// (the size above which a message streams instead). Four accounts with
// 24 MiB each held as much as the 96 MiB soft memory limit: the runtime
// then spent a third of planb's CPU collecting and scavenging, and the
// bulk restore ran at 0.74 of a single account's speed.
func planBuffered(parallel int) int64 {
	return max(8<<20, 24<<20/int64(max(parallel, 1)))
}

// planFrames is the frame cache of a plan's repository: the default 16
// frames for each account restored at once. The accounts read different
// frames; sharing 16 among 4, each account's restore opened frames again
// that it had opened a moment before.
func planFrames(parallel int) int { return 16 * max(parallel, 1) }

// planMemory is what each account restored at once beyond the first adds
// to planb's soft heap limit (memoryLimit): its messages waiting to be
// sent (planBuffered) and its frames (planFrames), with room to spare.
// Under the single account's limit, four accounts at once kept the heap
// at the limit: the runtime collected and gave memory back to the system
// without pause, and the plan took 7.8-8.5 CPU-s where one account
// restoring the same mail takes 5.9-6.6.
const planMemory = 16 << 20

// raiseMemoryLimit raises the soft heap limit by (parallel-1) ×
// planMemory for a plan of parallel accounts at once, unless GOMEMLIMIT
// sets it, and returns what puts the limit back.
func raiseMemoryLimit(parallel int) func() {
	want := memoryLimit + int64(max(parallel-1, 0))*planMemory
	if os.Getenv("GOMEMLIMIT") != "" || debug.SetMemoryLimit(-1) >= want {
		return func() {}
	}
	old := debug.SetMemoryLimit(want)
	return func() { debug.SetMemoryLimit(old) }
}

// planSnap is the snapshot a line of restore --plan restores, or why
// there is none.
type planSnap struct {
	snap *repo.Snapshot
	err  error
}

// planSnapshots finds each line's snapshot (the latest of its source, of
// those opts' selection keeps) in one listing of the repository's
// snapshots: an organisation's repository of nightly snapshots holds
// hundreds of thousands, too many to read again for each line.
func planSnapshots(ctx context.Context, r *repo.Repository, lines []planLine, sel selection) ([]planSnap, error) {
	all, err := r.Snapshots(ctx)
	if err != nil && len(all) == 0 {
		return nil, err
	}
	out := make([]planSnap, len(lines))
	for i, l := range lines {
		s := sel
		s.sources = []*regexp.Regexp{regexp.MustCompile("^" + regexp.QuoteMeta(l.Source) + "$")}
		s.raw = []string{l.Source}
		out[i].snap, out[i].err = latestOf(all, s, true)
	}
	return out, nil
}

// planOrder is the order in which a plan of n lines starts them: the
// plan's own, or for a restore (snaps, one a line) the largest mailboxes
// first, so that the run does not end with one big mailbox restored alone
// while the other accounts are done (the lines without a snapshot come
// first: they fail at once). The report keeps the plan's order.
func planOrder(n int, snaps []planSnap) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if snaps == nil {
		return order
	}
	size := func(i int) int64 {
		if snaps[i].snap == nil {
			return math.MaxInt64
		}
		return snaps[i].snap.Summary.Bytes
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(size(b), size(a)) })
	return order
}

// planAccount does one line of a plan; ps is its snapshot for a restore.
func planAccount(ctx context.Context, r *repo.Repository, l *planLine, ps *planSnap, opts *planOptions, st *planState, b *board, lend *lender, g *globalOptions) accountResult {
	res := accountResult{Type: "account", Line: l.Line, Source: l.Source, To: l.To, Skipped: []repo.Skipped{}}
	if st.done(l) {
		res.Status = planEarlier
		return res
	}
	start := time.Now()
	ga := *g
	ga.account = l.label()
	ga.stderr = b.logWriter()
	p := newProgress(opts.Op, g.json, false, g.stderr)
	p.account = l.label()
	b.add(l.label(), p)
	defer b.remove(l.label())
	ga.borrow = lend.join(p, opts.Connections)
	defer ga.borrow.leave()
	fail := func(err error) accountResult {
		res.Status, res.Error = planFailed, oneLine(err.Error())
		res.DurationMS = time.Since(start).Milliseconds()
		return res
	}
	to, err := imapSourceOptions(backupIMAPOptions{
		URL: l.To, Connections: opts.Connections,
		PasswordFile: l.PasswordFile, PasswordEnv: envValue(l.PasswordEnv), TokenCommand: l.TokenCommand,
		InsecurePlaintext: opts.InsecurePlaintext, InsecureSkipVerify: opts.InsecureSkipVerify, CAFile: opts.CAFile,
	}, &ga)
	if err != nil {
		return fail(err)
	}
	if l.PasswordEnv != "" && to.Password == "" {
		return fail(fmt.Errorf("password_env %s is not set", l.PasswordEnv))
	}
	so := &imap.SinkOptions{MapOptions: imap.MapOptions{Map: l.Map}, Repair: opts.Repair, Pipeline: opts.Pipeline,
		MaxBuffered: planBuffered(opts.Parallel)}
	var (
		snap *repo.Snapshot
		out  restoreOutcome
	)
	switch opts.Op {
	case "restore":
		if ps.err != nil {
			return fail(ps.err)
		}
		snap = ps.snap
		out, err = restoreAttempts(ctx, r, snap, to, so, restoreScope{Folders: l.Folders, Labels: opts.Labels}, "restore", p, &ga)
	case "migrate":
		src, closeSrc, workers, err2 := planSource(ctx, l, opts, &ga)
		if err2 != nil {
			return fail(err2)
		}
		defer closeSrc()
		rr := r
		if rr == nil {
			g2 := ga
			if rr, err = migrateRepo(ctx, l.Source, &g2); err != nil {
				return fail(err)
			}
			defer rr.Close()
		}
		snap, out, err = migrateOne(ctx, rr, src, workers, to, so, opts.Labels, p, &ga)
		r = rr
	}
	p.Done()
	res.DurationMS = time.Since(start).Milliseconds()
	if snap != nil {
		res.Snapshot = snap.ID.String()
	}
	res.Appended, res.Present, res.Bytes, res.Repaired = out.Appended, out.Present, out.Bytes, len(out.Repaired)
	res.Skipped = nonNil(out.Skipped)
	if err != nil {
		return fail(err)
	}
	res.Status = planDone
	if len(out.Skipped) > 0 {
		res.Status = planPartial
	}
	if opts.Verify {
		vr, err := verifyAccount(ctx, r, snap, to, so.MapOptions, restoreScope{Folders: l.Folders, Labels: opts.Labels})
		if err != nil {
			return fail(fmt.Errorf("verify: %w", err))
		}
		res.Verify = vr.Counts
		if n := vr.Counts[restore.Missing] + vr.Counts[restore.Extra] + vr.Counts[restore.Altered]; n > 0 && res.Status == planDone {
			res.Status = planPartial
			res.Error = fmt.Sprintf("verify: %d messages missing, extra or altered", n)
		}
	}
	return res
}

// envValue is the value of the environment variable name, or "".
func envValue(name string) string {
	if name == "" {
		return ""
	}
	return os.Getenv(name)
}

// planSource opens the source of a migrate --plan line: an IMAP account,
// or a Microsoft 365 mailbox (graph://TENANT/ADDR) with the command's
// sign-in flags.
func planSource(ctx context.Context, l *planLine, opts *planOptions, g *globalOptions) (archive.Source, func(), int, error) {
	var ms migrateSource
	if strings.HasPrefix(l.Source, "graph://") {
		tenant, mailbox, err := parseGraphURL(l.Source)
		if err != nil {
			return nil, nil, 0, err
		}
		if opts.Graph == nil || opts.Graph.ClientID == "" {
			return nil, nil, 0, usageErrorf("line %d: a graph:// source needs --client-id", l.Line)
		}
		gb := *opts.Graph
		gb.Tenant, gb.Mailboxes = tenant, []string{mailbox}
		ms.graph = &gb
	} else {
		o := backupIMAPOptions{
			URL: l.Source, Connections: opts.Connections, Folders: l.Folders,
			PasswordFile: l.FromPasswordFile, PasswordEnv: envValue(l.FromPasswordEnv),
			InsecurePlaintext: opts.InsecurePlaintext, InsecureSkipVerify: opts.InsecureSkipVerify, CAFile: opts.CAFile,
		}
		if o.PasswordFile == "" && o.PasswordEnv == "" {
			o.PasswordFile, o.PasswordEnv, o.TokenCommand = l.PasswordFile, envValue(l.PasswordEnv), l.TokenCommand
		}
		io, err := imapSourceOptions(o, g)
		if err != nil {
			return nil, nil, 0, err
		}
		ms.imap = io
	}
	src, closeSrc, err := ms.open(ctx, g)
	if err != nil {
		return nil, nil, 0, err
	}
	return src, closeSrc, ms.workers(), nil
}

// verifyAccount compares snap with the account io.
func verifyAccount(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, io *imap.Options, mo imap.MapOptions, sc restoreScope) (*restore.VerifyReport, error) {
	a, err := imap.OpenAccount(ctx, io, mo)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return restore.Verify(ctx, r, snap, a, &restore.VerifyOptions{Folders: sc.Folders, Labels: sc.Labels})
}

// reportPlan prints the end of a plan run and returns its exit status.
func reportPlan(opts planOptions, results []accountResult, d time.Duration, g *globalOptions) error {
	sum := planSummary{Type: "summary", Op: opts.Op, Plan: opts.File, Accounts: results, DurationMS: d.Milliseconds()}
	skipped := 0
	for _, r := range results {
		switch r.Status {
		case planDone:
			sum.Done++
		case planPartial:
			sum.Partial++
		case planFailed:
			sum.Failed++
		case planEarlier:
			sum.AlreadyDone++
		}
		sum.Appended += r.Appended
		skipped += len(r.Skipped)
	}
	if g.json != nil {
		g.json.write(sum)
	} else if !g.Quiet || sum.Failed > 0 || sum.Partial > 0 {
		for _, r := range results {
			if g.Quiet && (r.Status == planDone || r.Status == planEarlier) {
				continue
			}
			line := fmt.Sprintf("%-12s line %d %s -> %s", r.Status, r.Line, r.Source, r.To)
			switch r.Status {
			case planDone, planPartial:
				line += fmt.Sprintf(": %d appended, %d already there", r.Appended, r.Present)
				if r.Repaired > 0 {
					line += fmt.Sprintf(", %d repaired", r.Repaired)
				}
				if len(r.Skipped) > 0 {
					line += fmt.Sprintf(", %d skipped", len(r.Skipped))
				}
				if r.Verify != nil {
					var cs []string
					for _, c := range verifyClasses {
						cs = append(cs, fmt.Sprintf("%d %s", r.Verify[c], c))
					}
					line += "; verify: " + strings.Join(cs, ", ")
				}
			}
			if r.Error != "" {
				line += ": " + r.Error
			}
			fmt.Fprintln(g.stdout, line)
			for _, s := range r.Skipped {
				fmt.Fprintf(g.stdout, "    skipped %s %s: %s\n", s.Folder, s.SourceID, s.Error)
			}
		}
		if !g.Quiet {
			fmt.Fprintf(g.stdout, "%s --plan %s: %d accounts done, %d partial, %d failed, %d already done; %d messages appended in %s\n",
				opts.Op, opts.File, sum.Done, sum.Partial, sum.Failed, sum.AlreadyDone, sum.Appended, formatDuration(d))
		}
	}
	switch {
	case sum.Failed > 0:
		return fmt.Errorf("%s --plan: %d of %d accounts failed", opts.Op, sum.Failed, len(results))
	case sum.Partial > 0:
		return &errPartial{Messages: skipped, What: fmt.Sprintf("%d of %d accounts partial", sum.Partial, len(results))}
	}
	return nil
}

// lentMax is the most connections a plan lends an account up to (its own
// included, unless --connections asks for more): restore's default.
// Servers limit connections per user (Dovecot 10, Gmail 15).
const lentMax = 4

// lender lends the connections of the plan's runners that found no line
// left to start to the accounts still running, the one with the most
// bytes left first, so that a plan does not end with its largest mailbox
// restored over one connection while the others sit idle. Connections
// lent to an account that ends are lent again.
type lender struct {
	mu      sync.Mutex
	max     int // connections one account may have
	free    int // connections to lend
	running map[*borrower]struct{}
}

// borrower is a running account's side of the lender.
type borrower struct {
	l    *lender
	p    *progress
	base int    // the account's own connections
	n    int    // its connections now
	sink grower // the current attempt's sink, nil between attempts
}

// grower is what the lender needs of an account's sink (imap.Sink).
type grower interface{ Grow() bool }

func newLender(max int) *lender {
	return &lender{max: max, running: make(map[*borrower]struct{})}
}

// join registers a running account with base connections of its own.
func (l *lender) join(p *progress, base int) *borrower {
	b := &borrower{l: l, p: p, base: base, n: base}
	l.mu.Lock()
	l.running[b] = struct{}{}
	l.mu.Unlock()
	return b
}

// leave unregisters the account, which is done, and lends again what it
// was lent.
func (b *borrower) leave() {
	b.attempt(nil)
	b.l.mu.Lock()
	delete(b.l.running, b)
	b.l.mu.Unlock()
}

// attempt tells which sink the account appends through now (nil: none).
// A new attempt starts with the account's own connections; those lent to
// the last one are lent again.
func (b *borrower) attempt(s grower) {
	if b == nil {
		return
	}
	l := b.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free += b.n - b.base
	b.sink, b.n = s, b.base
	l.lendLocked()
}

// give adds k connections to lend: a runner's, which has no line left.
func (l *lender) give(k int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free += k
	l.lendLocked()
}

// lendLocked lends the free connections, one at a time to the account
// with the most bytes left that may take one more. What no account can
// take waits for the next call.
func (l *lender) lendLocked() {
	for l.free > 0 {
		var best *borrower
		var bestLeft int64
		for b := range l.running {
			if b.sink == nil || b.n >= l.max {
				continue
			}
			if left := b.p.bytesLeft(); best == nil || left > bestLeft {
				best, bestLeft = b, left
			}
		}
		if best == nil || bestLeft <= 0 {
			return
		}
		if !best.sink.Grow() {
			best.sink = nil // closing or failed: it takes no more
			continue
		}
		best.n++
		l.free--
	}
}
