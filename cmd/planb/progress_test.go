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
