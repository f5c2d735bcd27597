package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"codeberg.org/planb/planb/archive/retention"
	"codeberg.org/planb/planb/graph"
	"codeberg.org/planb/planb/imap"
)

// Config is the TOML file of planb run, planb watch and planb config
// check: the repositories, the sources backed up into them, how many
// sources run at once and how a watch paces itself. Secrets are named by
// file path or environment variable, never written in it. Load makes one;
// it is not changed afterwards and may be shared.
type Config struct {
	Concurrency int    `toml:"concurrency"`
	StateDir    string `toml:"state_dir"`
	// Checkpoint is how often a backup saves a checkpoint ("10m" if
	// empty, "0": never), as backup's --checkpoint.
	Checkpoint string                 `toml:"checkpoint"`
	Repository map[string]*RepoConfig `toml:"repository"`
	Source     []*SourceConfig        `toml:"source"`
	Watch      WatchConfig            `toml:"watch"`

	file       string   // the config file's path
	names      []string // repository names, sorted
	checkpoint time.Duration
}

// File returns the path of the config file.
func (cfg *Config) File() string { return cfg.file }

// Names returns the repositories' names, sorted.
func (cfg *Config) Names() []string { return cfg.names }

// CheckpointInterval returns how often a backup saves a checkpoint (0:
// never).
func (cfg *Config) CheckpointInterval() time.Duration { return cfg.checkpoint }

// DefaultCheckpoint is how often a backup saves a checkpoint by default.
const DefaultCheckpoint = 10 * time.Minute

// WatchConfig is the [watch] table: the pace of planb watch.
type WatchConfig struct {
	// Interval is how often the folders no push covers are checked (IMAP
	// STATUS; every Graph mailbox's delta queries), and the least time
	// between two runs of a source that end in a checkpoint ("5m").
	Interval string `toml:"interval"`
	// SnapshotEvery is the least time between two snapshots of a source
	// ("15m").
	SnapshotEvery string `toml:"snapshot_every"`
	// MaintainEvery is how often each repository's keep policy is applied,
	// a prune considered (prune_every) and the repository checked
	// (check_sample) ("24h").
	MaintainEvery string `toml:"maintain_every"`

	interval, snapshotEvery, maintainEvery time.Duration
}

// Defaults of the [watch] table.
const (
	DefaultInterval      = 5 * time.Minute
	DefaultSnapshotEvery = 15 * time.Minute
	DefaultMaintainEvery = 24 * time.Hour
)

// Intervals returns the parsed durations of the table, defaults filled
// in.
func (w WatchConfig) Intervals() (interval, snapshotEvery, maintainEvery time.Duration) {
	return w.interval, w.snapshotEvery, w.maintainEvery
}

// RepoConfig is a [repository.NAME] table.
type RepoConfig struct {
	Path            string     `toml:"path"`
	PasswordFile    string     `toml:"password_file"`
	PasswordEnv     string     `toml:"password_env"`
	PasswordCommand string     `toml:"password_command"`
	Keep            KeepConfig `toml:"keep"`
	PruneEvery      string     `toml:"prune_every"`
	CheckSample     string     `toml:"check_sample"`
	// The global S3 flags, per repository.
	S3Region            string `toml:"s3_region"`
	S3PathStyle         bool   `toml:"s3_path_style"`
	S3InsecurePlaintext bool   `toml:"s3_insecure_plaintext"`

	name       string
	pruneEvery time.Duration // 0: never prune
	sample     float64       // fraction of packs check reads; 0: structure only
	within     time.Duration
}

// Name returns the repository's name, NAME of [repository.NAME].
func (rc *RepoConfig) Name() string { return rc.name }

// PruneInterval returns prune_every (0: never prune).
func (rc *RepoConfig) PruneInterval() time.Duration { return rc.pruneEvery }

// CheckFraction returns check_sample as a fraction (0: structure only).
func (rc *RepoConfig) CheckFraction() float64 { return rc.sample }

// Policy returns the keep policy.
func (rc *RepoConfig) Policy() retention.Policy { return rc.Keep.policy(rc.within) }

// KeepConfig is a repository's retention policy (forget --keep-...).
type KeepConfig struct {
	Within  string `toml:"within"` // a duration: "48h", "7d"
	Last    int    `toml:"last"`
	Hourly  int    `toml:"hourly"`
	Daily   int    `toml:"daily"`
	Weekly  int    `toml:"weekly"`
	Monthly int    `toml:"monthly"`
}

