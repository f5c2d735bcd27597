package imap

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailform"
)

// SinkOptions tune a Sink.
type SinkOptions struct {
	MapOptions
	// DryRun creates nothing and appends nothing; the report says what
	// would have been appended.
	DryRun bool
	// Pipeline is how many APPEND commands are in flight per connection
	// (default 8); 1 sends one message at a time and waits for each, as
	// imapsync does. Connections in Options says how many connections
	// append at once.
	Pipeline int
	// Settle is how long every mailbox of the target must stay unchanged
	// (its number of messages and UIDNEXT) before a run that follows an
	// interrupted one (Journal.Begin) reads any (default 2 s), polled at
	// a quarter of it, a minute at most.
	Settle time.Duration
	// NoMultiappend sends one message per APPEND command even when the
	// server offers MULTIAPPEND (RFC 3502). By default, with such a server
	// and a Pipeline above 1, each connection sends batches of messages in
	// one APPEND (up to 100 messages or 2 MiB; the server stores each batch
	// at once) and keeps two batches in flight. A batch the server refuses
	// is sent again one message at a time, so that only the refused
	// messages are reported.
	NoMultiappend bool
	// MaxBuffered bounds the message bytes held in memory while they wait
	// for a connection (default 24 MiB: under the CLI's 96 MiB soft memory
	// limit, more only makes the runtime collect and scavenge harder).
	MaxBuffered int64
	// StreamAbove is the size above which a message is not held in memory
	// (default 8 MiB, at most MaxBuffered): Put reads it once to learn its
	// size on the wire (and, when the resume check needs it, its
	// fingerprint), then streams it from its Body, rewound when it is an
	// io.Seeker (as the repository's restore.Reader is), else spilled to a
	// temporary file (mode 0600, removed as soon as the message is sent).
	StreamAbove int64
	// Repair delivers a message that the target refuses for its form (a
	// problem mailform.Check finds: a missing Date, an unparseable From,
	// NUL bytes without BINARY...) as a repaired copy (mailform.Repair):
	// marked with an X-Planb-Repaired field and carrying the original.
	// Without it each such message is reported as refused, with its
	// problems. A refusal for size or quota is never repaired.
	Repair bool
	// Journal, when set, records the UID each appended message got (from
	// APPENDUID, RFC 4315), so that a later run into the same account
	// knows what is there without reading it back. See Journal.
	Journal Journal
}

// Journal remembers what a restore appended into an account, per mailbox
// and UIDVALIDITY: the UID each message got and the message's digest
// (archive.Message.Digest). It must be safe for concurrent use.
type Journal interface {
	// Load returns what was recorded for mailbox under uidValidity: UID →
	// digest. Records under another UIDVALIDITY are obsolete.
	Load(mailbox string, uidValidity uint32) (map[uint32]string, error)
	// Record notes that the message with digest is mailbox's UID uid.
	Record(mailbox string, uidValidity, uid uint32, digest string) error
	// Begin notes that a run starts and reports whether the run before it
	// was interrupted (it never reached its end).
	Begin() (interrupted bool, err error)
	// Flush writes out the records so far. The sink calls it once it has
	// recorded a server's answer to an APPEND: a run killed right after
	// must leave them, or the next run, finding a killed run's late
	// APPEND stored beside its own copy, cannot tell which is planb's
	// (see Sink.leftovers).
	Flush() error
}

// Refused is a message the target server would not take (too large, over
// quota, or its form).
type Refused struct {
	Folder   string `json:"folder"`
	SourceID string `json:"source_id"`
	Error    string `json:"error"`
	// Problems are the message's form problems (mailform.Check) when the
	// refusal may be for its form: with SinkOptions.Repair a repaired copy
	// would have been delivered.
	Problems []string `json:"problems,omitempty"`
}

// Repaired is a message delivered as a repaired copy.
type Repaired struct {
	Folder   string `json:"folder"`
	SourceID string `json:"source_id"`
	// Note is the copy's X-Planb-Repaired field: what changed.
	Note string `json:"note"`
	// Refusal is why the original was not delivered as it was.
	Refusal string `json:"refusal"`
}

// SinkReport says what a Sink did.
type SinkReport struct {
	Appended int64 `json:"appended"` // messages appended, repaired copies included
	Bytes    int64 `json:"bytes"`    // their bytes as stored (a repaired copy's as sent)
	Present  int64 `json:"present"`  // messages already on the target, not appended again
	// Labeled is how many labels were given to messages of a label-based
	// target (a COPY into a label's mailbox each).
	Labeled  int64      `json:"labeled,omitempty"`
	Repaired []Repaired `json:"repaired,omitempty"`
	Refused  []Refused  `json:"refused,omitempty"`
}

// Sink restores messages into an IMAP account. It implements
// archive.Sink: Folder creates the target folder (translating the
// separator and namespace prefix, mapping special-use folders onto the
// target's own, and Proton Mail Bridge's Folders/ layout), Put appends a
// message with its flags and internal date.
//
// A Sink resumes: before appending into a folder it learns what the folder
// holds (the journal's UIDs that are still there, and the fingerprints of
// the other messages, read once), and a message already there (counted
// with multiplicity) is not appended again, whatever the target did to
// its bytes. Put hands the message to one of Options.Connections
// connections (planb's own APPEND client, see appender); Close waits for
// them. A message larger than SinkOptions.StreamAbove is never held whole
// in memory.
type Sink struct {
	opts  Options
	so    SinkOptions
	log   *slog.Logger
	t     *target
	caps  appendCaps
	first *appender // dialled by NewSink, for the first worker
	// shared is the target's connection when the first worker appends on
	// it too (one connection: see shareAppender); connMu is held by that
	// worker while it has messages to send or answers to read, and by
	// Folder while the target speaks.
	shared *sharedConn
	connMu sync.Mutex
	// lost: the worker dropped the shared connection (a streamed body
	// that failed in the middle of its literal): the target dials again
	// (under connMu).
	lost bool

	cur     *sinkFolder
	folders map[string]*sinkFolder // by mailbox: what Close reconciles

	jobs   chan *appendJob
	wg     sync.WaitGroup
	budget *byteBudget
	failed atomic.Bool
	mu     sync.Mutex
	err    error
	report SinkReport
	kwOnce sync.Once
	badKw  map[string]bool // keywords the target refused, guarded by mu

	// growMu guards the workers' start against Grow and Close.
	growMu  sync.Mutex
	started bool
	closing bool
	ctx     context.Context // the workers', once started
	extra   int             // connections Grow added before the start
	// labels: on a label-based target, the UIDs to copy into each label's
	// mailbox, guarded by mu; Close copies them.
	labels map[labelKey][]uint32
}

