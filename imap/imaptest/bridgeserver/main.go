// Command bridgeserver is a test IMAP server shaped like Proton Mail
// Bridge: gluon (github.com/ProtonMail/gluon, Bridge's own IMAP engine)
// with a connector that follows Bridge's rules (mailbox layout, Folders/
// and Labels/, All Mail and Starred, what APPEND refuses and with which
// text, the ID reply) over a local model of the Proton API instead of
// Proton's servers. It is test tooling started by scripts/bridge.sh, not
// part of planb.
//
// Usage: bridgeserver -dir DIR -port N [-tls-port N]
//
// DIR holds everything: users (USER:PASSWORD lines, read at start),
// cert.pem and key.pem (made on first start when missing), proton.db (the
// accounts' mail as the API would hold it), gluon/ (gluon's database and
// message store), the pid file and, after a clean stop, the file clean.
// SIGTERM or SIGINT stops the server cleanly.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ProtonMail/gluon"
	"github.com/sirupsen/logrus"
)

// The Bridge this server answers as (proton-bridge Makefile
// BRIDGE_APP_VERSION and APP_FULL_NAME; vendor and support URL are the
// "TODO" Bridge passes to gluon.WithVersionInfo).
const (
	bridgeName  = "Proton Mail Bridge"
	bridgeMajor = 3
	bridgeMinor = 21
	bridgePatch = 1
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	dir := flag.String("dir", "", "the server's directory")
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 1143, "plaintext port (STARTTLS offered)")
	tlsPort := flag.Int("tls-port", 0, "implicit-TLS port (0: none)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("bridgeserver: -dir is required")
	}
	if err := run(*dir, *host, *port, *tlsPort); err != nil {
		log.Fatalf("bridgeserver: %v", err)
	}
}

func run(dir, host string, port, tlsPort int) error {
	logrus.SetLevel(logrus.WarnLevel)
	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)

	users, err := readUsers(filepath.Join(dir, "users"))
	if err != nil {
		return err
	}
	cert, err := loadOrMakeCert(dir)
	if err != nil {
		return err
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	// A start without the marker of a clean stop follows a crash: then
	// gluon's view is made to match the accounts again.
	cleanFile := filepath.Join(dir, "clean")
	_, statErr := os.Stat(cleanFile)
	reconcile := errors.Is(statErr, os.ErrNotExist)
	if err := os.Remove(cleanFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	st, err := openStore(filepath.Join(dir, "proton.db"))
	if err != nil {
		return err
	}
	defer st.close()

	srv, err := gluon.New(
		gluon.WithDataDir(filepath.Join(dir, "gluon", "store")),
		gluon.WithDatabaseDir(filepath.Join(dir, "gluon", "db")),
		gluon.WithTLS(tlsConfig),
		gluon.WithLogger(imapLog(dir, "BRIDGE_IMAP_LOG_IN"), imapLog(dir, "BRIDGE_IMAP_LOG_OUT")),
		gluon.WithVersionInfo(bridgeMajor, bridgeMinor, bridgePatch, bridgeName, "TODO", "TODO"),
	)
	if err != nil {
		return err
	}
	go func() {
		for err := range srv.GetErrorCh() {
			// A client that hangs up (the start script's port probe) is
			// no error.
			if !errors.Is(err, io.EOF) {
				log.Printf("gluon: %v", err)
			}
		}
	}()

	ctx := context.Background()
	for _, u := range users {
		if err := addUser(ctx, srv, st, u[0], u[1], reconcile); err != nil {
			srv.Close(ctx)
			return fmt.Errorf("user %s: %w", u[0], err)
		}
	}

	if err := serve(ctx, srv, net.JoinHostPort(host, strconv.Itoa(port)), nil); err != nil {
		srv.Close(ctx)
		return err
	}
	if tlsPort != 0 {
		if err := serve(ctx, srv, net.JoinHostPort(host, strconv.Itoa(tlsPort)), tlsConfig); err != nil {
			srv.Close(ctx)
			return err
		}
	}
	log.Printf("ready: %d users, port %d, TLS port %d", len(users), port, tlsPort)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	log.Printf("stopping")
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := srv.Close(closeCtx); err != nil {
		return err
	}
	if err := st.clearTombstones(); err != nil {
		return err
	}
	if err := os.WriteFile(cleanFile, nil, 0o644); err != nil {
		return err
	}
	log.Printf("stopped")
	return nil
}

func serve(ctx context.Context, srv *gluon.Server, addr string, tlsConfig *tls.Config) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	return srv.Serve(ctx, l)
}

// addUser loads an account into gluon, making it first if it is new.
func addUser(ctx context.Context, srv *gluon.Server, st *store, name, password string, reconcile bool) error {
	a, err := loadAccount(st, name, password)
	if err != nil {
		return err
	}
	gluonID, passphrase, ok, err := st.user(name)
	if err != nil {
		return err
	}
	if ok {
		if _, err := srv.LoadUser(ctx, a, gluonID, passphrase); err != nil {
			return err
		}
	} else {
		passphrase = make([]byte, 32)
		if _, err := rand.Read(passphrase); err != nil {
			return err
		}
		if gluonID, err = srv.AddUser(ctx, a, passphrase); err != nil {
			return err
		}
		if err := st.addUser(name, gluonID, passphrase); err != nil {
			return err
		}
	}
	return a.sync(ctx, reconcile && ok)
}

func readUsers(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var users [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		name, password, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s: %q: want USER:PASSWORD", path, line)
		}
		users = append(users, [2]string{name, password})
	}
	return users, sc.Err()
}

// imapLog returns where gluon logs one direction of the IMAP traffic:
// DIR/log/imap-in.log or imap-out.log when the environment variable env is
// 1, else nowhere.
func imapLog(dir, env string) io.Writer {
	if os.Getenv(env) != "1" {
		return io.Discard
	}
	name := "imap-in.log"
	if strings.HasSuffix(env, "OUT") {
		name = "imap-out.log"
	}
	f, err := os.OpenFile(filepath.Join(dir, "log", name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		log.Printf("%s: %v", name, err)
		return io.Discard
	}
	return f
}
