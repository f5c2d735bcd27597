package serve

import (
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	goimap "github.com/emersion/go-imap/v2"
)

func TestDecodeWords(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"=?utf-8?q?caf=C3=A9?=", "café"},
		{"=?UTF-8?B?Y2Fmw6k=?=", "café"},
		{"=?utf-8?b?Y2Fmw6k?=", "café"},                                 // no padding
		{"=?iso-8859-1?Q?M\xfcller?=", "Müller"},                        // raw 8-bit byte in a Q word
		{"Heinz =?iso-8859-1?Q?M=FCller?= <h@x>", "Heinz Müller <h@x>"}, // text around kept
		{"=?iso-8859-1?q?a?= =?iso-8859-1?q?b?=", "ab"},                 // space between words dropped
		{"=?iso-8859-1?q?a?=\r\n\t=?utf-8?q?b?=", "ab"},                 // between words of two charsets too
		{"=?iso-8859-1?q?a?= x =?iso-8859-1?q?b?=", "a x b"},            // not when text is between
		{"=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "éé"},
		{"=?utf-8?q?=C3?= =?utf-8?q?=A9?=", "é"}, // a character split between two words
		{"=?utf-8?q?Die_Hasen?=", "Die Hasen"},
		{"=?utf-8*de?q?Hasen?=", "Hasen"},
		{"=?ANSI_X3.4-1968?q?abc?=", "abc"}, // RFC 2231 language
		{"=?utf-7?Q?Heinz_M+APw-ller?=", "Heinz Müller"},
		{"=?x-unknown?q?abc?=", "=?x-unknown?q?abc?="}, // unknown charset: as written
		{"=?utf-8?x?abc?=", "=?utf-8?x?abc?="},         // unknown encoding
		{"=?utf-8?q?unterminated", "=?utf-8?q?unterminated"},
		{"a=?utf-8?q?b?=c", "abc"},
		{"=?utf-8?q?a=2?=", "a=2"}, // "=" without two hex digits
		{"=?utf-8?q?\xff?=", "\uFFFD"},
		{"=?", "=?"},
		{"=?=?utf-8?q?x?=", "=?x"},
	} {
		if got := decodeWords(c.in); got != c.want {
			t.Errorf("decodeWords(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestUTF7(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"Fr+APY-sche", "Frösche"},
		{"+APw-ber", "über"},
		{"1 +- 1", "1 + 1"},
		{"Hi Mom -+Jjo--!", "Hi Mom -☺-!"}, // RFC 2152's example
		{"+ZeVnLIqe-", "日本語"},              // RFC 2152's example
		{"A+ImIDkQ.", "A≢Α."},              // run ended by a character that stays
		{"+2D3cAA-", "\U0001F400"},         // a surrogate pair
		{"+2D0-x", "\uFFFDx"},              // a high surrogate alone
		{"+3AA-", "\uFFFD"},                // a low surrogate alone
		{"caf\xe9", "caf\uFFFD"},           // 8-bit is not UTF-7
		{"+AOk", "é"},                      // run open at the end
		{"a+", "a"},
	} {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(c.in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			d, err := charsetReader("UTF-7", r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(d)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("UTF-7 %q (one byte at a time: %v) = %q, want %q", c.in, oneByte, b, c.want)
			}
		}
	}
}

// TestSearchDecodes: SEARCH finds what a mail reader shows of a message
// written in UTF-7, of an encoded word with raw 8-bit bytes, and a line
// of the header that is no field; BODY searches text/* and message/*
// parts, TEXT the headers of parts and attached messages too.
func TestSearchDecodes(t *testing.T) {
	s := newMemStore()
	s.addUser("alice", "secret").add(MailboxInfo{Name: "INBOX"}, 1,
		"From: a@example.org\nSubject: =?utf-7?Q?Die_Fr+APY-sche?=\nContent-Type: text/plain; charset=\"utf-7\"\n\nEin f+APw-r allemal.\n",
		"From: a@example.org\nTo: Heinz =?iso-8859-1?Q?M\xfcller?= <h@example.com>\nSubject: plain\n\nnothing here\n",
		"Subject:nospace\nContent-Type:text/plain\n \nbody after a blank-looking line\n",
		"From: a@example.org\nSubject: =?utf-8?b?ZsO8cg?=\n\nplain body\n",
		"Subject: report\nContent-Type: multipart/report; boundary=b\n\n--b\nContent-Type: text/plain\n\nnot delivered\n"+
			"--b\nContent-Type: message/delivery-status\nX-Part: partheader\n\nReporting-MTA: dns; mx.example.org\n"+
			"--b\nContent-Type: message/rfc822\n\nSubject: inner subject\n\ninner body\n"+
			"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 6bit\n\nsixbit text\n"+
			"--b\nContent-Type: application/octet-stream\n\nbinary words\n--b--\n",
		"Subject: forward\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"+
			"U3ViamVjdDogZW5jb2RlZCBoZWFkZXIKCmVuY29kZWQgYm9keQo=\n--b--\n", // "Subject: encoded header\n\nencoded body\n"
	)
	c := login(t, startServer(t, s), "alice", "secret")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	hdr := func(k, v string) *goimap.SearchCriteria {
		return &goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: k, Value: v}}}
	}
	for _, c2 := range []struct {
		name string
		crit *goimap.SearchCriteria
		want []uint32
	}{
		{"BODY für", &goimap.SearchCriteria{Body: []string{"für"}}, []uint32{1}},
		{"BODY APw", &goimap.SearchCriteria{Body: []string{"APw"}}, nil},
		{"SUBJECT frösche", hdr("Subject", "frösche"), []uint32{1}},
		{"TO müller", hdr("To", "müller"), []uint32{2}},
		{"TO 8859", hdr("To", "8859"), nil},
		{"TEXT blank-looking", &goimap.SearchCriteria{Text: []string{"blank-looking"}}, []uint32{3}},
		{"BODY blank-looking", &goimap.SearchCriteria{Body: []string{"blank-looking"}}, nil},
		{"SUBJECT für", hdr("Subject", "für"), []uint32{4}},
		{"TEXT für", &goimap.SearchCriteria{Text: []string{"für"}}, []uint32{1, 4}},
		// A message/* part is text; an attached message's header and a
		// part's header are in the message, not in its body.
		{"BODY reporting-mta", &goimap.SearchCriteria{Body: []string{"reporting-mta"}}, []uint32{5}},
		{"BODY inner body", &goimap.SearchCriteria{Body: []string{"inner body"}}, []uint32{5}},
		{"BODY partheader", &goimap.SearchCriteria{Body: []string{"partheader"}}, nil},
		{"BODY inner subject", &goimap.SearchCriteria{Body: []string{"inner subject"}}, nil},
		{"TEXT partheader", &goimap.SearchCriteria{Text: []string{"partheader"}}, []uint32{5}},
		{"TEXT inner subject", &goimap.SearchCriteria{Text: []string{"inner subject"}}, []uint32{5}},
		{"TEXT delivery-status", &goimap.SearchCriteria{Text: []string{"delivery-status"}}, []uint32{5}},
		// A part in an unknown transfer encoding is no text, and neither
		// is an application/* part.
		{"BODY sixbit", &goimap.SearchCriteria{Body: []string{"sixbit"}}, nil},
		{"TEXT binary words", &goimap.SearchCriteria{Text: []string{"binary words"}}, nil},
		// An attached message in base64 is text, decoded.
		{"BODY encoded body", &goimap.SearchCriteria{Body: []string{"encoded body"}}, []uint32{6}},
		{"TEXT encoded header", &goimap.SearchCriteria{Text: []string{"encoded header"}}, []uint32{6}},
	} {
		data, err := c.Search(c2.crit, nil).Wait()
		if err != nil {
			t.Errorf("SEARCH %s: %v", c2.name, err)
			continue
		}
		if got := data.AllSeqNums(); !slices.Equal(got, c2.want) {
			t.Errorf("SEARCH %s = %v, want %v", c2.name, got, c2.want)
		}
	}
}

// FuzzDecode: decodeWords leaves text without an encoded word as it is
// and never panics; UTF-7 decodes to valid UTF-8, the same whether it
// comes whole or a byte at a time.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"=?utf-7?Q?M+APw-ller?=", "=?iso-8859-1?Q?M\xfcller?= x", "Fr+APY-sche +- +2D3cAA- +3AA", "=?utf-8?b?w6k?= =?utf-8?b?w6k=?="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := decodeWords(s)
		if !strings.Contains(s, "=?") && d != s {
			t.Fatalf("decodeWords(%q) = %q, want it unchanged", s, d)
		}
		var got [2][]byte
		for k, r := range []io.Reader{strings.NewReader(s), iotest.OneByteReader(strings.NewReader(s))} {
			dr, err := charsetReader("utf-7", r)
			if err != nil {
				t.Fatal(err)
			}
			if got[k], err = io.ReadAll(dr); err != nil {
				t.Fatal(err)
			}
		}
		if !utf8.Valid(got[0]) || string(got[0]) != string(got[1]) {
			t.Fatalf("UTF-7 %q = %q whole, %q a byte at a time", s, got[0], got[1])
		}
	})
}