// labelKey names the label copies from one mailbox into another.
type labelKey struct {
	mailbox     string
	uidValidity uint32
	label       string // the label's mailbox
}

var _ archive.Sink = (*Sink)(nil)

// appendCaps is what the target offers for APPEND.
type appendCaps struct {
	multi, binary, utf8 bool
	limit               int64
}

type sinkFolder struct {
	path        string
	mailbox     string
	uidValidity uint32
	// initial: the UIDs the folder held when Folder listed it; ours: the
	// UIDs this sink appended (APPENDUID), by digest, guarded by Sink.mu.
	initial  map[goimap.UID]bool
	ours     map[uint32]string
	keywords bool // PERMANENTFLAGS has \*
	perm     map[string]bool
	// What the target folder held when Folder listed it: by digest the
	// messages the journal knows, by fingerprint the others.
	known   map[string][]uint32
	unknown mailform.Set
	// kept: the messages found by the journal while the folder also held
	// messages it does not know, with their fingerprints (see leftovers).
	kept []keptCopy
}

// keptCopy is a message of the target that the journal knows, and the
// fingerprint of the message it stands for.
type keptCopy struct {
	uid    uint32
	digest string
	print  *mailform.Print
}

type appendJob struct {
	folder, sourceID string
	mailbox          string
	digest           string
	flags            []goimap.Flag
	date             time.Time
	rawSize          int64 // the message as stored
	info             mailform.Info
	body             []byte   // a buffered message, counted in the budget
	labels           []string // the mailboxes of its labels, on a label-based target
	note             string   // for a repaired copy: its X-Planb-Repaired
	refusal          string   // for a repaired copy: why the original was refused

	// A streamed message: the worker copies stream into the literal and
	// sends the outcome on sent (buffered, capacity 1) once it is done
	// with stream, its answer included.
	stream io.ReadSeeker
	sent   chan error
}

// wireSize is the size of j's literal.
func (j *appendJob) wireSize() int64 { return j.info.WireSize(j.rawSize) }

// reader returns j's message from its first byte.
func (j *appendJob) reader() (io.Reader, error) {
	if j.stream == nil {
		return bytes.NewReader(j.body), nil
	}
	if _, err := j.stream.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind message %s: %w", j.sourceID, err)
	}
	return j.stream, nil
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
		s.so.MaxBuffered = 24 << 20
	}
	if s.so.Settle <= 0 {
		s.so.Settle = 2 * time.Second
	}
	if s.so.StreamAbove <= 0 {
		s.so.StreamAbove = 8 << 20
	}
	s.so.StreamAbove = min(s.so.StreamAbove, s.so.MaxBuffered)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	t, err := openTarget(ctx, &s.opts, s.so.MapOptions, s.log)
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", o.describe(), err)
	}
	s.t = t
	if s.so.Journal != nil && !s.so.DryRun {
		interrupted, err := s.so.Journal.Begin()
		if err != nil {
			s.log.Warn("restore journal", "err", err)
		}
		if interrupted {
			// A run killed with APPENDs sent leaves the server storing
			// them for a while (Dovecot stored 300 messages in the 50 ms
			// after such a kill): a folder listed meanwhile would get
			// them a second time.
			s.log.Info("the last run into this account was interrupted: waiting until its mailboxes stop changing", "quiet", s.so.Settle)
			if err := t.settle(ctx, s.so.Settle); err != nil {
				t.close()
				return nil, fmt.Errorf("restore to %s: %w", o.describe(), err)
			}
		}
	}
	if !s.so.DryRun {
		// The appender's login is the one every worker makes: try it now,
		// and learn what the server offers for APPEND.
		var a *appender
		if s.opts.Connections == 1 {
			a, err = shareAppender(t.c, &s.opts)
			if err == nil {
				s.shared = t.c.shared
			} else if !errors.Is(err, errNoShare) {
				t.close()
				return nil, fmt.Errorf("restore to %s: %w", o.describe(), err)
			}
		}
		if a == nil {
			if a, err = dialAppender(ctx, &s.opts); err != nil {
				t.close()
				return nil, fmt.Errorf("restore to %s: %w", o.describe(), err)
			}
		}
		s.first = a
		s.caps = appendCaps{multi: a.multi, binary: a.binary, utf8: a.utf8, limit: a.appendLimit}
	}
	s.budget = newByteBudget(s.so.MaxBuffered)
	s.jobs = make(chan *appendJob, o.Connections*max(s.so.Pipeline, 2*maxBatch))
	return s, nil
}

// Describe returns "imaps://user@host".
func (s *Sink) Describe() string { return s.opts.describe() }

// Bridge reports whether the target is Proton Mail Bridge (or speaks like
// it), whose folder layout the Sink follows.
func (s *Sink) Bridge() bool { return s.t.bridge }

// Report returns what the sink did; call it after Close.
func (s *Sink) Report() SinkReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.report
	r.Refused = slices.Clone(r.Refused)
	r.Repaired = slices.Clone(r.Repaired)
	return r
}

// Mailbox returns the target mailbox name (UTF-8) for f.
func (s *Sink) Mailbox(f archive.Folder) string { return s.t.mailbox(f) }

// Folder creates the target folder of f when missing and learns what it
// already holds.
func (s *Sink) Folder(ctx context.Context, f archive.Folder) error {
	if err := s.failure(); err != nil {
		return err
	}
	mb := s.t.mailbox(f)
	sf := &sinkFolder{path: f.Path, mailbox: mb, keywords: true, known: map[string][]uint32{}, initial: map[goimap.UID]bool{}, ours: map[uint32]string{}}
	s.cur = sf
	s.mu.Lock()
	if s.folders == nil {
		s.folders = map[string]*sinkFolder{}
	}
	if prev := s.folders[mb]; prev != nil {
		// Two source folders into one mailbox: one record of our UIDs.
		sf.ours = prev.ours
	}
	s.folders[mb] = sf
	s.mu.Unlock()
	if s.so.DryRun && !s.t.mailboxes[mb] {
		return nil
	}
	if sh := s.shared; sh != nil {
		// The worker appending on the target's connection gives it up
		// once it has sent what it has and read the answers.
		s.connMu.Lock()
		sh.give(targetSpeaker)
		defer func() {
			sh.give(appenderSpeaker)
			s.connMu.Unlock()
		}()
		if err := s.redialTarget(ctx); err != nil {
			return err
		}
	}
	if !s.so.DryRun {
		if err := s.t.ensure(mb, f.SpecialUse); err != nil {
			return err
		}
	}
	st, err := s.t.state(ctx, mb, s.so.Journal)
	if err != nil {
		return err
	}
	sf.uidValidity = st.sel.UIDValidity
	for u, d := range st.known {
		sf.known[d] = append(sf.known[d], u)
		sf.initial[goimap.UID(u)] = true
	}
	for _, u := range st.unknownUIDs {
		sf.initial[u] = true
	}
	for i, p := range st.prints {
		sf.unknown.Add(int(st.unknownUIDs[i]), p)
	}
	if pf := st.sel.PermanentFlags; pf != nil {
		sf.perm = map[string]bool{}
		sf.keywords = false
		for _, f := range pf {
			sf.perm[strings.ToLower(string(f))] = true
			if f == goimap.FlagWildcard {
				sf.keywords = true
			}
		}
	}
	if st.sel.NumMessages > 0 {
		s.log.Info("target folder not empty: appending only what is missing", "folder", f.Path, "mailbox", mb,
			"messages", st.sel.NumMessages, "journal", len(st.known), "compared", len(st.prints))
	}
	return nil
}

