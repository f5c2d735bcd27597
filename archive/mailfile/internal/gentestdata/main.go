// Command gentestdata writes planb's own small mail corpus, testdata/mail:
// a Maildir++ tree and an mboxrd file whose every message exercises an edge
// case (see testdata/mail/README.md). Its output is committed; run it again
// only to change the corpus, then update the tests that count on it:
//
//	go run ./archive/mailfile/internal/gentestdata -out testdata/mail
package main

import (
	"bytes"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	out := flag.String("out", "testdata/mail", "output directory")
	flag.Parse()
	if err := os.RemoveAll(filepath.Join(*out, "maildir")); err != nil {
		log.Fatal(err)
	}
	if err := writeMaildir(filepath.Join(*out, "maildir")); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "sample.mbox"), []byte(sampleMbox()), 0o644); err != nil {
		log.Fatal(err)
	}
}

// msg builds a message with LF line ends from header lines and body.
func msg(subject string, extra []string, body string) string {
	h := []string{
		"From: Alice Example <alice@example.org>",
		"To: Bob Example <bob@example.org>",
		"Subject: " + subject,
		"Date: Thu, 01 Jan 2026 10:00:00 +0100",
		"Message-ID: <" + strings.ReplaceAll(strings.ToLower(subject), " ", "-") + "@example.org>",
	}
	h = append(h, extra...)
	return strings.Join(h, "\n") + "\n\n" + body
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// attachment returns a multipart message with a base64 attachment of
// deterministic binary bytes.
func attachment() string {
	data := make([]byte, 1500)
	x := uint32(2463534242)
	for i := range data {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		data[i] = byte(x)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var lines []string
	for len(enc) > 76 {
		lines = append(lines, enc[:76])
		enc = enc[76:]
	}
	lines = append(lines, enc)
	return msg("Attachment", []string{
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="b1"`,
	}, "This is a multi-part message in MIME format.\n\n--b1\nContent-Type: text/plain; charset=us-ascii\n\nSee the attachment.\n\n--b1\n"+
		"Content-Type: application/octet-stream; name=\"data.bin\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"data.bin\"\n\n"+
		strings.Join(lines, "\n")+"\n--b1--\n")
}

type file struct {
	sub  string // "cur" or "new"
	name string // unique name and info
	data string
}

func unique(n int) string { return fmt.Sprintf("1767225600.M%dP4242Q%d.testhost", n, n) }

func writeMaildir(root string) error {
	n := 0
	f := func(sub, info, data string) file {
		n++
		name := unique(n)
		if info != "" {
			name += ":2," + info
		}
		return file{sub, name, data}
	}
	longLine := strings.Repeat("0123456789", 120)
	folders := map[string][]file{
		// INBOX: the edge cases.
		"": {
			f("cur", "S", msg("Plain LF", nil, "Hello Bob,\nthis is plain text with LF line ends.\n")),
			f("cur", "RS", crlf(msg("CRLF", nil, "Line one.\nLine two.\n"))),
			f("cur", "FS", msg("Mixed line ends", nil, "CRLF line\r\nLF line\nCRLF again\r\n")),
			f("cur", "S", msg("NUL byte", nil, "before\x00after\n")),
			f("cur", "Sa", msg("Latin-1 header", []string{"X-Note: Gr\xfc\xdfe aus K\xf6ln"}, "Raw 8-bit ISO-8859-1 in a header.\n")),
			f("cur", "Sab", msg("UTF-8 header Grüße 日本語", nil, "Raw UTF-8 in the Subject header.\n")),
			f("cur", "PS", "From: carol@example.org\nTo: bob@example.org\nSubject: No Message-ID\nDate: Fri, 02 Jan 2026 09:00:00 +0000\n\nThis message has no Message-ID.\n"),
			f("cur", "S", "From: carol@example.org\nTo: bob@example.org\nSubject: No Date\nMessage-ID: <no-date@example.org>\n\nThis message has no Date header.\n"),
			f("cur", "Sc", msg("From lines", nil, "From the start of a line.\n>From an escaped line.\n>>From a doubly escaped line.\nNot From here.\n")),
			f("cur", "S", msg("No final newline", nil, "The last line has no newline.")),
			f("cur", "S", msg("Empty body", nil, "")),
			f("cur", "S", msg("Long line", nil, longLine+"\n")),
			f("cur", "S", attachment()),
			f("cur", "", msg("Bare CR", nil, "one\rtwo\rthree\n")),
			f("cur", "T", crlf(msg("CRLF no final newline", nil, "Last line\nwithout newline"))),
			f("new", "", msg("Unseen in new", nil, "Delivered, not yet seen.\n")),
			f("new", "", msg("Unseen two", nil, "Also new.\n")),
		},
		".Sent": {
			f("cur", "S", msg("Sent one", nil, "Sent mail.\n")),
			f("cur", "RS", msg("Sent two", nil, "More sent mail.\n")),
			f("cur", "S", msg("Sent three", nil, "Still more.\n")),
		},
		".Drafts": {
			f("cur", "DS", msg("Draft one", nil, "Unfinished\n")),
			f("cur", "D", msg("Draft two", nil, "")),
		},
		".Trash": {
			f("cur", "ST", msg("Deleted one", nil, "Gone.\n")),
			f("cur", "S", ""), // a zero-byte message file
		},
		".Junk": {
			f("cur", "", msg("Buy now", nil, "Spam.\n")),
			f("cur", "S", msg("Win big", nil, "More spam.\n")),
		},
		".Archive": {
			f("cur", "S", msg("Archived", nil, "Old.\n")),
		},
		".Projects": {
			f("cur", "S", msg("Projects root", nil, "Top.\n")),
		},
		".Projects.2026": {
			f("cur", "S", msg("Projects 2026", nil, "Year.\n")),
		},
		".Projects.2026.Q1": {
			f("cur", "S", msg("Q1 plan", nil, "Plan.\n")),
			f("cur", "FS", msg("Q1 budget", nil, "Budget.\n")),
			f("cur", "Sa", msg("Q1 review", nil, "Review.\n")),
		},
		".Entw&APw-rfe": {
			f("cur", "DS", msg("Entwurf eins", nil, "Entwurf.\n")),
			f("cur", "D", msg("Entwurf zwei", nil, "Noch einer.\n")),
		},
		".&ZeVnLIqe-": {
			f("cur", "S", msg("Japanese folder", []string{"Content-Type: text/plain; charset=utf-8"}, "日本語のメール。\n")),
			f("cur", "", msg("Japanese folder two", nil, "Second.\n")),
		},
		".Old Mail": {
			f("cur", "S", msg("Space in folder name", nil, "Old.\n")),
			f("cur", "S", msg("Space two", nil, "Older.\n")),
		},
		".R&-D": {
			f("cur", "S", msg("Ampersand folder", nil, "R and D.\n")),
			f("cur", "FS", msg("Ampersand two", nil, "More R&D.\n")),
		},
		".v1%2E2": {
			f("cur", "S", msg("Dot in folder name", nil, "Version 1.2.\n")),
		},
	}
	keywords := map[string]string{
		"":                  "0 $Label1\n1 work\n2 Important\n",
		".Projects.2026.Q1": "0 review\n",
	}
	for dir, files := range folders {
		d := filepath.Join(root, dir)
		if kw, ok := keywords[dir]; ok {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, "dovecot-keywords"), []byte(kw), 0o644); err != nil {
				return err
			}
		}
		if dir != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, "maildirfolder"), nil, 0o644); err != nil {
				return err
			}
		}
		for _, fl := range files {
			if err := os.MkdirAll(filepath.Join(d, fl.sub), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(d, fl.sub, fl.name), []byte(fl.data), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// sampleMbox returns an mboxrd file written by hand (not by planb's writer),
// so that the reader is tested against an independent text.
func sampleMbox() string {
	var b bytes.Buffer
	add := func(from string, content string) {
		b.WriteString(from + "\n")
		b.WriteString(content)
		b.WriteString("\n")
	}
	add("From alice@example.org Thu Jan  1 10:00:00 2026",
		msg("Mbox one", []string{"Status: RO"}, "Plain message, seen.\n"))
	add("From bob@example.org Fri Jan  2 11:30:00 2026",
		msg("Mbox escapes", nil, ">From escaped once.\n>>From escaped twice.\n> From not escaped.\n"))
	add("From MAILER-DAEMON Sat Jan  3 12:00:00 2026",
		crlf(msg("Mbox CRLF", []string{"Status: RO", "X-Status: AF"}, "CRLF body.\n")))
	add("From - Sun Jan 04 13:00:00 2026",
		msg("Mbox dash sender", nil, "Sender is a dash.\n"))
	add("From 1844347792267117879@xxx Mon Jan 05 14:00:00 +0100 2026",
		msg("Mbox takeout", []string{"X-GM-THRID: 1844347792267117879"}, "Takeout style separator.\n"))
	add("From carol@example.org Tue Jan  6 15:00:00 2026",
		msg("Mbox no final newline", nil, "No newline at the end."))
	add("From dave@example.org Wed Jan  7 16:00:00 2026",
		msg("Mbox binary", []string{"X-Note: K\xf6ln"}, "NUL\x00byte and bare\rCR.\n"))
	add("From erin@example.org Thu Jan  8 17:00:00 2026",
		msg("Mbox empty body", nil, ""))
	add("From frank@example.org Fri Jan  9 18:00:00 2026",
		msg("Mbox mozilla", []string{"X-Mozilla-Status: 0005"}, "Seen and flagged by Thunderbird.\n"))
	add("From nobody",
		msg("Mbox no date", nil, "The From line has no date.\n"))
	return b.String()
}
