#!/usr/bin/env bash
# bench-graph.sh — what the Microsoft Graph connector adds to a backup:
# `planb backup graph` of a mailbox served by the fake Graph (graph/graphtest,
# in a process of its own, serving from memory over TLS) against
# `planb backup maildir` of the same messages, both into a fresh repository.
#
# Usage: scripts/bench-graph.sh [--messages 20000] [--size 340M] [--seed 1]
#            [--runs 5] [--no-pin]
#
# The fake stands for Microsoft's servers, which run on other machines. By
# default it is pinned to the last CPU and both planb runs to the first
# (taskset), so that the fake takes no CPU time from planb and both
# backups get the same single core: on a two-core machine the fake would
# otherwise take a core's worth of CPU from the Graph run. --no-pin runs
# everything unpinned.
#
# After one round not counted (warm-up), each of the --runs rounds runs
# the Maildir backup, then the Graph backup; the script prints each run
# (wall, planb's CPU, peak RSS, the fake's CPU), the medians, and the
# median of the rounds' Graph/Maildir ratios of wall and CPU time.
# Target (issue 6): the connector adds under 20%.
# Then --runs times each, pinned alike, the two sources alone (every
# message read and thrown away, nothing stored: graph's TestSourceAlone):
# how much of the difference is the cost of reading the messages over
# HTTPS rather than from files.
# Work files live in ${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}
BENCH=bench-graph
MESSAGES=20000 SIZE=340M SEED=1 RUNS=5 PIN=1
while [ $# -gt 0 ]; do
	case $1 in
	--messages) MESSAGES=${2:?}; shift ;;
	--size) SIZE=${2:?}; shift ;;
	--seed) SEED=${2:?}; shift ;;
	--runs) RUNS=${2:?}; shift ;;
	--no-pin) PIN=0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench-graph: unknown argument: $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
. "$ROOT/scripts/bench-lib.sh"
ensure_time
CPUS=$(nproc)
if [ "$PIN" = 1 ] && { [ "$CPUS" -lt 2 ] || ! command -v taskset >/dev/null; }; then
	log "fewer than 2 CPUs or no taskset: running unpinned"
	PIN=0
fi
PLANB_CPU=() FAKE_CPU=()
if [ "$PIN" = 1 ]; then
	PLANB_CPU=(taskset -c 0) FAKE_CPU=(taskset -c "$((CPUS - 1))")
fi

mkdir -p "$WORK/data" "$WORK/bin"
(cd "$ROOT" && build_bin "$WORK/bin/mailgen" ./cmd/mailgen && build_bin "$WORK/bin/planb" ./cmd/planb)
log "building the fake Graph server (graph's test binary; slow the first time)"
(cd "$ROOT" && go test -c -o "$WORK/bin/graph.test" ./graph)
DATA=$WORK/data/maildir-m$MESSAGES-s$SIZE-seed$SEED
generate "$DATA" -messages "$MESSAGES" -size "$SIZE" -seed "$SEED" -q
PLANB=$WORK/bin/planb

G=$WORK/graph-bench
rm -rf "$G"
mkdir -p "$G"
printf bench-repo-password >"$G/password"
printf 's3cret~value' >"$G/secret" # the fake's client secret (graph/fixture_test.go)
chmod 600 "$G/secret"
export PLANB_PASSWORD_FILE=$G/password
PLANB_REPOSITORY=$G/empty-repo "$PLANB" --quiet init >/dev/null

# The fake serves DATA until its standard input closes.
mkfifo "$G/fake-in"
PLANB_GRAPH_SERVE=$DATA "${FAKE_CPU[@]}" "$WORK/bin/graph.test" -test.run '^TestServeFake$' <"$G/fake-in" >"$G/fake.out" 2>&1 &
FAKE=$!
exec 3>"$G/fake-in"
trap 'exec 3>&-; wait "$FAKE" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
	grep -q '^serving' "$G/fake.out" && break
	kill -0 "$FAKE" 2>/dev/null || { cat "$G/fake.out" >&2; exit 1; }
	sleep 0.2
done
read -r _ served URL CERT < <(grep '^serving' "$G/fake.out")
log "fake Graph at $URL serving $served messages$([ "$PIN" = 1 ] && echo " (pinned to CPU $((CPUS - 1)); planb to CPU 0)")"
fake_ticks() { awk '{ print $14 + $15 }' "/proc/$FAKE/stat"; }
HZ=$(getconf CLK_TCK)

