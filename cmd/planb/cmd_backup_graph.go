package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/backup"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/graph"
)

// backupGraphCommand is `planb backup graph`.
func backupGraphCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "graph",
		Usage: "back up Microsoft 365 mailboxes through Microsoft Graph (one snapshot per mailbox)",
		Description: "The app's client secret comes from --client-secret-file or PLANB_GRAPH_CLIENT_SECRET;\n" +
			"or give --client-certificate (PEM or PKCS#12 with the private key), or sign in as a user\n" +
			"with --device-code. The app needs the Mail.Read application permission (and\n" +
			"User.Read.All for --all-mailboxes). A user signed in with --device-code reads their own\n" +
			"mailbox (Mail.Read delegated permission); the tokens are kept in --token-cache (mode 0600),\n" +
			"so that later runs sign in without a prompt while the refresh token lasts.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tenant", Usage: "tenant `ID` or domain"},
			&cli.StringFlag{Name: "client-id", Usage: "the app registration's application (client) `ID`"},
			&cli.StringSliceFlag{Name: "mailbox", Usage: "back up the mailbox `ADDR` (repeatable)"},
			&cli.BoolFlag{Name: "all-mailboxes", Usage: "back up every user's mailbox"},
			&cli.StringFlag{Name: "client-secret-file", Usage: "read the client secret from `FILE`"},
			&cli.StringFlag{Name: "client-certificate", Usage: "sign in with the certificate and key in `FILE`"},
			&cli.BoolFlag{Name: "device-code", Usage: "sign in as a user with a device code (instructions on stderr)"},
			&cli.StringFlag{Name: "token-cache", Usage: "keep the device code sign-in's tokens in `FILE` (default: planb/graph-token-cache.json in the user's config folder)"},
			&cli.StringFlag{Name: "cloud", Value: "global", Usage: "national cloud: global, usgov, usgov-dod or china"},
			&cli.StringFlag{Name: "graph-endpoint", EnvVars: []string{"PLANB_GRAPH_ENDPOINT"}, Usage: "Graph `URL` (overrides --cloud)"},
			&cli.StringFlag{Name: "authority-host", EnvVars: []string{"PLANB_AUTHORITY_HOST"}, Usage: "sign-in `URL` (overrides --cloud)"},
			&cli.IntFlag{Name: "connections", Value: 4, Usage: "back up `N` mailboxes at once"},
			&cli.StringSliceFlag{Name: "tag", Usage: "add tag `T` to the snapshots (repeatable)"},
			&cli.StringFlag{Name: "host", Usage: "record `HOST` instead of this machine's name"},
			checkpointFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "backup graph --tenant ID --client-id ID (--mailbox ADDR... | --all-mailboxes)"); err != nil {
				return err
			}
			if err := requireFlags(c, "tenant", "client-id"); err != nil {
				return err
			}
			opts := graphBackupOptions{
				Tenant: c.String("tenant"), ClientID: c.String("client-id"),
				Mailboxes: c.StringSlice("mailbox"), AllMailboxes: c.Bool("all-mailboxes"),
				SecretFile: c.String("client-secret-file"), SecretEnv: os.Getenv("PLANB_GRAPH_CLIENT_SECRET"),
				Certificate: c.String("client-certificate"), DeviceCode: c.Bool("device-code"), TokenCache: c.String("token-cache"),
				Cloud: c.String("cloud"), GraphEndpoint: c.String("graph-endpoint"), AuthorityHost: c.String("authority-host"),
				Connections: c.Int("connections"), Tags: c.StringSlice("tag"), Host: c.String("host"),
				Checkpoint: c.Duration("checkpoint"),
			}
			return runBackupGraph(c.Context, opts, g)
		},
	}
}

// graphBackupOptions are the options of backup graph.
type graphBackupOptions struct {
	Tenant, ClientID string
	Mailboxes        []string
	AllMailboxes     bool
	SecretFile       string // --client-secret-file
	SecretEnv        string // PLANB_GRAPH_CLIENT_SECRET
	Certificate      string // --client-certificate
	DeviceCode       bool
	TokenCache       string // --token-cache, for --device-code
	Cloud            string
	GraphEndpoint    string
	AuthorityHost    string
	Connections      int
	Tags             []string
	Host             string
	Checkpoint       time.Duration

	httpClient *http.Client // tests: trust a fake server
}

