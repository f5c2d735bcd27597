package backup

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/mailform"
	"codeberg.org/planb/planb/archive/pack"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// inlineMax is the size up to which a message is read whole and stored by
// a worker, so that hashing and chunking of one folder use every core;
// larger messages are streamed by the folder's goroutine.
const inlineMax = 1 << 20

var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// job is one message read whole, to be stored by a worker.
type job struct {
	st   *state
	m    archive.Message // Body is nil
	data []byte
	res  *result
}

// result is the outcome of storing one message, applied in Put order.
type result struct {
	sourceID string
	entry    repo.Entry
	err      error
	done     atomic.Bool // entry and err are final
}

// startWorkers starts n storing workers and returns the function that
// stops them once every folder is done.
func (b *run) startWorkers(n int) func() {
	b.jobs = make(chan job, 2*n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &storer{run: b, chunker: dedup.NewChunker(b.params, nil)}
			for j := range b.jobs {
				j.res.entry, j.res.err = w.storeBytes(j.st.folder, &j.m, j.data)
				j.res.done.Store(true)
				d := j.data[:0]
				msgPool.Put(&d)
				j.st.pending.Done()
			}
		}()
	}
	return func() {
		close(b.jobs)
		wg.Wait()
	}
}

// state is one folder's message list while its source reports changes. It
// implements archive.Changes; its methods are called from the goroutine
// that runs the source's Sync, the only one that changes it.
type state struct {
	run    *run
	folder string
	// mu guards entries' changes and stored against view, called by a
	// checkpoint from another goroutine; the Sync goroutine reads them
	// without it.
	mu      sync.Mutex
	entries *entryList
	stored  int      // messages stored and applied
	seen    []uint64 // during a Reset listing: a bit per entry
	reset   bool
	skips   int
	storer  *storer // for messages too large to hand to a worker

	// Puts whose result is not applied yet, in order.
	results  []*result
	inFlight map[string]int
	pending  sync.WaitGroup
	fatal    error
}

var _ archive.Changes = (*state)(nil)

func newState(b *run, folder string) *state {
	return &state{run: b, folder: folder, entries: newEntryList(), inFlight: make(map[string]int)}
}

func (s *state) add(e repo.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.entries.add(&e)
	if s.reset {
		s.markIndex(i)
	}
}

// view returns the folder's entries as stored so far, which later changes
// do not affect, and false if no message was stored yet (the folder is
// then as its parent had it). It may be called from any goroutine.
func (s *state) view() (*entryList, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stored == 0 {
		return nil, false
	}
	return s.entries.frozen(), true
}

// apply applies the result of one Put.
func (s *state) apply(r *result) {
	if s.inFlight[r.sourceID]--; s.inFlight[r.sourceID] <= 0 {
		delete(s.inFlight, r.sourceID)
	}
	switch {
	case r.err == nil:
		s.add(r.entry)
		s.mu.Lock()
		s.stored++
		s.mu.Unlock()
		s.run.mu.Lock()
		s.run.newMessages++
		s.run.newBytes += r.entry.Size
		s.run.changes++
		s.run.mu.Unlock()
	case errors.Is(r.err, errFatal):
		if s.fatal == nil {
			s.fatal = r.err
		}
	default:
		// The body could not be read: this message only.
		s.skips++
		s.run.skip(s.folder, r.sourceID, r.err)
	}
}

// applyDone applies the results already stored, in order, so that a
// checkpoint sees them before the folder ends.
func (s *state) applyDone() {
	n := 0
	for n < len(s.results) && s.results[n].done.Load() {
		s.apply(s.results[n])
		s.results[n] = nil
		n++
	}
	if n > 0 {
		s.results = append(s.results[:0], s.results[n:]...)
	}
}

// flush waits for the folder's pending messages and applies their results
// in the order the source put them. It returns a repository failure.
func (s *state) flush() error {
	s.pending.Wait()
	s.applyDone()
	return s.fatal
}

// settle applies pending results before an operation on a message that is
// still being stored, so that operations apply in the source's order.
func (s *state) settle(sourceID string) error {
	if s.inFlight[sourceID] > 0 {
		return s.flush()
	}
	s.applyDone()
	return s.fatal
}

// Reset starts a new listing of the folder. The messages an earlier
// listing in this run skipped (a source starts a folder again after a
// dropped connection) are no longer named: the new listing stores them
// or skips them again.
func (s *state) Reset() error {
	if s.skips > 0 || len(s.results) > 0 {
		if err := s.flush(); err != nil {
			return err
		}
		s.run.unskip(s.folder)
		s.skips = 0
	}
	s.reset = true
	s.seen = make([]uint64, (s.entries.Len()+63)/64)
	return nil
}

