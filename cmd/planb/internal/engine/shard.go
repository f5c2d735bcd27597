package engine

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Shard is the part K of N that a `planb run --shard K/N` backs up: several
// machines (or the pods of a Kubernetes Indexed Job) run the same config,
// each with its own K, and between them back up every source once. The
// zero shard is the whole config.
type Shard struct {
	K, N int
}

// ParseShard parses "K/N" with 0 <= K < N (K counts from 0, as a
// Kubernetes Indexed Job's JOB_COMPLETION_INDEX does). The empty string is
// the whole config.
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Shard{}, nil
	}
	ks, ns, ok := strings.Cut(s, "/")
	k, kerr := strconv.Atoi(ks)
	n, nerr := strconv.Atoi(ns)
	if !ok || kerr != nil || nerr != nil || n < 1 || k < 0 || k >= n {
		return Shard{}, fmt.Errorf("--shard %q: want K/N with 0 <= K < N, such as 0/3", s)
	}
	return Shard{K: k, N: n}, nil
}

// whole reports whether the shard is the whole config.
func (sh Shard) whole() bool { return sh.N <= 1 }

func (sh Shard) String() string { return fmt.Sprintf("%d/%d", sh.K, sh.N) }

// of returns the shard key falls in: a stable hash (SHA-256), so that
// every machine, whatever its planb version or Go's map seeds, agrees.
func shardOf(key string, n int) int {
	sum := sha256.Sum256([]byte(key))
	return int(binary.BigEndian.Uint64(sum[:8]) % uint64(n))
}

// takes reports whether the shard backs up the source named name (for a
// Graph source: its mailbox mailbox, case-insensitively; "" for any other
// source).
func (sh Shard) takes(name, mailbox string) bool {
	if sh.whole() {
		return true
	}
	key := name
	if mailbox != "" {
		key = name + "\x00" + strings.ToLower(mailbox)
	}
	return shardOf(key, sh.N) == sh.K
}

// Sources returns the sources of the config the shard backs up, in their
// order: every source whose name falls in it, and every Graph source,
// whose mailboxes the shard spreads one by one (see mailboxes).
func (sh Shard) Sources(all []*SourceConfig) []*SourceConfig {
	if sh.whole() {
		return all
	}
	var out []*SourceConfig
	for _, sc := range all {
		if sc.Kind == "graph" || sh.takes(sc.Name, "") {
			out = append(out, sc)
		}
	}
	return out
}

// mailboxes returns the mailboxes of the Graph source named name that the
// shard backs up, in their order.
func (sh Shard) mailboxes(name string, all []string) []string {
	if sh.whole() {
		return all
	}
	var out []string
	for _, mb := range all {
		if sh.takes(name, mb) {
			out = append(out, mb)
		}
	}
	return out
}

// maintains reports whether the shard applies retention, prunes and
// checks: shard 0 does, once its backups are done (waiting, up to
// --lock-wait, for the other shards' backups to release the repository);
// the others only back up.
func (sh Shard) maintains() bool { return sh.whole() || sh.K == 0 }

// StateName returns the state file of a shard: its own per shard, so that
// shards running on one host at once do not overwrite each other's.
func (sh Shard) StateName(name string) string {
	if sh.whole() {
		return name
	}
	return strings.TrimSuffix(name, ".json") + fmt.Sprintf(".shard-%d-of-%d.json", sh.K, sh.N)
}