func (k KeepConfig) policy(within time.Duration) retention.Policy {
	return retention.Policy{Within: within, Last: k.Last, Hourly: k.Hourly, Daily: k.Daily, Weekly: k.Weekly, Monthly: k.Monthly}
}

// SourceConfig is a [[source]] table. Every option of the source's backup
// command has a key of the same name in snake case.
type SourceConfig struct {
	Name       string   `toml:"name"`
	Kind       string   `toml:"kind"` // imap, graph, maildir, mbox
	Repository string   `toml:"repository"`
	Tags       []string `toml:"tags"`
	Host       string   `toml:"host"`

	// maildir, mbox
	Path string `toml:"path"`

	// imap
	URL                string   `toml:"url"`
	PasswordFile       string   `toml:"password_file"`
	PasswordEnv        string   `toml:"password_env"`
	OAuth2TokenCommand string   `toml:"oauth2_token_command"`
	Folders            []string `toml:"folders"`
	Exclude            []string `toml:"exclude"`
	Connections        int      `toml:"connections"` // imap and graph; default 4
	InsecurePlaintext  bool     `toml:"insecure_plaintext"`
	InsecureSkipVerify bool     `toml:"insecure_skip_verify"`
	CAFile             string   `toml:"ca_file"`

	// graph
	Tenant            string   `toml:"tenant"`
	ClientID          string   `toml:"client_id"`
	ClientSecretFile  string   `toml:"client_secret_file"`
	ClientSecretEnv   string   `toml:"client_secret_env"`
	ClientCertificate string   `toml:"client_certificate"`
	DeviceCode        bool     `toml:"device_code"`
	Mailboxes         []string `toml:"mailboxes"`
	AllMailboxes      bool     `toml:"all_mailboxes"`
	Cloud             string   `toml:"cloud"`
	GraphEndpoint     string   `toml:"graph_endpoint"`
	AuthorityHost     string   `toml:"authority_host"`
}

// sourceKeys lists the keys each kind of source accepts, besides name,
// kind, repository, tags and host.
var sourceKeys = map[string][]string{
	"maildir": {"path"},
	"mbox":    {"path"},
	"imap": {"url", "password_file", "password_env", "oauth2_token_command", "folders", "exclude",
		"connections", "insecure_plaintext", "insecure_skip_verify", "ca_file"},
	"graph": {"tenant", "client_id", "client_secret_file", "client_secret_env", "client_certificate",
		"device_code", "mailboxes", "all_mailboxes", "cloud", "graph_endpoint", "authority_host", "connections"},
}

// commonSourceKeys are the keys of every kind of source.
var commonSourceKeys = []string{"name", "kind", "repository", "tags", "host"}

func knownSourceKey(key string) bool {
	for _, keys := range sourceKeys {
		if slices.Contains(keys, key) {
			return true
		}
	}
	return false
}

// Problems are the mistakes found in a config file, one line each.
// Load returns them as its error.
type Problems []string

func (p Problems) Error() string {
	if len(p) == 1 {
		return p[0]
	}
	return fmt.Sprintf("%d problems in the config:\n%s", len(p), strings.Join(p, "\n"))
}