func (o graphBackupOptions) graphOptions(g *globalOptions) (*graph.Options, error) {
	if o.AllMailboxes == (len(o.Mailboxes) > 0) {
		return nil, usageErrorf("backup graph: give --mailbox ADDR (repeatable) or --all-mailboxes")
	}
	if _, ok := graph.Clouds[o.Cloud]; !ok {
		return nil, usageErrorf("backup graph: unknown --cloud %q (want global, usgov, usgov-dod or china)", o.Cloud)
	}
	gopts := &graph.Options{
		Tenant: o.Tenant, ClientID: o.ClientID, Cloud: o.Cloud,
		GraphEndpoint: o.GraphEndpoint, AuthorityHost: o.AuthorityHost,
		Logger: g.logger, HTTPClient: o.httpClient,
	}
	n := 0
	for _, given := range []bool{o.SecretFile != "", o.Certificate != "", o.DeviceCode} {
		if given {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, usageErrorf("backup graph: give one credential: --client-secret-file, --client-certificate or --device-code")
	case o.SecretFile != "":
		secret, err := readPasswordFile(o.SecretFile, g.warnSecret)
		if err != nil {
			return nil, fmt.Errorf("client secret: %w", err)
		}
		gopts.ClientSecret = secret
	case o.Certificate != "":
		b, err := os.ReadFile(o.Certificate)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		gopts.Certificate = b
	case o.DeviceCode:
		gopts.DeviceCode = true
		gopts.TokenCache = o.TokenCache
		gopts.DeviceCodePrompt = func(msg string) { fmt.Fprintln(g.stderr, msg) }
	case o.SecretEnv != "":
		gopts.ClientSecret = o.SecretEnv
	default:
		return nil, usageErrorf("backup graph: no credential: set --client-secret-file or PLANB_GRAPH_CLIENT_SECRET, or give --client-certificate or --device-code")
	}
	if o.TokenCache != "" && !o.DeviceCode {
		return nil, usageErrorf("backup graph: --token-cache is for --device-code")
	}
	if gopts.ClientSecret == "" && !gopts.DeviceCode && len(gopts.Certificate) == 0 {
		return nil, errors.New("backup graph: empty client secret")
	}
	return gopts, nil
}

func runBackupGraph(ctx context.Context, opts graphBackupOptions, g *globalOptions) error {
	gopts, err := opts.graphOptions(g)
	if err != nil {
		return err
	}
	client, err := graph.NewClient(gopts)
	if err != nil {
		return usageErrorf("%s", err)
	}
	// Sign in first: a wrong secret or tenant fails before the repository
	// is opened.
	if err := client.Check(ctx); err != nil {
		return fmt.Errorf("backup graph: %w", err)
	}
	mailboxes := opts.Mailboxes
	if opts.AllMailboxes {
		users, err := client.Users(ctx)
		if err != nil {
			return fmt.Errorf("backup graph: %w", err)
		}
		mailboxes = nil
		for _, u := range users {
			mailboxes = append(mailboxes, u.Mail)
		}
		if len(mailboxes) == 0 {
			return errors.New("backup graph: the tenant has no user with a mail address")
		}
	}
	return withRepo(ctx, g, func(r *repo.Repository) error {
		return backupMailboxes(ctx, r, client, mailboxes, opts, g)
	})
}

// backupMailboxes backs up each mailbox into a snapshot of its own,
// --connections at once.
func backupMailboxes(ctx context.Context, r *repo.Repository, client *graph.Client, mailboxes []string, opts graphBackupOptions, g *globalOptions) error {
	p := newProgress("backup", g.json, g.showBar(), g.stderr)
	var (
		mu          sync.Mutex
		skipped     []repo.Skipped
		failures    []error
		finished    int
		checkpoints int
		wg          sync.WaitGroup
	)
	sem := make(chan struct{}, max(opts.Connections, 1))
	for _, mb := range mailboxes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			snap, err := backup.Run(ctx, r, client.Source(mb), &backup.Options{
				Tags: opts.Tags, Host: opts.Host, Progress: p, Logger: g.logger, Checkpoint: opts.Checkpoint,
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && ctx.Err() != nil:
				if snap != nil && snap.Checkpoint {
					checkpoints++
					if len(mailboxes) > 1 && g.summary() {
						fmt.Fprintf(g.stdout, "mailbox %s:\n", mb)
					}
					printCheckpoint(g, snap)
				}
			case err != nil && opts.AllMailboxes && errors.Is(err, graph.ErrNoMailbox):
				g.logger.Info("no mailbox, left out", "mailbox", mb)
			case err != nil:
				failures = append(failures, err) // graph errors name the mailbox
			default:
				finished++
				if len(mailboxes) > 1 && g.summary() {
					fmt.Fprintf(g.stdout, "mailbox %s:\n", mb)
				}
				printBackup(g, snap)
				skipped = append(skipped, snap.Skipped...)
			}
		}()
	}
	wg.Wait()
	p.Done()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("backup graph: %d of %d mailboxes finished, %s saved: %w",
			finished, len(mailboxes), plural(checkpoints, "checkpoint"), ctx.Err())
	case len(failures) == 1 && len(mailboxes) == 1:
		return failures[0]
	case len(failures) > 0:
		for _, err := range failures {
			fmt.Fprintf(g.stderr, "planb: error: %s\n", oneLine(err.Error()))
		}
		return fmt.Errorf("backup graph: %d of %d mailboxes failed", len(failures), len(mailboxes))
	}
	return newPartial(skipped)
}
