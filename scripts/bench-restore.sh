#!/usr/bin/env bash
# bench-restore.sh — time `planb restore` of the 20,000-message benchmark set
# into an empty Dovecot account, against a sequential baseline: one APPEND
# at a time on one connection, as imapsync-style tools do (the same planb
# binary with --connections 1 --pipeline 1, so both read the repository the
# same way and only the APPEND strategy differs).
#
# Usage: scripts/bench-restore.sh [--messages 20000] [--size 1G] [--seed 1]
#            [--connections 4] [--pipeline 8] [--latency 0]
#            [--format maildir|sdbox|mdbox] [--runs 1] [--plaintext]
#
# With a --pipeline above 1 and a server that offers MULTIAPPEND and
# LITERAL+ (Dovecot does), planb sends batches of messages per APPEND
# command; the baseline (--pipeline 1) always sends one message per
# APPEND and waits for the server's "+" and answer, as imapsync does.
#
# --runs N alternates N planb runs and N baseline runs (each into a fresh
# account), prints every pair and the medians: on a 2-core machine one
# run of each varies by 10-20%.
#
# --plaintext talks IMAP without TLS (imap://, --insecure-plaintext) to
# both runs. Over TLS (the default) Dovecot's login process proxies every
# byte between the TLS connection and the imap process, reading about 1 KB
# per system call: some 11 CPU-seconds per GB that both runs pay alike and
# that, on two cores, weigh on the planb run's wall time. Plaintext shows
# the APPEND strategies alone.
#
# --format stores the mail on the (same, for both runs) Dovecot as Maildir
# (default) or in Dovecot's sdbox/mdbox format.
#
# --latency D (a Go duration such as 5ms) puts scripts/latencyproxy
# between planb and Dovecot, delaying each direction by D: a round trip of
# 2D, as to a provider's server. On 127.0.0.1 (no latency) both runs are
# bound by CPU (Dovecot's and planb's, on the same machine): the speed-up
# comes from the server doing less work per message (batches), not from
# hiding round trips.
#
# The Maildir comes from cmd/mailgen (cached in $WORK/data as the other
# benchmarks do; generated when missing) and is backed up once into
# $WORK/restore-repo. Each run restores into a fresh account of a throwaway
# Dovecot (scripts/dovecot.sh) over implicit TLS. Prints msgs/s, MB/s,
# planb's CPU time (user+sys) against wall time and Dovecot's (all its
# processes, TLS included), the load average, plus a RESULT line.
# Target (issue 5): planb >= 5x the sequential baseline.
# Work files live in ${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}
BENCH=bench-restore
# shellcheck source=bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
MESSAGES=20000 SIZE=1G SEED=1 CONNECTIONS=4 PIPELINE=8 LATENCY=0 FORMAT=maildir RUNS=1 PLAIN=0
while [ $# -gt 0 ]; do
	case $1 in
	--messages) MESSAGES=${2:?}; shift ;;
	--size) SIZE=${2:?}; shift ;;
	--seed) SEED=${2:?}; shift ;;
	--connections) CONNECTIONS=${2:?}; shift ;;
	--pipeline) PIPELINE=${2:?}; shift ;;
	--latency) LATENCY=${2:?}; shift ;;
	--format) FORMAT=${2:?}; shift ;;
	--runs) RUNS=${2:?}; shift ;;
	--plaintext) PLAIN=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench-restore: unknown argument: $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
[ -x /usr/bin/time ] || { echo "bench-restore: /usr/bin/time missing (apt-get install time)" >&2; exit 1; }

mkdir -p "$WORK/data" "$WORK/bin"
DATA=$WORK/data/maildir-m$MESSAGES-s$SIZE-seed$SEED
if [ ! -d "$DATA" ]; then
	echo "bench-restore: generating $DATA" >&2
	(cd "$ROOT" && go run ./cmd/mailgen -out "$DATA" -messages "$MESSAGES" -size "$SIZE" -seed "$SEED" -q)
fi
(cd "$ROOT" && build_bin "$WORK/bin/planb" ./cmd/planb)
PLANB=$WORK/bin/planb

printf bench-repo-password >"$WORK/repo-password"
export PLANB_PASSWORD_FILE=$WORK/repo-password
export PLANB_REPOSITORY=$WORK/restore-repo-m$MESSAGES-s$SIZE-seed$SEED
if [ ! -f "$PLANB_REPOSITORY.done" ]; then
	echo "bench-restore: backing up $DATA into $PLANB_REPOSITORY" >&2
	rm -rf "$PLANB_REPOSITORY"
	"$PLANB" --quiet init >/dev/null
	"$PLANB" --quiet backup maildir --path "$DATA"
	touch "$PLANB_REPOSITORY.done"
fi

export DOVECOT_DIR=$WORK/dovecot-restore
if [ -d "$DOVECOT_DIR" ]; then
	"$ROOT/scripts/dovecot.sh" stop >/dev/null 2>&1 || true
	rm -rf "$DOVECOT_DIR"
