package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"codeberg.org/planb/planb/archive/atomicfile"
)

func TestConfigParseDays(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"7d", 7 * 24 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"36h", 36 * time.Hour, false},
		{"0", 0, false},
		{"weekly", 0, true},
		{"-1h", 0, true},
		{"7", 0, true},
	}
	for _, tt := range tests {
		got, err := parseDays(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseDays(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestConfigParsePercent(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr bool
	}{
		{"5%", 0.05, false},
		{"100%", 1, false},
		{"0%", 0, false},
		{" 12.5 %", 0.125, false},
		{"5", 0, true},
		{"101%", 0, true},
		{"-1%", 0, true},
		{"x%", 0, true},
	}
	for _, tt := range tests {
		got, err := parsePercent(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parsePercent(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestConfigRelativePaths: relative paths are taken from the config
// file's directory; s3: locations are left alone.
func TestConfigRelativePaths(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PLANB_TEST_PW", "x")
	name := writeConfig(t, dir, `
state_dir = "state"
[repository.local]
path = "repo"
password_env = "PLANB_TEST_PW"
[repository.cloud]
path = "s3:https://s3.example.eu/bucket/prefix"
password_env = "PLANB_TEST_PW"
[[source]]
name = "m"
kind = "mbox"
path = "mail/archive.mbox"
repository = "local"
`)
	cfg, err := Load(name)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	for got, want := range map[string]string{
		cfg.StateDir:                  filepath.Join(dir, "state"),
		cfg.Repository["local"].Path:  filepath.Join(dir, "repo"),
		cfg.Repository["cloud"].Path:  "s3:https://s3.example.eu/bucket/prefix",
		cfg.Source[0].Path:            filepath.Join(dir, "mail", "archive.mbox"),
		StateFile(cfg.StateDir, name): filepath.Join(dir, "state", "planb.state.json"),
	} {
		if got != want {
			t.Errorf("path %q, want %q", got, want)
		}
	}
}

func TestMetricsFormat(t *testing.T) {
	started := time.Unix(1_790_000_000, 0)
	rep := &RunReport{
		Sources: []*SourceReport{
			{Name: "ok", Status: StatusOK, DurationMS: 1500, MessagesAdded: 3, BytesAdded: 4096, Started: started},
			{Name: `we"ird\`, Status: StatusFailed, Errors: 1, Started: started},
		},
		Repositories: []*RepoReport{{Name: "main", SizeBytes: 123456789, Snapshots: 7}},
	}
	rep.state = &State{Sources: map[string]SourceState{
		"ok":      {LastSuccess: started},
		`we"ird\`: {LastSuccess: started.Add(-24 * time.Hour)},
	}}
	got := FormatMetrics(rep.Metrics())
	for _, want := range []string{
		"# HELP planb_source_last_success_timestamp_seconds ",
		"# TYPE planb_source_last_success_timestamp_seconds gauge\n",
		`planb_source_last_success_timestamp_seconds{source="ok"} 1790000000` + "\n",
		`planb_source_last_success_timestamp_seconds{source="we\"ird\\"} 1789913600` + "\n",
		`planb_source_last_run_timestamp_seconds{source="ok"} 1790000000` + "\n",
		`planb_source_duration_seconds{source="ok"} 1.5` + "\n",
		`planb_source_messages_added{source="ok"} 3` + "\n",
		`planb_source_bytes_added{source="ok"} 4096` + "\n",
		`planb_source_errors{source="we\"ird\\"} 1` + "\n",
		`planb_source_success{source="ok"} 1` + "\n",
		`planb_source_success{source="we\"ird\\"} 0` + "\n",
		`planb_repository_size_bytes{repository="main"} 123456789` + "\n",
		`planb_repository_snapshots{repository="main"} 7` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q:\n%s", want, got)
		}
	}

	// Written atomically: no temporary file is left, the mode is 0644.
	dir := t.TempDir()
	name := filepath.Join(dir, "planb.prom")
	for range 2 {
		if err := atomicfile.Write(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "planb.prom" {
		t.Errorf("directory holds %v, want only planb.prom", entries)
	}
	if fi, err := os.Stat(name); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("Stat(%s) = %v, %v; want mode 0644", name, fi.Mode(), err)
	}
}

// TestConfigCheckpoint: checkpoint defaults to 10m, "0" turns it off, and
// a bad or negative duration is a problem of the config.
func TestConfigCheckpoint(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		line    string
		want    time.Duration
		wantErr bool
	}{
		{"", DefaultCheckpoint, false},
		{`checkpoint = "5m"`, 5 * time.Minute, false},
		{`checkpoint = "0"`, 0, false},
		{`checkpoint = "often"`, 0, true},
		{`checkpoint = "-1m"`, 0, true},
	} {
		name := filepath.Join(dir, "planb.toml")
		text := tt.line + "\n[repository.main]\npath = \"" + filepath.Join(dir, "repo") + "\"\npassword_file = \"" + pw + "\"\n" +
			"[[source]]\nname = \"m\"\nkind = \"maildir\"\npath = \"" + dir + "\"\nrepository = \"main\"\n"
		if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(name)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "checkpoint:") {
				t.Errorf("%s: Load = %v, want a checkpoint problem", tt.line, err)
			}
			continue
		}
		if err != nil || cfg.checkpoint != tt.want {
			t.Errorf("%q: checkpoint %v, %v; want %v", tt.line, cfg, err, tt.want)
		}
	}
}

// writeConfig writes a config file, readable by its owner only.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	name := filepath.Join(dir, "planb.toml")
	if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}
