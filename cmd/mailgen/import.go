package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// importTree copies every regular file under src whose name matches none of
// the exclude globs into a new Maildir++ tree at out: files directly under
// src go to INBOX, each directory becomes a folder (dots in names turn into
// "_", slashes into dots), and every file lands in cur/ with the S flag, a
// Dovecot-style name and its modification time. Files are visited in
// lexical order, so the result depends only on src.
func importTree(src, out string, exclude []string) (stats, error) {
	var st stats
	if err := prepareOut(out); err != nil {
		return st, err
	}
	made := make(map[string]bool)
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		for _, pat := range exclude {
			if ok, _ := filepath.Match(pat, d.Name()); ok {
				return nil
			}
		}
		rel, err := filepath.Rel(src, filepath.Dir(path))
		if err != nil {
			return err
		}
		folder := ""
		if rel != "." {
			folder = "." + strings.ReplaceAll(strings.ReplaceAll(filepath.ToSlash(rel), ".", "_"), "/", ".")
		}
		if !made[folder] {
			g := generator{opts: options{out: out}}
			if err := g.makeFolder(folder); err != nil {
				return err
			}
			made[folder] = true
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st.messages++
		name := fmt.Sprintf("%d.M%dP1Q%d.import,S=%d:2,S", info.ModTime().Unix(), st.messages, st.messages, info.Size())
		dst := filepath.Join(out, folder, "cur", name)
		n, err := copyFile(path, dst)
		if err != nil {
			return err
		}
		st.bytes += n
		return os.Chtimes(dst, info.ModTime(), info.ModTime())
	})
	if err != nil {
		return st, fmt.Errorf("import %q: %w", src, err)
	}
	if !made[""] {
		g := generator{opts: options{out: out}}
		if err := g.makeFolder(""); err != nil {
			return st, err
		}
	}
	return st, nil
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
