package main

import (
	"net"
	"slices"
	"sync"
	"testing"
)

// TestProcsPerConn: planb serve runs on one processor while no client is
// connected or one is, on one more for each further connection up to the
// processors it was given, and goes back down as connections close.
func TestProcsPerConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var set []int
	pl := newProcsListener(ln, 3, func(n int) { mu.Lock(); set = append(set, n); mu.Unlock() })
	var conns []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := pl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, sc)
	}
	for _, c := range conns {
		c.Close()
	}
	conns[0].Close() // a second Close counts once
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, 1, 2, 3, 3, 3, 2, 1, 1}; !slices.Equal(set, want) {
		t.Errorf("processors set to %v, want %v", set, want)
	}
}