// mark notes that the listing names the message.
func (s *state) mark(id string) {
	if s.reset {
		if i, ok := s.entries.find(id); ok {
			s.markIndex(i)
		}
	}
}

func (s *state) markIndex(i int) {
	for i/64 >= len(s.seen) {
		s.seen = append(s.seen, 0)
	}
	s.seen[i/64] |= 1 << (i % 64)
}

func (s *state) dropUnseen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.entries.Len() {
		if s.entries.record(i) != nil && (i/64 >= len(s.seen) || s.seen[i/64]&(1<<(i%64)) == 0) {
			s.entries.remove(i)
		}
	}
}

func (s *state) Have(sourceID, fingerprint string) bool {
	i, ok := s.entries.find(sourceID)
	return ok && fingerprint != "" && s.entries.fingerprintIs(i, fingerprint)
}

func (s *state) Keep(sourceID string, flags []string) error {
	return s.relabel("keep", sourceID, flags, nil, false)
}

// Relabel implements archive.Relabeler.
func (s *state) Relabel(sourceID string, flags, labels []string) error {
	return s.relabel("keep", sourceID, flags, labels, true)
}

// relabel keeps a message, with new flags unless flags is nil, and with
// new labels if relabel is set. An entry is written again only if it
// changes.
func (s *state) relabel(op, sourceID string, flags, labels []string, relabel bool) error {
	if err := s.settle(sourceID); err != nil {
		return err
	}
	i, ok := s.entries.find(sourceID)
	if !ok {
		return fmt.Errorf("%s %q: unknown message", op, sourceID)
	}
	if !relabel && (flags == nil || s.entries.flagsAre(i, flags)) {
		// The common case of a nightly run: nothing to write.
		if s.reset {
			s.markIndex(i)
		}
		return nil
	}
	e, _ := s.entries.get(i)
	changed := false
	if flags != nil {
		if nf := normFlags(flags); !slices.Equal(nf, e.Flags) {
			e.Flags, changed = nf, true
		}
	}
	if relabel {
		if nl := normLabels(labels); !slices.Equal(nl, e.Labels) {
			e.Labels, changed = nl, true
		}
	}
	if changed {
		s.mu.Lock()
		s.entries.set(i, &e)
		s.mu.Unlock()
	}
	s.mark(sourceID)
	return nil
}

var _ archive.Relabeler = (*state)(nil)

// normLabels returns labels sorted, without duplicates, nil when empty.
func normLabels(labels []string) []string {
	if len(labels) == 0 {
		return nil
	}
	out := slices.Clone(labels)
	slices.Sort(out)
	return slices.Compact(out)
}

func (s *state) Delete(sourceID string) error {
	if err := s.settle(sourceID); err != nil {
		return err
	}
	if i, ok := s.entries.find(sourceID); ok {
		s.mu.Lock()
		s.entries.remove(i)
		s.mu.Unlock()
	}
	return nil
}

// Skip names a message the source could not read; the folder keeps the
// parent's version of it, if any.
func (s *state) Skip(sourceID string, err error) error {
	if err := s.settle(sourceID); err != nil {
		return err
	}
	s.mark(sourceID)
	s.skips++
	s.run.skip(s.folder, sourceID, err)
	return nil
}

// Put stores a message. A message up to inlineMax is read whole here and
// stored by a worker; a larger one is streamed here. A body that cannot be
// read costs that message only (it is named and the folder keeps its
// previous version, if any); a repository failure ends the run.
func (s *state) Put(m *archive.Message) error {
	if err := s.settle(m.SourceID); err != nil {
		return err
	}
	if err := s.run.saver.Err(); err != nil {
		return fmt.Errorf("%w: %w", errFatal, err) // stop reading: the repository failed
	}
	s.mark(m.SourceID)
	s.run.prog.Add(archive.Counts{Messages: 1})
	res := &result{sourceID: m.SourceID}
	s.results = append(s.results, res)
	s.inFlight[m.SourceID]++

	bp := msgPool.Get().(*[]byte)
	data, err := readUpTo(m.Body, (*bp)[:0], inlineMax)
	if err != nil {
		msgPool.Put(bp)
		res.err = readErr{err}
		res.done.Store(true)
		return nil
	}
	meta := *m
	meta.Body = nil
	if len(data) <= inlineMax {
		s.pending.Add(1)
		s.run.jobs <- job{st: s, m: meta, data: data, res: res}
		return nil
	}
	// Too large for a worker: stream what was read and the rest.
	if s.storer == nil {
		s.storer = &storer{run: s.run, chunker: dedup.NewChunker(s.run.params, nil)}
	}
	body := io.MultiReader(bytes.NewReader(data), m.Body)
	res.entry, res.err = s.storer.storeStream(s.folder, &meta, body)
	res.done.Store(true)
	msgPool.Put(bp)
	if errors.Is(res.err, errFatal) {
		return s.flush()
	}
	return nil
}

