package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive"
)

// SinkOptions tune a Sink.
type SinkOptions struct {
	MapOptions
	// DryRun creates nothing and appends nothing; the report says what
	// would have been appended.
	DryRun bool
	// Pipeline is how many APPEND commands are in flight per connection
	// (default 8). Connections in Options says how many connections
	// append at once.
	Pipeline int
	// MaxBuffered bounds the message bytes held in memory while they wait
	// for a connection (default 64 MiB; one larger message is let through
	// alone).
	MaxBuffered int64
}

// Refused is a message the target server would not take (too large, over
// quota...).
type Refused struct {
	Folder   string `json:"folder"`
	SourceID string `json:"source_id"`
	Error    string `json:"error"`
}

// SinkReport says what a Sink did.
type SinkReport struct {
	Appended int64     `json:"appended"` // messages appended
	Bytes    int64     `json:"bytes"`    // their bytes
	Present  int64     `json:"present"`  // messages already on the target, not appended again
	Refused  []Refused `json:"refused,omitempty"`
}

// Sink restores messages into an IMAP account. It implements
// archive.Sink: Folder creates the target folder (translating the
// separator and namespace prefix, mapping special-use folders onto the
// target's own), Put appends a message with its flags and internal date.
//
// A Sink resumes: before appending into a folder it hashes what the folder
// holds, and a message whose content is already there (counted with
// multiplicity) is not appended again. Put hands the message to one of
// Options.Connections connections, each with SinkOptions.Pipeline APPENDs
// in flight; Close waits for them.
type Sink struct {
	opts Options
	so   SinkOptions
	log  *slog.Logger
	t    *target

	cur *sinkFolder

	jobs    chan *appendJob
	wg      sync.WaitGroup
	budget  *byteBudget
	failed  atomic.Bool
	mu      sync.Mutex
	err     error
	report  SinkReport
	kwOnce  sync.Once
	started bool
}

var _ archive.Sink = (*Sink)(nil)

type sinkFolder struct {
	path     string
	mailbox  string
	have     map[Hash]int // target messages not yet matched, by content
	dates    map[int64]bool
	anyDate  bool // the target holds messages: hash messages with no date
	keywords bool // PERMANENTFLAGS has \*
	perm     map[string]bool
}

type appendJob struct {
	folder, sourceID string
	mailbox          string
	flags            []goimap.Flag
	date             time.Time
	body             []byte
}

// NewSink connects to the account in opts (its Folders, Exclude and Retries
// are not used). Connections defaults to 4.
func NewSink(ctx context.Context, opts *Options, so *SinkOptions) (*Sink, error) {
	if opts == nil || opts.Host == "" || opts.User == "" {
		return nil, errors.New("imap sink: host and user are required")
	}
	o := *opts
	if o.Connections <= 0 {
		o.Connections = 4
	}
	s := &Sink{opts: o, log: o.Logger}
	if so != nil {
		s.so = *so
	}
	if s.so.Pipeline <= 0 {
		s.so.Pipeline = 8
	}
	if s.so.MaxBuffered <= 0 {
		s.so.MaxBuffered = 64 << 20
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	t, err := openTarget(ctx, &s.opts, s.so.MapOptions, s.log)
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", o.describe(), err)
	}
	s.t = t
	s.budget = newByteBudget(s.so.MaxBuffered)
	s.jobs = make(chan *appendJob, o.Connections*s.so.Pipeline)
	return s, nil
}

// Describe returns "imaps://user@host".
func (s *Sink) Describe() string { return s.opts.describe() }

// Report returns what the sink did; call it after Close.
func (s *Sink) Report() SinkReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.report
	r.Refused = slices.Clone(r.Refused)
	return r
}

// Mailbox returns the target mailbox name (UTF-8) for f.
func (s *Sink) Mailbox(f archive.Folder) string { return s.t.mailbox(f) }

// Folder creates the target folder of f when missing and lists what it
// already holds.
func (s *Sink) Folder(ctx context.Context, f archive.Folder) error {
	if err := s.failure(); err != nil {
		return err
	}
	mb := s.t.mailbox(f)
	sf := &sinkFolder{path: f.Path, mailbox: mb, have: map[Hash]int{}, dates: map[int64]bool{}, keywords: true}
	s.cur = sf
	if s.so.DryRun && !s.t.mailboxes[mb] {
		return nil
	}
	if !s.so.DryRun {
		if err := s.t.ensure(mb, f.SpecialUse); err != nil {
			return err
		}
	}
	msgs, sel, err := s.t.contents(mb, true)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		sf.have[m.Hash]++
		sf.dates[m.Date.Unix()] = true
	}
	sf.anyDate = len(msgs) > 0
	if sel.PermanentFlags != nil {
		sf.perm = map[string]bool{}
		sf.keywords = false
		for _, pf := range sel.PermanentFlags {
			sf.perm[strings.ToLower(string(pf))] = true
			if pf == goimap.FlagWildcard {
				sf.keywords = true
			}
		}
	}
	if len(msgs) > 0 {
		s.log.Info("target folder not empty: appending only what is missing", "folder", f.Path, "mailbox", mb, "messages", len(msgs))
	}
	return nil
}

