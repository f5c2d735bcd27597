package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"codeberg.org/planb/planb/archive"
)

// jsonInterval is the shortest time between two JSON progress lines.
const jsonInterval = time.Second

// progress implements archive.Progress for the command line. It draws a bar
// on stderr (when stderr is a terminal and neither --quiet nor --json is
// given) or, with --json, prints progress and skip events as JSON lines on
// stdout. All methods are safe for concurrent use; Done must be called once
// the operation is over.
//
// An operation of several phases (migrate: backup, then restore) uses one
// progress for the whole job and calls Phase as each phase begins: one bar
// carries on over the phases, and JSON lines name their phase.
type progress struct {
	op      string      // "backup", "export", "migrate"
	account string      // the account of a --plan line, for JSON lines
	json    *jsonWriter // nil unless --json
	bar     *progressbar.ProgressBar
	now     func() time.Time

	mu       sync.Mutex
	phase    string         // "" unless Phase was called
	total    archive.Counts // of the current phase
	done     archive.Counts // of the current phase
	base     int64          // bar bytes of the phases before this one
	lastJSON time.Time
	finished bool // Done was called
}

var _ archive.Progress = (*progress)(nil)

// newProgress returns the progress reporter for operation op. With j not
// nil, events go to j as JSON lines; otherwise, with showBar, a bar is drawn
// on stderr; otherwise nothing is shown.
func newProgress(op string, j *jsonWriter, showBar bool, stderr io.Writer) *progress {
	p := &progress{op: op, json: j, now: time.Now}
	if j == nil && showBar {
		p.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(op),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionUseIECUnits(true),
		)
	}
	return p
}

// progressEvent is one JSON progress line.
type progressEvent struct {
	Type          string `json:"type"` // "progress"
	Op            string `json:"op"`
	Phase         string `json:"phase,omitempty"` // "backup", "restore" (migrate)
	Account       string `json:"account,omitempty"`
	MessagesDone  int64  `json:"messages_done"`
	BytesDone     int64  `json:"bytes_done"`
	MessagesTotal int64  `json:"messages_total"`
	BytesTotal    int64  `json:"bytes_total"`
}