// redialTarget gives the target a connection of its own when the worker
// dropped the one they shared (s.lost; connMu held).
func (s *Sink) redialTarget(ctx context.Context) error {
	if !s.lost {
		return nil
	}
	c, err := dial(ctx, &s.opts)
	if err != nil {
		return fmt.Errorf("restore to %s: %w", s.opts.describe(), err)
	}
	s.t.c.close()
	s.t.c, s.lost = c, false
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
// A message larger than SinkOptions.StreamAbove is streamed: Put returns
// once the server has answered for it.
func (s *Sink) Put(ctx context.Context, m *archive.Message) error {
	if err := s.failure(); err != nil {
		return err
	}
	sf := s.cur
	if sf == nil {
		return errors.New("imap sink: Put before Folder")
	}
	if uids := sf.known[m.Digest]; m.Digest != "" && len(uids) > 0 {
		sf.known[m.Digest] = uids[1:]
		s.countPresent()
		s.label(sf.mailbox, sf.uidValidity, uids[0], s.labelsOf(sf, m))
		if sf.unknown.Left() > 0 {
			// A copy the journal does not know may be this message's too:
			// see leftovers.
			if p, err := mailform.Fingerprint(m.Body); err == nil {
				sf.kept = append(sf.kept, keptCopy{uids[0], m.Digest, p})
			}
		}
		return nil
	}
	if m.Size > s.so.StreamAbove {
		return s.putStream(ctx, sf, m)
	}
	body, err := readBody(m.Body, m.Size, s.so.StreamAbove+1)
	if err != nil {
		return err
	}
	if int64(len(body)) > s.so.StreamAbove {
		// Larger than announced: stream the rest.
		m2 := *m
		m2.Size = -1
		m2.Body = io.MultiReader(bytes.NewReader(body), m.Body)
		return s.putStream(ctx, sf, &m2)
	}
	size := int64(len(body))
	if err := s.budget.acquire(ctx, size); err != nil {
		return err
	}
	if sf.unknown.Left() > 0 {
		p, err := mailform.Fingerprint(bytes.NewReader(body))
		if err == nil && s.present(sf, m, p) {
			s.budget.release(size)
			return nil
		}
	}
	j := s.newJob(sf, m)
	j.body, j.rawSize, j.info = body, size, mailform.Scan(body)
	if s.so.DryRun {
		s.budget.release(size)
		s.count(j)
		return nil
	}
	planned, err := s.plan(j)
	if planned != j {
		// Refused here, or a repaired copy replaced the message.
		s.budget.release(size)
		if planned == nil || err != nil {
			return err
		}
		if planned.stream == nil {
			if err := s.budget.acquire(ctx, int64(len(planned.body))); err != nil {
				return err
			}
		} else {
			defer planned.stream.(io.Closer).Close()
		}
	}
	return s.enqueue(ctx, planned)
}

// enqueue hands j to the workers. A streamed job is waited for: enqueue
// returns once the worker is done with its stream (the caller closes it).
func (s *Sink) enqueue(ctx context.Context, j *appendJob) error {
	s.start(ctx)
	if j.stream == nil {
		select {
		case s.jobs <- j:
			return nil
		case <-ctx.Done():
			s.budget.release(int64(len(j.body)))
			return ctx.Err()
		}
	}
	j.sent = make(chan error, 1)
	select {
	case s.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The worker reads the stream until it sends on j.sent: wait for it
	// even when ctx ends (the connection's own deadlines bound the wait).
	return <-j.sent
}

// present reports whether the target folder holds m (whose fingerprint is
// p) among the messages the journal does not know, and counts it; the
// journal learns its UID.
func (s *Sink) present(sf *sinkFolder, m *archive.Message, p *mailform.Print) bool {
	uid, _, ok := sf.unknown.Match(p)
	if !ok {
		return false
	}
	s.countPresent()
	s.label(sf.mailbox, sf.uidValidity, uint32(uid), s.labelsOf(sf, m))
	if s.so.Journal != nil && m.Digest != "" && sf.uidValidity != 0 {
		if err := s.so.Journal.Record(sf.mailbox, sf.uidValidity, uint32(uid), m.Digest); err != nil {
			s.log.Warn("restore journal", "err", err)
		}
	}
	return true
}

func (s *Sink) countPresent() {
	s.mu.Lock()
	s.report.Present++
	s.mu.Unlock()
}

// readBody reads r, whose size is announced as size (negative if
// unknown), up to limit bytes. With a size it reads into a slice of
// exactly that size, not one that io.ReadAll grows and copies: on a
// restore that is most of the sink's own allocation and clearing.
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size < 0 || size >= limit {
		return io.ReadAll(io.LimitReader(r, limit))
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return buf[:n], nil // shorter than announced
	case err != nil:
		return nil, err
	}
	rest, err := io.ReadAll(io.LimitReader(r, limit-size)) // longer than announced?
	if err != nil {
		return nil, err
	}
	return append(buf, rest...), nil
}

func (s *Sink) count(j *appendJob) {
	s.mu.Lock()
	s.report.Appended++
	s.report.Bytes += j.rawSize
	if j.note != "" {
		s.report.Repaired = append(s.report.Repaired, Repaired{Folder: j.folder, SourceID: j.sourceID, Note: j.note, Refusal: j.refusal})
	}
	s.mu.Unlock()
}

// newJob returns the APPEND of m into sf, without its body.
func (s *Sink) newJob(sf *sinkFolder, m *archive.Message) *appendJob {
	j := &appendJob{folder: m.Folder, sourceID: m.SourceID, mailbox: sf.mailbox, date: m.InternalDate, digest: m.Digest, labels: s.labelsOf(sf, m)}
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
		if !validFlag(f) {
			s.log.Warn("dropping a flag that IMAP cannot carry", "folder", sf.path, "source_id", m.SourceID, "flag", f)
			continue
		}
		j.flags = append(j.flags, goimap.Flag(f))
	}
	if dropped {
		s.kwOnce.Do(func() {
			s.log.Warn("the target does not keep keywords: dropping them", "folder", sf.path)
		})
	}
	return j
}

