package imaptest

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// Direction is one way through a Proxy.
type Direction int

const (
	// ToServer is what the client sends.
	ToServer Direction = iota
	// ToClient is what the server sends.
	ToClient
)

func (d Direction) String() string {
	if d == ToServer {
		return "to server"
	}
	return "to client"
}

// Proxy forwards TCP connections to a server, byte for byte (TLS passes
// through), and can stall one of them at a point the test chooses: it
// stops forwarding one direction without closing anything, as a server
// that hangs or a path that drops every packet does. Its methods are
// safe for concurrent use.
type Proxy struct {
	Host string
	Port int

	to     string
	ln     net.Listener
	closed chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns int
	open  []net.Conn
	sent  [][2]int64 // by connection, by direction
	plan  *stallPlan
}

type stallPlan struct {
	conn  int // 1-based, 0 for any
	dir   Direction
	after int64
	done  chan struct{}
}

// StartProxy starts a proxy on 127.0.0.1 to the server at addr
// (host:port). It stops, closing every connection, when the test ends.
func StartProxy(t testing.TB, addr string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr)
	p := &Proxy{Host: a.IP.String(), Port: a.Port, to: addr, ln: ln, closed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr returns host:port.
func (p *Proxy) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Conns returns how many connections the proxy has accepted.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

// Sent returns the bytes forwarded in direction dir by each connection,
// in the order they were accepted.
func (p *Proxy) Sent(dir Direction) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int64, len(p.sent))
	for i, s := range p.sent {
		out[i] = s[dir]
	}
	return out
}

// StallAfter makes the first connection that forwards more than n bytes
// in direction dir (counted from its start) forward exactly n and then
// nothing more that way, the connection staying open. The channel is
// closed when that happens. One connection stalls; the others, and the
// stalled one's other direction, go on.
func (p *Proxy) StallAfter(dir Direction, n int64) <-chan struct{} {
	return p.StallConnAfter(0, dir, n)
}

// StallConnAfter is StallAfter for the k-th connection the proxy
// accepts (from 1; 0 for any).
func (p *Proxy) StallConnAfter(k int, dir Direction, n int64) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = &stallPlan{conn: k, dir: dir, after: n, done: make(chan struct{})}
	return p.plan.done
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns++
		k := p.conns
		p.open = append(p.open, c, s)
		p.sent = append(p.sent, [2]int64{})
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, k, ToServer)
		go p.pipe(c, s, k, ToClient)
	}
}

// pipe copies src to dst until either fails, or stalls as planned.
func (p *Proxy) pipe(dst, src net.Conn, k int, dir Direction) {
	defer p.wg.Done()
	var sent int64
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			var stalled chan struct{}
			p.mu.Lock()
			if pl := p.plan; pl != nil && (pl.conn == 0 || pl.conn == k) && pl.dir == dir && sent+int64(n) > pl.after {
				chunk = buf[:max(0, pl.after-sent)]
				stalled = pl.done
				p.plan = nil
			}
			p.mu.Unlock()
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
			sent += int64(len(chunk))
			p.mu.Lock()
			p.sent[k-1][dir] = sent
			p.mu.Unlock()
			if stalled != nil {
				close(stalled)
				<-p.closed
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

func (p *Proxy) close() {
	close(p.closed)
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
