package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/crypto"
	"codeberg.org/planb/planb/archive/repo"
)

// globalOptions holds the flags that every command shares and the process's
// standard streams.
type globalOptions struct {
	Repo     string
	S3       s3Settings
	Password passwordOptions
	Quiet    bool
	JSON     bool
	Verbose  bool
	CacheDir string
	NoCache  bool

	stdin  *os.File
	stdout io.Writer
	stderr io.Writer
	json   *jsonWriter  // set with --json
	logger *slog.Logger // debug log on stderr with --verbose, else discarded

	// kdf, set by --kdf of init, key add and key passwd, gives the key
	// derivation of the key file they write (nil: the default).
	kdf *crypto.KDFParams

	// account names the mailbox one line of a --plan works on (its
	// target), for warnings and JSON events; "" otherwise.
	account string
	// borrow, for a --plan line, lets the plan lend the account the
	// connections of accounts already done (see lender); nil otherwise.
	borrow *borrower
}

func newApp(g *globalOptions) *cli.App {
	app := &cli.App{
		Name:  "planb",
		Usage: "keep an encrypted, deduplicated archive of mailboxes",
		Description: "The repository's password comes from PLANB_PASSWORD_FILE (or --password-file),\n" +
			"--password-command (PLANB_PASSWORD_COMMAND), PLANB_PASSWORD, or a prompt, in that order.\n" +
			"Exit codes: 0 done, 1 failed, 2 usage error, 3 finished with some messages skipped.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "repo", Aliases: []string{"r"}, EnvVars: []string{"PLANB_REPOSITORY"},
				Usage: "repository `DIR` or s3:https://HOST/BUCKET/PREFIX", Destination: &g.Repo},
			&cli.StringFlag{Name: "password-file", EnvVars: []string{"PLANB_PASSWORD_FILE"},
				Usage: "read the repository password from `FILE`", Destination: &g.Password.File},
			&cli.StringFlag{Name: "password-command", EnvVars: []string{"PLANB_PASSWORD_COMMAND"},
				Usage: "run `CMD` with sh -c; its output is the repository password", Destination: &g.Password.Command},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print no progress and no summaries", Destination: &g.Quiet},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object per line on stdout", Destination: &g.JSON},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log debug messages on stderr", Destination: &g.Verbose},
			&cli.StringFlag{Name: "cache-dir", EnvVars: []string{"PLANB_CACHE_DIR"},
				Usage: "keep the repository's index on disk in `DIR` (default: $XDG_CACHE_HOME/planb)", Destination: &g.CacheDir},
			&cli.BoolFlag{Name: "no-cache", Usage: "keep the whole index in memory instead of in the cache folder", Destination: &g.NoCache},
		}, s3Flags(&g.S3)...),
		Before: func(*cli.Context) error {
			g.setup()
			return nil
		},
		Commands: []*cli.Command{
			initCommand(g),
			backupCommand(g),
			snapshotsCommand(g),
			sourcesCommand(g),
			lsCommand(g),
			exportCommand(g),
			restoreCommand(g),
			verifyCommand(g),
			migrateCommand(g),
			checkCommand(g),
			statsCommand(g),
			forgetCommand(g),
			pruneCommand(g),
			repairCommand(g),
			keyCommand(g),
			unlockCommand(g),
			locksCommand(g),
			runCommand(g),
			watchCommand(g),
			configCommand(g),
			serveCommand(g),
		},
		Action:         unknownCommand,
		HideVersion:    true,
		Reader:         g.stdin,
		Writer:         g.stdout,
		ErrWriter:      g.stderr,
		ExitErrHandler: func(*cli.Context, error) {}, // main decides exit codes
		OnUsageError:   onUsageError,
	}
	for _, c := range app.Commands {
		setUsageErrors(c)
	}
	return app
}

