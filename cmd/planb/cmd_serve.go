package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/imap/serve"
)

func serveCommand(g *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the archive over IMAP, read-only: mail clients read the snapshots directly",
		Description: "Each login of the users file (--users) reads the sources its patterns match: the newest\n" +
			"snapshot at the top level, older ones under Snapshots/YYYY-MM-DD HH:MM/. TLS is required\n" +
			"except on the loopback interface; without --tls-cert a self-signed certificate is made\n" +
			"and its fingerprint printed. `planb serve hash-password` makes the password_hash of a login.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "listen on `ADDR` (host:port, such as 0.0.0.0:993 or 127.0.0.1:1143)"},
			&cli.StringFlag{Name: "users", Usage: "the logins: a TOML `FILE` of [[user]] name, password_hash and sources"},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate chain `FILE` (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS private key `FILE` (PEM)"},
			&cli.DurationFlag{Name: "poll", Value: 10 * time.Second, Usage: "look for new snapshots at most every `DURATION`"},
		},
		Subcommands: []*cli.Command{{
			Name:      "hash-password",
			Usage:     "read a password from standard input and print its password_hash for the users file",
			ArgsUsage: " ",
			Action: func(c *cli.Context) error {
				if err := needArgs(c, 0, 0, "serve hash-password"); err != nil {
					return err
				}
				return runHashPassword(g)
			},
		}},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 0, 0, "serve --listen ADDR --users FILE [--tls-cert FILE --tls-key FILE]"); err != nil {
				return err
			}
			if err := requireFlags(c, "listen", "users"); err != nil {
				return err
			}
			if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
				return usageErrorf("serve: --tls-cert and --tls-key go together")
			}
			return runServe(c.Context, serveOptions{
				Listen: c.String("listen"), Users: c.String("users"),
				TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"), Poll: c.Duration("poll"),
			}, g)
		},
	}
}

// serveFrames is how many frames planb serve keeps in memory.
const serveFrames = 64

// serveOptions are the options of serve.
type serveOptions struct {
	Listen          string
	Users           string
	TLSCert, TLSKey string
	Poll            time.Duration
}

// serveLine is the --json line serve prints once it listens.
type serveLine struct {
	Type        string `json:"type"` // "listening"
	Address     string `json:"address"`
	TLS         bool   `json:"tls"`
	Fingerprint string `json:"fingerprint,omitempty"` // SHA-256 of a self-signed certificate
	Users       int    `json:"users"`
}

func runServe(ctx context.Context, opts serveOptions, g *globalOptions) error {
	data, err := os.ReadFile(opts.Users)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	users, err := readUsers(data, opts.Users)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return usageErrorf("serve: --listen %q: %v", opts.Listen, err)
	}
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil {
		loopback = ip.IsLoopback()
	}
	var tlsConfig *tls.Config
	var fingerprint string
	switch {
	case opts.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return fmt.Errorf("serve: TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	case !loopback:
		cert, fp, err := selfSigned(host)
		if err != nil {
			return fmt.Errorf("serve: make a certificate: %w", err)
		}
		tlsConfig, fingerprint = &tls.Config{Certificates: []tls.Certificate{cert}}, fp
	}
	log := g.logger
	if !g.Verbose {
		log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return withRepo(ctx, g, func(r *repo.Repository) error {
		// The key derivation's 64 MiB are garbage now: free them in
		// the heap before the server's own memory grows, but leave them
		// mapped for the first login's argon2id check, which would
		// otherwise fault in 64 MiB of fresh pages (0.4 s on a virtual
		// machine with slow page faults, and 17 MiB more peak RSS);
		// the check gives them back to the system (verifier.check),
		// and the runtime's scavenger does if no login comes.
		runtime.GC()
		// A message larger than a connection's buffer is read twice, to
		// learn its size on the wire and to send it: the second time
		// from these frames (16 to 32 MiB), not from the packs again.
		r.SetFrameCache(serveFrames)
		// Frames are authenticated as they are opened; hashing every
		// blob again only guards against a wrong index, which `check`
		// looks for. A reader of mail is spared that sixth of its CPU.
		r.TrustIndex()
		// Every blob is looked up twice in a row for a large message and
		// a client reads the whole archive: keep the index's pages read
		// (16 MiB at most, about 280,000 blobs).
		r.SetIndexPages(4096)
		// A shared lock for as long as the server runs: prune must not
		// remove what clients read. Backups go on (they share it).
		lock, err := r.Lock(ctx, false)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer lock.Unlock()
		ctx := lock.Context(ctx)
		store := newArchiveStore(r, users, opts.Poll, log)
		if err := store.refresh(ctx); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		ln, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		ln = serve.Corked(procsPerConn(ln))
		if tlsConfig != nil {
			ln = tls.NewListener(ln, tlsConfig)
		}
		srv := serve.New(store, &serve.Options{Logger: log, InsecureAuth: tlsConfig == nil})
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		addr := ln.Addr().String()
		switch {
		case g.json != nil:
			g.json.write(serveLine{Type: "listening", Address: addr, TLS: tlsConfig != nil, Fingerprint: fingerprint, Users: len(users)})
		case !g.Quiet:
			mode := "TLS"
			if tlsConfig == nil {
				mode = "plaintext, loopback only"
			}
			fmt.Fprintf(g.stdout, "serving the archive to %s on %s (%s); stop with Ctrl-C\n", plural(len(users), "login"), addr, mode)
			if fingerprint != "" {
				fmt.Fprintf(g.stdout, "self-signed certificate, SHA-256 fingerprint %s\n", fingerprint)
			}
		}
		select {
		case err := <-done:
			srv.Close()
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
		}
		srv.Close()
		<-done
		if err := lock.Err(); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
}

// selfSigned makes a certificate for host (and localhost, and this
// machine's name) and returns it with its SHA-256 fingerprint, as mail
// clients show it ("AB:CD:...").
func selfSigned(host string) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "planb serve"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(5, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if name, err := os.Hostname(); err == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if host != "" && ip == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	hex := make([]string, len(sum))
	for i, b := range sum {
		hex[i] = fmt.Sprintf("%02X", b)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, strings.Join(hex, ":"), nil
}

// runHashPassword reads a password (typed twice on a terminal) and prints
// its argon2id hash.
func runHashPassword(g *globalOptions) error {
	var pw string
	var err error
	if g.Password.Prompt != nil {
		pw, err = promptPassword(g.Password.Prompt, "the login's password", true)
	} else if g.stdin != nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(g.stdin, 4096))
		pw = trimNewline(string(b))
	} else {
		err = errors.New("no standard input to read the password from")
	}
	if err != nil {
		return fmt.Errorf("hash-password: %w", err)
	}
	if pw == "" {
		return fmt.Errorf("hash-password: empty password")
	}
	h, err := hashPassword(pw)
	if err != nil {
		return fmt.Errorf("hash-password: %w", err)
	}
	fmt.Fprintln(g.stdout, h)
	return nil
}
