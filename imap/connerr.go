package imap

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// connDropped reports whether err says the connection itself failed (the
// server went away, the socket was closed or reset). go-imap marks its
// client closed a moment after such an error, so a caller that checks
// right away must look at the error too.
func connDropped(err error) bool {
	var op *net.OpError
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.As(err, &op)
}
