package backendtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"codeberg.org/planb/planb/archive/backend"
)

// Run runs the conformance suite against the backends newBackend returns.
// newBackend must return a new, empty backend on every call.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend.Backend)
	}{
		{"RoundTrip", testRoundTrip},
		{"LoadRange", testLoadRange},
		{"Missing", testMissing},
		{"List", testList},
		{"ListStops", testListStops},
		{"Remove", testRemove},
		{"Replace", testReplace},
		{"FailingReader", testFailingReader},
		{"SeekBeforeSave", testSeekBeforeSave},
		{"Concurrent", testConcurrent},
		{"Large", testLarge},
		{"Cancelled", testCancelled},
		{"InvalidHandles", testInvalidHandles},
		{"Location", testLocation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close() = %v", err)
				}
			})
			tt.fn(t, b)
		})
	}
}

// nonConfigTypes are the types whose files have names.
var nonConfigTypes = []backend.FileType{
	backend.KeyFile, backend.PackFile, backend.IndexFile, backend.SnapshotFile, backend.LockFile,
}

// randomBytes returns n pseudo-random bytes derived from seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x706c616e62))
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	return buf
}

// randomName returns a 64-character hex name, like a content-derived id.
func randomName(seed uint64) string {
	sum := sha256.Sum256(randomBytes(seed, 8))
	return fmt.Sprintf("%x", sum)
}

func save(t *testing.T, b backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	if err := b.Save(t.Context(), h, bytes.NewReader(data)); err != nil {
		t.Fatalf("Save(%v) = %v", h, err)
	}
}

func load(t *testing.T, b backend.Backend, h backend.Handle, offset, length int64) ([]byte, error) {
	t.Helper()
	rd, err := b.Load(t.Context(), h, offset, length)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rd)
	if cerr := rd.Close(); cerr != nil {
		t.Errorf("Load(%v, %d, %d): Close() = %v", h, offset, length, cerr)
	}
	return data, err
}

// checkContent loads h whole and compares it with want, and checks Stat.
func checkContent(t *testing.T, b backend.Backend, h backend.Handle, want []byte) {
	t.Helper()
	got, err := load(t, b, h, 0, 0)
	if err != nil {
		t.Fatalf("Load(%v, 0, 0) = %v", h, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Load(%v, 0, 0) = %d bytes %.16x…, want %d bytes %.16x…", h, len(got), got, len(want), want)
	}
	fi, err := b.Stat(t.Context(), h)
	if err != nil {
		t.Fatalf("Stat(%v) = %v", h, err)
	}
	if fi.Size != int64(len(want)) {
		t.Errorf("Stat(%v).Size = %d, want %d", h, fi.Size, len(want))
	}
	if fi.Name != listName(h) {
		t.Errorf("Stat(%v).Name = %q, want %q", h, fi.Name, listName(h))
	}
}

// listAll returns the name → size map of every file of type ft.
func listAll(t *testing.T, b backend.Backend, ft backend.FileType) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := b.List(t.Context(), ft, func(fi backend.FileInfo) error {
		if _, dup := got[fi.Name]; dup {
			t.Errorf("List(%v) reported %q twice", ft, fi.Name)
		}
		got[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%v) = %v", ft, err)
	}
	return got
}

func checkList(t *testing.T, b backend.Backend, ft backend.FileType, want map[string]int64) {
	t.Helper()
	got := listAll(t, b, ft)
	if !equalMaps(got, want) {
		t.Errorf("List(%v) = %v, want %v", ft, sortedMap(got), sortedMap(want))
	}
}

func equalMaps(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sortedMap formats a map in key order, for error messages.
func sortedMap(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			buf.WriteString(" ")
		}
		fmt.Fprintf(&buf, "%s:%d", k, m[k])
	}
	buf.WriteString("}")
	return buf.String()
}

func checkNotExist(t *testing.T, b backend.Backend, h backend.Handle) {
	t.Helper()
	if _, err := b.Stat(t.Context(), h); !errors.Is(err, backend.ErrNotExist) {
		t.Errorf("Stat(%v) = %v, want ErrNotExist", h, err)
	}
	if rd, err := b.Load(t.Context(), h, 0, 0); !errors.Is(err, backend.ErrNotExist) {
		if err == nil {
			rd.Close()
		}
		t.Errorf("Load(%v) = %v, want ErrNotExist", h, err)
	}
}