// eventLine is one JSON line for an archive.Event ("skip", "folder"...).
type eventLine struct {
	Type     string `json:"type"` // the event's kind
	Op       string `json:"op"`
	Phase    string `json:"phase,omitempty"`
	Account  string `json:"account,omitempty"`
	Folder   string `json:"folder,omitempty"`
	SourceID string `json:"source_id,omitempty"`
	Message  string `json:"message,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Start implements archive.Progress.
func (p *progress) Start(total archive.Counts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = total
	if p.bar != nil && total.Bytes >= 0 {
		// The bar may have been a spinner (a backup does not know its
		// total): start it again at what the earlier phases did.
		p.bar.Reset()
		p.bar.ChangeMax64(p.base + total.Bytes)
		_ = p.bar.Set64(p.base + p.done.Bytes)
	}
}

// Phase begins phase name of a job of several phases: the counts start
// again from zero (with --json, the last progress line of the phase before
// is printed first), while the bar goes on from where it was, its maximum
// becoming what the earlier phases did plus the total the new phase
// announces. Calling Phase again with the current phase's name starts that
// phase over (a resumed restore reports again what it finds done).
func (p *progress) Phase(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if name != p.phase {
		if p.json != nil && p.done.Messages > 0 {
			p.json.write(p.eventLocked())
		}
		p.base += p.done.Bytes
	}
	p.phase = name
	p.total = archive.Counts{Messages: -1, Bytes: -1}
	p.done = archive.Counts{}
	p.lastJSON = time.Time{}
	if p.bar != nil {
		_ = p.bar.Set64(p.base)
		p.bar.Describe(p.describeLocked())
	}
}

// describeLocked is the bar's description: "backup: 12 messages",
// "migrate: restore: 12 messages".
func (p *progress) describeLocked() string {
	d := p.op
	if p.phase != "" {
		d += ": " + p.phase
	}
	return fmt.Sprintf("%s: %d messages", d, p.done.Messages)
}

// Add implements archive.Progress.
func (p *progress) Add(done archive.Counts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done.Messages += done.Messages
	p.done.Bytes += done.Bytes
	if p.bar != nil {
		p.bar.Describe(p.describeLocked())
		_ = p.bar.Set64(p.base + p.done.Bytes)
	}
	if p.json != nil {
		if now := p.now(); now.Sub(p.lastJSON) >= jsonInterval {
			p.lastJSON = now
			p.json.write(p.eventLocked())
		}
	}
}

// Event implements archive.Progress. With --json every event is printed;
// otherwise events are not shown: the command names skipped messages in
// its summary.
func (p *progress) Event(e archive.Event) {
	if p.json == nil {
		return
	}
	p.mu.Lock()
	phase := p.phase
	p.mu.Unlock()
	l := eventLine{Type: e.Kind, Op: p.op, Phase: phase, Account: p.account, Folder: e.Folder, SourceID: e.SourceID, Message: e.Message}
	if e.Err != nil {
		l.Error = e.Err.Error()
		if l.Message == l.Error {
			l.Message = ""
		}
	}
	p.json.write(l)
}

// Done ends the report: it removes the bar, or prints the last JSON
// progress line. Calls after the first do nothing.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	p.finished = true
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
	if p.json != nil && p.done.Messages > 0 {
		p.json.write(p.eventLocked())
	}
}

// Counts returns the work reported so far.
func (p *progress) Counts() archive.Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// bytesLeft returns the bytes of the current phase not done yet.
func (p *progress) bytesLeft() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total.Bytes - p.done.Bytes
}

func (p *progress) eventLocked() progressEvent {
	return progressEvent{
		Type: "progress", Op: p.op, Phase: p.phase, Account: p.account,
		MessagesDone: p.done.Messages, BytesDone: p.done.Bytes,
		MessagesTotal: p.total.Messages, BytesTotal: p.total.Bytes,
	}
}

// board shows a --plan run on a terminal: one line per running account
// (its target, phase, messages and bytes done of its total) and a last
// line for the whole run, redrawn four times a second on stderr; lines
// written to logWriter (warnings) go above it. Without a terminal (or with
// --quiet or --json) it shows nothing and logWriter is stderr. Its
// methods are safe for concurrent use.
type board struct {
	w     io.Writer
	draw  bool
	op    string
	total int // accounts

	mu       sync.Mutex
	rows     []boardRow
	drawn    int // lines on the screen
	finished int
	failed   int
	done     archive.Counts // of the finished accounts
	quit     chan struct{}
	stopped  sync.Once
	loopDone chan struct{}
}

type boardRow struct {
	label string
	p     *progress
}

func newBoard(g *globalOptions, op string, accounts int) *board {
	b := &board{w: g.stderr, draw: g.showBar(), op: op, total: accounts, quit: make(chan struct{}), loopDone: make(chan struct{})}
	if !b.draw {
		close(b.loopDone)
		return b
	}
	go func() {
		defer close(b.loopDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.quit:
				return
			case <-t.C:
				b.mu.Lock()
				b.redrawLocked()
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *board) add(label string, p *progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rows = append(b.rows, boardRow{label, p})
}

func (b *board) remove(label string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, r := range b.rows {
		if r.label == label {
			b.done.Messages += r.p.Counts().Messages
			b.done.Bytes += r.p.Counts().Bytes
			b.rows = append(b.rows[:i], b.rows[i+1:]...)
			return
		}
	}
}

// finish counts an account that ended.
func (b *board) finish(res accountResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finished++
	if res.Status == planFailed {
		b.failed++
		if b.draw {
			b.clearLocked()
			fmt.Fprintf(b.w, "planb: %s failed: %s\n", res.To, res.Error)
		}
	}
}

func (b *board) clearLocked() {
	for ; b.drawn > 0; b.drawn-- {
		fmt.Fprint(b.w, "\x1b[1A\x1b[2K")
	}
}

func (b *board) redrawLocked() {
	b.clearLocked()
	var done archive.Counts = b.done
	for _, r := range b.rows {
		c := r.p.Counts()
		done.Messages += c.Messages
		done.Bytes += c.Bytes
		r.p.mu.Lock()
		phase, total := r.p.phase, r.p.total
		r.p.mu.Unlock()
		of := ""
		if total.Messages > 0 {
			of = fmt.Sprintf(" of %d", total.Messages)
		}
		fmt.Fprintf(b.w, "  %-40s %-8s %d%s messages, %s\n", r.label, phase, c.Messages, of, formatBytes(c.Bytes))
		b.drawn++
	}
	fmt.Fprintf(b.w, "%s: %d of %d accounts finished (%d failed), %d running; %d messages, %s\n",
		b.op, b.finished, b.total, b.failed, len(b.rows), done.Messages, formatBytes(done.Bytes))
	b.drawn++
}

// logWriter returns where the accounts' warnings go.
func (b *board) logWriter() io.Writer {
	if !b.draw {
		return b.w
	}
	return boardLog{b}
}

// logf writes one line above the board.
func (b *board) logf(format string, args ...any) {
	fmt.Fprintf(b.logWriter(), format+"\n", args...)
}

type boardLog struct{ b *board }

func (l boardLog) Write(p []byte) (int, error) {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	l.b.clearLocked()
	return l.b.w.Write(p)
}

// stop removes the board from the screen; calls after the first do
// nothing.
func (b *board) stop() {
	b.stopped.Do(func() {
		close(b.quit)
		<-b.loopDone
		b.mu.Lock()
		b.clearLocked()
		b.mu.Unlock()
	})
}