fi
PROXY_PID=
cleanup() {
	[ -z "$PROXY_PID" ] || kill "$PROXY_PID" 2>/dev/null || true
	"$ROOT/scripts/dovecot.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
users=()
for i in $(seq "$RUNS"); do users+=("fast$i:bench" "seq$i:bench"); done
eval "$(DOVECOT_MAIL_FORMAT=$FORMAT "$ROOT/scripts/dovecot.sh" start "${users[@]}")"
MASTER_PID=$(cat "$DOVECOT_DIR/run/master.pid")
# dovecot_ticks: CPU ticks of Dovecot's processes that ended (the master
# reaps every imap and imap-login process) plus the master's own.
dovecot_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$MASTER_PID/stat"; }
HZ=$(getconf CLK_TCK)
PORT=$DOVECOT_TLS_PORT SCHEME=imaps TLSFLAG=--insecure-skip-verify MODE=tls
if [ "$PLAIN" = 1 ]; then
	PORT=$DOVECOT_PORT SCHEME=imap TLSFLAG=--insecure-plaintext MODE=plaintext
fi
if [ "$LATENCY" != 0 ]; then
	(cd "$ROOT" && build_bin "$WORK/bin/latencyproxy" ./scripts/latencyproxy)
	"$WORK/bin/latencyproxy" -listen "127.0.0.1:$((PORT + 1))" -to "127.0.0.1:$PORT" -delay "$LATENCY" 2>"$WORK/latencyproxy.log" &
	PROXY_PID=$!
	sleep 0.5
	PORT=$((PORT + 1))
	echo "bench-restore: $LATENCY each way through 127.0.0.1:$PORT" >&2
fi
printf bench >"$WORK/imap-password"
export PLANB_IMAP_PASSWORD_FILE=$WORK/imap-password

# run NAME USER FLAGS...: restore into USER; prints "wall user sys appended
# bytes dovecot-cpu-seconds".
run() {
	local name=$1 user=$2
	shift 2
	local out=$WORK/t.restore-$name t0 t1
	t0=$(dovecot_ticks)
	if ! /usr/bin/time -f '%e %U %S' -o "$out" "$PLANB" --json restore latest \
		--to "$SCHEME://$user@127.0.0.1:$PORT" "$TLSFLAG" "$@" >"$out.json" 2>"$out.log"; then
		echo "bench-restore: $name failed" >&2
		tail -n 5 "$out.log" >&2
		exit 1
	fi
	sleep 1 # let the master reap the session's processes
	t1=$(dovecot_ticks)
	local appended bytes
	appended=$(grep -o '"appended":[0-9]*' "$out.json" | tail -1 | cut -d: -f2)
	bytes=$(grep -o '"bytes":[0-9]*' "$out.json" | tail -1 | cut -d: -f2)
	echo "$(tail -1 "$out") $appended $bytes $(awk -v t="$((t1 - t0))" -v hz="$HZ" 'BEGIN { print t/hz }')"
}

report() { # NAME wall user sys appended bytes dovecot-cpu
	awk -v n="$1" -v w="$2" -v u="$3" -v s="$4" -v m="$5" -v b="$6" -v d="$7" 'BEGIN {
		printf "%-12s %7d msgs %8.1f MB %8.1f s %8.0f msgs/s %7.1f MB/s  planb CPU %6.1f s (%3.0f%% of wall)  dovecot CPU %6.1f s (%.2f ms/msg)\n",
			n, m, b/1e6, w, m/w, b/1e6/w, u+s, 100*(u+s)/w, d, 1000*d/m }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$WORK/t.runs"
for i in $(seq "$RUNS"); do
	echo "bench-restore: run $i of $RUNS: planb restore, --connections $CONNECTIONS --pipeline $PIPELINE" >&2
	read -r fw fu fs fm fb fd < <(run "fast$i" "fast$i" --connections "$CONNECTIONS" --pipeline "$PIPELINE")
	load1=$(cut -d' ' -f1-3 /proc/loadavg)
	echo "bench-restore: run $i of $RUNS: sequential baseline, --connections 1 --pipeline 1" >&2
	read -r sw su ss sm sb sd < <(run "seq$i" "seq$i" --connections 1 --pipeline 1)
	load2=$(cut -d' ' -f1-3 /proc/loadavg)
	echo "run $i of $RUNS, format $FORMAT, $MODE; load average after planb: $load1; after the baseline: $load2 ($(nproc) CPUs)"
	report planb "$fw" "$fu" "$fs" "$fm" "$fb" "$fd"
	report sequential "$sw" "$su" "$ss" "$sm" "$sb" "$sd"
	awk -v f="$fw" -v s="$sw" 'BEGIN { printf "speed-up: %.1fx (target >= 5x)\n", s/f }'
	echo "RESULT latency=$LATENCY format=$FORMAT mode=$MODE planb_s=$fw planb_cpu_s=$(awk -v u="$fu" -v s="$fs" 'BEGIN{print u+s}') dovecot_cpu_s=$fd seq_s=$sw seq_dovecot_cpu_s=$sd messages=$fm bytes=$fb"
	echo "$fw $sw $(awk -v f="$fw" -v s="$sw" 'BEGIN { print s/f }')" >>"$WORK/t.runs"
done
if [ "$RUNS" -gt 1 ]; then
	mf=$(cut -d' ' -f1 "$WORK/t.runs" | median)
	ms=$(cut -d' ' -f2 "$WORK/t.runs" | median)
	mr=$(cut -d' ' -f3 "$WORK/t.runs" | median)
	echo "medians of $RUNS: planb $mf s ($(awk -v m="$fm" -v w="$mf" 'BEGIN { printf "%.0f", m/w }') msgs/s), sequential $ms s; speed-up of the medians $(awk -v f="$mf" -v s="$ms" 'BEGIN { printf "%.1f", s/f }')x, median of the per-run speed-ups ${mr}x (target >= 5x)"
fi