func testRoundTrip(t *testing.T, b backend.Backend) {
	for i, ft := range backend.Types() {
		for j, size := range []int{0, 1, 1000, 70000} {
			h := backend.Handle{Type: ft, Name: randomName(uint64(i*10 + j))}
			data := randomBytes(uint64(i*10+j), size)
			save(t, b, h, data)
			checkContent(t, b, h, data)
		}
	}
	// The config file's name is ignored.
	data := []byte("config data")
	save(t, b, backend.Handle{Type: backend.ConfigFile, Name: "ignored"}, data)
	checkContent(t, b, backend.Handle{Type: backend.ConfigFile}, data)
	checkContent(t, b, backend.Handle{Type: backend.ConfigFile, Name: "other"}, data)

	// ReadAll reads the same bytes.
	h := backend.Handle{Type: backend.SnapshotFile, Name: "snap"}
	data = randomBytes(99, 5000)
	save(t, b, h, data)
	got, err := backend.ReadAll(t.Context(), b, h)
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("ReadAll(%v) = %d bytes, %v; want %d bytes, nil", h, len(got), err, len(data))
	}
}

func testLoadRange(t *testing.T, b backend.Backend) {
	const size = 1000
	data := randomBytes(1, size)
	h := backend.Handle{Type: backend.PackFile, Name: randomName(1)}
	save(t, b, h, data)

	tests := []struct {
		name           string
		offset, length int64
		want           []byte // with wantErr: the bytes read before the error
		wantErr        error  // nil, io.ErrUnexpectedEOF, or errAny
	}{
		{"whole", 0, 0, data, nil},
		{"whole exact", 0, size, data, nil},
		{"start", 0, 10, data[:10], nil},
		{"one byte", 0, 1, data[:1], nil},
		{"middle", 400, 123, data[400:523], nil},
		{"end", size - 10, 10, data[size-10:], nil},
		{"to end", 990, 0, data[990:], nil},
		{"last byte to end", size - 1, 0, data[size-1:], nil},
		{"at end", size, 0, []byte{}, nil},
		{"past end", 995, 10, data[995:], io.ErrUnexpectedEOF},
		{"far past end", 0, 2 * size, data, io.ErrUnexpectedEOF},
		{"from end past end", size, 1, []byte{}, io.ErrUnexpectedEOF},
		{"offset beyond end", size + 1, 0, nil, errAny},
		{"offset far beyond end", 10 * size, 5, nil, errAny},
		{"negative offset", -1, 0, nil, errAny},
		{"negative length", 0, -1, nil, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd, err := b.Load(t.Context(), h, tt.offset, tt.length)
			if err != nil {
				if tt.wantErr != errAny {
					t.Fatalf("Load(%v, %d, %d) = %v, want nil", h, tt.offset, tt.length, err)
				}
				return
			}
			got, err := io.ReadAll(rd)
			if cerr := rd.Close(); cerr != nil {
				t.Errorf("Close() = %v", cerr)
			}
			switch tt.wantErr {
			case nil:
				if err != nil {
					t.Fatalf("Load(%v, %d, %d): read = %v, want nil", h, tt.offset, tt.length, err)
				}
			case errAny:
				if err == nil {
					t.Fatalf("Load(%v, %d, %d) read %d bytes without error, want an error", h, tt.offset, tt.length, len(got))
				}
				return
			default:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Load(%v, %d, %d): read = %v, want %v", h, tt.offset, tt.length, err, tt.wantErr)
				}
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Load(%v, %d, %d) = %d bytes, want %d bytes", h, tt.offset, tt.length, len(got), len(tt.want))
			}
		})
	}
}

// errAny in a test table means "some error, from Load or from reading".
var errAny = errors.New("any error")

func testMissing(t *testing.T, b backend.Backend) {
	for _, ft := range backend.Types() {
		h := backend.Handle{Type: ft, Name: randomName(uint64(ft))}
		checkNotExist(t, b, h)
		if err := b.Remove(t.Context(), h); !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("Remove(%v) = %v, want ErrNotExist", h, err)
		}
		if rd, err := b.Load(t.Context(), h, 10, 10); !errors.Is(err, backend.ErrNotExist) {
			if err == nil {
				rd.Close()
			}
			t.Errorf("Load(%v, 10, 10) = %v, want ErrNotExist", h, err)
		}
		checkList(t, b, ft, map[string]int64{})
	}
	// A file of one type does not exist under another.
	name := randomName(42)
	save(t, b, backend.Handle{Type: backend.IndexFile, Name: name}, []byte("index"))
	for _, ft := range nonConfigTypes {
		if ft != backend.IndexFile {
			checkNotExist(t, b, backend.Handle{Type: ft, Name: name})
		}
	}
}

