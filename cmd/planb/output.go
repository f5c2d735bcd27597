package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// jsonWriter writes one JSON object per line. It is safe for concurrent use,
// so that progress events and results never interleave within a line.
type jsonWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// lockedWriter serialises writes to w: warnings come from the workers of
// a restore or a run at once, and a progress bar redraws between them.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// terminalFile returns the file w writes to, if it writes straight to one.
func terminalFile(w io.Writer) (*os.File, bool) {
	if l, ok := w.(*lockedWriter); ok {
		w = l.w
	}
	f, ok := w.(*os.File)
	return f, ok
}

func newJSONWriter(w io.Writer) *jsonWriter {
	return &jsonWriter{enc: json.NewEncoder(w)}
}

// write prints v as one line. Output errors (a closed pipe) are ignored
// here, as they would be for text written with fmt.Fprintf.
func (j *jsonWriter) write(v any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(v)
}

// formatBytes formats n with binary units: "512 B", "1.5 KiB", "3.0 GiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit && f > -unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PiB", f/unit)
}

// formatDuration rounds d for display.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// formatAge formats how long ago t was, for lock listings.
func formatAge(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}
