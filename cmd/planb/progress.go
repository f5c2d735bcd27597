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
type progress struct {
	op   string      // "backup", "export"
	json *jsonWriter // nil unless --json
	bar  *progressbar.ProgressBar
	now  func() time.Time

	mu       sync.Mutex
	total    archive.Counts
	done     archive.Counts
	lastJSON time.Time
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
	MessagesDone  int64  `json:"messages_done"`
	BytesDone     int64  `json:"bytes_done"`
	MessagesTotal int64  `json:"messages_total"`
	BytesTotal    int64  `json:"bytes_total"`
}

// eventLine is one JSON line for an archive.Event ("skip", "folder"...).
type eventLine struct {
	Type     string `json:"type"` // the event's kind
	Op       string `json:"op"`
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
		p.bar.ChangeMax64(total.Bytes)
	}
}

// Add implements archive.Progress.
func (p *progress) Add(done archive.Counts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done.Messages += done.Messages
	p.done.Bytes += done.Bytes
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("%s: %d messages", p.op, p.done.Messages))
		_ = p.bar.Add64(done.Bytes)
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
	l := eventLine{Type: e.Kind, Op: p.op, Folder: e.Folder, SourceID: e.SourceID, Message: e.Message}
	if e.Err != nil {
		l.Error = e.Err.Error()
		if l.Message == l.Error {
			l.Message = ""
		}
	}
	p.json.write(l)
}

// Done ends the report: it removes the bar, or prints the last JSON
// progress line.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
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

func (p *progress) eventLocked() progressEvent {
	return progressEvent{
		Type: "progress", Op: p.op,
		MessagesDone: p.done.Messages, BytesDone: p.done.Bytes,
		MessagesTotal: p.total.Messages, BytesTotal: p.total.Bytes,
	}
}
