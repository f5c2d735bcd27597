package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/cmd/planb/internal/engine"
)

// watchCommand is `planb watch`.
func watchCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "follow every source of a config file and keep the archive minutes behind (a long-running service)",
		Description: "Reads the config of planb run and its [watch] table (interval, snapshot_every,\n" +
			"maintain_every). IMAP sources: IDLE on INBOX, and every interval a STATUS of every\n" +
			"folder; Graph mailboxes: delta queries every interval; Maildir and mbox: a backup\n" +
			"every interval. What changed is stored as it comes (in checkpoints); each source\n" +
			"gets a snapshot at most every snapshot_every, and only when something changed.\n" +
			"Every maintain_every each repository's keep policy is applied, a prune considered\n" +
			"(prune_every) and check_sample of the packs read.\n" +
			"Logs one line per snapshot and per incident (a source failing, back again), on\n" +
			"stderr (JSON lines on stdout with --json). SIGTERM or SIGINT: the backups running\n" +
			"stop with a checkpoint, what is pending becomes a snapshot, the locks are released,\n" +
			"exit 0. SIGHUP: the config is read again (sources added, removed, changed).",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"PLANB_CONFIG"}, Usage: "the TOML config `FILE`"},
			&cli.StringFlag{Name: "metrics-file", Usage: "keep Prometheus metrics in `FILE` (node_exporter textfile collector)"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics at http://`ADDR`/metrics"},
			&cli.DurationFlag{Name: "lock-wait", Value: 10 * time.Minute, Usage: "wait up to `DUR` for a repository locked by another process"},
		},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "watch --config FILE [--metrics-file FILE] [--metrics-listen ADDR] [--lock-wait DUR]"); err != nil {
				return err
			}
			if err := requireFlags(c, "config"); err != nil {
				return err
			}
			return runWatch(c.Context, watchOptions{
				Config: c.String("config"), MetricsFile: c.String("metrics-file"),
				MetricsListen: c.String("metrics-listen"), LockWait: c.Duration("lock-wait"),
			}, g)
		},
	}
}

// watchOptions are the options of planb watch.
type watchOptions struct {
	Config        string
	MetricsFile   string
	MetricsListen string
	LockWait      time.Duration

	// Tests: SIGHUP without a signal, a hook when the first pass is
	// done, the metrics server's listener, a client that trusts a fake
	// Graph.
	hup        <-chan os.Signal
	ready      func()
	listener   func(net.Listener)
	httpClient *http.Client
}

func runWatch(ctx context.Context, opts watchOptions, g *globalOptions) error {
	cfg, err := loadConfigReported(opts.Config, g)
	if err != nil {
		return err
	}
	var log *slog.Logger
	level := slog.LevelInfo
	if g.Quiet {
		level = slog.LevelWarn
	}
	if g.JSON {
		log = slog.New(slog.NewJSONHandler(g.stdout, &slog.HandlerOptions{Level: level}))
	} else {
		log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	}

	var metricsMu sync.Mutex
	var metricsText string
	var metricsErr error
	if opts.MetricsListen != "" {
		ln, err := net.Listen("tcp", opts.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		if opts.listener != nil {
			opts.listener(ln)
		}
		srv := &http.Server{
			ReadHeaderTimeout: 10 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/metrics" {
					http.NotFound(w, r)
					return
				}
				metricsMu.Lock()
				text := metricsText
				metricsMu.Unlock()
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				fmt.Fprint(w, text)
			}),
		}
		go srv.Serve(ln)
		defer srv.Close()
	}
	metrics := func(ms []engine.Metric) {
		text := engine.FormatMetrics(ms)
		metricsMu.Lock()
		defer metricsMu.Unlock()
		metricsText = text
		if opts.MetricsFile != "" {
			if err := writeMetricsFile(opts.MetricsFile, ms); err != nil && metricsErr == nil {
				log.Warn("metrics not written", "err", err)
				metricsErr = err
			} else if err == nil {
				metricsErr = nil
			}
		}
	}

	hup := opts.hup
	if hup == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		defer signal.Stop(ch)
		hup = ch
	}
	env := engineEnv(g, opts.httpClient, nil, false)
	// reloaded: how a watch ended. next is the config to start again
	// with (SIGHUP with a config that InPlace refuses), else nil: stop.
	type reloaded struct{ next *engine.Config }
	for {
		wctx, cancel := context.WithCancel(ctx)
		reload := make(chan reloaded, 1)
		inPlace := make(chan *engine.Config, 1)
		go func(cur *engine.Config) {
			for {
				select {
				case <-hup:
					sdNotify("RELOADING=1")
					next, err := engine.Load(opts.Config)
					if err != nil {
						var probs engine.Problems
						if errors.As(err, &probs) {
							err = fmt.Errorf("%d problems, first: %s", len(probs), probs[0])
						}
						log.Warn("config not reloaded, going on with the old one", "err", err)
						sdNotify("READY=1")
						continue
					}
					if engine.InPlace(cur, next) {
						// Only sources changed: the watch takes them
						// without disturbing the others.
						log.Info("config reloaded", "sources", len(next.Source), "in_place", true)
						select {
						case inPlace <- next:
						case <-wctx.Done():
							reload <- reloaded{}
							return
						}
						cur = next
						sdNotify("READY=1")
						continue
					}
					log.Info("config reloaded", "sources", len(next.Source), "in_place", false)
					reload <- reloaded{next}
					cancel()
					return
				case <-wctx.Done():
					reload <- reloaded{}
					return
				}
			}
		}(cfg)
		interval, every, _ := cfg.Watch.Intervals()
		log.Info("watching", "sources", len(cfg.Source), "interval", interval, "snapshot_every", every)
		err := engine.Watch(wctx, cfg, env, engine.WatchOptions{
			Locking: engine.Locking{Wait: opts.LockWait},
			Log:     log, Metrics: metrics, Reload: inPlace,
			Ready: func() {
				sdNotify("READY=1")
				if opts.ready != nil {
					opts.ready()
				}
			},
		})
		cancel()
		end := <-reload
		if err != nil {
			return err
		}
		if end.next == nil || ctx.Err() != nil {
			sdNotify("STOPPING=1")
			log.Info("stopped")
			return nil
		}
		cfg = end.next
	}
}
