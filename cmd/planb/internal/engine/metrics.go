package engine

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metric is one gauge, with its value for each source or repository.
type Metric struct {
	name, help string
	label      string // "source" or "repository"
	values     []labeled
}

type labeled struct {
	label string
	value float64
}

// Metrics returns the gauges of the run. The last success time of a
// source that failed now, or that a signal stopped, comes from the state;
// so does the last run time of a source that never started.
func (rep *RunReport) Metrics() []Metric {
	st := rep.state
	if st == nil {
		st = &State{}
	}
	m := func(name, help, label string) *Metric { return &Metric{name: name, help: help, label: label} }
	lastSuccess := m("planb_source_last_success_timestamp_seconds", "Unix time of the source's last successful (or partial) backup.", "source")
	lastRun := m("planb_source_last_run_timestamp_seconds", "Unix time the source's last backup started.", "source")
	duration := m("planb_source_duration_seconds", "How long the source's last backup took.", "source")
	msgs := m("planb_source_messages_added", "Messages the source's last backup added.", "source")
	bytes := m("planb_source_bytes_added", "Bytes of messages the source's last backup added.", "source")
	errs := m("planb_source_errors", "Errors of the source's last backup (skipped messages and folders, failures).", "source")
	success := m("planb_source_success", "1 if the source's last backup completed (perhaps partial), 0 if it failed or was interrupted.", "source")
	size := m("planb_repository_size_bytes", "Size of the repository's files.", "repository")
	snaps := m("planb_repository_snapshots", "Snapshots in the repository.", "repository")
	for _, s := range rep.Sources {
		if t := st.Sources[s.Name].LastSuccess; !t.IsZero() {
			lastSuccess.add(s.Name, float64(t.Unix()))
		}
		switch last := st.Sources[s.Name].LastRun; {
		case !s.Started.IsZero():
			lastRun.add(s.Name, float64(s.Started.Unix()))
		case !last.IsZero():
			lastRun.add(s.Name, float64(last.Unix()))
		}
		duration.add(s.Name, float64(s.DurationMS)/1000)
		msgs.add(s.Name, float64(s.MessagesAdded))
		bytes.add(s.Name, float64(s.BytesAdded))
		errs.add(s.Name, float64(s.Errors))
		ok := 0.0
		if s.Status == StatusOK || s.Status == StatusPartial {
			ok = 1
		}
		success.add(s.Name, ok)
	}
	for _, r := range rep.Repositories {
		if r.SizeBytes >= 0 {
			size.add(r.Name, float64(r.SizeBytes))
		}
		if r.Snapshots >= 0 {
			snaps.add(r.Name, float64(r.Snapshots))
		}
	}
	return []Metric{*lastSuccess, *lastRun, *duration, *msgs, *bytes, *errs, *success, *size, *snaps}
}

func (m *Metric) add(label string, v float64) { m.values = append(m.values, labeled{label, v}) }

// FormatMetrics writes the gauges in Prometheus's text format, as
// node_exporter's textfile collector and a /metrics endpoint serve it.
func FormatMetrics(ms []Metric) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", m.name, m.help, m.name)
		for _, v := range m.values {
			fmt.Fprintf(&b, "%s{%s=%s} %s\n", m.name, m.label, quoteLabel(v.label), strconv.FormatFloat(v.value, 'f', -1, 64))
		}
	}
	return b.String()
}

// quoteLabel quotes a label value: backslash, double quote and newline
// are escaped.
func quoteLabel(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// metrics returns the gauges of a watch.
func (w *watch) metrics() []Metric {
	m := func(name, help string) *Metric { return &Metric{name: name, help: help, label: "source"} }
	lag := m("planb_source_lag_seconds", "Age of the oldest change the watch stored that no snapshot holds yet (0: every change is in a snapshot).")
	connected := m("planb_source_connected", "1 if the source answered the watch's last attempt, 0 if it failed.")
	msgs := m("planb_source_messages_added", "Messages the watch added since it started.")
	bytes := m("planb_source_bytes_added", "Bytes of messages the watch added since it started.")
	snaps := m("planb_source_snapshots_saved", "Snapshots the watch saved since it started.")
	errs := m("planb_source_errors", "Failed attempts and skipped messages since the watch started.")
	now := time.Now()
	w.srcMu.Lock()
	sources := slices.Clone(w.sources)
	w.srcMu.Unlock()
	for _, ws := range sources {
		ws.mu.Lock()
		var oldest time.Time
		for _, u := range ws.units {
			if !u.since.IsZero() && (oldest.IsZero() || u.since.Before(oldest)) {
				oldest = u.since
			}
		}
		l := 0.0
		if !oldest.IsZero() {
			l = now.Sub(oldest).Seconds()
		}
		lag.add(ws.sc.Name, l)
		c := 0.0
		if ws.connected {
			c = 1
		}
		connected.add(ws.sc.Name, c)
		msgs.add(ws.sc.Name, float64(ws.counters.messages))
		bytes.add(ws.sc.Name, float64(ws.counters.bytes))
		snaps.add(ws.sc.Name, float64(ws.counters.snapshots))
		errs.add(ws.sc.Name, float64(ws.counters.errors))
		ws.mu.Unlock()
	}
	return []Metric{*lag, *connected, *msgs, *bytes, *snaps, *errs}
}