// Load reads and validates the config file name. Every problem found
// (unknown keys, missing keys, unreadable secret files, loose
// permissions) is returned as Problems, with the config as far as it
// could be read.
func Load(name string) (*Config, error) {
	cfg := &Config{file: name}
	md, err := toml.DecodeFile(name, cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, Problems{fmt.Sprintf("%s:%d: %s", name, perr.Position.Line, perr.Message)}
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("read config: %w", err)
		}
		return nil, Problems{fmt.Sprintf("%s: %v", name, err)}
	}
	// The keys each source gives, to find keys of another kind.
	var raw struct {
		Source []map[string]any `toml:"source"`
	}
	if _, err := toml.DecodeFile(name, &raw); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg.resolvePaths()
	var probs Problems
	add := func(format string, args ...any) {
		probs = append(probs, name+": "+fmt.Sprintf(format, args...))
	}
	for _, k := range md.Undecoded() {
		line := configKeyLine(name, k)
		if line > 0 {
			probs = append(probs, fmt.Sprintf("%s:%d: unknown key %s", name, line, k))
		} else {
			add("unknown key %s", k)
		}
	}
	if cfg.Concurrency < 0 {
		add("concurrency must be at least 1")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	cfg.checkpoint = DefaultCheckpoint
	if cfg.Checkpoint != "" {
		d, err := time.ParseDuration(cfg.Checkpoint)
		if cfg.Checkpoint == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 {
			add("checkpoint: %q is not a duration (want e.g. 10m, or 0 for none)", cfg.Checkpoint)
		}
		cfg.checkpoint = max(d, 0)
	}
	w := &cfg.Watch
	for _, d := range []struct {
		key, val, example string
		def               time.Duration
		out               *time.Duration
	}{
		{"interval", w.Interval, "5m", DefaultInterval, &w.interval},
		{"snapshot_every", w.SnapshotEvery, "15m", DefaultSnapshotEvery, &w.snapshotEvery},
		{"maintain_every", w.MaintainEvery, "24h", DefaultMaintainEvery, &w.maintainEvery},
	} {
		*d.out = d.def
		if d.val == "" {
			continue
		}
		v, err := parseDays(d.val)
		if err != nil || v < time.Second {
			add("watch: %s: %q is not a duration of a second or more (want e.g. %s)", d.key, d.val, d.example)
			continue
		}
		*d.out = v
	}
	if len(cfg.Repository) == 0 {
		add("no [repository.NAME] table")
	}
	// In name order, so that the problems come in the same order every
	// time.
	for n := range cfg.Repository {
		cfg.names = append(cfg.names, n)
	}
	slices.Sort(cfg.names)
	for _, n := range cfg.names {
		rc := cfg.Repository[n]
		rc.name = n
		where := fmt.Sprintf("repository %q", n)
		if rc.Path == "" {
			add("%s: path is required", where)
		}
		npw := 0
		for _, s := range []string{rc.PasswordFile, rc.PasswordEnv, rc.PasswordCommand} {
			if s != "" {
				npw++
			}
		}
		switch {
		case npw == 0:
			add("%s: give password_file, password_env or password_command", where)
		case npw > 1:
			add("%s: give only one of password_file, password_env and password_command", where)
		case rc.PasswordEnv != "" && os.Getenv(rc.PasswordEnv) == "":
			add("%s: password_env: environment variable %s is not set", where, rc.PasswordEnv)
		}
		k := rc.Keep
		if k.Last < 0 || k.Hourly < 0 || k.Daily < 0 || k.Weekly < 0 || k.Monthly < 0 {
			add("%s: keep: counts must not be negative", where)
		}
		if k.Within != "" {
			d, err := parseDays(k.Within)
			if err != nil || d == 0 {
				add("%s: keep: within: %q is not a duration (want e.g. 48h or 7d)", where, k.Within)
			}
			rc.within = d
		}
		if rc.PruneEvery != "" {
			d, err := parseDays(rc.PruneEvery)
			if err != nil {
				add("%s: prune_every: %v", where, err)
			}
			rc.pruneEvery = d
			if d > 0 && rc.Policy().Empty() {
				add("%s: prune_every without keep: nothing is ever forgotten", where)
			}
		}
		if rc.CheckSample != "" {
			f, err := parsePercent(rc.CheckSample)
			if err != nil {
				add("%s: check_sample: %v", where, err)
			}
			rc.sample = f
		}
	}
	seen := make(map[string]bool)
	for i, sc := range cfg.Source {
		where := fmt.Sprintf("source %d", i+1)
		if sc.Name == "" {
			add("%s: name is required", where)
		} else {
			where = fmt.Sprintf("source %q", sc.Name)
			if seen[sc.Name] {
				add("%s: the name is used twice", where)
			}
			seen[sc.Name] = true
		}
		if sc.Repository == "" {
			add("%s: repository is required", where)
		} else if cfg.Repository[sc.Repository] == nil {
			add("%s: no [repository.%s] table", where, sc.Repository)
		}
		keys, ok := sourceKeys[sc.Kind]
		if !ok {
			add("%s: kind %q: want imap, graph, maildir or mbox", where, sc.Kind)
			continue
		}
		// Keys of another kind of source are mistakes too.
		if i < len(raw.Source) {
			var given []string
			for key := range raw.Source[i] {
				given = append(given, key)
			}
			slices.Sort(given)
			for _, key := range given {
				if !slices.Contains(keys, key) && !slices.Contains(commonSourceKeys, key) && knownSourceKey(key) {
					add("%s: key %s does not apply to kind %q", where, key, sc.Kind)
				}
			}
		}
		for _, p := range sc.check() {
			add("%s: %s", where, p)
		}
	}
	if len(cfg.Source) == 0 {
		add("no [[source]] table")
	}
	probs = append(probs, cfg.permissionProblems()...)
	if len(probs) > 0 {
		return cfg, probs
	}
	return cfg, nil
}

