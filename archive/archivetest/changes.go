package archivetest

import (
	"fmt"
	"io"
	"slices"

	"codeberg.org/planb/planb/archive"
)

// Changes records what a Source reports during Sync. It implements
// archive.Changes. Like every archive.Changes it is used by one goroutine at a
// time; use one Changes per Sync.
type Changes struct {
	// Known lists the messages Have reports as already held: source ID →
	// fingerprint. Have reports true only for a non-empty fingerprint equal
	// to the known one.
	Known map[string]string

	Resets  int        // number of Reset calls
	Puts    []Recorded // messages passed to Put, in order
	Keeps   []Kept     // Keep calls, in order
	Deletes []string   // source IDs passed to Delete, in order
	Skips   []string   // source IDs passed to Skip, in order
	Haves   []string   // source IDs Have was asked about, in order
	Log     []string   // every call in order: "reset", "put ID", "keep ID", "delete ID", "skip ID"
}

// Recorded is a message as it reached Changes.Put, with its body read.
type Recorded struct {
	archive.Message // Body is nil
	Data            []byte
}

// Kept is one Keep call.
type Kept struct {
	SourceID string
	Flags    []string
}

var _ archive.Changes = (*Changes)(nil)

// Reset implements archive.Changes.
func (c *Changes) Reset() error {
	c.Resets++
	c.Log = append(c.Log, "reset")
	return nil
}

// Have implements archive.Changes.
func (c *Changes) Have(sourceID, fingerprint string) bool {
	c.Haves = append(c.Haves, sourceID)
	fp, ok := c.Known[sourceID]
	return ok && fp != "" && fp == fingerprint
}

// Keep implements archive.Changes.
func (c *Changes) Keep(sourceID string, flags []string) error {
	c.Keeps = append(c.Keeps, Kept{SourceID: sourceID, Flags: slices.Clone(flags)})
	c.Log = append(c.Log, "keep "+sourceID)
	return nil
}

// Put implements archive.Changes. It reads the whole body and fails when the
// body does not yield Size bytes (Size -1 is not checked).
func (c *Changes) Put(m *archive.Message) error {
	data, err := io.ReadAll(m.Body)
	if err != nil {
		return fmt.Errorf("read body of %s: %w", m.SourceID, err)
	}
	if m.Size >= 0 && int64(len(data)) != m.Size {
		return fmt.Errorf("put %s: body has %d bytes, size says %d", m.SourceID, len(data), m.Size)
	}
	r := Recorded{Message: *m, Data: data}
	r.Body = nil
	r.Flags = slices.Clone(m.Flags)
	c.Puts = append(c.Puts, r)
	c.Log = append(c.Log, "put "+m.SourceID)
	return nil
}

// Delete implements archive.Changes.
func (c *Changes) Delete(sourceID string) error {
	c.Deletes = append(c.Deletes, sourceID)
	c.Log = append(c.Log, "delete "+sourceID)
	return nil
}

// Skip implements archive.Changes.
func (c *Changes) Skip(sourceID string, err error) error {
	c.Skips = append(c.Skips, sourceID)
	c.Log = append(c.Log, "skip "+sourceID)
	return nil
}

// Find returns the recorded Put of sourceID, or nil.
func (c *Changes) Find(sourceID string) *Recorded {
	for i := range c.Puts {
		if c.Puts[i].SourceID == sourceID {
			return &c.Puts[i]
		}
	}
	return nil
}