func testList(t *testing.T, b backend.Backend) {
	want := map[backend.FileType]map[string]int64{}
	seed := uint64(0)
	for _, ft := range nonConfigTypes {
		want[ft] = map[string]int64{}
		for i := range 5 {
			seed++
			name := randomName(seed)
			if ft == backend.PackFile && i == 0 {
				// Packs in the same two-character folder.
				name = "ab" + name[2:]
				save(t, b, backend.Handle{Type: ft, Name: "ab" + name[3:] + "0"}, nil)
				want[ft]["ab"+name[3:]+"0"] = 0
			}
			data := randomBytes(seed, int(seed)*37)
			save(t, b, backend.Handle{Type: ft, Name: name}, data)
			want[ft][name] = int64(len(data))
		}
	}
	// Names shared between types stay apart.
	for i, ft := range nonConfigTypes {
		data := randomBytes(uint64(i), i+1)
		save(t, b, backend.Handle{Type: ft, Name: "shared"}, data)
		want[ft]["shared"] = int64(len(data))
	}
	save(t, b, backend.Handle{Type: backend.ConfigFile}, []byte("cfg"))
	for _, ft := range nonConfigTypes {
		checkList(t, b, ft, want[ft])
	}
	checkList(t, b, backend.ConfigFile, map[string]int64{"config": 3})
}

func testListStops(t *testing.T, b backend.Backend) {
	for i := range 10 {
		save(t, b, backend.Handle{Type: backend.LockFile, Name: randomName(uint64(i))}, []byte("lock"))
	}
	stop := errors.New("stop here")
	calls := 0
	err := b.List(t.Context(), backend.LockFile, func(backend.FileInfo) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("List with failing fn = %v, want %v", err, stop)
	}
	if calls != 1 {
		t.Errorf("List with failing fn called fn %d times, want 1", calls)
	}
	// fn may call into the backend.
	seen := 0
	err = b.List(t.Context(), backend.LockFile, func(fi backend.FileInfo) error {
		h := backend.Handle{Type: backend.LockFile, Name: fi.Name}
		data, err := backend.ReadAll(t.Context(), b, h)
		if err != nil {
			return err
		}
		if string(data) != "lock" {
			return fmt.Errorf("ReadAll(%v) = %q, want %q", h, data, "lock")
		}
		seen++
		return b.Remove(t.Context(), h)
	})
	if err != nil || seen != 10 {
		t.Errorf("List removing each file = %v after %d files, want nil after 10", err, seen)
	}
	checkList(t, b, backend.LockFile, map[string]int64{})
}

func testRemove(t *testing.T, b backend.Backend) {
	for _, ft := range backend.Types() {
		keep := backend.Handle{Type: ft, Name: randomName(1)}
		gone := backend.Handle{Type: ft, Name: randomName(2)}
		if ft != backend.ConfigFile {
			save(t, b, keep, []byte("keep"))
		}
		save(t, b, gone, []byte("gone"))
		if err := b.Remove(t.Context(), gone); err != nil {
			t.Fatalf("Remove(%v) = %v", gone, err)
		}
		checkNotExist(t, b, gone)
		if err := b.Remove(t.Context(), gone); !errors.Is(err, backend.ErrNotExist) {
			t.Errorf("second Remove(%v) = %v, want ErrNotExist", gone, err)
		}
		if ft != backend.ConfigFile {
			checkContent(t, b, keep, []byte("keep"))
			checkList(t, b, ft, map[string]int64{keep.Name: 4})
		} else {
			checkList(t, b, ft, map[string]int64{})
		}
	}
}

func testReplace(t *testing.T, b backend.Backend) {
	for _, ft := range backend.Types() {
		h := backend.Handle{Type: ft, Name: randomName(7)}
		save(t, b, h, randomBytes(1, 5000))
		short := randomBytes(2, 100)
		save(t, b, h, short)
		checkContent(t, b, h, short)
		got := listAll(t, b, ft)
		if len(got) != 1 || got[listName(h)] != 100 {
			t.Errorf("List(%v) after replacing = %v, want one file of 100 bytes", ft, sortedMap(got))
		}
	}
}

// listName is the name List and Stat report for h: "config" for the
// config file, whatever name its handle carries.
func listName(h backend.Handle) string {
	if h.Type == backend.ConfigFile {
		return "config"
	}
	return h.Name
}

