package imaptest

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
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
	conns []*proxyConn
	plan  *stallPlan
	slow  map[slowKey]time.Duration
}

type slowKey struct {
	conn int
	dir  Direction
}

type proxyConn struct {
	c, s    net.Conn
	sent    [2]int64 // by direction
	stalled [2]bool
}

type stallPlan struct {
	conn    int // 1-based, 0 for any
	trigger Direction
	after   int64
	stall   Direction
	done    chan struct{}
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
	return len(p.conns)
}

// Sent returns the bytes forwarded in direction dir by each connection,
// in the order they were accepted.
func (p *Proxy) Sent(dir Direction) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int64, len(p.conns))
	for i, c := range p.conns {
		out[i] = c.sent[dir]
	}
	return out
}

// StallAfter makes the first connection that forwards more than n bytes
// in direction dir (counted from its start) forward exactly n and then
// nothing more that way, the connection staying open. The channel is
// closed when that happens. One connection stalls; the others, and the
// stalled one's other direction, go on.
func (p *Proxy) StallAfter(dir Direction, n int64) <-chan struct{} {
	return p.StallWhen(0, dir, n, dir)
}

// StallWhen makes connection k (from 1, in the order accepted; 0 for the
// first that gets there), once it has forwarded n bytes in direction
// trigger, forward nothing more in direction stall: with stall the
// other way, from its next bytes on ("the server's answers are lost
// once the client has sent 1 MB"). The channel is closed when the
// trigger is reached.
func (p *Proxy) StallWhen(k int, trigger Direction, n int64, stall Direction) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.plan = &stallPlan{conn: k, trigger: trigger, after: n, stall: stall, done: make(chan struct{})}
	return p.plan.done
}

// Slow makes connection k (from 1, in the order accepted) pause d after
// each piece it forwards in direction dir (at most 32 KiB): a slow path,
// so that other connections get their share however loaded the machine.
func (p *Proxy) Slow(k int, dir Direction, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.slow == nil {
		p.slow = map[slowKey]time.Duration{}
	}
	p.slow[slowKey{k, dir}] = d
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
		pc := &proxyConn{c: c, s: s}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		k := len(p.conns)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pc, k, ToServer)
		go p.pipe(pc, k, ToClient)
	}
}

// pipe copies one direction of pc until either side fails, or stalls as
// planned.
func (p *Proxy) pipe(pc *proxyConn, k int, dir Direction) {
	defer p.wg.Done()
	dst, src := pc.s, pc.c
	if dir == ToClient {
		dst, src = pc.c, pc.s
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			var fired chan struct{}
			p.mu.Lock()
			if pl := p.plan; pl != nil && (pl.conn == 0 || pl.conn == k) && pl.trigger == dir && pc.sent[dir]+int64(n) > pl.after {
				if pl.stall == dir {
					chunk = buf[:max(0, pl.after-pc.sent[dir])]
				}
				pc.stalled[pl.stall] = true
				fired = pl.done
				p.plan = nil
			}
			stalled := pc.stalled[dir] && fired == nil
			p.mu.Unlock()
			if stalled {
				<-p.closed
				return
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
			p.mu.Lock()
			pc.sent[dir] += int64(len(chunk))
			stalled = pc.stalled[dir]
			pause := p.slow[slowKey{k, dir}]
			p.mu.Unlock()
			if pause > 0 {
				time.Sleep(pause)
			}
			if fired != nil {
				close(fired)
			}
			if stalled {
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
	for _, c := range p.conns {
		c.c.Close()
		c.s.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