// plan decides how j goes on the wire before it is sent: a message over
// the target's APPENDLIMIT is refused here, one with NUL bytes for a
// target without BINARY is repaired or refused here. It returns the job
// to send (j, or a repaired copy), or nil.
func (s *Sink) plan(j *appendJob) (*appendJob, error) {
	if s.caps.limit > 0 && j.wireSize() > s.caps.limit {
		s.refuse(j, fmt.Sprintf("message of %d bytes is over the target's APPENDLIMIT of %d bytes", j.wireSize(), s.caps.limit), nil)
		return nil, nil
	}
	if j.wireSize() == 0 {
		// No server stores an empty message, and some choke on a literal
		// of 0 bytes (gluon waits for more).
		return s.refuseOrRepair(j, "the message is empty")
	}
	if j.info.Header8Bit && !(j.info.HeaderUTF8 && s.caps.utf8) && s.t.munges8bit {
		return s.refuseOrRepair(j, "the header holds 8-bit bytes, which the target (Cyrus) would store as X")
	}
	if j.info.NUL && !s.caps.binary {
		return s.refuseOrRepair(j, "the message holds NUL bytes and the target offers no BINARY")
	}
	return j, nil
}

// refuseOrRepair refuses j, which cannot go as it is, for why; with
// SinkOptions.Repair it returns the job of a repaired copy instead.
func (s *Sink) refuseOrRepair(j *appendJob, why string) (*appendJob, error) {
	ps, err := s.check(j)
	if err != nil {
		return nil, err
	}
	if !s.so.Repair {
		s.refuse(j, why, ps)
		return nil, nil
	}
	return s.repairJob(j, ps, why)
}

// check returns j's form problems.
func (s *Sink) check(j *appendJob) ([]mailform.Problem, error) {
	r, err := j.reader()
	if err != nil {
		return nil, err
	}
	return mailform.Check(r)
}

// repairJob returns the job that sends a repaired copy of j instead of j.
func (s *Sink) repairJob(j *appendJob, ps []mailform.Problem, why string) (*appendJob, error) {
	r, err := j.reader()
	if err != nil {
		return nil, err
	}
	cr, size, note, err := mailform.Repair(mailform.Original{R: r, RawSize: j.rawSize, Size: j.info.Size, Date: j.date, Binary: j.info.BinaryPart}, ps, why)
	if err != nil {
		return nil, err
	}
	c := *j
	c.note, c.refusal = note, why
	c.rawSize = size
	c.stream, c.body = nil, nil
	if size <= s.so.StreamAbove {
		if c.body, err = io.ReadAll(cr); err != nil {
			return nil, err
		}
		c.info = mailform.Scan(c.body)
	} else {
		spill, _, err := spillCopy(cr)
		if err != nil {
			return nil, err
		}
		c.stream = spill
		c.info = mailform.Info{Size: size}
	}
	return &c, nil
}

// putStream appends a message too large to hold in memory: a first pass
// reads the body to learn its size on the wire and its form (and its
// fingerprint when the resume check needs it), then the body, rewound or
// spilled, streams into the APPEND literal.
func (s *Sink) putStream(ctx context.Context, sf *sinkFolder, m *archive.Message) error {
	var print *mailform.Print
	body, info, size, err := s.firstPass(m.Body, sf.unknown.Left() > 0, &print)
	if err != nil {
		return err
	}
	if c, ok := body.(io.Closer); ok {
		defer c.Close()
	}
	if print != nil && s.present(sf, m, print) {
		return nil
	}
	j := s.newJob(sf, m)
	j.stream, j.rawSize, j.info = body, size, info
	if s.so.DryRun {
		s.count(j)
		return nil
	}
	planned, err := s.plan(j)
	if planned == nil || err != nil {
		return err
	}
	if planned != j {
		if planned.stream == nil {
			// A repaired copy small enough to hold.
			if err := s.budget.acquire(ctx, int64(len(planned.body))); err != nil {
				return err
			}
		} else {
			defer planned.stream.(io.Closer).Close()
		}
	}
	return s.enqueue(ctx, planned)
}

// firstPass reads body through a mailform.Scanner (and, with print, a
// fingerprint) and returns a reader of the same bytes from the start:
// body itself, rewound, when it can seek, else a temporary file (the
// caller closes it, which removes it).
func (s *Sink) firstPass(body io.Reader, withPrint bool, print **mailform.Print) (io.ReadSeeker, mailform.Info, int64, error) {
	var (
		sc mailform.Scanner
		fp *mailform.Fingerprinter
		w  io.Writer = &sc
	)
	if withPrint {
		fp = mailform.NewFingerprinter()
		w = io.MultiWriter(&sc, fp)
	}
	finish := func(err error) error {
		if fp != nil {
			if p, perr := fp.Print(); err == nil && perr == nil {
				*print = p
			}
		}
		return err
	}
	if sk, ok := body.(io.ReadSeeker); ok {
		n, err := io.Copy(w, body)
		if finish(err) != nil {
			return nil, mailform.Info{}, 0, err
		}
		if _, err := sk.Seek(0, io.SeekStart); err != nil {
			return nil, mailform.Info{}, 0, fmt.Errorf("rewind message: %w", err)
		}
		return sk, sc.Info(), n, nil
	}
	spill, n, err := spillCopy(io.TeeReader(body, w))
	if finish(err) != nil {
		return nil, mailform.Info{}, 0, err
	}
	return spill, sc.Info(), n, nil
}

// spillCopy copies r (a message to append, or a body a source read
// before its UID) into a temporary file (mode 0600, unlinked at once
// where the system allows) and returns it rewound; closing it removes it.
func spillCopy(r io.Reader) (*spillFile, int64, error) {
	f, err := os.CreateTemp("", "planb-spill-*")
	if err != nil {
		return nil, 0, fmt.Errorf("spill message: %w", err)
	}
	spill := &spillFile{File: f}
	if os.Remove(f.Name()) == nil {
		spill.removed = true
	}
	fw := &errWriter{w: f}
	n, err := io.Copy(fw, r)
	if fw.err != nil {
		err = fmt.Errorf("spill message: %w", fw.err)
	}
	if err == nil {
		if _, err = f.Seek(0, io.SeekStart); err != nil {
			err = fmt.Errorf("spill message: %w", err)
		}
	}
	if err != nil {
		spill.Close()
		return nil, 0, err
	}
	return spill, n, nil
}