// failingReader returns the first n bytes of data and then err, however
// often it is rewound.
type failingReader struct {
	data []byte
	n    int64
	pos  int64
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.pos >= r.n {
		return 0, r.err
	}
	p = p[:min(int64(len(p)), r.n-r.pos)]
	n := copy(p, r.data[r.pos:])
	r.pos += int64(n)
	return n, nil
}

func (r *failingReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += int64(len(r.data))
	default:
		return 0, errors.New("bad whence")
	}
	if offset < 0 {
		return 0, errors.New("negative position")
	}
	r.pos = offset
	return offset, nil
}

func testFailingReader(t *testing.T, b backend.Backend) {
	errRead := errors.New("disk on fire")
	for _, ft := range backend.Types() {
		for _, n := range []int64{0, 1, 5000, 100000} {
			h := backend.Handle{Type: ft, Name: randomName(uint64(n))}
			rd := &failingReader{data: randomBytes(3, 200000), n: n, err: errRead}
			err := b.Save(t.Context(), h, rd)
			if !errors.Is(err, errRead) {
				t.Errorf("Save(%v) with a reader failing after %d bytes = %v, want %v", h, n, err, errRead)
			}
			checkNotExist(t, b, h)
		}
		checkList(t, b, ft, map[string]int64{})

		// A failed replacement keeps the old content.
		h := backend.Handle{Type: ft, Name: randomName(1)}
		old := randomBytes(4, 3000)
		save(t, b, h, old)
		rd := &failingReader{data: randomBytes(5, 200000), n: 100000, err: errRead}
		if err := b.Save(t.Context(), h, rd); !errors.Is(err, errRead) {
			t.Errorf("Save(%v) replacing with a failing reader = %v, want %v", h, err, errRead)
		}
		checkContent(t, b, h, old)
		got := listAll(t, b, ft)
		if len(got) != 1 || got[listName(h)] != int64(len(old)) {
			t.Errorf("List(%v) after failed replacement = %v, want one file of %d bytes", ft, sortedMap(got), len(old))
		}
	}
}

func testSeekBeforeSave(t *testing.T, b backend.Backend) {
	data := randomBytes(6, 10000)
	rd := bytes.NewReader(data)
	if _, err := io.CopyN(io.Discard, rd, 5000); err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.PackFile, Name: randomName(6)}
	if err := b.Save(t.Context(), h, rd); err != nil {
		t.Fatalf("Save(%v) = %v", h, err)
	}
	checkContent(t, b, h, data)

	// A reader at its end is rewound too.
	h2 := backend.Handle{Type: backend.IndexFile, Name: randomName(7)}
	if err := b.Save(t.Context(), h2, rd); err != nil {
		t.Fatalf("Save(%v) = %v", h2, err)
	}
	checkContent(t, b, h2, data)
}

func testConcurrent(t *testing.T, b backend.Backend) {
	const (
		workers = 8
		files   = 16
	)
	types := nonConfigTypes
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			errs <- concurrentWorker(t.Context(), b, w, files, types[w%len(types)])
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// Each worker removed its odd files.
	want := map[backend.FileType]map[string]int64{}
	for _, ft := range types {
		want[ft] = map[string]int64{}
	}
	for w := range workers {
		for i := 0; i < files; i += 2 {
			want[types[w%len(types)]][workerName(w, i)] = int64(workerSize(w, i))
		}
	}
	for _, ft := range types {
		checkList(t, b, ft, want[ft])
	}
}

func workerName(w, i int) string { return fmt.Sprintf("w%02d-%s", w, randomName(uint64(w*1000+i))) }
func workerSize(w, i int) int    { return 100 + w*1000 + i*37 }

