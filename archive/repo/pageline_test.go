package repo

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"codeberg.org/planb/planb/dedup"
)

// sameEntry reports whether a and b are equal as json.Unmarshal makes
// them: the same fields, and dates at the same instant and offset.
func sameEntry(a, b Entry) bool {
	_, oa := a.Date.Zone()
	_, ob := b.Date.Zone()
	if !a.Date.Equal(b.Date) || oa != ob || (a.Date.Location() == time.UTC) != (b.Date.Location() == time.UTC) {
		return false
	}
	a.Date, b.Date = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// TestDecodeLine: every line json.Marshal writes for an Entry, with
// strings of any bytes, dates in any zone, empty and missing lists,
// decodes as json.Unmarshal decodes it; the common lines take the fast
// path; lines written otherwise (spaces, other orders, other numbers,
// damage) are either decoded the same or left to encoding/json.
func TestDecodeLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	pieces := []string{"a", "Z", "0", `"`, `\`, "/", "<", ">", "&", "é", "ラ", "\x00", "\n", "\t", "\x7f", "\xff", "\xe2\x80\xa8", " ", "$Label1", `\Seen`}
	str := func() string {
		var b bytes.Buffer
		for range rng.IntN(6) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	list := func() []string {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return []string{}
		}
		out := make([]string, 1+rng.IntN(3))
		for i := range out {
			out[i] = str()
		}
		return out
	}
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("X", -(3*3600 + 30*60)), time.Local}
	fast, lines := 0, 0
	check := func(line []byte) {
		t.Helper()
		lines++
		var want Entry
		werr := json.Unmarshal(line, &want)
		var got Entry
		if !decodeLine(line, &got) {
			return
		}
		fast++
		if werr != nil {
			t.Fatalf("decodeLine accepted %s, which json.Unmarshal refuses: %v", line, werr)
		}
		if !sameEntry(got, want) {
			t.Fatalf("decodeLine(%s) = %+v, want %+v", line, got, want)
		}
	}
	plain := 0
	for i := range 20000 {
		e := Entry{ID: dedup.Hash([]byte{byte(i), byte(i >> 8)}), SourceID: str(), Flags: list(), Size: rng.Int64N(1<<40) - 1<<20,
			Date: time.Unix(rng.Int64N(1<<34)-1<<33, rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))]), Fingerprint: str(), Labels: list()}
		if i%3 == 0 {
			e.Chunks = []dedup.ID{dedup.Hash([]byte("x")), e.ID}
		}
		if i%4 != 0 {
			e.Wire = e.Size + rng.Int64N(1<<20)
		}
		if i%5 == 0 { // a typical line of a Maildir backup
			e.SourceID, e.Flags, e.Fingerprint, e.Labels = "1700000000.M1P2.host", []string{`\Seen`}, "2048.1700000000123456789", nil
			plain++
		}
		line, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		before := fast
		check(line)
		if i%5 == 0 && fast == before {
			t.Fatalf("a plain line took the slow path: %s", line)
		}
		// Changed: a space, a byte flipped, a cut, a key renamed.
		for _, mut := range [][]byte{
			bytes.Replace(line, []byte(`,"s":`), []byte(`, "s":`), 1),
			bytes.Replace(line, []byte(`"sid"`), []byte(`"SID"`), 1),
			bytes.Replace(line, []byte(`"s":`), []byte(`"s":0`), 1),
			bytes.Replace(line, []byte(`"s":`), []byte(`"s":-`), 1),
			bytes.Replace(line, []byte(`"w":`), []byte(`"w":"`), 1),
			bytes.Replace(line, []byte(`"w":`), []byte(`"w":1e`), 1),
			append(bytes.Clone(line[:len(line)-1]), []byte(`,"s":1}`)...),
			append(bytes.Clone(line[:len(line)-1]), []byte(`.5}`)...),
			line[:rng.IntN(len(line))],
			func() []byte { b := bytes.Clone(line); b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255)); return b }(),
		} {
			check(mut)
		}
	}
	if fast < plain {
		t.Fatalf("%d of %d lines on the fast path, want at least the %d plain ones", fast, lines, plain)
	}
	t.Logf("%d of %d lines decoded on the fast path", fast, lines)
}