// resolvePaths makes the relative paths of the config relative to the
// config file's directory, not to the working directory (cron starts in
// the home directory, systemd in /).
func (cfg *Config) resolvePaths() {
	base := filepath.Dir(cfg.file)
	if a, err := filepath.Abs(base); err == nil {
		base = a
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&cfg.StateDir)
	for _, rc := range cfg.Repository {
		if !strings.HasPrefix(rc.Path, "s3:") {
			abs(&rc.Path)
		}
		abs(&rc.PasswordFile)
	}
	for _, sc := range cfg.Source {
		abs(&sc.Path)
		abs(&sc.PasswordFile)
		abs(&sc.ClientSecretFile)
		abs(&sc.ClientCertificate)
		abs(&sc.CAFile)
	}
}

// check returns the kind-specific mistakes of a source.
func (sc *SourceConfig) check() []string {
	var p []string
	if sc.Connections < 0 {
		p = append(p, "connections must be at least 1")
	}
	switch sc.Kind {
	case "maildir", "mbox":
		if sc.Path == "" {
			p = append(p, "path is required")
		}
	case "imap":
		if sc.URL == "" {
			p = append(p, "url is required")
			break
		}
		o, err := imap.ParseURL(sc.URL)
		if err != nil {
			p = append(p, "url: "+err.Error())
			break
		}
		if sc.InsecurePlaintext && o.TLS != imap.TLSStartTLS {
			p = append(p, "insecure_plaintext needs an imap:// url")
		}
		n := countSet(sc.PasswordFile, sc.PasswordEnv, sc.OAuth2TokenCommand)
		switch {
		case n == 0:
			p = append(p, "give password_file, password_env or oauth2_token_command")
		case n > 1:
			p = append(p, "give only one of password_file, password_env and oauth2_token_command")
		case sc.PasswordEnv != "" && os.Getenv(sc.PasswordEnv) == "":
			p = append(p, "password_env: environment variable "+sc.PasswordEnv+" is not set")
		}
	case "graph":
		if sc.Tenant == "" {
			p = append(p, "tenant is required")
		}
		if sc.ClientID == "" {
			p = append(p, "client_id is required")
		}
		if sc.AllMailboxes == (len(sc.Mailboxes) > 0) {
			p = append(p, "give mailboxes = [...] or all_mailboxes = true")
		}
		if sc.Cloud != "" {
			if _, ok := graph.Clouds[sc.Cloud]; !ok {
				p = append(p, fmt.Sprintf("cloud %q: want global, usgov, usgov-dod or china", sc.Cloud))
			}
		}
		n := countSet(sc.ClientSecretFile, sc.ClientSecretEnv, sc.ClientCertificate)
		switch {
		case sc.DeviceCode:
			p = append(p, "device_code needs a person at a terminal; planb run uses client_secret_file, client_secret_env or client_certificate")
		case n == 0:
			p = append(p, "give client_secret_file, client_secret_env or client_certificate")
		case n > 1:
			p = append(p, "give only one of client_secret_file, client_secret_env and client_certificate")
		case sc.ClientSecretEnv != "" && os.Getenv(sc.ClientSecretEnv) == "":
			p = append(p, "client_secret_env: environment variable "+sc.ClientSecretEnv+" is not set")
		}
	}
	return p
}

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// secretFiles lists the secret files the config names, each with the
// place that names it.
func (cfg *Config) secretFiles() [][2]string {
	var out [][2]string
	for _, n := range cfg.names {
		if f := cfg.Repository[n].PasswordFile; f != "" {
			out = append(out, [2]string{fmt.Sprintf("repository %q: password_file", n), f})
		}
	}
	for _, sc := range cfg.Source {
		for _, kv := range [][2]string{
			{"password_file", sc.PasswordFile},
			{"client_secret_file", sc.ClientSecretFile},
			{"client_certificate", sc.ClientCertificate},
		} {
			if kv[1] != "" {
				out = append(out, [2]string{fmt.Sprintf("source %q: %s", sc.Name, kv[0]), kv[1]})
			}
		}
	}
	return out
}

