package mailfile

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"codeberg.org/planb/planb/archive"
)

// mboxReader splits an mboxrd stream into messages without holding a whole
// message in memory: it looks ahead at most a few bytes past a line start.
//
// A message starts with a "From " line at the start of the stream (after an
// optional UTF-8 byte order mark and blank lines) or after a "\n". Its
// content is everything up to the "\n" before the next "From " line, minus
// one trailing "\n" (the separator an mbox writer adds), with one ">" taken
// off every line that matches `^>+From `.
type mboxReader struct {
	r       *bufio.Reader
	pos     int64 // bytes consumed from r
	started bool
	n       int // ordinal of the current message
	body    *mboxBody
}

// mboxMsg is one message of an mbox. Body is valid until the next call of
// next.
type mboxMsg struct {
	Ordinal int       // 1 for the first message
	Offset  int64     // offset of its "From " line
	From    string    // the "From " line without "From " and line end, cut to 1000 bytes
	Date    time.Time // parsed from the "From " line, or zero
	Body    io.Reader
}

func newMboxReader(r io.Reader) *mboxReader {
	return &mboxReader{r: bufio.NewReaderSize(r, 64<<10)}
}

func (mr *mboxReader) discard(n int) {
	d, _ := mr.r.Discard(n)
	mr.pos += int64(d)
}

// errNotMbox is returned for a stream that does not start with a "From "
// line.
var errNotMbox = errors.New(`not an mbox file: no "From " line at the start`)

// next returns the next message, or io.EOF after the last one.
func (mr *mboxReader) next() (*mboxMsg, error) {
	if mr.body != nil {
		if _, err := io.Copy(io.Discard, mr.body); err != nil {
			return nil, err
		}
		mr.body = nil
	}
	if !mr.started {
		mr.started = true
		if pk, _ := mr.r.Peek(3); string(pk) == "\xef\xbb\xbf" {
			mr.discard(3)
		}
		for {
			pk, _ := mr.r.Peek(2)
			if len(pk) > 0 && pk[0] == '\n' {
				mr.discard(1)
			} else if string(pk) == "\r\n" {
				mr.discard(2)
			} else {
				break
			}
		}
	}
	pk, err := mr.r.Peek(5)
	if len(pk) == 0 && err == io.EOF {
		return nil, io.EOF
	}
	if string(pk) != "From " {
		if err != nil && err != io.EOF {
			return nil, err
		}
		return nil, errNotMbox
	}
	m := &mboxMsg{Offset: mr.pos}
	mr.discard(5)
	var line []byte
	for {
		chunk, err := mr.r.ReadSlice('\n')
		mr.pos += int64(len(chunk))
		if room := 1000 - len(line); room > 0 {
			line = append(line, chunk[:min(room, len(chunk))]...)
		}
		if err == nil || err == io.EOF {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
	m.From = strings.TrimRight(string(line), "\r\n")
	m.Date = parseFromDate(m.From)
	mr.n++
	m.Ordinal = mr.n
	mr.body = &mboxBody{mr: mr, lineStart: true}
	m.Body = mr.body
	return m, nil
}

// mboxBody reads one message's content; see mboxReader.
type mboxBody struct {
	mr        *mboxReader
	lineStart bool // at the start of a line (after pendingNL, if set)
	pendingNL bool // a "\n" held back: it is the separator if a "From " line follows
	inGTRun   bool // inside the run of ">" that starts a line
	gtHeld    bool // one ">" of that run held back: dropped if "From " follows
	done      bool
	err       error
}

func (b *mboxBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	r := b.mr.r
	n := 0
	for n < len(p) && !b.done {
		switch {
		case b.lineStart:
			pk, err := r.Peek(5)
			if len(pk) == 0 {
				if err != io.EOF {
					b.err = err
					return n, err
				}
				b.done = true // the held "\n" ends the last message
				continue
			}
			if string(pk) == "From " {
				b.done = true // the held "\n" is the separator
				continue
			}
			if err != nil && err != io.EOF {
				b.err = err
				return n, err
			}
			if b.pendingNL {
				p[n] = '\n'
				n++
				b.pendingNL = false
				continue
			}
			b.lineStart = false
			if pk[0] == '>' {
				b.mr.discard(1)
				b.inGTRun, b.gtHeld = true, true
			}
		case b.inGTRun:
			pk, err := r.Peek(1)
			if len(pk) == 1 && pk[0] == '>' {
				b.mr.discard(1)
				p[n] = '>'
				n++
				continue
			}
			if err != nil && err != io.EOF {
				b.err = err
				return n, err
			}
			if pk, _ := r.Peek(5); string(pk) == "From " {
				b.gtHeld = false // mboxrd: ">From " stands for "From "
			}
			b.inGTRun = false
			if b.gtHeld {
				p[n] = '>'
				n++
				b.gtHeld = false
			}
		default:
			if r.Buffered() == 0 {
				if _, err := r.Peek(1); err != nil {
					if err == io.EOF {
						b.done = true
						continue
					}
					b.err = err
					return n, err
				}
			}
			buf, _ := r.Peek(r.Buffered())
			i := bytes.IndexByte(buf, '\n')
			if i < 0 {
				c := copy(p[n:], buf)
				b.mr.discard(c)
				n += c
				continue
			}
			c := copy(p[n:], buf[:i])
			b.mr.discard(c)
			n += c
			if c == i {
				b.mr.discard(1)
				b.pendingNL, b.lineStart = true, true
			}
		}
	}
	if n == 0 && b.done {
		return 0, io.EOF
	}
	return n, nil
}

// fromDateLayouts are the date forms seen in "From " lines, after runs of
// spaces were folded into one.
var fromDateLayouts = []string{
	"Mon Jan 2 15:04:05 2006",
	"Mon Jan 2 15:04:05 -0700 2006",
	"Mon Jan 2 15:04:05 MST 2006",
	"Mon Jan 2 15:04:05 2006 -0700",
	"Mon Jan 2 15:04:05 2006 MST",
	"Mon Jan 2 15:04:05 MST -0700 2006",
	"Mon Jan 2 15:04 2006",
	"Mon Jan 2 15:04 MST 2006",
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"2 Jan 2006 15:04:05 -0700",
	"Jan 2 15:04:05 2006",
}

// parseFromDate finds the date in a "From " line (without "From "), which
// is usually "sender asctime-date [more]"; it returns the zero time when
// there is none. Dates without a zone are UTC.
func parseFromDate(line string) time.Time {
	fields := strings.Fields(line)
	if len(fields) > 12 {
		fields = fields[:12]
	}
	for _, start := range []int{1, 0} {
		for end := len(fields); end >= start+3; end-- {
			s := strings.Join(fields[start:end], " ")
			for _, layout := range fromDateLayouts {
				if t, err := time.Parse(layout, s); err == nil {
					return t
				}
			}
		}
	}
	return time.Time{}
}

// headerLimit bounds how much of a message the mbox source buffers to find
// its Status headers.
const headerLimit = 64 << 10

// readHead reads a message's header section (or its first headerLimit
// bytes) from body and returns them with a reader of the whole message.
func readHead(body io.Reader) ([]byte, io.Reader, error) {
	buf := make([]byte, 0, 4096)
	for len(buf) < headerLimit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):min(cap(buf), headerLimit)])
		buf = buf[:len(buf)+n]
		if headerEnd(buf) >= 0 {
			break
		}
		if err == io.EOF {
			return buf, bytes.NewReader(buf), nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return buf, io.MultiReader(bytes.NewReader(buf), body), nil
}

