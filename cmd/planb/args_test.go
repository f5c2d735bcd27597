package main

import (
	"slices"
	"strings"
	"testing"
)

func TestReorderArgs(t *testing.T) {
	app := newApp(&globalOptions{})
	tests := []struct{ in, want string }{
		{"planb snapshots", "planb snapshots"},
		{"planb --json snapshots", "planb --json snapshots"},
		{"planb snapshots --json", "planb --json snapshots"},
		{"planb export latest --format eml --out /tmp/x", "planb export --format eml --out /tmp/x latest"},
		{"planb export latest --out=/tmp/x -q --folder INBOX", "planb -q export --out=/tmp/x --folder INBOX latest"},
		{"planb backup maildir --path M --repo R --tag a --tag b", "planb --repo R backup maildir --path M --tag a --tag b"},
		{"planb ls latest INBOX --json", "planb --json ls latest INBOX"},
		{"planb ls latest -- --json", "planb ls latest -- --json"},
		{"planb ls latest backup", "planb ls latest backup"}, // a folder named like a command
		{"planb forget --keep-last 1 --prune --dry-run", "planb forget --keep-last 1 --prune --dry-run"},
		{"planb key add --new-password-file F --verbose", "planb --verbose key add --new-password-file F"},
		{"planb nosuch --bogus", "planb --bogus nosuch"},
		{"planb", "planb"},
	}
	for _, tt := range tests {
		got := strings.Join(reorderArgs(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := reorderArgs(app, nil); !slices.Equal(got, nil) {
		t.Errorf("reorderArgs(nil) = %q, want nil", got)
	}
}