// permissionProblems checks the modes of the config file and of the
// secret files it names: the config must not be writable by group or
// others (whoever can change it can point the backup anywhere); if it
// names a secret file it must not be readable by others; each secret file
// must be readable by us and by nobody else.
func (cfg *Config) permissionProblems() []string {
	var probs []string
	secrets := cfg.secretFiles()
	if fi, err := os.Stat(cfg.file); err == nil {
		mode := fi.Mode().Perm()
		if mode&0o022 != 0 {
			probs = append(probs, fmt.Sprintf("%s: writable by group or others (mode %04o); run chmod go-w %s", cfg.file, mode, cfg.file))
		}
		if len(secrets) > 0 && mode&0o004 != 0 {
			probs = append(probs, fmt.Sprintf("%s: names secret files but is readable by others (mode %04o); run chmod o-r %s", cfg.file, mode, cfg.file))
		}
	}
	for _, s := range secrets {
		where, file := s[0], s[1]
		f, err := os.Open(file)
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s: %s: cannot read secret file: %v", cfg.file, where, unwrapPath(err)))
			continue
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s: %s: %v", cfg.file, where, err))
			continue
		}
		if p := LooseSecret(file, fi); p != "" {
			probs = append(probs, fmt.Sprintf("%s: %s: %s", cfg.file, where, p))
		}
	}
	return probs
}

// unwrapPath words an *fs.PathError as "FILE: no such file or directory".
func unwrapPath(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// configKeyLine finds the line of an unknown key k in the file name: the first
// line, below the table header the key belongs to, that assigns its last
// element. It returns 0 if none is found.
func configKeyLine(name string, k toml.Key) int {
	f, err := os.Open(name)
	if err != nil {
		return 0
	}
	defer f.Close()
	last := regexp.QuoteMeta(k[len(k)-1])
	re := regexp.MustCompile(`(^|[\s{,])"?` + last + `"?\s*=`)
	header := regexp.MustCompile(`^\s*\[\[?\s*([^\]]+?)\s*\]\]?`)
	// The table the key belongs to, without array indexes; a key of an
	// inline table (keep = { ... }) is searched below its parent.
	var want []string
	for _, e := range k[:len(k)-1] {
		if _, err := strconv.Atoi(e); err == nil {
			continue
		}
		want = append(want, e)
	}
	in := len(want) == 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := header.FindStringSubmatch(line); m != nil {
			h := strings.Split(strings.ReplaceAll(m[1], `"`, ""), ".")
			in = len(h) <= len(want) && slices.Equal(h, want[:len(h)])
			continue
		}
		if in && re.MatchString(line) {
			return n
		}
	}
	return 0
}

var daysRE = regexp.MustCompile(`^(\d+)([dw])$`)

// parseDays parses a duration such as "7d", "2w" or "36h" (any of
// time.ParseDuration's forms). "0" means never.
func parseDays(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return 0, fmt.Errorf("%q: %w", s, err)
		}
		day := 24 * time.Hour
		if m[2] == "w" {
			day *= 7
		}
		return time.Duration(n) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 7d, 2w or 12h)", s)
	}
	return d, nil
}

// parsePercent parses a percentage such as "5%" or "100%" into a fraction.
func parsePercent(s string) (float64, error) {
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if !ok {
		return 0, fmt.Errorf("%q is not a percentage (want e.g. 5%%)", s)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f < 0 || f > 100 {
		return 0, fmt.Errorf("%q is not a percentage between 0%% and 100%%", s)
	}
	return f / 100, nil
}

// StateDirectory returns the directory of the run state: state_dir, else
// the default (see DefaultStateDir).
func (cfg *Config) StateDirectory() (string, error) {
	if cfg.StateDir != "" {
		return cfg.StateDir, nil
	}
	d, err := DefaultStateDir()
	if err != nil {
		return "", fmt.Errorf("%w (or set state_dir in the config)", err)
	}
	return d, nil
}

// DefaultStateDir returns the directory where planb keeps its state (the
// run state, restore journals): PLANB_STATE_DIR, else
// $XDG_STATE_HOME/planb, else ~/.local/state/planb.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("PLANB_STATE_DIR"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "planb"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state directory: set PLANB_STATE_DIR: %w", err)
	}
	return filepath.Join(home, ".local", "state", "planb"), nil
}

// LooseSecret says how the secret file name, described by fi, is readable
// by group or others, or returns "" if it is not. Only regular files are
// judged: a pipe or a /dev/fd/N a password manager hands over has a mode
// that says nothing about who can read the secret.
func LooseSecret(name string, fi fs.FileInfo) string {
	mode := fi.Mode()
	if !mode.IsRegular() || mode.Perm()&0o044 == 0 {
		return ""
	}
	return fmt.Sprintf("secret file %s is readable by group or others (mode %04o); run chmod go-r %s", name, mode.Perm(), name)
}
