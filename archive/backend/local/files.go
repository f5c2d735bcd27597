package local

import (
	"os"
	"sync"
)

// maxOpenPacks is how many pack files a Local keeps open for Load.
const maxOpenPacks = 16

// packFiles keeps the pack files Load opened most recently: a restore
// reads many frames of one pack one after the other, and opening, stating
// and closing the file for each frame costs more system calls than
// reading it. Pack files are never changed once saved (their name is the
// hash of their content), so an open file stays valid; Remove drops it
// first. A file in use by a reader is closed when the last reader closes.
type packFiles struct {
	mu    sync.Mutex
	files map[string]*packFile
	tick  uint64
}

type packFile struct {
	f       *os.File
	size    int64
	refs    int    // readers using f
	used    uint64 // tick of the last use, for eviction
	dropped bool   // no longer in the map: close when refs reaches 0
}

// open returns the open file of path and its size, opening it when it is
// not open; the caller must call release once done with it.
func (c *packFiles) open(path string) (*packFile, error) {
	c.mu.Lock()
	if pf, ok := c.files[path]; ok {
		c.tick++
		pf.refs++
		pf.used = c.tick
		c.mu.Unlock()
		return pf, nil
	}
	c.mu.Unlock()

	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	if pf, ok := c.files[path]; ok { // opened meanwhile by another Load
		f.Close()
		pf.refs++
		pf.used = c.tick
		return pf, nil
	}
	if c.files == nil {
		c.files = make(map[string]*packFile)
	}
	pf := &packFile{f: f, size: fi.Size(), refs: 1, used: c.tick}
	c.files[path] = pf
	if len(c.files) > maxOpenPacks {
		var oldPath string
		var old *packFile
		for p, x := range c.files {
			if old == nil || x.used < old.used {
				oldPath, old = p, x
			}
		}
		c.dropLocked(oldPath, old)
	}
	return pf, nil
}

// release ends one reader's use of pf.
func (c *packFiles) release(pf *packFile) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	pf.refs--
	if pf.dropped && pf.refs == 0 {
		return pf.f.Close()
	}
	return nil
}

// forget drops path's open file, if any (before the file is removed).
func (c *packFiles) forget(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pf, ok := c.files[path]; ok {
		c.dropLocked(path, pf)
	}
}

// closeAll drops every open file; files still being read close when their
// readers do.
func (c *packFiles) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, pf := range c.files {
		c.dropLocked(p, pf)
	}
}

func (c *packFiles) dropLocked(path string, pf *packFile) {
	delete(c.files, path)
	pf.dropped = true
	if pf.refs == 0 {
		pf.f.Close()
	}
}

// openCount returns how many files are open (tests).
func (c *packFiles) openCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.files)
}