# run KIND: back up into a fresh copy of the empty repository; prints
# "wall cpu peak-KiB fake-cpu".
run() {
	local kind=$1 repo=$G/repo-$1 f0 f1
	rm -rf "$repo"
	cp -a "$G/empty-repo" "$repo"
	local args=(backup maildir --path "$DATA")
	if [ "$kind" = graph ]; then
		args=(backup graph --tenant 11111111-2222-3333-4444-555555555555
			--client-id aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee --client-secret-file "$G/secret"
			--mailbox bench@contoso.eu --graph-endpoint "$URL" --authority-host "$URL")
	fi
	f0=$(fake_ticks)
	if ! PLANB_REPOSITORY=$repo SSL_CERT_FILE=$CERT /usr/bin/time -f '%e %U %S %M' -o "$G/t.$kind" \
		"${PLANB_CPU[@]}" "$PLANB" --quiet "${args[@]}" >"$G/$kind.log" 2>&1; then
		log "$kind backup failed"
		tail -n 5 "$G/$kind.log" >&2
		exit 1
	fi
	f1=$(fake_ticks)
	awk -v f="$((f1 - f0))" -v hz="$HZ" '{ printf "%s %.2f %s %.2f\n", $1, $2 + $3, $4, ($0 ~ /./) ? f / hz : 0 }' "$G/t.$kind"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$G/runs"
log "warm-up round (not counted)"
run maildir >/dev/null
run graph >/dev/null
for i in $(seq "$RUNS"); do
	read -r mw mc mk _ < <(run maildir)
	read -r gw gc gk gf < <(run graph)
	printf 'run %d of %d: maildir %6.2f s wall %6.2f s cpu %4d MiB | graph %6.2f s wall %6.2f s cpu %4d MiB, fake %5.2f s cpu | graph/maildir wall %.2f cpu %.2f\n' \
		"$i" "$RUNS" "$mw" "$mc" "$((mk / 1024))" "$gw" "$gc" "$((gk / 1024))" "$gf" \
		"$(awk -v a="$gw" -v b="$mw" 'BEGIN { print a / b }')" "$(awk -v a="$gc" -v b="$mc" 'BEGIN { print a / b }')"
	echo "$mw $mc $mk $gw $gc $gk $gf $(awk -v a="$gw" -v b="$mw" -v c="$gc" -v d="$mc" 'BEGIN { print a / b, c / d }')" >>"$G/runs"
done
# The sources alone: every message read and thrown away, no archive work
# (graph's TestSourceAlone), pinned like the backups; "wall cpu".
alone() {
	local arg="maildir $DATA" out
	[ "$1" = graph ] && arg="graph $URL"
	out=$(PLANB_SOURCE_ALONE=$arg SSL_CERT_FILE=$CERT "${PLANB_CPU[@]}" "$WORK/bin/graph.test" -test.run '^TestSourceAlone$' 2>&1) ||
		{ log "$1 source alone failed"; echo "$out" | tail -n 5 >&2; exit 1; }
	echo "$out" | awk '/^source-alone/ { print $8, $10 }'
}
: >"$G/alone"
for i in $(seq "$RUNS"); do
	read -r amw amc < <(alone maildir)
	read -r agw agc < <(alone graph)
	printf 'sources alone, run %d of %d: maildir %6.2f s wall %6.2f s cpu | graph %6.2f s wall %6.2f s cpu\n' "$i" "$RUNS" "$amw" "$amc" "$agw" "$agc"
	echo "$amw $amc $agw $agc" >>"$G/alone"
done

col() { cut -d' ' -f"$1" "$G/runs" | median; }
acol() { cut -d' ' -f"$1" "$G/alone" | median; }
amw=$(acol 1) amc=$(acol 2) agw=$(acol 3) agc=$(acol 4)
mw=$(col 1) mc=$(col 2) mk=$(col 3) gw=$(col 4) gc=$(col 5) gk=$(col 6) gf=$(col 7) rw=$(col 8) rc=$(col 9)
awk -v n="$served" -v mw="$mw" -v mc="$mc" -v mk="$mk" -v gw="$gw" -v gc="$gc" -v gk="$gk" -v gf="$gf" -v rw="$rw" -v rc="$rc" -v amw="$amw" -v amc="$amc" -v agw="$agw" -v agc="$agc" -v r="$RUNS" -v pin="$PIN" 'BEGIN {
	printf "medians of %d runs%s:\n", r, pin ? " (planb on CPU 0, the fake on its own CPU)" : " (unpinned)"
	printf "  maildir %6.2f s wall (%5.0f msgs/s), %5.2f s CPU, peak RSS %d MiB\n", mw, n / mw, mc, mk / 1024
	printf "  graph   %6.2f s wall (%5.0f msgs/s), %5.2f s CPU, peak RSS %d MiB; the fake: %.2f s CPU\n", gw, n / gw, gc, gk / 1024, gf
	printf "  the Graph connector adds %.0f%% wall time and %.0f%% CPU time (medians of the rounds\047 ratios; target: under 20%%)\n", 100 * (rw - 1), 100 * (rc - 1)
	printf "  the sources alone, reading every message and storing nothing: maildir %.2f s wall, %.2f s CPU; graph %.2f s wall, %.2f s CPU\n", amw, amc, agw, agc
	printf "  so reading the messages over HTTPS instead of from files costs %.2f s CPU, %.0f%% of the Maildir backup\047s CPU time, of the %.2f s the Graph backup takes more\n", agc - amc, 100 * (agc - amc) / mc, gc - mc
	printf "RESULT pinned=%d messages=%d maildir_s=%s maildir_cpu_s=%s graph_s=%s graph_cpu_s=%s fake_cpu_s=%s wall_ratio=%s cpu_ratio=%s maildir_alone_cpu_s=%s graph_alone_cpu_s=%s\n", pin, n, mw, mc, gw, gc, gf, rw, rc, amc, agc
}'
