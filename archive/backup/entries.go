package backup

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"time"

	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// entryList is a folder's entries in order, each encoded in an arena of
// bytes. A folder can hold a million messages; as repo.Entry values,
// strings and slices, they took some 300 bytes each and much of the
// garbage collector's time, encoded they take about 120 bytes that the
// collector never scans. Records are immutable: changing an entry appends
// a new record. Deleted entries keep their slot, so that order is stable.
type entryList struct {
	chunks [][]byte // arena; a record never spans two chunks
	at     []uint64 // entry i: chunk<<32 | offset, or gone
	hash   func(string) uint64
	// table finds live entries by SourceID: open addressing on its hash,
	// each slot 0 (empty), tomb, or an entry's index + 1; about 10 bytes
	// an entry where a map took 70.
	table []int32
	used  int // slots not empty
	// changes counts the entries added, replaced or deleted: a folder
	// whose count did not move since its parent's entries were read
	// lists them as the parent's pages do.
	changes int
}

const tomb = -1

const (
	arenaChunk = 1 << 20
	gone       = ^uint64(0)
)

func newEntryList() *entryList {
	seed := maphash.MakeSeed()
	return &entryList{hash: func(s string) uint64 { return maphash.String(seed, s) }}
}

// Len returns the number of slots, deleted ones included.
func (l *entryList) Len() int { return len(l.at) }

func (l *entryList) record(i int) []byte {
	a := l.at[i]
	if a == gone {
		return nil
	}
	return l.chunks[a>>32][a&(1<<32-1):]
}

// put appends a record and returns its address.
func (l *entryList) put(e *repo.Entry) uint64 {
	need := recordSize(e)
	n := len(l.chunks)
	if n == 0 || len(l.chunks[n-1])+need > cap(l.chunks[n-1]) {
		l.chunks = append(l.chunks, make([]byte, 0, max(arenaChunk, need)))
		n++
	}
	c := l.chunks[n-1]
	off := len(c)
	l.chunks[n-1] = appendRecord(c, e)
	return uint64(n-1)<<32 | uint64(off)
}

// slot returns the slot of sourceID's live entry, or -1 and the first
// free slot on its path.
func (l *entryList) slot(sourceID string) (at, free int) {
	free = -1
	if len(l.table) == 0 {
		return -1, -1
	}
	mask := len(l.table) - 1
	for i := int(l.hash(sourceID)) & mask; ; i = (i + 1) & mask {
		switch v := l.table[i]; {
		case v == 0:
			if free < 0 {
				free = i
			}
			return -1, free
		case v == tomb:
			if free < 0 {
				free = i
			}
		case string(recordSID(l.record(int(v-1)))) == sourceID:
			return i, free
		}
	}
}

// find returns the index of the live entry of sourceID.
func (l *entryList) find(sourceID string) (int, bool) {
	i, _ := l.slot(sourceID)
	if i < 0 {
		return 0, false
	}
	return int(l.table[i] - 1), true
}

// add adds e, or replaces the live entry of its SourceID, and returns its
// index.
func (l *entryList) add(e *repo.Entry) int {
	l.changes++
	at, free := l.slot(e.SourceID)
	if at >= 0 {
		i := int(l.table[at] - 1)
		l.at[i] = l.put(e)
		return i
	}
	i := len(l.at)
	l.at = append(l.at, l.put(e))
	if free < 0 || l.table[free] == 0 && (l.used+1)*4 > len(l.table)*3 {
		l.grow() // which takes in the new entry
		return i
	}
	if l.table[free] == 0 {
		l.used++
	}
	l.table[free] = int32(i + 1)
	return i
}

// grow makes the table at least twice the live entries and fills it
// again, without the tombs.
func (l *entryList) grow() {
	live := 0
	for _, a := range l.at {
		if a != gone {
			live++
		}
	}
	n := 16
	for n < 2*live {
		n *= 2
	}
	l.table = make([]int32, n)
	l.used = 0
	mask := n - 1
	for i := range l.at {
		rec := l.record(i)
		if rec == nil {
			continue
		}
		j := int(l.hash(string(recordSID(rec)))) & mask
		for l.table[j] != 0 {
			j = (j + 1) & mask
		}
		l.table[j] = int32(i + 1)
		l.used++
	}
}

// set replaces entry i, which has the same SourceID.
func (l *entryList) set(i int, e *repo.Entry) {
	l.changes++
	l.at[i] = l.put(e)
}

// remove deletes entry i.
func (l *entryList) remove(i int) {
	l.changes++
	if at, _ := l.slot(string(recordSID(l.record(i)))); at >= 0 {
		l.table[at] = tomb
	}
	l.at[i] = gone
}

// get decodes entry i; false if it was deleted.
func (l *entryList) get(i int) (repo.Entry, bool) {
	rec := l.record(i)
	if rec == nil {
		return repo.Entry{}, false
	}
	return decodeRecord(rec), true
}

// fingerprintIs reports whether entry i has fingerprint fp.
func (l *entryList) fingerprintIs(i int, fp string) bool {
	rec := l.record(i)
	if rec == nil {
		return false
	}
	_, n := uvarintBytes(rec)
	fpb, _ := uvarintBytes(rec[n:])
	return string(fpb) == fp
}

