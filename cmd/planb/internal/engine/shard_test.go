package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		ok   bool
	}{
		{"", Shard{}, true},
		{"0/1", Shard{0, 1}, true},
		{"2/3", Shard{2, 3}, true},
		{"3/3", Shard{}, false},
		{"-1/3", Shard{}, false},
		{"1/0", Shard{}, false},
		{"1", Shard{}, false},
		{"a/b", Shard{}, false},
	} {
		got, err := ParseShard(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestShardSpread: over N shards every source and every Graph mailbox
// falls in exactly one, the same one every time, and 300 names spread
// over 3 shards roughly evenly.
func TestShardSpread(t *testing.T) {
	var all []*SourceConfig
	for i := range 300 {
		all = append(all, &SourceConfig{Name: fmt.Sprintf("account%d", i), Kind: "imap"})
	}
	all = append(all, &SourceConfig{Name: "tenant", Kind: "graph"})
	var mailboxes []string
	for i := range 300 {
		mailboxes = append(mailboxes, fmt.Sprintf("user%d@contoso.eu", i))
	}
	seen := make(map[string]int)
	for k := range 3 {
		sh := Shard{k, 3}
		n := 0
		for _, sc := range sh.Sources(all) {
			if sc.Kind == "graph" {
				continue
			}
			seen[sc.Name]++
			n++
		}
		m := sh.mailboxes("tenant", mailboxes)
		for _, mb := range m {
			seen["tenant/"+mb]++
		}
		if n < 70 || len(m) < 70 {
			t.Errorf("shard %v takes %d of 300 sources and %d of 300 mailboxes, want about 100 each", sh, n, len(m))
		}
		if !slices.Equal(m, sh.mailboxes("tenant", mailboxes)) || !sh.takes("tenant", strings.ToUpper(m[0])) {
			t.Errorf("shard %v: mailboxes not stable, or case matters", sh)
		}
	}
	if len(seen) != 600 {
		t.Errorf("%d sources and mailboxes in some shard, want 600", len(seen))
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("%s in %d shards, want 1", name, n)
		}
	}
}
