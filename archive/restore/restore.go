package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/dedup"
)

// Options tune a restore. A nil *Options means defaults.
type Options struct {
	// Folders, when not empty, restores only the folders whose path
	// matches one of these path.Match patterns (or lies below a match).
	Folders []string
	// Labels says how the labels of a label-based snapshot (one with an
	// All Mail folder: Gmail, Proton Mail) become folders; see LabelMode.
	// Into a sink that keeps labels (LabelKeeper) each message is written
	// once whatever the mode.
	Labels   LabelMode
	Progress archive.Progress
	Logger   *slog.Logger
}

// Report says what a restore did.
type Report struct {
	Folders  int            `json:"folders"`
	Messages int64          `json:"messages"`
	Bytes    int64          `json:"bytes"`
	Skipped  []repo.Skipped `json:"skipped,omitempty"`
}

// Match reports whether folder path p is selected by the patterns (an empty
// list selects everything). A pattern also selects the folders below a
// folder it matches.
func Match(patterns []string, p string) (bool, error) {
	if len(patterns) == 0 {
		return true, nil
	}
	for _, pat := range patterns {
		for q := p; ; q = path.Dir(q) {
			ok, err := path.Match(pat, q)
			if err != nil {
				return false, fmt.Errorf("folder pattern %q: %w", pat, err)
			}
			if ok {
				return true, nil
			}
			if q == "." || q == "/" || !containsSlash(q) {
				break
			}
		}
	}
	return false, nil
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// selectFolders returns the folders of snap that patterns select, and
// their counts.
func selectFolders(snap *repo.Snapshot, patterns []string) ([]int, archive.Counts, error) {
	var total archive.Counts
	var selected []int
	for i, f := range snap.Folders {
		ok, err := Match(patterns, f.Path)
		if err != nil {
			return nil, total, err
		}
		if ok {
			selected = append(selected, i)
			total.Messages += f.Messages
			total.Bytes += f.Bytes
		}
	}
	return selected, total, nil
}

// Run writes the messages of snap into sink, folder by folder (for a
// label-based snapshot, as Options.Labels says). It closes the sink. A
// message that cannot be loaded is skipped and reported; a sink error
// ends the run.
func Run(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, sink archive.Sink, opts *Options) (*Report, error) {
	if opts == nil {
		opts = &Options{}
	}
	prog := opts.Progress
	if prog == nil {
		prog = archive.NoProgress
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{}
	selected, total, err := selectFolders(snap, opts.Folders)
	if err != nil {
		sink.Close()
		return nil, err
	}
	oneCopy := keepsLabels(sink)
	pl, err := layout(ctx, r, snap, selected, opts.Labels, oneCopy)
	if err != nil {
		sink.Close()
		return nil, fmt.Errorf("restore: %w", err)
	}
	if pl.x != nil {
		total = pl.total
		log.Info("label-based snapshot", "labels", opts.Labels.String(), "target keeps labels", oneCopy)
	}
	prog.Start(total)
	err = func() error {
		for _, p := range pl.placements {
			if err := sink.Folder(ctx, p.target); err != nil {
				return fmt.Errorf("folder %q: %w", p.target.Path, err)
			}
			rep.Folders++
			for _, src := range p.sources {
				f := snap.Folders[src.from]
				err := r.Entries(ctx, snap, src.from, func(e repo.Entry) error {
					if !src.pick(&e) {
						return nil
					}
					m := &archive.Message{
						Folder: p.target.Path, SourceID: e.SourceID, Flags: e.Flags,
						InternalDate: e.Date, Size: e.Size, Digest: e.ID.String(),
						Labels: pl.labels(&e),
						Body:   newReader(ctx, r, e.ChunkIDs()),
					}
					if opts.Labels == LabelsKeywords && !oneCopy {
						m.Flags = append(slices.Clip(m.Flags), pl.keywords(&e, p.target.Path)...)
					}
					if err := sink.Put(ctx, m); err != nil {
						var be *repo.BlobError
						if errors.As(err, &be) {
							rep.Skipped = append(rep.Skipped, repo.Skipped{Folder: f.Path, SourceID: e.SourceID, Error: err.Error()})
							log.Warn("skipped", "folder", f.Path, "source_id", e.SourceID, "err", err)
							prog.Event(archive.Event{Kind: "skip", Folder: f.Path, SourceID: e.SourceID, Err: err, Message: err.Error()})
							return nil
						}
						return fmt.Errorf("message %s: %w", e.SourceID, err)
					}
					rep.Messages++
					rep.Bytes += e.Size
					prog.Add(archive.Counts{Messages: 1, Bytes: e.Size})
					return nil
				})
				if err != nil {
					var be *repo.BlobError
					if errors.As(err, &be) {
						// The folder's list itself is damaged.
						rep.Skipped = append(rep.Skipped, repo.Skipped{Folder: f.Path, Error: err.Error()})
						prog.Event(archive.Event{Kind: "skip", Folder: f.Path, Err: err, Message: err.Error()})
						continue
					}
					return err
				}
			}
		}
		return nil
	}()
	if cerr := sink.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	return rep, nil
}

// Reader streams one message from the repository, chunk by chunk. Each
// chunk is checked against its ID, and the chunk list comes from an
// authenticated page, so the message is checked as a whole. It holds one
// chunk in memory at a time.
//
// Seek moves it anywhere, so that a sink can read a message twice (once to
// learn its hash, once to send it) and a server can read any part of it,
// without holding it whole: the chunks' lengths come from the index.
type Reader struct {
	ctx    context.Context
	r      *repo.Repository
	all    []dedup.ID
	chunks []dedup.ID
	cur    []byte
	ref    repo.BlobRef // holds cur's frame
	skip   int64        // bytes of the next chunk to drop (after a Seek into it)
	pos    int64
	err    error
}

// NewReader returns a reader of the message e.
func NewReader(ctx context.Context, r *repo.Repository, e *repo.Entry) *Reader {
	return newReader(ctx, r, e.ChunkIDs())
}

func newReader(ctx context.Context, r *repo.Repository, chunks []dedup.ID) *Reader {
	return &Reader{ctx: ctx, r: r, all: chunks, chunks: chunks}
}

// Seek sets the offset of the next Read (io.Seeker). Seeking past the end
// is allowed: reads there give io.EOF. A seek that fails leaves the reader
// where it was.
func (m *Reader) Seek(offset int64, whence int) (int64, error) {
	abs := offset
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		if offset == 0 {
			return m.pos, nil
		}
		abs += m.pos
	case io.SeekEnd:
		size, err := m.chunkStart(len(m.all))
		if err != nil {
			return m.pos, err
		}
		abs += size
	default:
		return m.pos, fmt.Errorf("restore reader: bad whence %d", whence)
	}
	if abs < 0 {
		return m.pos, fmt.Errorf("restore reader: seek to negative offset %d", abs)
	}
	if abs == 0 {
		m.drop()
		m.chunks, m.skip, m.pos, m.err = m.all, 0, 0, nil
		return 0, nil
	}
	var start int64
	i := 0
	for ; i < len(m.all); i++ {
		n, err := m.chunkLen(m.all[i])
		if err != nil {
			return m.pos, err
		}
		if abs < start+n {
			break
		}
		start += n
	}
	m.drop()
	m.chunks, m.skip, m.pos, m.err = m.all[i:], abs-start, abs, nil
	if i == len(m.all) {
		m.skip = 0
	}
	return abs, nil
}

// chunkStart returns the offset of chunk i, the sum of the lengths of the
// chunks before it.
func (m *Reader) chunkStart(i int) (int64, error) {
	var n int64
	for _, id := range m.all[:i] {
		k, err := m.chunkLen(id)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

func (m *Reader) chunkLen(id dedup.ID) (int64, error) {
	if err := m.r.EnsureIndex(m.ctx); err != nil {
		return 0, err
	}
	loc, ok := m.r.Index().Lookup(id)
	if !ok {
		return 0, fmt.Errorf("restore reader: chunk %s is not in the index", id.Short())
	}
	return int64(loc.Length), nil
}

// drop lets go of the chunk being read.
func (m *Reader) drop() {
	m.ref.Release()
	m.cur, m.ref = nil, repo.BlobRef{}
}

// Close lets go of the chunk being read, so that the memory of its frame
// can be used again. A reader works again after Close.
func (m *Reader) Close() error {
	m.drop()
	return nil
}

// fill makes cur the next bytes to read, loading chunks as needed; at the
// end it returns io.EOF.
func (m *Reader) fill() error {
	for len(m.cur) == 0 {
		m.drop()
		if m.err != nil {
			return m.err
		}
		if len(m.chunks) == 0 {
			m.err = io.EOF
			return io.EOF
		}
		b, ref, err := m.r.LoadBlobRef(m.ctx, m.chunks[0])
		if err != nil {
			m.err = err
			return err
		}
		m.ref = ref
		m.cur = b[min(m.skip, int64(len(b))):]
		m.skip = 0
		m.chunks = m.chunks[1:]
	}
	return nil
}

func (m *Reader) Read(p []byte) (int, error) {
	if err := m.fill(); err != nil {
		return 0, err
	}
	n := copy(p, m.cur)
	m.cur = m.cur[n:]
	m.pos += int64(n)
	return n, nil
}

// WriteTo writes the rest of the message to w chunk by chunk, without a
// copy of its own (io.WriterTo).
func (m *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if err := m.fill(); err == io.EOF {
			return total, nil
		} else if err != nil {
			return total, err
		}
		n, err := w.Write(m.cur)
		m.cur = m.cur[n:]
		m.pos += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}
