package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/backend"
	"codeberg.org/planb/planb/archive/backend/s3"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/archive/repo"
)

func initCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a repository",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "append-only",
				Usage: "make the repository append-only: forget, prune and key changes need --admin (see the README)"},
			&cli.StringFlag{Name: "s3-backup-principal",
				Usage: "with --append-only on S3: make the server enforce it for the backup credential `PRINCIPAL` " +
					"(bucket versioning and a bucket policy that replaces the bucket's; needs the bucket owner's credentials)"},
			&cli.IntFlag{Name: "s3-retention-days",
				Usage: "with --s3-backup-principal: also keep every object version `N` days under object lock (governance mode)"},
			&cli.StringFlag{Name: "compression", Value: "max",
				Usage: "how new data is compressed, `max` or fast: fast leaves base64 attachments uncompressed, " +
					"for a repository about a fifth larger whose reading (restore, export, serve) takes about a third less CPU"},
			kdfFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "init [--compression max|fast] [--kdf m=KIB,t=N,p=N] [--append-only [--s3-backup-principal PRINCIPAL [--s3-retention-days N]]]"); err != nil {
				return err
			}
			comp, err := pack.ParseCompression(c.String("compression"))
			if err != nil {
				return usageErrorf("init: --compression: %s", strings.TrimPrefix(err.Error(), "compression "))
			}
			if err := g.setKDF(c); err != nil {
				return err
			}
			return runInit(c.Context, initOptions{
				AppendOnly:      c.Bool("append-only"),
				BackupPrincipal: c.String("s3-backup-principal"),
				RetentionDays:   c.Int("s3-retention-days"),
				Compression:     comp,
			}, g)
		},
	}
}

type initOptions struct {
	AppendOnly      bool
	BackupPrincipal string // S3: set up the server for this backup credential
	RetentionDays   int
	Compression     pack.Compression
}

// initResult is the --json output of init.
type initResult struct {
	Type       string `json:"type"` // "init"
	ID         string `json:"id"`
	Repository string `json:"repository"`
	AppendOnly bool   `json:"append_only,omitempty"`
	// Cipher and Compression are the new repository's (its master key's
	// cipher; "max" or "fast").
	Cipher      string `json:"cipher"`
	Compression string `json:"compression"`
	// Enforced says whether the S3 server was set up to enforce
	// append-only use (--s3-backup-principal).
	Enforced bool `json:"enforced,omitempty"`
}

func runInit(ctx context.Context, opts initOptions, g *globalOptions) error {
	if g.Repo == "" {
		return usageErrorf("no repository: set --repo or PLANB_REPOSITORY")
	}
	switch {
	case opts.RetentionDays < 0:
		return usageErrorf("init: --s3-retention-days must not be negative")
	case opts.RetentionDays > 0 && opts.BackupPrincipal == "":
		return usageErrorf("init: --s3-retention-days needs --s3-backup-principal")
	case opts.BackupPrincipal != "" && !opts.AppendOnly:
		return usageErrorf("init: --s3-backup-principal needs --append-only")
	case opts.BackupPrincipal != "" && !isS3(g.Repo):
		return usageErrorf("init: --s3-backup-principal needs an S3 repository")
	}
	pw, err := g.Password.get(ctx, "new repository password", true)
	if err != nil {
		return err
	}
	var be backend.Backend
	if isS3(g.Repo) {
		s, err := g.openS3(ctx, true)
		if err != nil {
			return err
		}
		// The server's rules first: a failure leaves no repository
		// that looks protected but is not.
		if opts.BackupPrincipal != "" {
			err := s.SetupAppendOnly(ctx, s3.AppendOnlyOptions{BackupPrincipal: opts.BackupPrincipal, RetentionDays: opts.RetentionDays})
			if err != nil {
				return err
			}
		}
		be = g.retryS3(s)
	} else if be, err = g.openBackend(ctx, true); err != nil {
		return err
	}
	r, err := repo.Init(ctx, be, pw, &repo.Options{Logger: g.logger, AppendOnly: opts.AppendOnly, KDF: g.kdf, Compression: opts.Compression})
	if err != nil {
		return err
	}
	defer r.Close()
	id := r.Config().ID
	switch {
	case g.json != nil:
		g.json.write(initResult{Type: "init", ID: id, Repository: g.Repo, AppendOnly: opts.AppendOnly,
			Cipher: r.Cipher().String(), Compression: r.Compression().String(), Enforced: opts.BackupPrincipal != ""})
	case !g.Quiet:
		fmt.Fprintf(g.stdout, "created repository %s at %s (%s, compression %s)\n", id[:8], g.Repo, r.Cipher(), r.Compression())
		if opts.AppendOnly {
			fmt.Fprintln(g.stdout, appendOnlyNote(g, opts))
		}
		fmt.Fprintln(g.stdout, "keep the password safe: without it the repository cannot be read")
	}
	return nil
}

// appendOnlyNote says how far a new append-only repository is protected.
func appendOnlyNote(g *globalOptions, opts initOptions) string {
	switch {
	case !isS3(g.Repo):
		return "append-only: advisory on a local disk: planb refuses forget, prune and key changes without --admin, nothing else does"
	case opts.BackupPrincipal == "":
		return "append-only: planb refuses forget, prune and key changes without --admin, but the S3 server enforces nothing yet: " +
			"see \"Append-only repositories\" in the README"
	case opts.RetentionDays > 0:
		return fmt.Sprintf("append-only: enforced by the S3 server for %s (bucket versioning, object lock for %d days, bucket policy)",
			opts.BackupPrincipal, opts.RetentionDays)
	}
	return fmt.Sprintf("append-only: enforced by the S3 server for %s (bucket versioning, bucket policy)", opts.BackupPrincipal)
}
