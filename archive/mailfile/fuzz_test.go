package mailfile

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"codeberg.org/planb/planb/archive"
)

// readMboxFrom reads every message of an mbox from r, handing the bodies
// to Read in pieces of at most step bytes.
func readMboxFrom(r io.Reader, step int) ([]*mboxMsg, [][]byte, error) {
	mr := newMboxReader(r)
	var ms []*mboxMsg
	var bodies [][]byte
	for {
		m, err := mr.next()
		if err == io.EOF {
			return ms, bodies, nil
		}
		if err != nil {
			return ms, bodies, err
		}
		var b []byte
		buf := make([]byte, step)
		for {
			n, err := m.Body.Read(buf)
			b = append(b, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				return ms, bodies, err
			}
		}
		ms = append(ms, m)
		bodies = append(bodies, b)
	}
}

// FuzzMboxRead reads arbitrary bytes as an mbox: the reader never takes
// more bytes out than went in, every message starts at a "From " line,
// reading in small pieces gives the same messages, and writing the
// messages back and reading them again gives them unchanged.
func FuzzMboxRead(f *testing.F) {
	for _, s := range []string{
		"",
		"From a Thu Jan  1 00:00:00 2026\nX: y\n\nbody\n\n",
		"\xef\xbb\xbfFrom - \nA\n\nFrom - \nB\n",
		"From x Mon, 2 Jan 2006 15:04:05 -0700\nStatus: RO\r\nX-Status: AF\r\n\r\n>From y\n>>From z\n\nFrom w\n",
		"From \nX-Mozilla-Status: 1003\n\n",
		"\n\r\nFrom x\nA",
		"not an mbox\n",
	} {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "mail", "sample.mbox")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ms, bodies, err := readMboxFrom(bytes.NewReader(in), 64<<10)
		total := 0
		last := int64(-1)
		for i, m := range ms {
			total += len(bodies[i])
			if m.Offset <= last || m.Offset+5 > int64(len(in)) || string(in[m.Offset:m.Offset+5]) != "From " {
				t.Fatalf("message %d at offset %d: not a \"From \" line after the last at %d", i+1, m.Offset, last)
			}
			last = m.Offset
			if len(m.From) > 1000 {
				t.Fatalf("message %d: From line of %d bytes kept", i+1, len(m.From))
			}
			head, rest, err := readHead(bytes.NewReader(bodies[i]))
			if err != nil || len(head) > headerLimit {
				t.Fatalf("readHead(message %d) = %d bytes, %v", i+1, len(head), err)
			}
			if whole, _ := io.ReadAll(rest); !bytes.Equal(whole, bodies[i]) {
				t.Fatalf("readHead(message %d) lost bytes", i+1)
			}
			for _, fl := range mboxFlags(head) {
				if !strings.HasPrefix(fl, `\`) && fl != archive.FlagForwarded {
					t.Fatalf("mboxFlags(message %d) = %q", i+1, fl)
				}
			}
		}
		if total > len(in) {
			t.Fatalf("read %d body bytes from %d bytes of mbox", total, len(in))
		}

		ms2, bodies2, err2 := readMboxFrom(iotest.OneByteReader(bytes.NewReader(in)), 3)
		if (err == nil) != (err2 == nil) || len(ms2) != len(ms) {
			t.Fatalf("one byte at a time: %d messages, %v; at once: %d, %v", len(ms2), err2, len(ms), err)
		}
		for i := range ms {
			if !bytes.Equal(bodies[i], bodies2[i]) || ms[i].Offset != ms2[i].Offset || ms[i].From != ms2[i].From {
				t.Fatalf("message %d differs when read one byte at a time: %q, want %q", i+1, bodies2[i], bodies[i])
			}
		}

		// What was read survives a write and a second read.
		var buf bytes.Buffer
		w := newMboxWriter(&buf)
		for i, m := range ms {
			if err := w.write(m.Date, bytes.NewReader(bodies[i])); err != nil {
				t.Fatal(err)
			}
		}
		w.flush()
		ms3, bodies3, err := readMboxFrom(&buf, 64<<10)
		if err != nil || len(ms3) != len(ms) {
			t.Fatalf("rewritten mbox: %d messages, %v; want %d", len(ms3), err, len(ms))
		}
		for i := range ms {
			if !bytes.Equal(bodies3[i], bodies[i]) {
				t.Fatalf("message %d = %q after a write and a read, want %q", i+1, bodies3[i], bodies[i])
			}
			if d := ms[i].Date; d.Year() >= 1 && d.Year() <= 9999 && !ms3[i].Date.Equal(d) {
				t.Fatalf("message %d date = %v after a write and a read, want %v", i+1, ms3[i].Date, d)
			}
		}
	})
}

// FuzzMaildirName parses Maildir file names with a dovecot-keywords file:
// the unique name is the name up to the first ":", flags come only from
// the info letters (no \Seen in new/), and a name written by the sink for
// those flags parses to the same flags. Names compare in a total order.
func FuzzMaildirName(f *testing.F) {
	f.Add("1700000000.M1P2Q3.host:2,FRSab", "0 $Forwarded\n1 Work\n", "1700000000.M10P2.host")
	f.Add("1.M5:2,", "", "1.M10")
	f.Add("x:1,S", "25 z\n-1 neg\n26 over\nx y\n", "x")
	f.Add("plain", "\n\n", "007")
	f.Add("a:2,S:2,T", "0  spaced\n", "0000000000000000000000000000000000001")
	f.Fuzz(func(t *testing.T, name, keywords, other string) {
		dir := t.TempDir()
		kwFile := filepath.Join(dir, "dovecot-keywords")
		if err := os.WriteFile(kwFile, []byte(keywords), 0o600); err != nil {
			t.Fatal(err)
		}
		kw, err := readKeywords(kwFile)
		if err != nil {
			return // a line longer than bufio.Scanner's limit
		}
		for l, k := range kw {
			if l < 'a' || l > 'z' || !validKeyword(k) {
				t.Fatalf("readKeywords(%q): %q → %q", keywords, l, k)
			}
		}
		for _, sub := range []string{"new", "cur"} {
			e := parseMaildirName(sub, name, kw)
			if !strings.HasPrefix(name, e.id) || e.name != name || e.sub != sub || (e.id != name && name[len(e.id)] != ':') {
				t.Fatalf("parseMaildirName(%q, %q) = %+v", sub, name, e)
			}
			for _, fl := range e.flags {
				if sub == "new" && fl == archive.FlagSeen {
					t.Fatalf("parseMaildirName(new, %q): \\Seen", name)
				}
				if !slices.Contains(mapValues(maildirFlags), fl) && !slices.Contains(mapValues(kw), fl) {
					t.Fatalf("parseMaildirName(%q, %q): flag %q from nowhere", sub, name, fl)
				}
			}
			if sub != "cur" {
				continue
			}
			// The sink's name for these flags reads back as them.
			s := &MaildirSink{folder: "f", dir: dir, log: (*Options)(nil).logger()}
			for l, k := range kw {
				for len(s.keywords) <= int(l-'a') {
					s.keywords = append(s.keywords, "")
				}
				s.keywords[l-'a'] = k
			}
			letters, err := s.letters(e.flags)
			if err != nil {
				t.Fatal(err)
			}
			kw2, err := readKeywords(kwFile)
			if err != nil {
				t.Fatal(err)
			}
			back := parseMaildirName("cur", "u:2,"+letters, kw2)
			if !sameSet(back.flags, e.flags) {
				t.Fatalf("flags %q → letters %q → %q", e.flags, letters, back.flags)
			}
		}
		// naturalCompare is a total order consistent with equality.
		c1, c2 := naturalCompare(name, other), naturalCompare(other, name)
		if c1 != -c2 || naturalLess(name, other) == naturalLess(other, name) && name != other {
			t.Fatalf("naturalCompare(%q, %q) = %d, reversed %d", name, other, c1, c2)
		}
		if naturalLess(name, name) {
			t.Fatalf("naturalLess(%q, itself)", name)
		}
	})
}

func mapValues(m map[byte]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// sameSet reports whether a and b hold the same flags, ignoring order,
// repetition and case (flags are case-insensitive: the sink stores a
// keyword "$forwarded" as the letter of $Forwarded).
func sameSet(a, b []string) bool {
	fold := func(l []string) []string {
		out := make([]string, len(l))
		for i, s := range l {
			out[i] = strings.ToLower(s)
		}
		return out
	}
	a, b = fold(a), fold(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