// errWriter remembers the error of its writer.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// copyBody copies exactly size bytes of body to w. bodyErr says that the
// error is the body's: it failed, or yields fewer or more bytes than size.
func copyBody(w io.Writer, body io.Reader, size int64, buf []byte) (bodyErr bool, err error) {
	src := &errReader{r: body}
	n, err := io.CopyBuffer(w, io.LimitReader(src, size), buf)
	switch {
	case src.err != nil:
		return true, src.err
	case err != nil:
		return false, err
	case n != size:
		return true, fmt.Errorf("body has %d bytes, want %d", n, size)
	}
	var one [1]byte
	if k, _ := body.Read(one[:]); k > 0 {
		return true, fmt.Errorf("body longer than its size %d", size)
	}
	return false, nil
}

// errReader remembers the error of its reader (io.EOF excepted).
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// spillFile is a temporary file removed when closed.
type spillFile struct {
	*os.File
	removed bool
}

func (f *spillFile) Close() error {
	err := f.File.Close()
	if !f.removed {
		os.Remove(f.File.Name())
	}
	return err
}

func (s *Sink) start(ctx context.Context) {
	s.growMu.Lock()
	defer s.growMu.Unlock()
	if s.started {
		return
	}
	s.started, s.ctx = true, ctx
	for i := range s.opts.Connections {
		var a *appender
		if i == 0 {
			a, s.first = s.first, nil
		}
		s.wg.Add(1)
		go s.worker(ctx, a)
	}
	for range s.extra {
		s.wg.Add(1)
		go s.lent(ctx)
	}
}

// Grow adds one connection to those appending: a restore --plan lends an
// account still running the connections of the accounts that are done.
// The new connection logs in as the others did; if the server refuses it
// (a limit of connections per user), the sink goes on without it. Grow
// reports false once Close was called, after a failure and in a dry run.
func (s *Sink) Grow() bool {
	s.growMu.Lock()
	defer s.growMu.Unlock()
	if s.closing || s.so.DryRun || s.failed.Load() {
		return false
	}
	if !s.started {
		s.extra++
		return true
	}
	s.wg.Add(1)
	go s.lent(s.ctx)
	return true
}

// lent is the worker of a connection Grow added: it dials first, and
// leaves the messages to the other connections if it cannot.
func (s *Sink) lent(ctx context.Context) {
	a, err := dialAppender(ctx, &s.opts)
	if err != nil {
		s.wg.Done()
		s.log.Debug("an added connection could not log in", "err", err)
		return
	}
	s.worker(ctx, a)
}

// Limits of one MULTIAPPEND batch.
const (
	maxBatch      = 100
	maxBatchBytes = 2 << 20
)

// batch is one APPEND command in flight.
type batch struct {
	tag  string
	jobs []*appendJob
}

// msgOf is the appendMsg of j with flags.
func (s *Sink) msgOf(j *appendJob, flags []goimap.Flag) appendMsg {
	m := appendMsg{
		flags: flags, date: j.date, size: j.wireSize(),
		crlf:   j.wireSize() != j.rawSize,
		binary: j.info.NUL && s.caps.binary,
		utf8:   j.info.Header8Bit && j.info.HeaderUTF8 && s.caps.utf8,
	}
	if j.stream != nil {
		m.body = j.stream
	} else {
		m.body = bytes.NewReader(j.body)
	}
	return m
}

// worker appends jobs on an appender of its own (a, or one it dials):
// batches of messages for one mailbox with MULTIAPPEND, else one message
// per command, with several commands in flight.
func (s *Sink) worker(ctx context.Context, a *appender) {
	defer s.wg.Done()
	batchMax, inflightMax := 1, s.so.Pipeline
	if s.caps.multi && !s.so.NoMultiappend && s.so.Pipeline > 1 {
		batchMax, inflightMax = maxBatch, 2
	}
	var (
		inflight []batch
		next     *appendJob // taken from s.jobs, not yet sent
		holding  bool       // s.connMu, while a is the target's connection too
		// unwatch stops the abort of a at the end of ctx, which ends a
		// wait on a stalled server at once.
		unwatch = func() bool { return true }
	)
	watch := func() {
		unwatch()
		unwatch = func() bool { return true }
		if a != nil {
			ap := a
			unwatch = context.AfterFunc(ctx, func() {
				s.fail(ctx.Err()) // first: the error the restore reports
				ap.abort()
			})
		}
	}
	watch()
	hold := func() {
		if !holding && a != nil && a.shared != nil {
			s.connMu.Lock()
			holding = true
		}
	}
	let := func() {
		if holding {
			s.connMu.Unlock()
			holding = false
		}
	}
	defer func() {
		unwatch()
		if a != nil {
			a.logout()
		}
		let()
	}()
	drop := func(j *appendJob, err error) {
		s.budget.release(int64(len(j.body)))
		if j.sent != nil {
			j.sent <- err
		}
	}
	drain := func() {
		for _, b := range inflight {
			s.finish(a, b)
		}
		inflight = inflight[:0]
	}
	for {
		j := next
		next = nil
		if j == nil {
			var ok bool
			select {
			case j, ok = <-s.jobs:
			default:
				// Nothing to send now: collect the answers in flight
				// first. They free the memory budget that the next
				// message may be waiting for. Then a connection
				// shared with the target is the target's to use.
				drain()
				let()
				j, ok = <-s.jobs
			}
			if !ok {
				break
			}
		}
		hold()
		if s.failed.Load() {
			drop(j, s.failure())
			continue
		}
		if a == nil {
			var err error
			if a, err = dialAppender(ctx, &s.opts); err != nil {
				s.fail(err)
				drop(j, err)
				continue
			}
			watch()
		}
		b := batch{jobs: []*appendJob{j}}
		if j.stream != nil {
			// A streamed message goes alone, so that a broken stream
			// costs no other message.
			drain()
			if s.failed.Load() {
				drop(j, s.failure())
				continue
			}
		} else {
			size := j.wireSize()
		collect:
			for len(b.jobs) < batchMax && size < maxBatchBytes {
				select {
				case k, ok := <-s.jobs:
					if !ok {
						break collect
					}
					if k.stream != nil || k.mailbox != j.mailbox || size+k.wireSize() > maxBatchBytes {
						next = k
						break collect
					}
					b.jobs = append(b.jobs, k)
					size += k.wireSize()
				default:
					break collect
				}
			}
		}
		msgs := make([]appendMsg, len(b.jobs))
		for i, k := range b.jobs {
			msgs[i] = s.msgOf(k, s.sendFlags(k.flags))
		}
		tag, bodyErr, err := a.send(j.mailbox, msgs)
		if j.stream != nil && bodyErr {
			a.abort()
			if a.shared != nil {
				s.lost = true // connMu held
			}
			a = nil
			watch()
			j.sent <- fmt.Errorf("message %s: %w", j.sourceID, err)
			continue
		}
		b.tag = tag
		inflight = append(inflight, b)
		if err != nil || j.stream != nil {
			// The connection failed (the answers tell what the server
			// got), or a streamed message waits for its answer.
			drain()
			if j.stream != nil {
				j.sent <- s.failure()
			}
			continue
		}
		for len(inflight) >= inflightMax {
			s.finish(a, inflight[0])
			inflight = inflight[1:]
		}
	}
	drain()
}