func concurrentWorker(ctx context.Context, b backend.Backend, w, files int, ft backend.FileType) error {
	for i := range files {
		h := backend.Handle{Type: ft, Name: workerName(w, i)}
		data := randomBytes(uint64(w*1000+i), workerSize(w, i))
		if err := b.Save(ctx, h, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("worker %d: Save(%v) = %v", w, h, err)
		}
	}
	for i := range files {
		h := backend.Handle{Type: ft, Name: workerName(w, i)}
		want := randomBytes(uint64(w*1000+i), workerSize(w, i))
		got, err := backend.ReadAll(ctx, b, h)
		if err != nil || !bytes.Equal(got, want) {
			return fmt.Errorf("worker %d: ReadAll(%v) = %d bytes, %v; want %d bytes", w, h, len(got), err, len(want))
		}
		rd, err := b.Load(ctx, h, 10, 20)
		if err != nil {
			return fmt.Errorf("worker %d: Load(%v, 10, 20) = %v", w, h, err)
		}
		got, err = io.ReadAll(rd)
		rd.Close()
		if err != nil || !bytes.Equal(got, want[10:30]) {
			return fmt.Errorf("worker %d: Load(%v, 10, 20) read %d bytes, %v; want 20 bytes", w, h, len(got), err)
		}
	}
	// List sees at least this worker's files (others come and go).
	prefix := fmt.Sprintf("w%02d-", w)
	found := 0
	err := b.List(ctx, ft, func(fi backend.FileInfo) error {
		if len(fi.Name) > len(prefix) && fi.Name[:len(prefix)] == prefix {
			found++
		}
		return nil
	})
	if err != nil || found != files {
		return fmt.Errorf("worker %d: List(%v) = %v with %d own files, want nil with %d", w, ft, err, found, files)
	}
	for i := 1; i < files; i += 2 {
		h := backend.Handle{Type: ft, Name: workerName(w, i)}
		if err := b.Remove(ctx, h); err != nil {
			return fmt.Errorf("worker %d: Remove(%v) = %v", w, h, err)
		}
	}
	return nil
}

// patternReader is a seekable stream of size pseudo-random bytes that is
// generated on the fly, so that large files need no memory.
type patternReader struct {
	size, pos int64
}

func patternByte(i int64) byte {
	x := uint64(i/8)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	x ^= x >> 29
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 32
	return byte(x >> (8 * (i % 8)))
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.size-r.pos)]
	for i := range p {
		p[i] = patternByte(r.pos + int64(i))
	}
	r.pos += int64(len(p))
	return len(p), nil
}

func (r *patternReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.pos
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("bad whence")
	}
	if offset < 0 {
		return 0, errors.New("negative position")
	}
	r.pos = offset
	return offset, nil
}

func testLarge(t *testing.T, b backend.Backend) {
	const size = 20 << 20
	h := backend.Handle{Type: backend.PackFile, Name: randomName(20)}
	if err := b.Save(t.Context(), h, &patternReader{size: size}); err != nil {
		t.Fatalf("Save(%v, 20 MiB) = %v", h, err)
	}
	fi, err := b.Stat(t.Context(), h)
	if err != nil || fi.Size != size {
		t.Fatalf("Stat(%v) = %+v, %v; want size %d", h, fi, err, size)
	}
	wantSum := sha256.New()
	if _, err := io.Copy(wantSum, &patternReader{size: size}); err != nil {
		t.Fatal(err)
	}
	rd, err := b.Load(t.Context(), h, 0, 0)
	if err != nil {
		t.Fatalf("Load(%v) = %v", h, err)
	}
	gotSum := sha256.New()
	n, err := io.Copy(gotSum, rd)
	rd.Close()
	if err != nil || n != size {
		t.Fatalf("Load(%v) read %d bytes, %v; want %d, nil", h, n, err, size)
	}
	if !bytes.Equal(gotSum.Sum(nil), wantSum.Sum(nil)) {
		t.Errorf("Load(%v) content differs from what was saved", h)
	}

	// A range in the middle.
	const off, length = 12345678, 1 << 20
	got, err := load(t, b, h, off, length)
	if err != nil || len(got) != length {
		t.Fatalf("Load(%v, %d, %d) = %d bytes, %v", h, off, length, len(got), err)
	}
	for i, c := range got {
		if c != patternByte(off+int64(i)) {
			t.Fatalf("Load(%v, %d, %d): byte %d = %#x, want %#x", h, off, length, i, c, patternByte(off+int64(i)))
		}
	}
}

