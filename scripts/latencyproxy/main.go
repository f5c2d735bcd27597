// Command latencyproxy forwards TCP connections to another address and
// delays every byte by a fixed time in each direction, to measure how a
// protocol behaves over a wide-area link (scripts/bench-restore.sh). It
// models latency only, not bandwidth.
//
// Usage: go run ./scripts/latencyproxy -listen 127.0.0.1:PORT -to 127.0.0.1:PORT -delay 10ms
package main

import (
	"flag"
	"log"
	"net"
	"time"
)

type chunk struct {
	at   time.Time
	data []byte
}

// pipe copies src to dst, each chunk no sooner than delay after it was read.
func pipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{time.Now().Add(delay), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	for range q {
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen on `ADDR`")
	to := flag.String("to", "", "forward to `ADDR`")
	delay := flag.Duration("delay", 10*time.Millisecond, "one-way delay")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			s, err := net.Dial("tcp", *to)
			if err != nil {
				c.Close()
				return
			}
			done := make(chan struct{}, 2)
			go func() { pipe(s, c, *delay); done <- struct{}{} }()
			go func() { pipe(c, s, *delay); done <- struct{}{} }()
			<-done
			<-done
			c.Close()
			s.Close()
		}()
	}
}
