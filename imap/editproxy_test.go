package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"codeberg.org/planb/planb/imap/imaptest"
)

// editProxy relays IMAP between a plaintext client and a server, passing
// every server response (its lines and literals, read whole: test-sized
// messages only) through edit, which returns the bytes to send on instead
// (nil drops the response). What the client sends goes through as it is.
type editProxy struct {
	addr string

	mu   sync.Mutex
	edit func(resp []byte) []byte
}

// startEditProxy listens on 127.0.0.1; every connection it accepts gets a
// connection to the server from dial.
func startEditProxy(t *testing.T, dial func() (net.Conn, error), edit func([]byte) []byte) *editProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &editProxy{addr: ln.Addr().String(), edit: edit}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := dial()
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(s, c)
				s.Close()
			}()
			go func() {
				defer wg.Done()
				p.relay(c, s)
				c.Close()
			}()
		}
	}()
	return p
}

func (p *editProxy) setEdit(edit func([]byte) []byte) {
	p.mu.Lock()
	p.edit = edit
	p.mu.Unlock()
}

func (p *editProxy) relay(dst io.Writer, src io.Reader) {
	br := bufio.NewReader(src)
	for {
		resp, err := readResponse(br)
		if len(resp) > 0 {
			p.mu.Lock()
			edit := p.edit
			p.mu.Unlock()
			if edit != nil {
				resp = edit(resp)
			}
			if _, werr := dst.Write(resp); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// readResponse reads one server response with the literals it holds.
func readResponse(br *bufio.Reader) ([]byte, error) {
	var resp []byte
	for {
		line, err := br.ReadBytes('\n')
		resp = append(resp, line...)
		if err != nil {
			return resp, err
		}
		n, ok := literalAtEnd(string(line))
		if !ok {
			return resp, nil
		}
		lit := make([]byte, n)
		k, err := io.ReadFull(br, lit)
		resp = append(resp, lit[:k]...)
		if err != nil {
			return resp, err
		}
	}
}

// memDial connects to a memServer.
func (ms *memServer) memDial() (net.Conn, error) { return net.Dial("tcp", ms.addr) }

// dovecotDial connects to d's implicit TLS port: the proxy in front of it
// speaks plaintext.
func dovecotDial(d *imaptest.Dovecot) func() (net.Conn, error) {
	return func() (net.Conn, error) {
		return tls.Dial("tcp", net.JoinHostPort(d.Host, strconv.Itoa(d.TLSPort)), &tls.Config{RootCAs: d.RootCAs, ServerName: d.Host})
	}
}

// proxySource returns a Source that reaches the server through p in
// plaintext.
func proxySource(t *testing.T, p *editProxy, user, password string, edit func(*Options)) *Source {
	t.Helper()
	return plainSource(t, p.addr, user, password, edit)
}

var bodyFetchRE = regexp.MustCompile(`^\* (\d+) FETCH \(UID (\d+) BODY\[\] (\{\d+\}\r\n)`)

// bodyFetch parses a FETCH response "* N FETCH (UID U BODY[] {n}\r\n...)\r\n"
// into its sequence number, UID, literal announcement and literal; ok is
// false for any other response.
func bodyFetch(resp []byte) (seq, uid, announce string, lit []byte, ok bool) {
	m := bodyFetchRE.FindSubmatch(resp)
	if m == nil || !bytes.HasSuffix(resp, []byte(")\r\n")) {
		return "", "", "", nil, false
	}
	return string(m[1]), string(m[2]), string(m[3]), resp[len(m[0]) : len(resp)-3], true
}

// bodyFirst moves the UID of a body FETCH response after the body, as
// RFC 3501 allows: "* 1 FETCH (BODY[] {n}\r\n... UID 7)\r\n".
func bodyFirst(resp []byte) []byte {
	seq, uid, announce, lit, ok := bodyFetch(resp)
	if !ok {
		return resp
	}
	out := []byte("* " + seq + " FETCH (BODY[] " + announce)
	out = append(out, lit...)
	return append(out, " UID "+uid+")\r\n"...)
}