func testCancelled(t *testing.T, b backend.Backend) {
	h := backend.Handle{Type: backend.SnapshotFile, Name: randomName(8)}
	save(t, b, h, []byte("snapshot"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	h2 := backend.Handle{Type: backend.SnapshotFile, Name: randomName(9)}
	if err := b.Save(ctx, h2, bytes.NewReader([]byte("new"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Save(%v) with a cancelled context = %v, want context.Canceled", h2, err)
	}
	if rd, err := b.Load(ctx, h, 0, 0); !errors.Is(err, context.Canceled) {
		if err == nil {
			rd.Close()
		}
		t.Errorf("Load(%v) with a cancelled context = %v, want context.Canceled", h, err)
	}
	if _, err := b.Stat(ctx, h); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat(%v) with a cancelled context = %v, want context.Canceled", h, err)
	}
	called := false
	err := b.List(ctx, backend.SnapshotFile, func(backend.FileInfo) error { called = true; return nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Errorf("List with a cancelled context = %v (fn called: %v), want context.Canceled without calls", err, called)
	}
	if err := b.Remove(ctx, h); !errors.Is(err, context.Canceled) {
		t.Errorf("Remove(%v) with a cancelled context = %v, want context.Canceled", h, err)
	}
	// Nothing changed.
	checkContent(t, b, h, []byte("snapshot"))
	checkNotExist(t, b, h2)

	// Cancelling during a long Save fails it and leaves no file.
	ctx, cancel = context.WithCancel(t.Context())
	h3 := backend.Handle{Type: backend.PackFile, Name: randomName(10)}
	rd := &cancellingReader{patternReader: patternReader{size: 8 << 20}, after: 1 << 20, cancel: cancel}
	if err := b.Save(ctx, h3, rd); !errors.Is(err, context.Canceled) {
		t.Errorf("Save(%v) cancelled midway = %v, want context.Canceled", h3, err)
	}
	checkNotExist(t, b, h3)
}

// cancellingReader calls cancel once it has returned after bytes.
type cancellingReader struct {
	patternReader
	after  int64
	cancel func()
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.pos >= r.after {
		r.cancel()
	}
	return r.patternReader.Read(p)
}

func testInvalidHandles(t *testing.T, b backend.Backend) {
	bad := []backend.Handle{
		{Type: backend.KeyFile, Name: ""},
		{Type: backend.PackFile, Name: ""},
		{Type: backend.PackFile, Name: "a"},
		{Type: backend.IndexFile, Name: "a/b"},
		{Type: backend.IndexFile, Name: "/abs"},
		{Type: backend.SnapshotFile, Name: ".."},
		{Type: backend.SnapshotFile, Name: "../config"},
		{Type: backend.LockFile, Name: "a..b"},
		{Type: backend.LockFile, Name: `a\b`},
		{Type: backend.LockFile, Name: ".hidden"},
		{Type: backend.LockFile, Name: ".tmp-123"},
		{Type: backend.KeyFile, Name: "nul\x00"},
		{Type: backend.KeyFile, Name: "new\nline"},
		{Type: backend.KeyFile, Name: string(bytes.Repeat([]byte("a"), backend.MaxNameLen+1))},
		{Type: 0, Name: "abcd"},
		{Type: backend.LockFile + 1, Name: "abcd"},
	}
	for _, h := range bad {
		err := b.Save(t.Context(), h, bytes.NewReader([]byte("x")))
		if !errors.Is(err, backend.ErrInvalidHandle) {
			t.Errorf("Save(%q) = %v, want ErrInvalidHandle", h, err)
		}
		if rd, err := b.Load(t.Context(), h, 0, 0); !errors.Is(err, backend.ErrInvalidHandle) {
			if err == nil {
				rd.Close()
			}
			t.Errorf("Load(%q) = %v, want ErrInvalidHandle", h, err)
		}
		if _, err := b.Stat(t.Context(), h); !errors.Is(err, backend.ErrInvalidHandle) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidHandle", h, err)
		}
		if err := b.Remove(t.Context(), h); !errors.Is(err, backend.ErrInvalidHandle) {
			t.Errorf("Remove(%q) = %v, want ErrInvalidHandle", h, err)
		}
	}
	for _, ft := range []backend.FileType{0, backend.LockFile + 1} {
		if err := b.List(t.Context(), ft, func(backend.FileInfo) error { return nil }); !errors.Is(err, backend.ErrInvalidHandle) {
			t.Errorf("List(%v) = %v, want ErrInvalidHandle", ft, err)
		}
	}
	// Nothing was stored.
	for _, ft := range backend.Types() {
		checkList(t, b, ft, map[string]int64{})
	}
	// The config file's name is not checked, and edge-case names are fine.
	good := []backend.Handle{
		{Type: backend.ConfigFile, Name: "../x"},
		{Type: backend.PackFile, Name: "ab"},
		{Type: backend.KeyFile, Name: "k"},
		{Type: backend.LockFile, Name: "a.b"},
		{Type: backend.IndexFile, Name: string(bytes.Repeat([]byte("f"), backend.MaxNameLen))},
	}
	for _, h := range good {
		save(t, b, h, []byte("ok"))
		checkContent(t, b, h, []byte("ok"))
	}
}

func testLocation(t *testing.T, b backend.Backend) {
	if b.Location() == "" {
		t.Errorf("Location() = %q, want a non-empty string", b.Location())
	}
}
