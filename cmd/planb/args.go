package main

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// reorderArgs moves flags to where urfave/cli/v2 expects them, so that
// they may be written anywhere on the command line: global flags before
// the command, a command's own flags before its arguments. v2 stops
// parsing flags at the first argument, which would make
// `planb export latest --format eml` fail. Everything after "--" stays
// an argument.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	var (
		global, path, own, rest []string
		leaf                    *cli.Command
		commands                = app.Commands
	)
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			var f cli.Flag
			isGlobal := false
			if leaf != nil {
				f = findFlag(leaf.Flags, name)
			}
			if f == nil {
				if g := findFlag(app.Flags, name); g != nil || leaf == nil {
					f, isGlobal = g, true
				}
			}
			dst := &own
			if isGlobal {
				dst = &global
			}
			*dst = append(*dst, a)
			if takesValue(f) && !hasValue && i+1 < len(args) {
				i++
				*dst = append(*dst, args[i])
			}
			continue
		}
		if len(rest) == 0 {
			if c := findCommand(commands, a); c != nil {
				path = append(path, a)
				leaf, commands = c, c.Subcommands
				continue
			}
		}
		rest = append(rest, a)
	}
	out := append([]string{args[0]}, global...)
	out = append(out, path...)
	out = append(out, own...)
	return append(out, rest...)
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	if name == "h" || name == "help" {
		return cli.HelpFlag
	}
	return nil
}

func findCommand(commands []*cli.Command, name string) *cli.Command {
	for _, c := range commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether a flag reads the next argument as its value.
// Unknown flags are assumed not to: urfave reports them anyway.
func takesValue(f cli.Flag) bool {
	if f == nil {
		return false
	}
	_, isBool := f.(*cli.BoolFlag)
	return !isBool
}
