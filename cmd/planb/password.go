package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"codeberg.org/planb/planb/cmd/planb/internal/engine"
)

// errNoPassword is returned when no password source is configured and stdin
// is not a terminal to prompt on.
var errNoPassword = errors.New("no repository password: set PLANB_PASSWORD_FILE, --password-file, --password-command or PLANB_PASSWORD")

// passwordOptions are the places a repository password can come from, in
// order of precedence: File, Command, Env, then a prompt.
type passwordOptions struct {
	File    string // --password-file or PLANB_PASSWORD_FILE
	Command string // --password-command or PLANB_PASSWORD_COMMAND, run with sh -c
	Env     string // PLANB_PASSWORD

	// Prompt asks for a password on the terminal; nil when stdin is not a
	// terminal.
	Prompt func(prompt string) (string, error)
	// Warn, if set, is told about a File that others may read.
	Warn func(msg string)
}

// get returns the repository password. With confirm (init, new passwords
// typed at a prompt) a prompted password must be typed twice.
func (o passwordOptions) get(ctx context.Context, what string, confirm bool) (string, error) {
	var (
		pw  string
		err error
	)
	switch {
	case o.File != "":
		pw, err = readPasswordFile(o.File, o.Warn)
	case o.Command != "":
		pw, err = runPasswordCommand(ctx, o.Command)
	case o.Env != "":
		pw = o.Env
	case o.Prompt != nil:
		pw, err = promptPassword(o.Prompt, what, confirm)
	default:
		return "", errNoPassword
	}
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", fmt.Errorf("%s: empty password", what)
	}
	return pw, nil
}

// readPasswordFile reads a password file (or another secret file) and
// strips one trailing newline ("\n" or "\r\n"), as left by editors and
// echo. If group or others may read the file, warn (when not nil) is told
// so; the secret is read all the same.
func readPasswordFile(name string, warn func(msg string)) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && warn != nil {
		if p := engine.LooseSecret(name, fi); p != "" {
			warn(p)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	return trimNewline(string(b)), nil
}

// runPasswordCommand runs cmd with sh -c and returns its standard output
// without one trailing newline. Its standard error goes to ours, so that a
// password manager can ask questions.
func runPasswordCommand(ctx context.Context, cmd string) (string, error) {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	var out bytes.Buffer
	c.Stdout = &out
	c.Stderr = os.Stderr
	c.Stdin = os.Stdin
	if err := c.Run(); err != nil {
		// The command itself is not repeated: it may contain a secret.
		// %v, not %w: an *exec.ExitError would pass for a cli.ExitCoder.
		return "", fmt.Errorf("password command: %v", err)
	}
	return trimNewline(out.String()), nil
}

func trimNewline(s string) string {
	if s, ok := strings.CutSuffix(s, "\r\n"); ok {
		return s
	}
	s, _ = strings.CutSuffix(s, "\n")
	return s
}

func promptPassword(prompt func(string) (string, error), what string, confirm bool) (string, error) {
	pw, err := prompt("enter " + what + ": ")
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	if !confirm {
		return pw, nil
	}
	again, err := prompt("enter " + what + " again: ")
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	if pw != again {
		return "", fmt.Errorf("%ss do not match", what)
	}
	return pw, nil
}