// finish waits for the answer to b. A refused batch of several messages
// is sent again one message at a time; a refused message is retried
// without keywords, repaired or reported (see refused).
func (s *Sink) finish(a *appender, b batch) {
	ans, err := a.wait(b.tag)
	if err != nil {
		for _, j := range b.jobs {
			s.budget.release(int64(len(j.body)))
		}
		s.fail(fmt.Errorf("append to %q: %w", b.jobs[0].mailbox, err))
		return
	}
	if ans.status == "OK" {
		for i, j := range b.jobs {
			s.budget.release(int64(len(j.body)))
			s.count(j)
			if len(ans.uids) == len(b.jobs) {
				s.record(j, ans.uidValidity, ans.uids[i])
			} else if len(j.labels) > 0 {
				s.log.Warn("the target gave no UID (APPENDUID): the message gets no labels", "folder", j.folder, "source_id", j.sourceID)
			}
		}
		s.flushJournal()
		return
	}
	if len(b.jobs) == 1 {
		j := b.jobs[0]
		defer s.budget.release(int64(len(j.body)))
		if err := s.refused(a, j, ans); err != nil {
			s.fail(fmt.Errorf("append to %q: %w", j.mailbox, err))
		}
		return
	}
	for _, j := range b.jobs {
		tag, _, err := a.send(j.mailbox, []appendMsg{s.msgOf(j, s.sendFlags(j.flags))})
		if err != nil {
			// Bodies in memory cannot fail: the connection did.
			s.budget.release(int64(len(j.body)))
			s.fail(fmt.Errorf("append to %q: %w", j.mailbox, err))
			continue
		}
		s.finish(a, batch{tag: tag, jobs: []*appendJob{j}})
	}
}

// record notes the UID j got, for Close's reconciliation and in the
// journal.
func (s *Sink) record(j *appendJob, uidValidity, uid uint32) {
	s.mu.Lock()
	if sf := s.folders[j.mailbox]; sf != nil && sf.uidValidity == uidValidity {
		sf.ours[uid] = j.digest
	}
	s.mu.Unlock()
	s.label(j.mailbox, uidValidity, uid, j.labels)
	if s.so.Journal == nil || j.digest == "" || uidValidity == 0 {
		return
	}
	if err := s.so.Journal.Record(j.mailbox, uidValidity, uid, j.digest); err != nil {
		s.log.Warn("restore journal", "err", err)
	}
}

// flushJournal writes out the journal's records, after those of an
// answer (see Journal.Flush).
func (s *Sink) flushJournal() {
	if s.so.Journal == nil {
		return
	}
	if err := s.so.Journal.Flush(); err != nil {
		s.log.Warn("restore journal", "err", err)
	}
}

// appendOne appends j alone with flags on a and returns the answer.
func (s *Sink) appendOne(a *appender, j *appendJob, flags []goimap.Flag) (*answer, error) {
	if j.stream != nil {
		if _, err := j.reader(); err != nil {
			return nil, err
		}
	}
	tag, bodyErr, err := a.send(j.mailbox, []appendMsg{s.msgOf(j, flags)})
	if err != nil {
		if bodyErr {
			a.abort()
		}
		return nil, err
	}
	return a.wait(tag)
}

// refused handles a message the target refused: it tries again without
// the keywords it carries, then (a refusal not for size or quota, of a
// message with form problems) sends a repaired copy with SinkOptions.Repair,
// or reports it. An error means the connection failed.
func (s *Sink) refused(a *appender, j *appendJob, ans *answer) error {
	ok, ans, err := s.keywordRetry(a, j, ans)
	if err != nil || ok {
		return err
	}
	text := strings.TrimSpace(ans.status + " " + bracket(ans.code) + " " + ans.text)
	text = strings.Join(strings.Fields(text), " ")
	if j.note != "" {
		s.refuse(j, "the repaired copy was refused too: "+text, nil)
		return nil
	}
	if sizeRefusal(ans) {
		s.refuse(j, text, nil)
		return nil
	}
	ps, err := s.check(j)
	if err != nil {
		return err
	}
	if len(ps) == 0 && formRefusal(text) {
		ps = []mailform.Problem{mailform.Unreadable}
	}
	if len(ps) == 0 || !s.so.Repair {
		s.refuse(j, text, ps)
		return nil
	}
	// A copy with a mended header first (when the problems are there);
	// refused still, the copy that wraps the original whole.
	why := text
	for try := 0; try < 2; try++ {
		c, err := s.repairJob(j, ps, why)
		if err != nil {
			return err
		}
		ans2, err := s.appendOne(a, c, s.sendFlags(c.flags))
		if c.stream != nil {
			c.stream.(io.Closer).Close()
		}
		if err != nil {
			return err
		}
		if ans2.status == "OK" {
			s.count(c)
			if len(ans2.uids) == 1 {
				s.record(c, ans2.uidValidity, ans2.uids[0])
				s.flushJournal()
			}
			s.log.Info("target refused a message: delivered a repaired copy", "folder", j.folder, "source_id", j.sourceID, "err", text, "repaired", c.note)
			return nil
		}
		why = text + "; the repaired copy was refused too: " + strings.Join(strings.Fields(ans2.status+" "+ans2.text), " ")
		if slices.Contains(ps, mailform.Unreadable) {
			break
		}
		ps = append(ps, mailform.Unreadable)
	}
	s.refuse(j, why, ps)
	return nil
}

// formRefusal reports whether a server's refusal text says the message is
// malformed, for a reason Check does not know: the server's parser
// refused it (Proton Mail Bridge: "failed to parse literal").
func formRefusal(text string) bool {
	return formRE.MatchString(text)
}

var formRE = regexp.MustCompile(`(?i)pars(e|ing)|invalid|malformed|syntax|rfc ?(5322|2822|822|2045)|mime|header|bare newline|encoding`)

func bracket(code string) string {
	if code == "" {
		return ""
	}
	return "[" + code + "]"
}

// sizeRefusal reports whether ans refuses a message for its size or the
// account's quota (RFC 5530 TOOBIG, OVERQUOTA, LIMIT), which no repair
// mends.
func sizeRefusal(ans *answer) bool {
	switch ans.code {
	case "TOOBIG", "OVERQUOTA":
		return true
	}
	t := strings.ToLower(ans.text)
	for _, w := range []string{"quota", "too large", "too big", "size limit", "exceeds", "maximum size"} {
		if strings.Contains(t, w) {
			return true
		}
	}
	return false
}

