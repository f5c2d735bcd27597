package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive"
)

func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestProgressJSONThrottle(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress("backup", newJSONWriter(&buf), false, nil)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }

	p.Start(archive.Counts{Messages: 10, Bytes: 1000})
	p.Add(archive.Counts{Messages: 1, Bytes: 100}) // first report: printed
	p.Add(archive.Counts{Messages: 1, Bytes: 100}) // same instant: not printed
	now = now.Add(500 * time.Millisecond)
	p.Add(archive.Counts{Messages: 1, Bytes: 100}) // 0.5 s later: not printed
	now = now.Add(500 * time.Millisecond)
	p.Add(archive.Counts{Messages: 1, Bytes: 100}) // 1 s after the first: printed
	p.Event(archive.Event{Kind: "skip", Folder: "INBOX", SourceID: "42", Err: errors.New("unreadable")})
	p.Done()

	lines := jsonLines(t, buf.String())
	want := []struct {
		typ  string
		done float64
	}{{"progress", 1}, {"progress", 4}, {"skip", 0}, {"progress", 4}}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		if lines[i]["type"] != w.typ {
			t.Errorf("line %d type = %v, want %q", i, lines[i]["type"], w.typ)
		}
		if w.typ == "progress" && (lines[i]["messages_done"] != w.done || lines[i]["messages_total"] != 10.0) {
			t.Errorf("line %d = %v, want messages_done %v of 10", i, lines[i], w.done)
		}
	}
	if l := lines[2]; l["folder"] != "INBOX" || l["source_id"] != "42" || l["error"] != "unreadable" {
		t.Errorf("skip line = %v, want folder INBOX, source_id 42, error unreadable", l)
	}
}

func TestProgressQuiet(t *testing.T) {
	var stderr bytes.Buffer
	p := newProgress("backup", nil, false, &stderr)
	p.Start(archive.Counts{Messages: 1, Bytes: 10})
	p.Add(archive.Counts{Messages: 1, Bytes: 10})
	p.Event(archive.Event{Kind: "skip", Folder: "INBOX", SourceID: "1"})
	p.Done()
	if stderr.Len() != 0 {
		t.Errorf("progress without bar wrote %q", stderr.String())
	}
	if got := p.Counts(); got != (archive.Counts{Messages: 1, Bytes: 10}) {
		t.Errorf("Counts() = %v, want {1 10}", got)
	}
}

// TestProgressConcurrent is meant for the race detector; it also checks
// that no JSON line is torn.
func TestProgressConcurrent(t *testing.T) {
	for _, mode := range []string{"json", "bar"} {
		var out, stderr bytes.Buffer
		var j *jsonWriter
		if mode == "json" {
			j = newJSONWriter(&out)
		}
		p := newProgress("export", j, mode == "bar", &stderr)
		p.Start(archive.Counts{Messages: 800, Bytes: 800})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 100 {
					p.Add(archive.Counts{Messages: 1, Bytes: 1})
					p.Event(archive.Event{Kind: "folder", Folder: "INBOX"})
				}
			})
		}
		wg.Wait()
		p.Done()
		if got := p.Counts(); got != (archive.Counts{Messages: 800, Bytes: 800}) {
			t.Errorf("%s: Counts() = %v, want {800 800}", mode, got)
		}
		if mode == "json" {
			lines := jsonLines(t, out.String())
			if last := lines[len(lines)-1]; last["messages_done"] != 800.0 {
				t.Errorf("last JSON line = %v, want messages_done 800", last)
			}
		}
	}
}