// setup finishes the global options once the flags are parsed.
func (g *globalOptions) setup() {
	g.Password.Env = os.Getenv("PLANB_PASSWORD")
	g.Password.Warn = g.warnSecret
	if g.stdin != nil && term.IsTerminal(int(g.stdin.Fd())) {
		fd := int(g.stdin.Fd())
		g.Password.Prompt = func(prompt string) (string, error) {
			fmt.Fprint(g.stderr, prompt)
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(g.stderr)
			return string(b), err
		}
	}
	if g.JSON {
		g.json = newJSONWriter(g.stdout)
	}
	g.logger = slog.New(slog.DiscardHandler)
	if g.Verbose {
		g.logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// showBar reports whether progress bars are drawn: only on a terminal,
// and neither with --quiet nor --json.
func (g *globalOptions) showBar() bool {
	if g.Quiet || g.JSON {
		return false
	}
	f, ok := terminalFile(g.stderr)
	return ok && term.IsTerminal(int(f.Fd()))
}

// summary reports whether human-readable summaries are printed.
func (g *globalOptions) summary() bool { return !g.Quiet && !g.JSON }

// backend opens the repository's storage, without the password.
func (g *globalOptions) backend(ctx context.Context) (backend.Backend, error) {
	return g.openBackend(ctx, false)
}

// openRepo opens the repository named by --repo with the password from the
// configured source. The caller closes it.
func (g *globalOptions) openRepo(ctx context.Context) (*repo.Repository, error) {
	be, err := g.backend(ctx)
	if err != nil {
		return nil, err
	}
	pw, err := g.Password.get(ctx, "repository password", false)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, pw, &repo.Options{Logger: g.logger, OnDamagedIndex: g.warnDamagedIndex, IndexCache: g.indexCache(), KDF: g.kdf})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", errNoRepository, g.Repo)
		}
		return nil, err
	}
	return r, nil
}

// indexCache returns the folder where repositories keep their index on
// disk: --cache-dir (PLANB_CACHE_DIR), else $XDG_CACHE_HOME/planb (or
// ~/.cache/planb); "" with --no-cache, or when there is no such folder
// (the index is then kept in memory).
func (g *globalOptions) indexCache() string {
	if g.NoCache {
		return ""
	}
	if g.CacheDir != "" {
		return g.CacheDir
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "planb")
}

// withRepo opens the repository, runs fn and closes the repository.
func withRepo(ctx context.Context, g *globalOptions, fn func(r *repo.Repository) error) (err error) {
	r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := r.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close repository: %w", cerr)
		}
	}()
	return fn(r)
}

// unknownCommand is the action of commands that only group others: any
// argument is an unknown command, none shows the help.
func unknownCommand(c *cli.Context) error {
	if c.Args().Present() {
		return usageErrorf("unknown command %q", c.Args().First())
	}
	if c.Command != nil && c.Command.Name != "" {
		return cli.ShowSubcommandHelp(c)
	}
	return cli.ShowAppHelp(c)
}

func onUsageError(_ *cli.Context, err error, _ bool) error {
	return &usageError{err.Error()}
}

func setUsageErrors(c *cli.Command) {
	c.OnUsageError = onUsageError
	if len(c.Subcommands) > 0 && c.Action == nil {
		c.Action = unknownCommand
	}
	for _, s := range c.Subcommands {
		setUsageErrors(s)
	}
}

// requireFlags checks that the named flags were given.
func requireFlags(c *cli.Context, names ...string) error {
	for _, n := range names {
		if c.String(n) == "" {
			return usageErrorf("%s: --%s is required", c.Command.HelpName, n)
		}
	}
	return nil
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, least, most int, usage string) error {
	if n := c.NArg(); n < least || n > most {
		return usageErrorf("usage: planb %s", usage)
	}
	return nil
}

// warn prints a warning on stderr ("planb: warning: MSG"), or with --json a
// "warning" line on stdout. Warnings show even with --quiet.
// warnSecret warns about a secret file that others may read, as planb
// run refuses one (engine.LooseSecret).
func (g *globalOptions) warnSecret(msg string) { g.warn("secret file", msg) }

// warnDamagedIndex warns of an index file that loading the index skipped.
// The index loads on first need, so only commands that read it warn.
func (g *globalOptions) warnDamagedIndex(name string) {
	g.warn("open", fmt.Sprintf("damaged index file index/%s skipped: the data it lists looks missing until `planb repair index` rebuilds the index", name))
}

func (g *globalOptions) warn(op, msg string) {
	if g.json != nil {
		g.json.write(eventLine{Type: "warning", Op: op, Message: msg})
		return
	}
	fmt.Fprintln(g.stderr, "planb: warning: "+msg)
}
