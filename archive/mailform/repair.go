package mailform

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// The header fields of a repaired copy.
const (
	// RepairedField names what was changed, in words.
	RepairedField = "X-Planb-Repaired"
	// OriginalHeaderField carries the original header section, the empty
	// line that ended it included, in base64.
	OriginalHeaderField = "X-Planb-Original-Header"
	// OriginalBodyField is "attached" when the original is attached whole
	// (as planb-original.eml) rather than kept as the copy's body.
	OriginalBodyField = "X-Planb-Original-Body"
	// OriginalName is the file name of the attached original.
	OriginalName = "planb-original.eml"
)

// Original is a message to repair.
type Original struct {
	// R reads the message from its first byte, as stored.
	R io.Reader
	// RawSize is its size as stored; Size its size after CRLF conversion
	// (Info.Size).
	RawSize, Size int64
	// Date is its internal date, the Date of a copy whose original has
	// none (or one that cannot be parsed). The zero time means now.
	Date time.Time
	// Binary says it holds a binary part (Info.BinaryPart), whose bytes
	// a copy must not touch: it is wrapped.
	Binary bool
}

// Repair returns a copy of o that a strict server takes, given the
// problems Check found (and why, the server's refusal, when known: the
// note of a wrapped copy names it).
//
// A message whose problems are all in its header keeps its body; its
// header is mended: a Date added (from o.Date) or replaced, an
// unparseable From or Sender rewritten around the address found in it,
// invalid lines dropped, 8-bit text encoded (RFC 2047), long lines folded,
// and the original header section kept, in base64, in an
// X-Planb-Original-Header field. Any other message (a NUL byte or a line
// over 998 bytes in its body, a malformed MIME structure, a binary part,
// or no problem found at all) is wrapped: a
// new message with the mended main fields, a short note and the original,
// byte for byte, attached as planb-original.eml. Either way the copy
// starts with an X-Planb-Repaired field that says what changed, and
// Recover gives the original back.
//
// The copy is returned as a reader of exactly size bytes with CRLF line
// ends, and its X-Planb-Repaired text as note. It reads o.R as it is read,
// holding at most the header in memory.
func Repair(o Original, ps []Problem, why string) (r io.Reader, size int64, note string, err error) {
	br := bufio.NewReaderSize(o.R, 64<<10)
	head, err := readHeader(br)
	if err != nil {
		return nil, 0, "", fmt.Errorf("repair: %w", err)
	}
	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}
	wrap := len(ps) == 0 || o.Binary
	for _, p := range ps {
		if p.inBody() {
			wrap = true
		}
	}
	if hasProblem(ps, NoHeader) {
		// What looked like a header is the body's first lines.
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(head), br), 64<<10)
		head = nil
	}
	fs := fields(head)
	if wrap {
		return wrapCopy(o, head, br, fs, ps, why, date)
	}
	mended, changes := mend(fs, date, false)
	note = strings.Join(changes, "; ")
	var h bytes.Buffer
	writeField(&h, RepairedField, note)
	writeBase64Field(&h, OriginalHeaderField, head)
	h.Write(mended)
	h.WriteString("\r\n")
	bodySize := o.Size - normLen(head)
	return io.MultiReader(bytes.NewReader(h.Bytes()), crlfReader(br)), int64(h.Len()) + bodySize, note, nil
}