func (s *Sink) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Sink) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.failed.Store(true)
}

// Put appends m to the current folder unless the folder already holds it.
func (s *Sink) Put(ctx context.Context, m *archive.Message) error {
	if err := s.failure(); err != nil {
		return err
	}
	sf := s.cur
	if sf == nil {
		return errors.New("imap sink: Put before Folder")
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return err
	}
	size := int64(len(body))
	if err := s.budget.acquire(ctx, size); err != nil {
		return err
	}
	if sf.anyDate && (m.InternalDate.IsZero() || sf.dates[m.InternalDate.Unix()]) {
		h, _, _ := HashOf(bytes.NewReader(body))
		if sf.have[h] > 0 {
			sf.have[h]--
			s.budget.release(size)
			s.mu.Lock()
			s.report.Present++
			s.mu.Unlock()
			return nil
		}
	}
	if s.so.DryRun {
		s.budget.release(size)
		s.mu.Lock()
		s.report.Appended++
		s.report.Bytes += size
		s.mu.Unlock()
		return nil
	}
	j := &appendJob{folder: m.Folder, sourceID: m.SourceID, mailbox: sf.mailbox, date: m.InternalDate, body: body}
	if j.folder == "" {
		j.folder = sf.path
	}
	dropped := false
	for _, f := range m.Flags {
		if strings.EqualFold(f, `\Recent`) {
			continue
		}
		if !strings.HasPrefix(f, `\`) && !sf.keywords && !sf.perm[strings.ToLower(f)] {
			dropped = true
			continue
		}
		j.flags = append(j.flags, goimap.Flag(f))
	}
	if dropped {
		s.kwOnce.Do(func() {
			s.log.Warn("the target does not keep keywords: dropping them", "folder", sf.path)
		})
	}
	s.start(ctx)
	select {
	case s.jobs <- j:
		return nil
	case <-ctx.Done():
		s.budget.release(size)
		return ctx.Err()
	}
}

func (s *Sink) start(ctx context.Context) {
	if s.started {
		return
	}
	s.started = true
	for range s.opts.Connections {
		s.wg.Add(1)
		go s.worker(ctx)
	}
}

// worker appends jobs on a connection of its own, Pipeline at a time.
func (s *Sink) worker(ctx context.Context) {
	defer s.wg.Done()
	type inflight struct {
		j   *appendJob
		cmd interface {
			Wait() (*goimap.AppendData, error)
		}
	}
	var (
		c     *conn
		queue []inflight
	)
	defer func() {
		if c != nil {
			c.logout()
		}
	}()
	finish := func(f inflight) {
		_, err := f.cmd.Wait()
		n := int64(len(f.j.body))
		s.budget.release(n)
		if err == nil {
			s.mu.Lock()
			s.report.Appended++
			s.report.Bytes += n
			s.mu.Unlock()
			return
		}
		var ie *goimap.Error
		if errors.As(err, &ie) && !c.broken() {
			s.log.Warn("target refused a message", "folder", f.j.folder, "source_id", f.j.sourceID, "err", err)
			s.mu.Lock()
			s.report.Refused = append(s.report.Refused, Refused{Folder: f.j.folder, SourceID: f.j.sourceID, Error: ie.Text})
			s.mu.Unlock()
			return
		}
		s.fail(fmt.Errorf("append to %q: %w", f.j.mailbox, err))
	}
	for j := range s.jobs {
		if s.failed.Load() {
			s.budget.release(int64(len(j.body)))
			continue
		}
		if c == nil {
			var err error
			c, err = dial(ctx, &s.opts)
			if err != nil {
				s.fail(err)
				s.budget.release(int64(len(j.body)))
				continue
			}
		}
		cmd := c.c.Append(j.mailbox, int64(len(j.body)), &goimap.AppendOptions{Flags: j.flags, Time: j.date})
		_, werr := cmd.Write(j.body)
		cerr := cmd.Close()
		queue = append(queue, inflight{j: j, cmd: cmd})
		if werr != nil || cerr != nil {
			for _, f := range queue {
				finish(f)
			}
			queue = queue[:0]
			continue
		}
		for len(queue) >= s.so.Pipeline {
			finish(queue[0])
			queue = queue[1:]
		}
	}
	for _, f := range queue {
		finish(f)
	}
}

// Close waits for every APPEND, logs out and returns the first error.
func (s *Sink) Close() error {
	close(s.jobs)
	s.wg.Wait()
	s.t.close()
	return s.failure()
}

// byteBudget is a weighted semaphore of buffered message bytes.
type byteBudget struct {
	mu   sync.Mutex
	cond *sync.Cond
	max  int64
	used int64
}

func newByteBudget(max int64) *byteBudget {
	b := &byteBudget{max: max}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.max {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.cond.Wait()
	}
	b.used += n
	return nil
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}
