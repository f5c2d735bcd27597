// Command firstmessage measures how soon a freshly started IMAP server
// gives a message (scripts/bench-serve.sh): it connects to -addr until the
// server answers, logs in, selects INBOX, fetches the first message whole
// and prints the milliseconds since -since (a Unix time in nanoseconds,
// taken just before the server was started). With -ca it speaks TLS from
// the first byte and trusts the certificate in that file (for localhost).
//
// Usage: go run ./scripts/firstmessage -addr 127.0.0.1:PORT -user U -password P -since NS [-ca FILE]
//
//	go run ./scripts/firstmessage -freeport   prints a free TCP port of 127.0.0.1
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func main() {
	addr := flag.String("addr", "", "the server's `host:port`")
	user := flag.String("user", "", "user name")
	password := flag.String("password", "", "password")
	since := flag.Int64("since", 0, "start time, Unix nanoseconds")
	freePort := flag.Bool("freeport", false, "print a free port of 127.0.0.1 and exit")
	timeout := flag.Duration("timeout", time.Minute, "give up after this long")
	caFile := flag.String("ca", "", "speak TLS and trust the certificate in this PEM `file`")
	flag.Parse()
	if *freePort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		return
	}
	start := time.Unix(0, *since)
	if *since == 0 {
		start = time.Now()
	}
	deadline := start.Add(*timeout)
	dial := func() (*imapclient.Client, error) { return imapclient.DialInsecure(*addr, nil) }
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			log.Fatalf("firstmessage: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			log.Fatalf("firstmessage: no certificate in %s", *caFile)
		}
		opts := &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
		dial = func() (*imapclient.Client, error) { return imapclient.DialTLS(*addr, opts) }
	}
	var c *imapclient.Client
	for {
		var err error
		if c, err = dial(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("firstmessage: no server on %s: %v", *addr, err)
		}
		time.Sleep(5 * time.Millisecond) // polling a port that is not open yet
	}
	defer c.Close()
	if err := c.Login(*user, *password).Wait(); err != nil {
		log.Fatalf("firstmessage: login: %v", err)
	}
	if _, err := c.Select("INBOX", &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		log.Fatalf("firstmessage: select INBOX: %v", err)
	}
	sec := &goimap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{sec}}).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].FindBodySection(sec)) == 0 {
		log.Fatalf("firstmessage: fetch message 1: %d messages, %v", len(msgs), err)
	}
	fmt.Printf("%d\n", time.Since(start).Milliseconds())
}