// crlfReader reads r with line ends made CRLF.
func crlfReader(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		w := NewCRLFWriter(pw)
		_, err := io.Copy(w, r)
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// mainFields are the fields a wrapped copy takes from the original.
var mainFields = map[string]bool{
	"date": true, "from": true, "sender": true, "reply-to": true, "to": true, "cc": true,
	"subject": true, "message-id": true, "in-reply-to": true, "references": true,
}

// wrapBoundary cannot occur in base64 or quoted-printable text.
const wrapBoundary = "=_planb-original_="

func wrapCopy(o Original, head []byte, body io.Reader, fs []field, ps []Problem, why string, date time.Time) (io.Reader, int64, string, error) {
	var keep []field
	for _, f := range fs {
		if f.valid && mainFields[strings.ToLower(f.name)] {
			keep = append(keep, f)
		}
	}
	mended, changes := mend(keep, date, true)
	var what []string
	for _, p := range ps {
		what = append(what, string(p))
	}
	if len(what) == 0 && why != "" {
		what = append(what, "refused by the server: "+asciiText(why))
	}
	note := "wrapped, original attached as " + OriginalName
	if len(what) > 0 {
		note += " (" + strings.Join(what, ", ") + ")"
	}
	if len(changes) > 0 {
		note += "; " + strings.Join(changes, "; ")
	}
	var h bytes.Buffer
	writeField(&h, RepairedField, note)
	writeField(&h, OriginalBodyField, "attached")
	h.Write(mended)
	h.WriteString("MIME-Version: 1.0\r\n")
	h.WriteString("Content-Type: multipart/mixed; boundary=\"" + wrapBoundary + "\"\r\n\r\n")
	h.WriteString("--" + wrapBoundary + "\r\n")
	h.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	text := "This message could not be delivered as it was stored"
	if len(what) > 0 {
		text += " (" + strings.Join(what, ", ") + ")"
	}
	text += ". planb delivered this copy instead: the original message, byte for byte, is attached as " +
		OriginalName + "; open it with your mail program.\r\n"
	qw := quotedprintable.NewWriter(&h)
	qw.Write([]byte(text))
	qw.Close()
	h.WriteString("\r\n--" + wrapBoundary + "\r\n")
	h.WriteString("Content-Type: application/octet-stream; name=\"" + OriginalName + "\"\r\n")
	h.WriteString("Content-Disposition: attachment; filename=\"" + OriginalName + "\"\r\n")
	h.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	tail := "--" + wrapBoundary + "--\r\n"
	orig := io.MultiReader(bytes.NewReader(head), body)
	size := int64(h.Len()) + base64Lines(o.RawSize) + int64(len(tail))
	return io.MultiReader(bytes.NewReader(h.Bytes()), base64Reader(orig), strings.NewReader(tail)), size, note, nil
}

// base64Lines is the size of n bytes in base64 lines of 76 characters,
// each ended by CRLF.
func base64Lines(n int64) int64 {
	chars := (n + 2) / 3 * 4
	lines := (chars + 75) / 76
	return chars + 2*lines
}

// base64Reader reads r in base64, in lines of 76 characters ended by CRLF.
func base64Reader(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		lw := &lineWriter{w: pw}
		enc := base64.NewEncoder(base64.StdEncoding, lw)
		_, err := io.Copy(enc, r)
		if err == nil {
			err = enc.Close()
		}
		if err == nil {
			err = lw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// lineWriter cuts what it writes into lines of 76 bytes ended by CRLF.
type lineWriter struct {
	w   io.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(76-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.col += k
		p = p[k:]
		if l.col == 76 {
			if _, err := l.w.Write([]byte("\r\n")); err != nil {
				return 0, err
			}
			l.col = 0
		}
	}
	return n, nil
}

func (l *lineWriter) Close() error {
	if l.col == 0 {
		return nil
	}
	l.col = 0
	_, err := l.w.Write([]byte("\r\n"))
	return err
}

// mend returns the fields fs mended into a header a strict server takes
// (CRLF line ends), and the changes in words. With wrapped, only what a
// wrapped copy needs is said.
func mend(fs []field, date time.Time, wrapped bool) ([]byte, []string) {
	var (
		out      bytes.Buffer
		changes  []string
		dropped  int
		encoded  []string
		folded   []string
		nulled   []string
		haveDate bool
		haveFrom bool
	)
	for _, f := range fs {
		if !f.valid {
			if len(bytes.TrimRight(f.raw, "\r\n")) > 0 { // not the empty line that ends the header
				dropped++
			}
			continue
		}
		name := f.name
		value := unfold(f.value)
		lname := strings.ToLower(name)
		changed := false
		if strings.IndexByte(value, 0) >= 0 {
			value = strings.ReplaceAll(value, "\x00", "")
			changed = true
			nulled = append(nulled, name)
		}
		switch lname {
		case "date":
			if haveDate {
				dropped++
				continue
			}
			haveDate = true
			if !isASCII(value) {
				value, changed = asciiOnly(value), true
				encoded = append(encoded, name)
			}
			if _, err := mail.ParseDate(value); err != nil {
				value, changed = date.Format(time.RFC1123Z), true
				changes = append(changes, "replaced unparseable Date")
			}
		case "from", "sender":
			if lname == "from" {
				haveFrom = true
			}
			if fixed, ok := fixAddresses(value); !ok {
				value, changed = fixed, true
				changes = append(changes, "rewrote unparseable "+name)
			} else if fixed != value {
				value, changed = fixed, true
				encoded = append(encoded, name)
			}
		case "to", "cc", "bcc", "reply-to":
			switch fixed, ok := fixAddresses(value); {
			case !listOK(value):
				if strings.Contains(fixed, "unknown@unknown.invalid") {
					fixed = "undisclosed-recipients:;"
				}
				value, changed = fixed, true
				changes = append(changes, "rewrote unparseable "+name)
			case ok && !isASCII(value):
				value, changed = fixed, true
				encoded = append(encoded, name)
			}
		}
		if !isASCII(value) {
			switch {
			case unstructured(lname):
				value = encodeText(value)
			case lname == "content-type" || lname == "content-disposition":
				value = encodeQuoted(value)
			default:
				value = asciiOnly(value)
			}
			changed = true
			encoded = append(encoded, name)
		}
		if !changed && !longLines(f.raw) {
			out.Write(CRLF(f.raw))
			if !bytes.HasSuffix(f.raw, []byte("\n")) {
				out.WriteString("\r\n")
			}
			continue
		}
		if !changed {
			folded = append(folded, name)
		}
		writeField(&out, name, value)
	}
	if !haveDate {
		writeField(&out, "Date", date.Format(time.RFC1123Z))
		changes = append([]string{"added Date"}, changes...)
	}
	if !haveFrom && !wrapped {
		writeField(&out, "From", unknownSender)
		changes = append(changes, "added From")
	}
	if wrapped && !haveFrom {
		writeField(&out, "From", unknownSender)
	}
	if dropped > 0 {
		changes = append(changes, fmt.Sprintf("dropped %d invalid header line%s", dropped, plural(dropped)))
	}
	if len(encoded) > 0 {
		changes = append(changes, "encoded 8-bit text ("+strings.Join(dedupe(encoded), ", ")+")")
	}
	if len(folded) > 0 {
		changes = append(changes, "folded long lines ("+strings.Join(dedupe(folded), ", ")+")")
	}
	if len(nulled) > 0 {
		changes = append(changes, "removed NUL bytes ("+strings.Join(dedupe(nulled), ", ")+")")
	}
	return out.Bytes(), changes
}

// unknownSender is the From of a copy whose original has none.
const unknownSender = "unknown <unknown@unknown.invalid>"

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func dedupe(l []string) []string {
	var out []string
	for _, s := range l {
		if !containsFold(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// toUTF8 returns s as UTF-8: itself when valid, else read as
// Windows-1252, the charset of most 8-bit headers that are not UTF-8.
func toUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out, err := charmap.Windows1252.NewDecoder().String(s)
	if err != nil {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return out
}

// unstructured reports whether a field of this (lower case) name holds
// free text, where RFC 2047 encoded words may stand for any word.
func unstructured(name string) bool {
	switch name {
	case "subject", "comments", "content-description", "keywords", "thread-topic":
		return true
	}
	return strings.HasPrefix(name, "x-") || !knownStructured[name]
}

var knownStructured = map[string]bool{
	"date": true, "message-id": true, "in-reply-to": true, "references": true,
	"received": true, "return-path": true, "mime-version": true,
	"content-transfer-encoding": true, "content-id": true, "resent-date": true,
	"resent-message-id": true, "dkim-signature": true, "authentication-results": true,
	"arc-seal": true, "arc-message-signature": true, "arc-authentication-results": true,
	"list-id": true, "list-unsubscribe": true, "list-post": true, "list-help": true,
	"list-subscribe": true, "list-archive": true,
}

// asciiOnly drops the bytes of s over 0x7f.
func asciiOnly(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] < 0x80 {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// encodeQuoted returns a parameter list with each quoted string that is
// not ASCII made one RFC 2047 encoded word (as mail programs read 8-bit
// file names), and any other 8-bit byte dropped.
func encodeQuoted(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			break
		}
		b.WriteString(asciiOnly(s[:i]))
		q := s[i+1 : i+1+j]
		if !isASCII(q) {
			q = mime.BEncoding.Encode("utf-8", toUTF8(q))
		}
		b.WriteString(`"` + q + `"`)
		s = s[i+2+j:]
	}
	b.WriteString(asciiOnly(s))
	return b.String()
}

// encodeText returns s as RFC 2047 encoded words where it is not ASCII.
func encodeText(s string) string {
	words := strings.Fields(toUTF8(s))
	for i, w := range words {
		if !isASCII(w) {
			words[i] = mime.BEncoding.Encode("utf-8", w)
		}
	}
	return strings.Join(words, " ")
}

var addrRE = regexp.MustCompile(`[^\s<>"(),;:@\[\]\\]+@[^\s<>"(),;:@\[\]\\]+`)

// fixAddresses returns an address list as a strict parser reads it: the
// list itself, re-encoded where it is not ASCII, when it parses (ok);
// else the addresses found in it, or an unknown sender, with the text
// around them as the display name.
func fixAddresses(v string) (string, bool) {
	u := toUTF8(v)
	// An address (not a name) with 8-bit text parses, but no encoding
	// makes it ASCII: rebuild it around what looks like an address.
	if l, err := mail.ParseAddressList(u); err == nil && len(l) > 0 && asciiAddresses(l) {
		if isASCII(v) {
			return v, true
		}
		var parts []string
		for _, a := range l {
			parts = append(parts, a.String())
		}
		return strings.Join(parts, ", "), true
	}
	found := addrRE.FindAllString(u, -1)
	name := collapse(strings.NewReplacer("<", " ", ">", " ", "\"", " ").Replace(addrRE.ReplaceAllString(u, " ")))
	if len(found) == 0 {
		a := mail.Address{Name: name, Address: "unknown@unknown.invalid"}
		return a.String(), false
	}
	var parts []string
	for i, f := range found {
		a := mail.Address{Address: strings.Trim(asciiOnly(f), ".")}
		if i == 0 {
			a.Name = name
		}
		if _, err := mail.ParseAddress(a.String()); err != nil {
			a.Address = "unknown@unknown.invalid"
			a.Name = collapse(u)
		}
		parts = append(parts, a.String())
	}
	return strings.Join(parts, ", "), false
}

// asciiAddresses reports whether every address of l (not its name) is
// ASCII.
func asciiAddresses(l []*mail.Address) bool {
	for _, a := range l {
		if !isASCII(a.Address) {
			return false
		}
	}
	return true
}

// asciiText returns s with non-printable and 8-bit bytes as '?', for a
// note.
func asciiText(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// longLines reports whether b has a line over 998 bytes.
func longLines(b []byte) bool {
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if len(bytes.TrimSuffix(l, []byte{'\r'})) > maxLine {
			return true
		}
	}
	return false
}

// writeField writes "name: value" folded at spaces into lines of at most
// 78 bytes where it can, and never over 998 (a longer word is cut, which
// it reports).
func writeField(w *bytes.Buffer, name, value string) (cut bool) {
	line := name + ":"
	for _, word := range strings.Fields(value) {
		for len(word) > 900 {
			cut = true
			w.WriteString(line + "\r\n")
			line = " " + word[:900]
			word = word[900:]
		}
		if len(line)+1+len(word) > 78 && strings.TrimSpace(line) != name+":" {
			w.WriteString(line + "\r\n")
			line = " " + word
			continue
		}
		line += " " + word
	}
	w.WriteString(line + "\r\n")
	return cut
}

// writeBase64Field writes b in base64 as a field folded every 76
// characters.
func writeBase64Field(w *bytes.Buffer, name string, b []byte) {
	enc := base64.StdEncoding.EncodeToString(b)
	w.WriteString(name + ":")
	if enc == "" {
		w.WriteString(" \r\n")
		return
	}
	for len(enc) > 0 {
		k := min(76, len(enc))
		w.WriteString(" " + enc[:k] + "\r\n")
		enc = enc[k:]
	}
}

// Recover returns the original of a repaired copy, as Repair received it
// (but for its body's line ends, CRLF in a copy that kept its body).
func Recover(copy []byte) ([]byte, error) {
	br := bufio.NewReader(bytes.NewReader(copy))
	head, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	var h textHeader
	for _, f := range fields(head) {
		if f.valid {
			h.add(f.name, f.value)
		}
	}
	if h.get(RepairedField) == "" {
		return nil, ErrNotRepaired
	}
	body := copy[len(head):]
	if strings.EqualFold(h.get(OriginalBodyField), "attached") {
		return attached(&h, body)
	}
	enc := strings.Join(strings.Fields(h.get(OriginalHeaderField)), "")
	orig, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("recover: %s: %w", OriginalHeaderField, err)
	}
	return append(orig, body...), nil
}

// attached returns the attachment planb-original.eml of a wrapped copy.
func attached(h *textHeader, body []byte) ([]byte, error) {
	_, params, err := mime.ParseMediaType(h.get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil, fmt.Errorf("recover: wrapped copy without a multipart body")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			return nil, fmt.Errorf("recover: no %s in the wrapped copy", OriginalName)
		}
		if p.FileName() != OriginalName {
			continue
		}
		b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			return nil, fmt.Errorf("recover: %s: %w", OriginalName, err)
		}
		return b, nil
	}
}