// flagsAre reports whether entry i has the flags flags would be once
// normalized (normFlags), without decoding the entry: an unchanged message
// of a million costs no garbage.
func (l *entryList) flagsAre(i int, flags []string) bool {
	rec := l.record(i)
	if rec == nil {
		return false
	}
	for k := 1; k < len(flags); k++ {
		if flags[k-1] >= flags[k] { // not sorted and unique yet
			flags = normFlags(flags)
			break
		}
	}
	_, n := uvarintBytes(rec) // SourceID
	rec = rec[n:]
	_, n = uvarintBytes(rec) // Fingerprint
	rec = rec[n+32:]
	for range 4 { // size, wire, seconds, nanoseconds: varints of some length
		_, k := binary.Uvarint(rec)
		rec = rec[k:]
	}
	zone := rec[0]
	rec = rec[1:]
	if zone == 1 {
		_, k := binary.Varint(rec)
		rec = rec[k:]
	}
	c, k := binary.Uvarint(rec)
	if c != uint64(len(flags)) {
		return false
	}
	rec = rec[k:]
	for _, f := range flags {
		s, n := uvarintBytes(rec)
		if string(s) != f {
			return false
		}
		rec = rec[n:]
	}
	return true
}

// frozen returns a copy of the list's order and records as they are now,
// which later changes to l do not affect (records are immutable, and a
// chunk is only appended to beyond the length copied).
func (l *entryList) frozen() *entryList {
	return &entryList{chunks: append([][]byte(nil), l.chunks...), at: append([]uint64(nil), l.at...)}
}

// each calls fn with every live entry, in order.
func (l *entryList) each(fn func(e *repo.Entry) error) error {
	for i := range l.at {
		e, ok := l.get(i)
		if !ok {
			continue
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}

// A record is
//
//	uvarint(len) SourceID, uvarint(len) Fingerprint, ID[32], uvarint(Size),
//	uvarint(Wire), varint(Date's Unix seconds), uvarint(nanoseconds), zone,
//	uvarint(count) {uvarint(len) flag}, uvarint(count) {uvarint(len) label},
//	uvarint(count) {chunk ID[32]}
//
// with zone 0 for UTC, else 1 and varint(offset in seconds): pages print
// dates as RFC 3339, which keeps the instant and the offset only.
func recordSize(e *repo.Entry) int {
	n := 3*binary.MaxVarintLen64 + len(e.SourceID) + len(e.Fingerprint) + 32 + 6*binary.MaxVarintLen64 + 1
	for _, s := range e.Flags {
		n += binary.MaxVarintLen64 + len(s)
	}
	for _, s := range e.Labels {
		n += binary.MaxVarintLen64 + len(s)
	}
	return n + 2*binary.MaxVarintLen64 + 32*len(e.Chunks)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendRecord(b []byte, e *repo.Entry) []byte {
	b = appendString(b, e.SourceID)
	b = appendString(b, e.Fingerprint)
	b = append(b, e.ID[:]...)
	b = binary.AppendUvarint(b, uint64(e.Size))
	b = binary.AppendUvarint(b, uint64(e.Wire))
	b = binary.AppendVarint(b, e.Date.Unix())
	b = binary.AppendUvarint(b, uint64(e.Date.Nanosecond()))
	if e.Date.Location() == time.UTC {
		b = append(b, 0)
	} else {
		_, off := e.Date.Zone()
		b = binary.AppendVarint(append(b, 1), int64(off))
	}
	for _, list := range [][]string{e.Flags, e.Labels} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			b = appendString(b, s)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(e.Chunks)))
	for _, c := range e.Chunks {
		b = append(b, c[:]...)
	}
	return b
}

// uvarintBytes reads a length-prefixed byte string; n is how many bytes
// it took in all.
func uvarintBytes(b []byte) (s []byte, n int) {
	l, k := binary.Uvarint(b)
	return b[k : k+int(l)], k + int(l)
}

func recordSID(rec []byte) []byte {
	s, _ := uvarintBytes(rec)
	return s
}

// errRecord would mean a bug: records are written by appendRecord only.
var errRecord = errors.New("backup: damaged entry record")

func decodeRecord(b []byte) repo.Entry {
	var e repo.Entry
	s, n := uvarintBytes(b)
	e.SourceID = string(s)
	b = b[n:]
	s, n = uvarintBytes(b)
	e.Fingerprint = string(s)
	b = b[n:]
	copy(e.ID[:], b)
	b = b[32:]
	size, k := binary.Uvarint(b)
	e.Size = int64(size)
	b = b[k:]
	wire, k := binary.Uvarint(b)
	e.Wire = int64(wire)
	b = b[k:]
	sec, k := binary.Varint(b)
	b = b[k:]
	nsec, k := binary.Uvarint(b)
	b = b[k:]
	zone := b[0]
	b = b[1:]
	e.Date = time.Unix(sec, int64(nsec)).UTC()
	if zone == 1 {
		off, k := binary.Varint(b)
		b = b[k:]
		e.Date = e.Date.In(time.FixedZone("", int(off)))
	} else if zone != 0 {
		panic(errRecord)
	}
	lists := [2][]string{}
	for j := range lists {
		c, k := binary.Uvarint(b)
		b = b[k:]
		for range c {
			s, n := uvarintBytes(b)
			lists[j] = append(lists[j], string(s))
			b = b[n:]
		}
	}
	e.Flags, e.Labels = lists[0], lists[1]
	c, k := binary.Uvarint(b)
	b = b[k:]
	if c > 0 {
		e.Chunks = make([]dedup.ID, c)
		for j := range e.Chunks {
			copy(e.Chunks[j][:], b)
			b = b[32:]
		}
	}
	return e
}
