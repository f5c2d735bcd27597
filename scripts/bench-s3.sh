#!/usr/bin/env bash
# bench-s3.sh — the archive benchmark against S3: back up the generated
# Maildir (cmd/mailgen, 20000 messages, 1G, seed 1) once into a local
# repository and once into an S3 repository on versitygw on loopback
# (scripts/s3.sh), and report both throughputs and their ratio (the target
# is at least 70%).
#
# Usage: scripts/bench-s3.sh [--size 1G] [--messages 20000] [--seed 1] [--runs 1]
#
# Each run uses a fresh repository; the median time is reported. The data
# is read once before timing (warm page cache); versitygw serves a folder
# under the work directory, on the same disk as the local repository.
# Work files live in ${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}. The
# last line is machine-readable: "RESULT bench=s3 ...".
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}
BENCH=bench-s3
# shellcheck source=bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
SIZE=1G
MESSAGES=20000
SEED=1
RUNS=1

while [ $# -gt 0 ]; do
	case $1 in
	--size) SIZE=${2:?--size needs a value}; shift ;;
	--messages) MESSAGES=${2:?--messages needs a value}; shift ;;
	--seed) SEED=${2:?--seed needs a value}; shift ;;
	--runs) RUNS=${2:?--runs needs a value}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench-s3: unknown argument: $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
case $RUNS in '' | *[!0-9]* | 0) echo "bench-s3: --runs must be a positive integer" >&2; exit 2 ;; esac

ensure_time
mkdir -p "$WORK/bin" "$WORK/data"
log "building planb and mailgen"
(cd "$ROOT" && build_bin "$WORK/bin/planb" ./cmd/planb && build_bin "$WORK/bin/mailgen" ./cmd/mailgen)
DATA="$WORK/data/maildir-m$MESSAGES-s$SIZE-seed$SEED"
generate "$DATA" -messages "$MESSAGES" -size "$SIZE" -seed "$SEED"
BYTES=$(du -sb "$DATA" | cut -f1)
log "reading $DATA once ($((BYTES >> 20)) MiB)"
find "$DATA" -type f -exec cat {} + >/dev/null

RUN="$WORK/s3-run"
rm -rf "$RUN"
mkdir -p "$RUN"
printf 'bench\n' >"$RUN/password"
export PLANB_PASSWORD_FILE="$RUN/password"

S3_DIR="$RUN/s3"
export S3_DIR
mkdir -p "$S3_DIR"
eval "$("$ROOT/scripts/s3.sh" start)"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
trap '"$ROOT/scripts/s3.sh" stop "$S3_PID" "$S3_DIR"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# bench NAME REPO-PREFIX: RUNS backups into fresh repositories; prints the
# median seconds.
bench() {
	local name=$1 i repo times=()
	for i in $(seq "$RUNS"); do
		case $name in
		local) repo="$RUN/local-$i" ;;
		s3) repo="s3:$S3_ENDPOINT/$S3_BUCKET/bench-$i" ;;
		esac
		PLANB_REPOSITORY=$repo "$WORK/bin/planb" --s3-insecure-plaintext --quiet init
		PLANB_REPOSITORY=$repo timed "$RUN/$name-$i" "$WORK/bin/planb" --s3-insecure-plaintext --quiet backup maildir --path "$DATA"
		[ "$T_RC" = 0 ] || { log "$name backup $i failed:"; cat "$RUN/$name-$i.out" >&2; exit 1; }
		log "$name run $i: ${T_SEC}s, peak RSS $((T_KB / 1024)) MiB"
		times+=("$T_SEC")
		case $name in local) rm -rf "$repo" ;; esac
	done
	printf '%s\n' "${times[@]}" | median
}

T_LOCAL=$(bench local)
T_S3=$(bench s3)
awk -v b="$BYTES" -v tl="$T_LOCAL" -v ts="$T_S3" 'BEGIN {
	ml = b / 1048576 / tl; ms = b / 1048576 / ts
	printf "%-8s %10s %12s\n", "REPO", "TIME", "THROUGHPUT"
	printf "%-8s %9.1fs %8.1f MiB/s\n", "local", tl, ml
	printf "%-8s %9.1fs %8.1f MiB/s\n", "s3", ts, ms
	printf "s3/local: %.0f%% (target >= 70%%)\n", 100 * ms / ml
	printf "RESULT bench=s3 bytes=%d local_sec=%s s3_sec=%s local_mibs=%.1f s3_mibs=%.1f ratio=%.2f\n", b, tl, ts, ml, ms, ms / ml
}'