// TestProgressPhasesJSON: a job of two phases (migrate) prints progress
// lines that name their phase, with the counts of that phase; the last
// line of a phase is printed when the next begins, and Done prints the
// last line once.
func TestProgressPhasesJSON(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress("migrate", newJSONWriter(&buf), false, nil)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }

	p.Phase("backup")
	p.Start(archive.Counts{Messages: -1, Bytes: -1})
	p.Add(archive.Counts{Messages: 1})             // printed: first of the phase
	p.Add(archive.Counts{Messages: 1, Bytes: 500}) // throttled
	p.Event(archive.Event{Kind: "skip", Folder: "INBOX", SourceID: "7", Err: errors.New("gone")})
	p.Phase("restore") // prints the backup phase's last line
	p.Start(archive.Counts{Messages: 2, Bytes: 300})
	p.Add(archive.Counts{Messages: 1, Bytes: 100}) // printed: first of the phase
	// A resumed restore starts the phase over.
	p.Phase("restore")
	p.Start(archive.Counts{Messages: 2, Bytes: 300})
	p.Add(archive.Counts{Messages: 2, Bytes: 300}) // printed: first since the restart
	p.Done()
	p.Done() // no second last line

	type line struct {
		typ, phase  string
		msgs, bytes float64
		total       float64
	}
	want := []line{
		{"progress", "backup", 1, 0, -1},
		{"skip", "backup", 0, 0, 0},
		{"progress", "backup", 2, 500, -1},
		{"progress", "restore", 1, 100, 2},
		{"progress", "restore", 2, 300, 2},
		{"progress", "restore", 2, 300, 2},
	}
	lines := jsonLines(t, buf.String())
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		l := lines[i]
		if l["type"] != w.typ || l["op"] != "migrate" || l["phase"] != w.phase {
			t.Errorf("line %d = %v, want type %q, op migrate, phase %q", i, l, w.typ, w.phase)
			continue
		}
		if w.typ == "progress" && (l["messages_done"] != w.msgs || l["bytes_done"] != w.bytes || l["messages_total"] != w.total) {
			t.Errorf("line %d = %v, want %v messages and %v bytes done of %v messages", i, l, w.msgs, w.bytes, w.total)
		}
	}
	if got := p.Counts(); got != (archive.Counts{Messages: 2, Bytes: 300}) {
		t.Errorf("Counts() = %v, want the restore phase's {2 300}", got)
	}
}

// TestProgressPhasesBar: the bar of a job of two phases is one bar: not
// finished between the phases, a spinner while the backup does not know
// its total, then a bar whose maximum is what the backup did plus what
// the restore announces, its value going on from the backup's.
func TestProgressPhasesBar(t *testing.T) {
	var stderr bytes.Buffer
	p := newProgress("migrate", nil, true, &stderr)
	bar := p.bar
	p.Phase("backup")
	p.Start(archive.Counts{Messages: -1, Bytes: -1})
	p.Add(archive.Counts{Messages: 1, Bytes: 1000})
	p.Add(archive.Counts{Messages: 1, Bytes: 24})
	if st := bar.State(); st.Max != -1 || st.CurrentBytes != 1024 {
		t.Errorf("backup phase: bar max %d at %v bytes, want -1 (unknown) at 1024", st.Max, st.CurrentBytes)
	}
	p.Phase("restore")
	if p.bar != bar || bar.IsFinished() {
		t.Fatalf("Phase replaced or finished the bar")
	}
	p.Start(archive.Counts{Messages: 2, Bytes: 2000})
	p.Add(archive.Counts{Messages: 1, Bytes: 500})
	if st := bar.State(); st.Max != 3024 || st.CurrentNum != 1524 || st.CurrentBytes != 1524 {
		t.Errorf("restore phase: bar at %d (%v bytes) of %d, want 1524 of 3024", st.CurrentNum, st.CurrentBytes, st.Max)
	}
	// A resumed restore starts its phase over, not the bar.
	p.Phase("restore")
	p.Start(archive.Counts{Messages: 2, Bytes: 2000})
	p.Add(archive.Counts{Messages: 2, Bytes: 2000})
	if st := bar.State(); st.Max != 3024 || st.CurrentNum != 3024 {
		t.Errorf("resumed restore: bar at %d of %d, want 3024 of 3024", st.CurrentNum, st.Max)
	}
	if got := p.describeLocked(); got != "migrate: restore: 2 messages" {
		t.Errorf("bar description %q, want %q", got, "migrate: restore: 2 messages")
	}
	p.Done()
	if p.bar != nil {
		t.Errorf("Done left the bar")
	}
}
