package main

import (
	"net"
	"os"
)

// sdNotify sends state ("READY=1", "STOPPING=1", "RELOADING=1") to the
// service manager when it asked for it (systemd's Type=notify sets
// NOTIFY_SOCKET); otherwise, or when the socket does not answer, it does
// nothing.
func sdNotify(state string) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return
	}
	if name[0] == '@' {
		name = "\x00" + name[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