// readUpTo reads r into buf until EOF or until it holds more than limit
// bytes.
func readUpTo(r io.Reader, buf []byte, limit int) ([]byte, error) {
	for len(buf) <= limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// readErr marks an error of the message body (as opposed to the repository).
type readErr struct{ err error }

func (e readErr) Error() string { return "read message: " + e.err.Error() }
func (e readErr) Unwrap() error { return e.err }

// storer cuts messages into chunks and hands new chunks to the saver. One
// storer is used by one goroutine.
type storer struct {
	run     *run
	chunker *dedup.Chunker
	buf     []byte
}

// addChunk stores a chunk of a message of folder: a folder's small chunks
// share frames only with each other (Saver.AddTo), so that reading one
// folder back opens each of its frames once.
func (w *storer) addChunk(folder string, data []byte, id dedup.ID) error {
	if _, err := w.run.saver.AddTo(folder, pack.DataBlob, id, data); err != nil {
		return fmt.Errorf("%w: %w", errFatal, err)
	}
	w.run.prog.Add(archive.Counts{Bytes: int64(len(data))})
	return nil
}

func entryOf(m *archive.Message) repo.Entry {
	return repo.Entry{SourceID: m.SourceID, Flags: normFlags(m.Flags), Date: m.InternalDate, Fingerprint: m.Fingerprint, Labels: normLabels(m.Labels)}
}

// normFlags returns flags sorted and without repeats: sources may report
// them in any order (go-imap's memory server keeps them in a map), and an
// unchanged folder must give the same pages.
func normFlags(flags []string) []string {
	if len(flags) == 0 {
		return nil
	}
	out := slices.Clone(flags)
	slices.Sort(out)
	return slices.Compact(out)
}

// storeBytes stores a message of folder held whole in memory.
func (w *storer) storeBytes(folder string, m *archive.Message, data []byte) (repo.Entry, error) {
	e := entryOf(m)
	e.ID = dedup.Hash(data)
	e.Size = int64(len(data))
	e.Wire = e.Size + int64(mailform.BareLineEnds(data))
	if len(data) == 0 {
		return e, nil
	}
	if len(data) < int(w.run.params.MinSize) {
		// One chunk: the message itself.
		return e, w.addChunk(folder, data, e.ID)
	}
	chunks, err := w.chunk(folder, bytes.NewReader(data))
	if err != nil {
		return e, err
	}
	if len(chunks) > 1 || chunks[0] != e.ID {
		e.Chunks = chunks
	}
	return e, nil
}

// storeStream stores a message of folder read from body, never holding it
// whole.
func (w *storer) storeStream(folder string, m *archive.Message, body io.Reader) (repo.Entry, error) {
	e := entryOf(m)
	whole := sha256.New()
	cr := &countReader{r: io.TeeReader(&errReader{r: body}, whole)}
	chunks, err := w.chunk(folder, cr)
	if err != nil {
		return e, err
	}
	e.Size = cr.n
	e.Wire = cr.n + cr.ends.Added()
	copy(e.ID[:], whole.Sum(nil))
	if len(chunks) > 1 || (len(chunks) == 1 && chunks[0] != e.ID) {
		e.Chunks = chunks
	}
	return e, nil
}

func (w *storer) chunk(folder string, r io.Reader) ([]dedup.ID, error) {
	var chunks []dedup.ID
	w.chunker.Reset(r)
	for {
		if cap(w.buf) < int(w.run.params.MaxSize) {
			w.buf = make([]byte, 0, w.run.params.MaxSize)
		}
		data, err := w.chunker.Next(w.buf[:0])
		if err == io.EOF {
			return chunks, nil
		}
		if err != nil {
			return nil, err
		}
		id := dedup.Hash(data)
		if err := w.addChunk(folder, data, id); err != nil {
			return nil, err
		}
		chunks = append(chunks, id)
	}
}

// countReader counts the bytes read through it, and their bare line ends.
type countReader struct {
	r    io.Reader
	n    int64
	ends mailform.LineEndCounter
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.ends.Write(p[:n])
	return n, err
}

// errReader marks read errors of a message body as such.
type errReader struct{ r io.Reader }

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}
