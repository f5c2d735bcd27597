package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/imap"
)

// backupIMAPCommand is `planb backup imap`.
func backupIMAPCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "imap",
		Usage: "back up an IMAP account",
		Description: "The account's password comes from --imap-password-file (PLANB_IMAP_PASSWORD_FILE)\n" +
			"or PLANB_IMAP_PASSWORD; with --oauth2-token-command, an OAuth2 access token is used\n" +
			"instead (SASL XOAUTH2). imaps:// is implicit TLS; imap:// requires STARTTLS unless\n" +
			"--insecure-plaintext.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Usage: "account `URL`: imaps://user@host[:port] or imap://user@host[:port]"},
			&cli.StringSliceFlag{Name: "folder", Usage: "back up only folders matching `GLOB` (and below; repeatable)"},
			&cli.StringSliceFlag{Name: "exclude", Usage: "skip folders matching `GLOB` (and below; repeatable)"},
			&cli.StringSliceFlag{Name: "tag", Usage: "add tag `T` to the snapshot (repeatable)"},
			&cli.StringFlag{Name: "host", Usage: "record `HOST` instead of this machine's name"},
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "read `N` folders at once, one connection each"},
			&cli.StringFlag{Name: "imap-password-file", EnvVars: []string{"PLANB_IMAP_PASSWORD_FILE"}, Usage: "read the IMAP password from `FILE`"},
			&cli.StringFlag{Name: "oauth2-token-command", Usage: "run `CMD` with sh -c; its output is an OAuth2 access token"},
			&cli.BoolFlag{Name: "insecure-plaintext", Usage: "with imap://, talk without TLS (password and mail in the clear)"},
			&cli.BoolFlag{Name: "insecure-skip-verify", Usage: "do not check the server's TLS certificate"},
			caFileFlag(),
			checkpointFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "backup imap --url imaps://user@host"); err != nil {
				return err
			}
			if err := requireFlags(c, "url"); err != nil {
				return err
			}
			opts := backupIMAPOptions{
				URL: c.String("url"), Folders: c.StringSlice("folder"), Exclude: c.StringSlice("exclude"),
				Tags: c.StringSlice("tag"), Host: c.String("host"), Connections: c.Int("connections"),
				PasswordFile: c.String("imap-password-file"), PasswordEnv: os.Getenv("PLANB_IMAP_PASSWORD"),
				TokenCommand:       c.String("oauth2-token-command"),
				InsecurePlaintext:  c.Bool("insecure-plaintext"),
				InsecureSkipVerify: c.Bool("insecure-skip-verify"),
				CAFile:             c.String("ca-file"),
				Checkpoint:         c.Duration("checkpoint"),
			}
			return runBackupIMAP(c.Context, opts, g)
		},
	}
}

// backupIMAPOptions are the options of backup imap.
type backupIMAPOptions struct {
	URL                string
	Folders, Exclude   []string
	Tags               []string
	Host               string
	Connections        int
	PasswordFile       string // --imap-password-file or PLANB_IMAP_PASSWORD_FILE
	PasswordEnv        string // PLANB_IMAP_PASSWORD
	TokenCommand       string // --oauth2-token-command
	InsecurePlaintext  bool
	InsecureSkipVerify bool
	CAFile             string // --ca-file: trust these certificates instead of the system's
	Checkpoint         time.Duration
}

// caFileFlag is --ca-file, for every command that reaches an IMAP server.
func caFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "ca-file", Usage: "trust the certificates in PEM `FILE` (for example Proton Mail Bridge's) instead of the system's"}
}

// loadCAFile reads the PEM certificates of a --ca-file.
func loadCAFile(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

var errNoIMAPPassword = errors.New("no IMAP password: set --imap-password-file, PLANB_IMAP_PASSWORD_FILE or PLANB_IMAP_PASSWORD (or use --oauth2-token-command)")

// imapSourceOptions turns the command line into imap.Options.
func imapSourceOptions(o backupIMAPOptions, g *globalOptions) (*imap.Options, error) {
	io, err := imap.ParseURL(o.URL)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	if o.InsecurePlaintext {
		if io.TLS != imap.TLSStartTLS {
			return nil, usageErrorf("--insecure-plaintext needs an imap:// URL")
		}
		io.TLS = imap.TLSNone
	}
	if o.Connections < 1 {
		return nil, usageErrorf("--connections must be at least 1")
	}
	io.Connections = o.Connections
	io.Folders = o.Folders
	io.Exclude = o.Exclude
	io.InsecureSkipVerify = o.InsecureSkipVerify
	if o.CAFile != "" {
		pool, err := loadCAFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		io.RootCAs = pool
	}
	io.Logger = g.logger
	switch {
	case o.TokenCommand != "":
		cmd := o.TokenCommand
		io.Token = func(ctx context.Context) (string, error) { return runTokenCommand(ctx, cmd) }
	case o.PasswordFile != "":
		pw, err := readPasswordFile(o.PasswordFile, g.warnSecret)
		if err != nil {
			return nil, fmt.Errorf("imap password: %w", err)
		}
		io.Password = pw
	case o.PasswordEnv != "":
		io.Password = o.PasswordEnv
	default:
		return nil, errNoIMAPPassword
	}
	return &io, nil
}

// runTokenCommand runs the OAuth2 token command and returns its output
// without surrounding white space.
func runTokenCommand(ctx context.Context, command string) (string, error) {
	c := exec.CommandContext(ctx, "sh", "-c", command)
	var out bytes.Buffer
	c.Stdout = &out
	c.Stderr = os.Stderr
	if err := c.Run(); err != nil {
		// %v: an *exec.ExitError would pass for a cli.ExitCoder.
		return "", fmt.Errorf("oauth2 token command: %v", err)
	}
	tok := strings.TrimSpace(out.String())
	if tok == "" {
		return "", errors.New("oauth2 token command: empty output")
	}
	return tok, nil
}

func runBackupIMAP(ctx context.Context, o backupIMAPOptions, g *globalOptions) error {
	io, err := imapSourceOptions(o, g)
	if err != nil {
		return err
	}
	src, err := imap.New(io)
	if err != nil {
		return usageErrorf("%v", err)
	}
	defer src.Close()
	return withRepo(ctx, g, func(r *repo.Repository) error {
		p := newProgress("backup", g.json, g.showBar(), g.stderr)
		snap, err := backup.Run(ctx, r, src, &backup.Options{
			Tags: o.Tags, Host: o.Host, Progress: p, Logger: g.logger, Workers: o.Connections,
			Checkpoint: o.Checkpoint,
		})
		p.Done()
		if err != nil {
			printCheckpoint(g, snap)
			return err
		}
		printBackup(g, snap)
		return newPartial(snap.Skipped)
	})
}
