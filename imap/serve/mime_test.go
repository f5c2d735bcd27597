package serve

import (
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
)

// parseWire returns the structure of a message given with LF line ends,
// put on the wire (CRLF).
func parseWire(msg string) *part {
	p := newMIMEParser()
	p.Write([]byte(strings.ReplaceAll(msg, "\n", "\r\n")))
	return p.finish()
}

// TestStructureLines: a body's lines are its line ends; a last line
// without one (the end of the message, or a part's whose line end belongs
// to the next boundary) does not count, as Dovecot counts them.
func TestStructureLines(t *testing.T) {
	tests := []struct {
		name, msg string
		path      []int
		want      int64
	}{
		{"ends with a line end", "Subject: a\n\none\ntwo\n", nil, 2},
		{"no final line end", "Subject: a\n\none\ntwo", nil, 1},
		{"empty body", "Subject: a\n\n", nil, 0},
		{"part before a boundary", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\ntwo\n--b--\n", []int{1}, 1},
		{"part with an empty last line", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n\n--b--\n", []int{1}, 1},
	}
	for _, tt := range tests {
		e := resolve(parseWire(tt.msg), tt.path)
		if e == nil {
			t.Fatalf("%s: part %v not found", tt.name, tt.path)
		}
		if e.lines != tt.want {
			t.Errorf("%s: lines = %d, want %d", tt.name, e.lines, tt.want)
		}
	}
}

// TestStructureCharset: a text part without a charset says us-ascii
// (RFC 2046 section 4.1.2); other types get none.
func TestStructureCharset(t *testing.T) {
	tests := []struct {
		ct   string
		want map[string]string
	}{
		{"", map[string]string{"charset": "us-ascii"}},
		{"Content-Type: text/plain\n", map[string]string{"charset": "us-ascii"}},
		{"Content-Type: text/x-patch; name=a.patch\n", map[string]string{"charset": "us-ascii", "name": "a.patch"}},
		{"Content-Type: text/html; charset=UTF-8\n", map[string]string{"charset": "UTF-8"}},
		{"Content-Type: application/pdf\n", nil},
	}
	for _, tt := range tests {
		bs := parseWire(tt.ct + "\nbody\n").bodyStructure().(*goimap.BodyStructureSinglePart)
		if len(bs.Params) != len(tt.want) {
			t.Errorf("%q: params = %v, want %v", tt.ct, bs.Params, tt.want)
			continue
		}
		for k, v := range tt.want {
			if bs.Params[k] != v {
				t.Errorf("%q: params = %v, want %v", tt.ct, bs.Params, tt.want)
			}
		}
	}
}
