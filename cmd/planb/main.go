package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"codeberg.org/planb/planb/archive"
	"codeberg.org/planb/planb/archive/repo"
	"codeberg.org/planb/planb/imap"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitPartial = 3 // finished, but some messages were skipped
)

// memoryLimit is planb's soft heap limit. A backup's live heap is tens of
// megabytes (the folder lists and the index); without a limit the runtime
// lets the heap grow to twice that between collections (GOGC=100). Near the
// limit it collects more often; past it, it never spends more than half
// the CPU on that. GOMEMLIMIT overrides it.
const memoryLimit = 96 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks the command to wind down (release locks,
	// write its report); a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the process's exit code.
func run(ctx context.Context, args []string, stdin *os.File, stdout, stderr io.Writer) int {
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: &lockedWriter{w: stderr}}
	app := newApp(g)
	err := app.RunContext(ctx, reorderArgs(app, args))
	return report(stderr, err)
}

// errPartial says that a command finished but skipped some messages or
// whole folders; each of them has already been named in the output.
type errPartial struct {
	Messages int
	Folders  int
	What     string // says what was partial, before the counts
	Hint     string // printed after the warning, as the last line
}

// newPartial counts skipped messages and folders (entries without a
// source ID); it returns nil if there are none.
func newPartial(skipped []repo.Skipped) error {
	if len(skipped) == 0 {
		return nil
	}
	e := &errPartial{}
	for _, s := range skipped {
		if s.SourceID == "" {
			e.Folders++
		} else {
			e.Messages++
		}
	}
	return e
}

func (e *errPartial) Error() string {
	var parts []string
	if e.Messages > 0 {
		parts = append(parts, plural(e.Messages, "message"))
	}
	if e.Folders > 0 {
		parts = append(parts, plural(e.Folders, "folder"))
	}
	msg := strings.Join(parts, " and ") + " skipped"
	switch {
	case e.What != "" && len(parts) > 0:
		msg = e.What + ", " + msg
	case e.What != "":
		msg = e.What
	}
	return msg
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errNoRepository is returned when --repo names no repository.
var errNoRepository = errors.New("repository does not exist")

// report prints err on stderr and returns the exit code it maps to. It is
// the one place that decides exit codes and the wording of errors.
func report(stderr io.Writer, err error) int {
	code, msg, hint := classify(err)
	if code == exitOK {
		return code
	}
	if code == exitPartial {
		fmt.Fprintf(stderr, "planb: warning: %s\n", msg)
	} else {
		fmt.Fprintf(stderr, "planb: error: %s\n", msg)
	}
	if hint != "" {
		fmt.Fprintf(stderr, "planb: hint: %s\n", hint)
	}
	return code
}

// classify maps an error to an exit code, a one-line message and a hint.
func classify(err error) (code int, msg, hint string) {
	if err == nil {
		return exitOK, "", ""
	}
	var (
		partial *errPartial
		usage   *usageError
		exit    cli.ExitCoder
	)
	msg = oneLine(err.Error())
	switch {
	case errors.As(err, &partial):
		return exitPartial, msg, partial.Hint
	case errors.Is(err, repo.ErrWrongPassword):
		return exitFailed, "wrong password", ""
	case errors.Is(err, repo.ErrLocked):
		if strings.Contains(msg, "unreadable lock") {
			return exitFailed, msg, "if no other planb process uses the repository, remove every lock with `planb unlock --remove-all`"
		}
		return exitFailed, msg, "if no other planb process uses the repository, remove stale locks with `planb unlock`"
	case errors.Is(err, repo.ErrLockLost):
		return exitFailed, msg, "nothing was committed after the lock was lost; check the connection to the repository and run again"
	case errors.Is(err, repo.ErrDamaged):
		return exitFailed, msg, "`planb check --read-data` names the damage; `planb repair index` and `planb repair snapshots` repair what can be"
	case errors.Is(err, errNoRepository):
		return exitFailed, msg, "create one with `planb init`"
	case errors.Is(err, errNoPassword):
		return exitFailed, msg, ""
	case errors.Is(err, archive.ErrLimit):
		return exitFailed, msg, "Gmail sends about 2,500 MB a day over IMAP; what was stored is kept: run the same backup again later (tomorrow), it goes on without fetching it again"
	case errors.Is(err, imap.ErrAuth):
		return exitFailed, msg, "check the user name and the IMAP password (--imap-password-file, PLANB_IMAP_PASSWORD)"
	case errors.Is(err, imap.ErrCertificate):
		return exitFailed, msg, "give the server's certificate with --ca-file FILE (Proton Mail Bridge: export it from its settings), or if you trust this server, use --insecure-skip-verify"
	case errors.Is(err, imap.ErrUnreachable):
		return exitFailed, msg, "check the host name, the port and the network"
	case errors.Is(err, context.Canceled):
		return exitFailed, "interrupted", ""
	case errors.As(err, &usage):
		return exitUsage, msg, "see `planb help`"
	case errors.As(err, &exit):
		// urfave/cli's own errors ("No help topic for ...") and flag
		// parsing errors: all usage mistakes.
		return exitUsage, msg, "see `planb help`"
	}
	return exitFailed, msg, ""
}

// oneLine joins the lines of a multi-line error message.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "; ")
}