// headerEnd returns the offset of the blank line that ends the header
// section in buf, or -1.
func headerEnd(buf []byte) int {
	if bytes.HasPrefix(buf, []byte("\n")) || bytes.HasPrefix(buf, []byte("\r\n")) {
		return 0
	}
	i := bytes.Index(buf, []byte("\n\n"))
	j := bytes.Index(buf, []byte("\n\r\n"))
	switch {
	case i < 0:
		return j
	case j < 0 || i < j:
		return i
	}
	return j
}

// mboxFlags reads the flags that mail programs keep in Status, X-Status and
// X-Mozilla-Status headers.
func mboxFlags(head []byte) []string {
	if e := headerEnd(head); e >= 0 {
		head = head[:e]
	}
	set := make(map[string]bool)
	for line := range bytes.Lines(head) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v := strings.TrimSpace(string(value))
		switch strings.ToLower(string(name)) {
		case "status":
			if strings.Contains(v, "R") {
				set[archive.FlagSeen] = true
			}
		case "x-status":
			for c, f := range map[string]string{"A": archive.FlagAnswered, "F": archive.FlagFlagged, "T": archive.FlagDraft, "D": archive.FlagDeleted} {
				if strings.Contains(v, c) {
					set[f] = true
				}
			}
		case "x-mozilla-status":
			n, err := strconv.ParseUint(v, 16, 32)
			if err != nil {
				continue
			}
			for bit, f := range map[uint64]string{0x1: archive.FlagSeen, 0x2: archive.FlagAnswered, 0x4: archive.FlagFlagged, 0x8: archive.FlagDeleted, 0x1000: archive.FlagForwarded} {
				if n&bit != 0 {
					set[f] = true
				}
			}
		}
	}
	var out []string
	for _, f := range []string{archive.FlagSeen, archive.FlagAnswered, archive.FlagFlagged, archive.FlagDeleted, archive.FlagDraft, archive.FlagForwarded} {
		if set[f] {
			out = append(out, f)
		}
	}
	return out
}

// mboxWriter writes messages in mboxrd form.
type mboxWriter struct {
	w  *bufio.Writer
	br *bufio.Reader
}

func newMboxWriter(w io.Writer) *mboxWriter {
	return &mboxWriter{w: bufio.NewWriterSize(w, 64<<10), br: bufio.NewReaderSize(nil, 64<<10)}
}

// fromLineDate is the asctime form of the "From " line's date.
const fromLineDate = "Mon Jan _2 15:04:05 2006"

// write writes one message: a "From " line with date in UTC, the body with
// every line matching `^>*From ` given one more ">", and one "\n".
func (mw *mboxWriter) write(date time.Time, body io.Reader) error {
	w := mw.w
	w.WriteString("From MAILER-DAEMON ")
	w.WriteString(date.UTC().Format(fromLineDate))
	w.WriteByte('\n')
	br := mw.br
	br.Reset(body)
	defer br.Reset(nil)
	lineStart := true
	for {
		if lineStart {
			gt := 0
			for {
				c, err := br.ReadByte()
				if err == io.EOF {
					writeGT(w, gt)
					return w.WriteByte('\n')
				}
				if err != nil {
					return err
				}
				if c != '>' {
					br.UnreadByte()
					break
				}
				gt++
			}
			if pk, _ := br.Peek(5); string(pk) == "From " {
				w.WriteByte('>')
			}
			writeGT(w, gt)
			lineStart = false
		}
		line, err := br.ReadSlice('\n')
		if _, werr := w.Write(line); werr != nil {
			return werr
		}
		switch err {
		case nil:
			lineStart = true
		case bufio.ErrBufferFull:
		case io.EOF:
			return w.WriteByte('\n')
		default:
			return err
		}
	}
}

func writeGT(w *bufio.Writer, n int) {
	for ; n > 0; n-- {
		w.WriteByte('>')
	}
}

func (mw *mboxWriter) flush() error { return mw.w.Flush() }
