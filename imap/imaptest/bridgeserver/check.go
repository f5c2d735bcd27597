package main

// The checks Proton Mail Bridge makes on a message appended over IMAP
// before it hands it to the Proton API (proton-bridge
// internal/services/imapservice/connector.go, CreateMessage and
// importMessage), in Bridge's order and with Bridge's error texts. gluon
// itself has already refused, before the connector is asked, a message
// without Date or From, with a From it cannot parse or with an invalid
// header name (gluon rfc5322.ValidateMessageHeaderFields, called by its
// APPEND handler for every mailbox but Drafts).

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/quotedprintable"
	"strings"

	"github.com/ProtonMail/gluon/connector"
	"github.com/ProtonMail/gluon/rfc5322"
	"github.com/ProtonMail/gluon/rfc822"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// maxImportSize is the Proton API client's limit on one import request
// (go-proton-api MaxImportSize, 70 MiB); its error text says 50MB.
const maxImportSize = 70 * 1024 * 1024

// errImportSizeExceeded is go-proton-api's ErrImportSizeExceeded.
var errImportSizeExceeded = errors.New("message exceeds maximum import size of 50MB")

// checkAppend returns the error Bridge answers for literal appended to a
// mailbox (drafts: the Drafts mailbox), or nil when Bridge would import it.
func checkAppend(literal []byte, drafts bool) error {
	if _, err := recipients(literal); err != nil {
		return fmt.Errorf("failed to retrieve addresses from literal:%w", err)
	}
	if err := hashable(literal); err != nil {
		return err
	}
	if !drafts {
		if _, err := rfc822.Parse(literal).ParseHeader(); err != nil {
			return err
		}
	}
	if err := parseLikeBridge(literal); err != nil {
		return fmt.Errorf("failed to parse literal: %w", err)
	}
	if len(literal) > maxImportSize {
		// Bridge remaps the size error so that gluon does not keep the
		// message in its recovery mailbox.
		return fmt.Errorf("%v: %w", fmt.Errorf("failed to prepare message for import: %w", errImportSizeExceeded), connector.ErrMessageSizeExceedsLimits)
	}
	return nil
}

// recipients parses To, Cc and Bcc as Bridge's getLiteralToList does.
func recipients(literal []byte) ([]string, error) {
	headerBytes, _ := rfc822.Split(literal)
	header, err := rfc822.NewHeader(headerBytes)
	if err != nil {
		return nil, err
	}
	var all []string
	for _, field := range []string{"To", "Cc", "Bcc"} {
		value, ok := header.GetChecked(field)
		if !ok {
			continue
		}
		addrs, err := rfc5322.ParseAddressList(value)
		if err != nil {
			return nil, fmt.Errorf("failed to parse addresses for '%v': %w", field, err)
		}
		for _, a := range addrs {
			all = append(all, a.Address)
		}
	}
	return all, nil
}

// hashable fails where Bridge's message hash (gluon rfc822.GetMessageHash,
// computed to match appended messages against recently sent ones) fails:
// a header or MIME structure gluon cannot parse, or a text/plain or
// text/html leaf whose base64 or quoted-printable body does not decode.
func hashable(literal []byte) error {
	if _, err := rfc822.GetMessageHash(literal); err != nil {
		return err
	}
	return rfc822.Parse(literal).Walk(func(s *rfc822.Section) error {
		children, err := s.Children()
		if err != nil {
			return err
		}
		if len(children) > 0 {
			return nil
		}
		header, err := s.ParseHeader()
		if err != nil {
			return err
		}
		mimeType, _, err := rfc822.ParseMIMEType(header.Get("Content-Type"))
		if err != nil || (mimeType != rfc822.TextPlain && mimeType != rfc822.TextHTML) {
			return nil
		}
		var r io.Reader
		switch strings.ToLower(header.Get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			r = quotedprintable.NewReader(bytes.NewReader(s.Body()))
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, bytes.NewReader(s.Body()))
		default:
			return nil
		}
		_, err = io.Copy(io.Discard, r)
		return err
	})
}

// maxHeaderBytes is go-message's limit on the size of a message header.
const maxHeaderBytes = 1 << 20

var errHeaderTooBig = errors.New("message: header exceeds maximum size")

// parseLikeBridge reads the message as Bridge's pkg/message/parser does
// with Proton's fork of go-message: the header must be well formed, every
// part of a multipart must be readable, and every leaf body must decode
// from its transfer encoding (strict base64: no spaces inside). An unknown
// charset is never an error (Bridge sets no charset reader); an unknown
// transfer encoding is one inside a multipart, not at the top.
func parseLikeBridge(literal []byte) error {
	literal = bytes.TrimSuffix(literal, []byte("\r\n.\r\n"))
	lr := &limitedReader{r: bytes.NewReader(literal), n: maxHeaderBytes}
	br := bufio.NewReader(lr)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return err
	}
	lr.n = math.MaxInt64
	return parseEntity(gomessage.Header{Header: h}, br, true)
}

func parseEntity(h gomessage.Header, body io.Reader, top bool) error {
	mediaType, params, _ := h.ContentType()
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := textproto.NewMultipartReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := parseEntity(gomessage.Header{Header: p.Header}, p, false); err != nil {
				return err
			}
		}
	}
	r, err := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	if err != nil {
		// go-message reports an unknown charset over an unknown encoding,
		// and Bridge lets an unknown charset pass.
		if !top && !unknownCharset(mediaType, params) {
			return fmt.Errorf("encoding error: %w", err)
		}
		r = body
	}
	_, err = io.Copy(io.Discard, r)
	return err
}

// unknownCharset tells whether go-message, with no charset reader set (as
// in Bridge), cannot decode the charset of a part.
func unknownCharset(mediaType string, params map[string]string) bool {
	ch, ok := params["charset"]
	if !strings.HasPrefix(mediaType, "text/") || !ok {
		return false
	}
	ch = strings.ToLower(ch)
	return ch != "utf-8" && ch != "us-ascii"
}

func decodeTransfer(enc string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(enc) {
	case "quoted-printable":
		return quotedprintable.NewReader(r), nil
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r), nil
	case "7bit", "8bit", "binary", "":
		return r, nil
	}
	return nil, fmt.Errorf("unhandled encoding %q", enc)
}

// limitedReader bounds what the header may take; the caller lifts the
// bound once the header is read.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderTooBig
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
