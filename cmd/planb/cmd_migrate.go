package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/local"
	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/imap"
)

func migrateCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy an IMAP account into another: backup, then restore of that snapshot",
		Description: "Without --repo (or the global --repo), the repository lives in the user's cache folder\n" +
			"(planb/migrate-HASH), with a generated password stored next to it (mode 0600).\n" +
			"Passwords: --from-password-file / PLANB_FROM_IMAP_PASSWORD(_FILE) and\n" +
			"--to-password-file / PLANB_TO_IMAP_PASSWORD(_FILE), else --imap-password-file /\n" +
			"PLANB_IMAP_PASSWORD(_FILE) for both. A re-run copies only what is missing.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "source account `URL`"},
			&cli.StringFlag{Name: "to", Usage: "target account `URL`"},
			&cli.StringFlag{Name: "repo", Usage: "keep the intermediate snapshot in repository `DIR`"},
			&cli.StringFlag{Name: "from-password-file", EnvVars: []string{"PLANB_FROM_IMAP_PASSWORD_FILE"}, Usage: "source password `FILE`"},
			&cli.StringFlag{Name: "to-password-file", EnvVars: []string{"PLANB_TO_IMAP_PASSWORD_FILE"}, Usage: "target password `FILE`"},
			&cli.StringSliceFlag{Name: "map", Usage: "restore folder `FROM=TO` (and below) into TO (repeatable)"},
			&cli.StringSliceFlag{Name: "folder", Usage: "copy only folders matching `GLOB` (repeatable)"},
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "use `N` connections on each side"},
		}, imapTargetFlags()...),
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "migrate --from imaps://user@host --to imaps://user@host"); err != nil {
				return err
			}
			if err := requireFlags(c, "from", "to"); err != nil {
				return err
			}
			m, err := parseMap(c.StringSlice("map"))
			if err != nil {
				return err
			}
			side := func(url, fileFlag, env string) (*imap.Options, error) {
				o := backupIMAPOptions{
					URL: url, Connections: c.Int("connections"), Folders: c.StringSlice("folder"),
					PasswordFile: c.String(fileFlag), PasswordEnv: os.Getenv(env),
					TokenCommand:       c.String("oauth2-token-command"),
					InsecurePlaintext:  c.Bool("insecure-plaintext"),
					InsecureSkipVerify: c.Bool("insecure-skip-verify"),
				}
				if o.PasswordFile == "" && o.PasswordEnv == "" {
					o.PasswordFile, o.PasswordEnv = c.String("imap-password-file"), os.Getenv("PLANB_IMAP_PASSWORD")
				}
				return imapSourceOptions(o, g)
			}
			from, err := side(c.String("from"), "from-password-file", "PLANB_FROM_IMAP_PASSWORD")
			if err != nil {
				return err
			}
			to, err := side(c.String("to"), "to-password-file", "PLANB_TO_IMAP_PASSWORD")
			if err != nil {
				return err
			}
			to.Folders = nil
			if c.String("repo") != "" {
				g.Repo = c.String("repo")
			}
			return runMigrate(c.Context, c.String("from"), from, to, &imap.SinkOptions{MapOptions: imap.MapOptions{Map: m}}, g)
		},
	}
}

// migrateRepo opens (or creates) the repository of a migration: --repo
// with the usual password, else one in the cache folder keyed by the
// source URL, with a generated password kept next to it.
func migrateRepo(ctx context.Context, fromURL string, g *globalOptions) (*repo.Repository, error) {
	if g.Repo == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("migrate: no cache folder (give --repo): %w", err)
		}
		sum := sha256.Sum256([]byte(fromURL))
		g.Repo = filepath.Join(cache, "planb", "migrate-"+hex.EncodeToString(sum[:8]))
		if g.Password.File == "" && g.Password.Command == "" && g.Password.Env == "" {
			pwFile := g.Repo + ".password"
			if _, err := os.Stat(pwFile); errors.Is(err, fs.ErrNotExist) {
				b := make([]byte, 24)
				rand.Read(b)
				if err := os.MkdirAll(filepath.Dir(pwFile), 0o700); err != nil {
					return nil, fmt.Errorf("migrate: %w", err)
				}
				if err := os.WriteFile(pwFile, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
					return nil, fmt.Errorf("migrate: %w", err)
				}
			}
			g.Password.File = pwFile
			g.Password.Prompt = nil
		}
	}
	pw, err := g.Password.get(ctx, "repository password", true)
	if err != nil {
		return nil, err
	}
	be, err := g.openBackend(ctx, false)
	if err == nil {
		return repo.Open(ctx, be, pw, &repo.Options{Logger: g.logger})
	}
	if !errors.Is(err, errNoRepository) && !errors.Is(err, backend.ErrNotExist) {
		return nil, err
	}
	if isS3(g.Repo) {
		be, err = g.openBackend(ctx, true)
	} else {
		be, err = local.Create(ctx, g.Repo)
	}
	if err != nil {
		return nil, err
	}
	return repo.Init(ctx, be, pw, &repo.Options{Logger: g.logger})
}

func runMigrate(ctx context.Context, fromURL string, from, to *imap.Options, so *imap.SinkOptions, g *globalOptions) error {
	r, err := migrateRepo(ctx, fromURL, g)
	if err != nil {
		return err
	}
	defer r.Close()
	src, err := imap.New(from)
	if err != nil {
		return usageErrorf("%v", err)
	}
	defer src.Close()
	p := newProgress("backup", g.json, g.showBar(), g.stderr)
	snap, err := backup.Run(ctx, r, src, &backup.Options{Progress: p, Logger: g.logger, Workers: from.Connections, Tags: []string{"migrate"}})
	p.Done()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if g.summary() {
		fmt.Fprintf(g.stdout, "backed up %s into snapshot %s (%s)\n", describeTarget(from), snap.ID.Short(), g.Repo)
	}
	err = runRestore(ctx, r, snap, to, so, nil, "migrate", g)
	if err == nil && len(snap.Skipped) > 0 {
		printSkipped(g, snap.Skipped)
		return newPartial(snap.Skipped)
	}
	return err
}
