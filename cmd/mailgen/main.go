package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "mailgen: error: %v\n", err)
		os.Exit(1)
	}
}

// run parses args, generates the tree and prints a summary on stderr.
func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mailgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output `directory` (created; must be empty)")
	messages := fs.Int("messages", 20000, "number of messages")
	size := fs.String("size", "1G", "approximate total `size` of the messages (K, M, G: powers of 1024)")
	one := fs.String("one-message-size", "", "write one message of this `size` instead")
	layout := fs.String("layout", "maildir", "output layout (only maildir: Maildir++)")
	seed := fs.Uint64("seed", 1, "random seed; the output depends only on the flags")
	importDir := fs.String("import", "", "copy the message files under this `directory` into a Maildir++ tree instead of generating")
	exclude := fs.String("exclude", "*.md,MANIFEST*", "with -import: comma-separated `globs` of file names to leave out")
	quiet := fs.Bool("q", false, "print nothing on success")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("parse flags: unexpected argument %q", fs.Arg(0))
	}
	if *layout != "maildir" {
		return fmt.Errorf("parse flags: unknown layout %q (want maildir)", *layout)
	}
	opts := options{out: *out, messages: *messages, seed: *seed}
	var err error
	if opts.size, err = parseSize(*size); err != nil {
		return fmt.Errorf("parse -size: %w", err)
	}
	if *one != "" {
		if opts.oneMessageSize, err = parseSize(*one); err != nil {
			return fmt.Errorf("parse -one-message-size: %w", err)
		}
		if opts.oneMessageSize <= 0 {
			return errors.New("parse -one-message-size: must be positive")
		}
	}
	if opts.messages < 0 {
		return errors.New("parse -messages: must not be negative")
	}
	start := time.Now()
	var st stats
	if *importDir != "" {
		var globs []string
		for _, g := range strings.Split(*exclude, ",") {
			if g = strings.TrimSpace(g); g != "" {
				globs = append(globs, g)
			}
		}
		st, err = importTree(*importDir, opts.out, globs)
	} else {
		st, err = generate(opts)
	}
	if err != nil {
		return err
	}
	if !*quiet {
		fmt.Fprintf(stderr, "mailgen: wrote %d messages, %d bytes (%d attachment parts, %d of them repeats, %d attachment bytes) to %s in %.1fs\n",
			st.messages, st.bytes, st.attParts, st.attReused, st.attBytes, opts.out, time.Since(start).Seconds())
	}
	return nil
}

// parseSize parses a byte count such as 1500, 512K, 300M or 1G (powers of
// 1024, an optional trailing B or iB).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(f * float64(mult)), nil
}
