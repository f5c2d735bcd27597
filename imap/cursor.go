package imap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// cursor is a folder's position: what EXAMINE said last time.
type cursor struct {
	UIDValidity uint32
	UIDNext     uint32
	ModSeq      uint64 // HIGHESTMODSEQ; 0 without CONDSTORE
	Messages    uint32
	// Labels says the folder was read in label mode (gmail.go): its
	// messages carry their labels.
	Labels bool
}

// The first byte of an encoded cursor: its version, 1, or 2 for a
// folder read in label mode.
const (
	cursorVersion       = 1
	cursorVersionLabels = 2
)

// encode writes the cursor as a version byte followed by four uvarints.
func (c cursor) encode() []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64)
	v := byte(cursorVersion)
	if c.Labels {
		v = cursorVersionLabels
	}
	b = append(b, v)
	b = binary.AppendUvarint(b, uint64(c.UIDValidity))
	b = binary.AppendUvarint(b, uint64(c.UIDNext))
	b = binary.AppendUvarint(b, c.ModSeq)
	b = binary.AppendUvarint(b, uint64(c.Messages))
	return b
}

var errCursor = errors.New("invalid imap cursor")

// parseCursor reads an encoded cursor. It refuses unknown versions,
// truncated or trailing bytes, non-minimal varints and out-of-range values,
// so that encode(parseCursor(b)) == b whenever it succeeds.
func parseCursor(b []byte) (cursor, error) {
	var c cursor
	if len(b) == 0 || b[0] != cursorVersion && b[0] != cursorVersionLabels {
		return c, fmt.Errorf("%w: unknown version", errCursor)
	}
	rest := b[1:]
	next := func(max uint64) (uint64, error) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, fmt.Errorf("%w: truncated", errCursor)
		}
		if n != len(binary.AppendUvarint(nil, v)) {
			return 0, fmt.Errorf("%w: non-minimal number", errCursor)
		}
		if v > max {
			return 0, fmt.Errorf("%w: number out of range", errCursor)
		}
		rest = rest[n:]
		return v, nil
	}
	var vals [4]uint64
	maxes := [4]uint64{1<<32 - 1, 1<<32 - 1, 1<<63 - 1, 1<<32 - 1}
	for i := range vals {
		v, err := next(maxes[i])
		if err != nil {
			return cursor{}, err
		}
		vals[i] = v
	}
	if len(rest) != 0 {
		return cursor{}, fmt.Errorf("%w: trailing bytes", errCursor)
	}
	c.UIDValidity = uint32(vals[0])
	c.UIDNext = uint32(vals[1])
	c.ModSeq = vals[2]
	c.Messages = uint32(vals[3])
	c.Labels = b[0] == cursorVersionLabels
	return c, nil
}
