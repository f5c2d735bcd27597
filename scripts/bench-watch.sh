#!/usr/bin/env bash
# bench-watch.sh — the idle cost of planb watch: many Dovecot accounts
# watched with no new mail.
#
# Usage: scripts/bench-watch.sh [--accounts 50] [--duration 600]
#                               [--interval 5m] [--limit-cpu 1] [--limit-rss-mb 150]
#
# Starts a throwaway Dovecot (scripts/dovecot.sh) with ACCOUNTS users, each
# holding 5 messages in INBOX and 2 in a subfolder, initialises a
# repository and runs `planb watch` over a config with one imap source per
# account ([watch] interval as given, the default 5m otherwise;
# snapshot_every at its default). Once every source made its first pass
# (one "snapshot saved" line each), it measures for DURATION seconds with
# no new mail: the CPU time the process used (utime + stime from
# /proc/PID/stat) as a percentage of one core, and its resident set size
# (VmRSS sampled every 5 s: the peak and the last; VmHWM, the peak since
# the start, includes the first pass). Then it sends SIGTERM and reports
# how long the watch took to exit.
#
# Prints "RESULT key=value ..." and PASS or FAIL against the limits (CPU
# percent of one core, RSS MiB). Work files live in
# ${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}/watch.
# Exit status: 0 when both limits hold, 1 otherwise, 2 on bad arguments.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}
BENCH=bench-watch
# shellcheck source=bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
ACCOUNTS=50
DURATION=600
INTERVAL=
LIMIT_CPU=1
LIMIT_RSS_MB=150

while [ $# -gt 0 ]; do
	case $1 in
	--accounts) ACCOUNTS=${2:?--accounts needs a value}; shift ;;
	--duration) DURATION=${2:?--duration needs a value}; shift ;;
	--interval) INTERVAL=${2:?--interval needs a value}; shift ;;
	--limit-cpu) LIMIT_CPU=${2:?--limit-cpu needs a value}; shift ;;
	--limit-rss-mb) LIMIT_RSS_MB=${2:?--limit-rss-mb needs a value}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench-watch: unknown argument: $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

RUN=$WORK/watch
rm -rf "$RUN"
mkdir -p "$RUN" "$WORK/bin"
cd "$ROOT"
log "building planb"
build_bin "$WORK/bin/planb" ./cmd/planb
PLANB=$WORK/bin/planb

