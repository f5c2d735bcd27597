package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
)

func keyCommand(g *globalOptions) *cli.Command {
	newPassword := &cli.StringFlag{Name: "new-password-file", Usage: "read the new password from `FILE` (default: prompt)"}
	return &cli.Command{
		Name:  "key",
		Usage: "manage the repository's passwords",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a password",
				ArgsUsage: " ",
				Flags:     []cli.Flag{newPassword, kdfFlag(), adminFlag()},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0, "key add [--new-password-file FILE] [--kdf m=KIB,t=N,p=N] [--admin]"); err != nil {
						return err
					}
					if err := g.setKDF(c); err != nil {
						return err
					}
					g.S3.Admin = c.Bool("admin")
					return runKeyAdd(c.Context, keyOptions{NewPasswordFile: c.String("new-password-file")}, g)
				},
			},
			{
				Name:      "list",
				Usage:     "list the passwords' key files",
				ArgsUsage: " ",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0, "key list"); err != nil {
						return err
					}
					return runKeyList(c.Context, g)
				},
			},
			{
				Name:      "remove",
				Usage:     "remove a password by its key ID (not the one in use)",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{adminFlag()},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, 1, "key remove [--admin] ID"); err != nil {
						return err
					}
					g.S3.Admin = c.Bool("admin")
					return runKeyRemove(c.Context, keyOptions{ID: c.Args().First()}, g)
				},
			},
			{
				Name:      "passwd",
				Usage:     "change the password in use",
				ArgsUsage: " ",
				Flags:     []cli.Flag{newPassword, kdfFlag(), adminFlag()},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 0, 0, "key passwd [--new-password-file FILE] [--kdf m=KIB,t=N,p=N] [--admin]"); err != nil {
						return err
					}
					if err := g.setKDF(c); err != nil {
						return err
					}
					g.S3.Admin = c.Bool("admin")
					return runKeyPasswd(c.Context, keyOptions{NewPasswordFile: c.String("new-password-file")}, g)
				},
			},
		},
	}
}

type keyOptions struct {
	NewPasswordFile string
	ID              string // key remove
}

// keyLine is the --json form of a key file.
type keyLine struct {
	Type string `json:"type"` // "key", "key_added", "key_removed", "password_changed"
	repo.KeyEntry
}

// newPassword reads the new password of key add and key passwd.
func (o keyOptions) newPassword(ctx context.Context, g *globalOptions) (string, error) {
	src := passwordOptions{File: o.NewPasswordFile, Prompt: g.Password.Prompt, Warn: g.Password.Warn}
	pw, err := src.get(ctx, "new password", true)
	if errors.Is(err, errNoPassword) {
		return "", usageErrorf("no new password: use --new-password-file or run on a terminal")
	}
	return pw, err
}

func runKeyAdd(ctx context.Context, opts keyOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		// Key files are the administrator's: one planted by a stolen
		// backup credential would cost every opening a key derivation.
		if err := g.refuseAppendOnly(r, "key add"); err != nil {
			return err
		}
		pw, err := opts.newPassword(ctx, g)
		if err != nil {
			return err
		}
		id, err := r.AddKey(ctx, pw)
		if err != nil {
			return err
		}
		switch {
		case g.json != nil:
			g.json.write(keyLine{Type: "key_added", KeyEntry: repo.KeyEntry{ID: id}})
		case !g.Quiet:
			fmt.Fprintf(g.stdout, "added key %s\n", short(id))
		}
		return nil
	})
}

func runKeyList(ctx context.Context, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		keys, err := r.ListKeys(ctx)
		if err != nil {
			return err
		}
		if g.json != nil {
			for _, k := range keys {
				g.json.write(keyLine{Type: "key", KeyEntry: k})
			}
			return nil
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, " ID\tUSER\tHOST\tCREATED\tKDF")
		for _, k := range keys {
			mark := " "
			if k.Current {
				mark = "*"
			}
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", mark, short(k.ID), k.Username, k.Host, k.Created.Local().Format(time.DateTime), k.KDF)
		}
		return tw.Flush()
	})
}

func runKeyRemove(ctx context.Context, opts keyOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		if err := g.refuseAppendOnly(r, "key remove"); err != nil {
			return err
		}
		if err := r.RemoveKey(ctx, opts.ID); err != nil {
			return err
		}
		switch {
		case g.json != nil:
			g.json.write(keyLine{Type: "key_removed", KeyEntry: repo.KeyEntry{ID: opts.ID}})
		case !g.Quiet:
			fmt.Fprintf(g.stdout, "removed key %s\n", opts.ID)
		}
		return nil
	})
}

func runKeyPasswd(ctx context.Context, opts keyOptions, g *globalOptions) error {
	return withRepo(ctx, g, func(r *repo.Repository) error {
		// Changing the password removes the old key file.
		if err := g.refuseAppendOnly(r, "key passwd"); err != nil {
			return err
		}
		pw, err := opts.newPassword(ctx, g)
		if err != nil {
			return err
		}
		if err := r.ChangePassword(ctx, pw); err != nil {
			return err
		}
		switch {
		case g.json != nil:
			g.json.write(keyLine{Type: "password_changed"})
		case !g.Quiet:
			fmt.Fprintln(g.stdout, "password changed")
		}
		return nil
	})
}

// short shortens a 64-digit key or lock ID for display.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