// refuse reports a message the target refused; ps are its form problems.
func (s *Sink) refuse(j *appendJob, text string, ps []mailform.Problem) {
	s.log.Warn("target refused a message", "folder", j.folder, "source_id", j.sourceID, "err", text)
	r := Refused{Folder: j.folder, SourceID: j.sourceID, Error: text}
	for _, p := range ps {
		r.Problems = append(r.Problems, string(p))
	}
	s.mu.Lock()
	s.report.Refused = append(s.report.Refused, r)
	s.mu.Unlock()
}

// sendFlags returns flags without the keywords the target refused.
func (s *Sink) sendFlags(flags []goimap.Flag) []goimap.Flag {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.badKw) == 0 {
		return flags
	}
	var out []goimap.Flag
	for _, f := range flags {
		if !s.badKw[strings.ToLower(string(f))] {
			out = append(out, f)
		}
	}
	return out
}

// keywordRetry handles a message the target refused while it carries
// keywords (Dovecot, for one, refuses a keyword longer than 50 bytes
// although it announces \*): it appends the message again leaving out one
// keyword at a time, then all of them. A keyword whose removal lets the
// message in is dropped, with a warning, from every later message. It
// reports whether the message was appended, else the last refusal.
func (s *Sink) keywordRetry(a *appender, j *appendJob, ans *answer) (bool, *answer, error) {
	try := func(flags []goimap.Flag) (bool, error) {
		got, err := s.appendOne(a, j, flags)
		if err != nil {
			return false, err
		}
		if got.status != "OK" {
			ans = got
			return false, nil
		}
		s.count(j)
		if len(got.uids) == 1 {
			s.record(j, got.uidValidity, got.uids[0])
			s.flushJournal()
		}
		return true, nil
	}
	flags := s.sendFlags(j.flags)
	if len(flags) < len(j.flags) {
		// Keywords found bad since this message was sent: try without
		// them first.
		if ok, err := try(flags); err != nil || ok {
			return ok, ans, err
		}
	}
	var kws []goimap.Flag
	for _, f := range flags {
		if !strings.HasPrefix(string(f), `\`) {
			kws = append(kws, f)
		}
	}
	if len(kws) == 0 {
		return false, ans, nil
	}
	without := func(drop []goimap.Flag) (bool, error) {
		var keep []goimap.Flag
		for _, f := range flags {
			if !slices.Contains(drop, f) {
				keep = append(keep, f)
			}
		}
		ok, err := try(keep)
		if !ok || err != nil {
			return false, err
		}
		s.mu.Lock()
		if s.badKw == nil {
			s.badKw = map[string]bool{}
		}
		for _, k := range drop {
			s.badKw[strings.ToLower(string(k))] = true
		}
		s.mu.Unlock()
		for _, k := range drop {
			s.log.Warn("the target refused a keyword: dropping it from every message", "folder", j.folder, "source_id", j.sourceID, "keyword", string(k))
		}
		return true, nil
	}
	if len(kws) > 1 {
		for _, k := range kws {
			if ok, err := without([]goimap.Flag{k}); ok || err != nil {
				return ok, ans, err
			}
		}
	}
	ok, err := without(kws)
	return ok, ans, err
}

// Close waits for every APPEND, reconciles the folders it appended into
// (see reconcile), logs out and returns the first error.
func (s *Sink) Close() error {
	s.growMu.Lock()
	s.closing = true
	s.growMu.Unlock()
	close(s.jobs)
	s.wg.Wait()
	if s.first != nil {
		s.first.logout()
	}
	if s.shared != nil {
		s.shared.give(targetSpeaker)
	}
	if s.failure() == nil && !s.so.DryRun {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if err := s.redialTarget(ctx); err != nil {
			s.fail(err)
		} else {
			s.tidy(ctx)
		}
		cancel()
	}
	s.t.close()
	return s.failure()
}

// tidy removes the duplicates interrupted runs left in the folders
// appended into (leftovers, reconcile) and gives the messages their labels
// (copyLabels), at Close.
func (s *Sink) tidy(ctx context.Context) {
	for _, sf := range s.folders {
		if err := s.leftovers(ctx, sf); err != nil {
			s.log.Warn("could not remove the duplicates earlier interrupted runs left", "folder", sf.path, "err", err)
		}
		if err := s.reconcile(ctx, sf); err != nil {
			s.log.Warn("could not look for duplicates an interrupted run left", "folder", sf.path, "err", err)
		}
	}
	if err := s.copyLabels(); err != nil {
		s.fail(err)
	}
}

// reconcile removes from a folder the copies of messages that this sink
// appended while a killed run's last APPEND, which the server was still
// storing when this run listed the folder, added them too: messages that
// came into the folder during the run from elsewhere, the same as one this
// sink appended (by their fingerprints, as the server holds both). Only
// the sink's own copy, known by the UID APPENDUID gave it, is expunged
// (UID EXPUNGE); the journal learns the other's UID. It needs UIDPLUS.
func (s *Sink) reconcile(ctx context.Context, sf *sinkFolder) error {
	s.mu.Lock()
	ours := maps.Clone(sf.ours)
	s.mu.Unlock()
	if len(ours) == 0 || !s.t.c.c.Caps().Has(goimap.CapUIDPlus) {
		return nil
	}
	sel, err := s.t.c.c.Select(sf.mailbox, nil).Wait()
	if err != nil {
		return fmt.Errorf("select %q: %w", sf.mailbox, err)
	}
	if sel.UIDValidity != sf.uidValidity {
		return nil
	}
	uids, err := s.t.uids(sf.mailbox)
	if err != nil {
		return err
	}
	var extras, mine []goimap.UID
	for _, u := range uids {
		switch {
		case ours[uint32(u)] != "":
			mine = append(mine, u)
		case !sf.initial[u]:
			extras = append(extras, u)
		}
	}
	if len(extras) == 0 {
		return nil
	}
	var others mailform.Set
	err = s.t.fetchPrints(ctx, sf.mailbox, extras, func(m TargetMessage) error {
		others.Add(int(m.UID), m.Print)
		return nil
	})
	if err != nil {
		return err
	}
	var dup goimap.UIDSet
	n := 0
	err = s.t.fetchPrints(ctx, sf.mailbox, mine, func(m TargetMessage) error {
		other, ok := others.MatchAt(m.Print, mailform.Exact)
		if !ok {
			// Bridge gives each copy an X-Pm-Gluon-Id of its own.
			if other, ok = others.MatchAt(m.Print, mailform.HeadersAdded); !ok {
				return nil
			}
		}
		dup.AddNum(m.UID)
		n++
		s.relabel(sf.mailbox, sf.uidValidity, m.UID, goimap.UID(other))
		if s.so.Journal != nil {
			if err := s.so.Journal.Record(sf.mailbox, sf.uidValidity, uint32(other), ours[uint32(m.UID)]); err != nil {
				s.log.Warn("restore journal", "err", err)
			}
		}
		return nil
	})
	if err != nil || n == 0 {
		return err
	}
	if err := s.expunge(sf, dup); err != nil {
		return err
	}
	s.log.Warn("removed the copies of messages that an interrupted run's last APPEND stored too", "folder", sf.path, "messages", n)
	s.mu.Lock()
	s.report.Appended -= int64(n)
	s.report.Present += int64(n)
	s.mu.Unlock()
	return nil
}

// expunge removes the messages uids of sf's mailbox (UID EXPUNGE).
func (s *Sink) expunge(sf *sinkFolder, uids goimap.UIDSet) error {
	if _, err := s.t.c.c.Select(sf.mailbox, nil).Wait(); err != nil {
		return fmt.Errorf("select %q: %w", sf.mailbox, err)
	}
	store := &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}
	if err := s.t.c.c.Store(uids, store, nil).Close(); err != nil {
		return fmt.Errorf("store %q: %w", sf.mailbox, err)
	}
	if err := s.t.c.c.UIDExpunge(uids).Close(); err != nil {
		return fmt.Errorf("expunge %q: %w", sf.mailbox, err)
	}
	return nil
}

// leftovers removes the duplicates that two interrupted runs leave
// together: the server was still storing the first one's last APPENDs
// when the second listed the folder, and the second, killed before its
// reconcile, appended those messages again and journalled them. The next
// run finds each such message twice: the copy the journal knows, and one
// it does not, which no message of the snapshot claimed (a message the
// snapshot holds twice claims both). The journal's copy, planb's own, is
// expunged, and the journal learns the other. It needs UIDPLUS, as
// reconcile does.
func (s *Sink) leftovers(ctx context.Context, sf *sinkFolder) error {
	if len(sf.kept) == 0 || sf.unknown.Left() == 0 || !s.t.c.c.Caps().Has(goimap.CapUIDPlus) {
		return nil
	}
	var dup goimap.UIDSet
	n := 0
	for _, k := range sf.kept {
		other, ok := sf.unknown.MatchAt(k.print, mailform.Exact)
		if !ok {
			if other, ok = sf.unknown.MatchAt(k.print, mailform.HeadersAdded); !ok {
				continue
			}
		}
		dup.AddNum(goimap.UID(k.uid))
		n++
		s.relabel(sf.mailbox, sf.uidValidity, goimap.UID(k.uid), goimap.UID(other))
		if s.so.Journal != nil {
			if err := s.so.Journal.Record(sf.mailbox, sf.uidValidity, uint32(other), k.digest); err != nil {
				s.log.Warn("restore journal", "err", err)
			}
		}
	}
	if n == 0 {
		return ctx.Err()
	}
	if err := s.expunge(sf, dup); err != nil {
		return err
	}
	s.log.Warn("removed the copies of messages that earlier interrupted runs stored twice", "folder", sf.path, "messages", n)
	return nil
}

// KeepsLabels reports whether the target is label-based (Proton Mail
// Bridge, Gmail): then Put writes a message once and gives it the labels
// of Message.Labels (see archive.LabelFolders) by copying it into each
// label's mailbox (Labels/X on Bridge), at Close. Copying a message into a
// label it has is harmless on both, so a resumed restore copies again.
func (s *Sink) KeepsLabels() bool { return s.t.keepsLabels() }

// labelsOf returns the mailboxes of m's labels, on a label-based target.
func (s *Sink) labelsOf(sf *sinkFolder, m *archive.Message) []string {
	if len(m.Labels) == 0 || !s.t.keepsLabels() {
		return nil
	}
	var out []string
	for _, l := range archive.LabelFolders(m.Labels, sf.path) {
		if mb := s.t.labelMailbox(l); mb != sf.mailbox {
			out = append(out, mb)
		}
	}
	return out
}

// label notes that the message uid of mailbox gets labels.
func (s *Sink) label(mailbox string, uidValidity, uid uint32, labels []string) {
	if len(labels) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.labels == nil {
		s.labels = map[labelKey][]uint32{}
	}
	for _, l := range labels {
		k := labelKey{mailbox, uidValidity, l}
		s.labels[k] = append(s.labels[k], uid)
	}
}

// relabel moves the labels noted for one message of mailbox to another
// (reconcile kept the other copy).
func (s *Sink) relabel(mailbox string, uidValidity uint32, from, to goimap.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, uids := range s.labels {
		if k.mailbox == mailbox && k.uidValidity == uidValidity {
			for i, u := range uids {
				if u == uint32(from) {
					uids[i] = uint32(to)
				}
			}
		}
	}
}

// copyLabels copies the messages noted by label into their labels'
// mailboxes (UID COPY), creating the mailboxes that are missing.
func (s *Sink) copyLabels() error {
	s.mu.Lock()
	keys := slices.SortedFunc(maps.Keys(s.labels), func(a, b labelKey) int {
		return cmp.Or(strings.Compare(a.mailbox, b.mailbox), strings.Compare(a.label, b.label))
	})
	s.mu.Unlock()
	selected := ""
	for _, k := range keys {
		if err := s.t.ensure(k.label, ""); err != nil {
			return fmt.Errorf("label %q: %w", k.label, err)
		}
		if k.mailbox != selected {
			sel, err := s.t.c.c.Select(k.mailbox, nil).Wait()
			if err != nil {
				return fmt.Errorf("select %q: %w", k.mailbox, err)
			}
			if sel.UIDValidity != k.uidValidity {
				s.log.Warn("mailbox changed its UIDVALIDITY during the restore: its messages get no labels", "mailbox", k.mailbox)
				continue
			}
			selected = k.mailbox
		}
		var set goimap.UIDSet
		for _, u := range s.labels[k] {
			set.AddNum(goimap.UID(u))
		}
		if _, err := s.t.c.c.Copy(set, k.label).Wait(); err != nil {
			return fmt.Errorf("copy into label %q: %w", k.label, err)
		}
		s.mu.Lock()
		s.report.Labeled += int64(len(s.labels[k]))
		s.mu.Unlock()
	}
	return nil
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
	if b.used > 0 && b.used+n > b.max {
		// Wake up when ctx ends too, not only on a release.
		stop := context.AfterFunc(ctx, func() {
			b.mu.Lock()
			b.cond.Broadcast()
			b.mu.Unlock()
		})
		defer stop()
	}
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