users=()
for i in $(seq 1 "$ACCOUNTS"); do users+=("w$i:pw$i"); done
export DOVECOT_DIR=$RUN/dovecot
WATCH_PID=
cleanup() {
	[ -n "$WATCH_PID" ] && kill "$WATCH_PID" 2>/dev/null || true
	"$ROOT/scripts/dovecot.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
log "starting Dovecot with $ACCOUNTS accounts"
eval "$("$ROOT/scripts/dovecot.sh" start "${users[@]}")"
DOVEADM=$(command -v doveadm || echo /usr/bin/doveadm)
msg() {
	printf 'From: bench@example.org\r\nTo: %s@example.org\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nBody of %s.\r\n' "$1" "$2" "$2" "$2"
}
for i in $(seq 1 "$ACCOUNTS"); do
	for j in 1 2 3 4 5; do
		msg "w$i" "w$i-inbox-$j" | "$DOVEADM" -c "$DOVECOT_DIR/dovecot.conf" save -u "w$i"
	done
	for j in 1 2; do
		msg "w$i" "w$i-work-$j" | "$DOVEADM" -c "$DOVECOT_DIR/dovecot.conf" save -u "w$i" -m Work 2>/dev/null ||
			{ "$DOVEADM" -c "$DOVECOT_DIR/dovecot.conf" mailbox create -u "w$i" Work && msg "w$i" "w$i-work-$j" | "$DOVEADM" -c "$DOVECOT_DIR/dovecot.conf" save -u "w$i" -m Work; }
	done
done

printf 'planb-bench-password\n' >"$RUN/password"
chmod 600 "$RUN/password"
"$PLANB" --quiet --repo "$RUN/repo" --password-file "$RUN/password" init
CONFIG=$RUN/planb.toml
{
	printf 'state_dir = "%s"\nconcurrency = 8\n\n[watch]\n' "$RUN/state"
	[ -n "$INTERVAL" ] && printf 'interval = "%s"\n' "$INTERVAL"
	printf '\n[repository.main]\npath = "%s"\npassword_file = "%s"\n' "$RUN/repo" "$RUN/password"
	for i in $(seq 1 "$ACCOUNTS"); do
		printf 'pw%s\n' "$i" >"$RUN/w$i.pass"
		chmod 600 "$RUN/w$i.pass"
		printf '\n[[source]]\nname = "w%s"\nkind = "imap"\nurl = "imap://w%s@127.0.0.1:%s"\npassword_file = "%s"\ninsecure_skip_verify = true\nconnections = 1\nrepository = "main"\n' \
			"$i" "$i" "$DOVECOT_PORT" "$RUN/w$i.pass"
	done
} >"$CONFIG"
chmod 600 "$CONFIG"

log "starting planb watch"
"$PLANB" watch --config "$CONFIG" 2>"$RUN/watch.log" &
WATCH_PID=$!
for _ in $(seq 1 600); do
	n=$(grep -c 'snapshot saved' "$RUN/watch.log" || true)
	[ "$n" -ge "$ACCOUNTS" ] && break
	kill -0 "$WATCH_PID" 2>/dev/null || { cat "$RUN/watch.log" >&2; log "planb watch died"; exit 1; }
	sleep 1
done
n=$(grep -c 'snapshot saved' "$RUN/watch.log" || true)
[ "$n" -ge "$ACCOUNTS" ] || { log "only $n of $ACCOUNTS first snapshots after 10 minutes"; exit 1; }
log "first pass done ($n snapshots); idle for ${DURATION}s"

TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$WATCH_PID/stat"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$WATCH_PID/status"; }
c0=$(cpu)
t0=$(date +%s.%N)
peak=0
end=$(($(date +%s) + DURATION))
while [ "$(date +%s)" -lt "$end" ]; do
	r=$(rss)
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 5
done
c1=$(cpu)
t1=$(date +%s.%N)
last=$(rss)
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$WATCH_PID/status")
snaps_idle=$(($(grep -c 'snapshot saved' "$RUN/watch.log" || true) - n))
failures=$(grep -c 'source failed' "$RUN/watch.log" || true)

s0=$(date +%s.%N)
kill -TERM "$WATCH_PID"
wait "$WATCH_PID" || true
WATCH_PID=
s1=$(date +%s.%N)

read -r cpu_pct wall stop_s < <(awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tck="$TCK" -v s0="$s0" -v s1="$s1" \
	'BEGIN { w = t1 - t0; printf "%.3f %.0f %.2f\n", (c1 - c0) / tck / w * 100, w, s1 - s0 }')
peak_mb=$((peak / 1024))
last_mb=$((last / 1024))
hwm_mb=$((hwm / 1024))
echo "RESULT bench=watch accounts=$ACCOUNTS idle_seconds=$wall interval=${INTERVAL:-5m} cpu_percent_one_core=$cpu_pct rss_peak_mib=$peak_mb rss_last_mib=$last_mb vmhwm_mib=$hwm_mb snapshots_while_idle=$snaps_idle source_failures=$failures sigterm_exit_seconds=$stop_s"
ok=1
if awk -v c="$cpu_pct" -v l="$LIMIT_CPU" 'BEGIN { exit !(c < l) }'; then
	echo "PASS cpu: ${cpu_pct}% of one core (limit ${LIMIT_CPU}%)"
else
	echo "FAIL cpu: ${cpu_pct}% of one core (limit ${LIMIT_CPU}%)"
	ok=0
fi
if [ "$peak_mb" -lt "$LIMIT_RSS_MB" ]; then
	echo "PASS rss: peak ${peak_mb} MiB while idle (limit ${LIMIT_RSS_MB} MiB; VmHWM ${hwm_mb} MiB with the first pass)"
else
	echo "FAIL rss: peak ${peak_mb} MiB while idle (limit ${LIMIT_RSS_MB} MiB)"
	ok=0
fi
[ "$ok" = 1 ]
