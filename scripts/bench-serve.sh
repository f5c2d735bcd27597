#!/usr/bin/env bash
# bench-serve.sh — mbsync pulling the 20,000-message benchmark set from
# `planb serve` against mbsync pulling the same mail from Dovecot, in the
# same run (issue 17): messages/s of each, planb serve's peak RSS during
# the pull, and how soon after `planb serve` starts its first message is
# readable.
#
# Usage: scripts/bench-serve.sh [--messages 20000] [--size 1G] [--seed 1]
#            [--runs 3] [--warmup 1] [--fsync no|yes] [--into DIR]
#            [--pin no|yes] [--compression max|fast] [--tls no|yes]
#            [--depth N]
#
# The mail is a Maildir made by cmd/mailgen (cached in $WORK/data, as the
# other benchmarks do), backed up once into $WORK/serve-repo-... and copied
# into a throwaway Dovecot (scripts/dovecot.sh), indexed and warmed there
# before any timing; the repository's files are read once too. --warmup
# pulls from each server go untimed before the runs. Each run, in turn:
#   - starts `planb serve` on 127.0.0.1 (plaintext: loopback), and
#     scripts/firstmessage connects as soon as it listens, logs in and
#     fetches INBOX's first message: the milliseconds from starting planb
#     serve to that message ("first message");
#   - mbsync pulls every folder from planb serve into a fresh Maildir;
#     planb serve's peak RSS is its VmHWM (/proc) after the pull;
#   - mbsync pulls every folder from Dovecot (plaintext port too) into a
#     fresh Maildir.
# (--tls yes below makes both pulls, and the first message, TLS.)
# mbsync runs with the same configuration against both (FSync no by
# default, so that the servers, not the disk, are measured; --fsync yes is
# mbsync's default) and must write every message. Prints each run, the
# medians and RESULT lines. Targets: planb serve's messages/s >= Dovecot's,
# first message < 2 s, peak RSS < 150 MiB. On a busy machine runs vary:
# use --runs 5 and look at the spread. mbsync writes its Maildirs under
# DIR (default $WORK/serve-pulled); with a tmpfs such as /dev/shm the
# client's file system is left out and the servers alone are compared.
# --pin yes runs the server (planb serve, or every process of Dovecot) on
# CPU 0 and mbsync on CPU 1 (taskset), for both servers alike: mbsync,
# whose CPU bounds the pull on loopback, then has a core of its own, as
# with a client and a server on two machines. mbsync's own CPU for the
# same pull still varies from run to run.
# --compression is that of the benchmark repository (`planb init
# --compression`); each has its own, kept between runs.
# --tls yes pulls over implicit TLS from both, as a client on another
# machine must (planb serve refuses plaintext off loopback): planb serve
# gets Dovecot's self-signed certificate and key (--tls-cert, --tls-key),
# mbsync trusts that certificate (CertificateFile, Host localhost) and
# pulls from Dovecot's TLS port; each server keeps its default ciphers.
# --depth N sets mbsync's PipelineDepth (default: mbsync's, unlimited):
# with 1 mbsync waits for each answer before its next command, as a client
# reading one message at a time does, and the servers' latency counts.
#
# Work files live in ${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}.
# isync and GNU time are installed with apt-get when missing (as root).
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}
BENCH=bench-serve
# shellcheck source=bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
MESSAGES=20000 SIZE=1G SEED=1 RUNS=3 WARMUP=1 FSYNC=no INTO=$WORK/serve-pulled PIN=no COMPRESSION=max TLS=no DEPTH=
parse_args messages=MESSAGES size=SIZE seed=SEED runs=RUNS warmup=WARMUP fsync=FSYNC into=INTO pin=PIN compression=COMPRESSION tls=TLS depth=DEPTH -- "$@"
case $TLS in yes | no) ;; *) echo "bench-serve: --tls yes or no" >&2; exit 2 ;; esac
case $DEPTH in '' | [1-9] | [1-9][0-9]*) ;; *) echo "bench-serve: --depth a number from 1" >&2; exit 2 ;; esac
case $FSYNC in yes | no) ;; *) echo "bench-serve: --fsync yes or no" >&2; exit 2 ;; esac
case $COMPRESSION in max | fast) ;; *) echo "bench-serve: --compression max or fast" >&2; exit 2 ;; esac
PIN_SERVER=() PIN_CLIENT=()
case $PIN in
no) ;;
yes)
	[ "$(nproc)" -ge 2 ] || { echo "bench-serve: --pin yes needs 2 CPUs" >&2; exit 2; }
	PIN_SERVER=(taskset -c 0) PIN_CLIENT=(taskset -c 1)
	;;
*) echo "bench-serve: --pin yes or no" >&2; exit 2 ;;
esac

ensure_cmd mbsync isync
ensure_time

mkdir -p "$WORK/data" "$WORK/bin"
(cd "$ROOT" && build_bin "$WORK/bin/mailgen" ./cmd/mailgen && build_bin "$WORK/bin/planb" ./cmd/planb &&
	build_bin "$WORK/bin/firstmessage" ./scripts/firstmessage)
PLANB=$WORK/bin/planb
DATA=$WORK/data/maildir-m$MESSAGES-s$SIZE-seed$SEED
generate "$DATA" -messages "$MESSAGES" -size "$SIZE" -seed "$SEED" -q

printf bench-repo-password >"$WORK/repo-password"
export PLANB_PASSWORD_FILE=$WORK/repo-password
export PLANB_REPOSITORY=$WORK/serve-repo-m$MESSAGES-s$SIZE-seed$SEED
[ "$COMPRESSION" = max ] || PLANB_REPOSITORY+=-$COMPRESSION
if ! repo_current "$PLANB_REPOSITORY" "$(cat "$DATA.done")"; then
	log "backing up $DATA into $PLANB_REPOSITORY"
	rm -rf "$PLANB_REPOSITORY"
	"$PLANB" --quiet init --compression "$COMPRESSION" >/dev/null
	"$PLANB" --quiet backup maildir --path "$DATA"
	mark_repo "$PLANB_REPOSITORY" "$(cat "$DATA.done")"
fi
printf '[[user]]\nname = "bench"\npassword_hash = "%s"\nsources = ["*"]\n' "$(printf bench | "$PLANB" serve hash-password)" >"$WORK/serve-users.toml"

# Every pull writes a Maildir of its own. On a disk all are deleted only
# at the end: when each pull deleted the last one, the kernel's check of
# recently deleted inodes (see remove in bench-lib.sh) cost mbsync 4-8 s
# of CPU per pull and hid the servers' own speed. On a tmpfs, which has no
# such check, each pull is deleted once counted: kept, ten pulls held
# 10 GB of memory, and over a run mbsync's CPU for the same pull grew
# from 2.8 s to 7 s, for both servers.
PULLED=$INTO/planb-bench-serve
DROP_PULLS=no
[ "$(stat -f -c %T "$INTO" 2>/dev/null)" != tmpfs ] || DROP_PULLS=yes
export DOVECOT_DIR=$WORK/dovecot-serve
if [ -d "$DOVECOT_DIR" ]; then
	"$ROOT/scripts/dovecot.sh" stop >/dev/null 2>&1 || true
fi
remove "$DOVECOT_DIR" "$PULLED"
PULLS=0
SERVE_PID=
cleanup() {
	[ -z "$SERVE_PID" ] || kill "$SERVE_PID" 2>/dev/null || true
	"$ROOT/scripts/dovecot.sh" stop >/dev/null 2>&1 || true
	rm -rf "$PULLED" "$WORK/serve-mbsync-state"
}
trap cleanup EXIT
eval "$("$ROOT/scripts/dovecot.sh" start bench:bench)"
log "loading $DATA into Dovecot"
cp -a "$DATA" "$DOVECOT_DIR/mail/bench/Maildir"
chown -R "$DOVECOT_MAIL_UID:$DOVECOT_MAIL_GID" "$DOVECOT_DIR/mail/bench"
DOVEADM=$(command -v doveadm || echo /usr/bin/doveadm)
"$DOVEADM" -c "$DOVECOT_DIR/dovecot.conf" mailbox status -u bench -t messages '*' >/dev/null
"$DOVEADM" -c "$DOVECOT_DIR/dovecot.conf" fetch -u bench 'uid flags date.received size.physical' mailbox '*' all >/dev/null
find "$DOVECOT_DIR/mail/bench" -type f -exec cat {} + >/dev/null
# planb serve's repository is read into the page cache as Dovecot's mail is.
find "$PLANB_REPOSITORY" -type f -exec cat {} + >/dev/null
TOTAL=$("$DOVEADM" -c "$DOVECOT_DIR/dovecot.conf" mailbox status -u bench -t messages '*' | sed 's/.*=//')
BYTES=$(du -sb "$DATA" | cut -f1)
log "$TOTAL messages, $BYTES bytes; mbsync FSync $FSYNC, TLS $TLS, PipelineDepth ${DEPTH:-unlimited}; repository (compression $COMPRESSION) $(du -sb "$PLANB_REPOSITORY" | cut -f1) bytes"

MASTER_PID=$(cat "$DOVECOT_DIR/run/master.pid")
if [ "$PIN" = yes ]; then
	# The master forks every session's processes: they inherit its CPU.
	for p in $MASTER_PID $(pgrep -P "$MASTER_PID"); do
		taskset -a -c -p 0 "$p" >/dev/null
	done
fi
# dovecot_ticks: CPU ticks of Dovecot's processes that ended (the master
# reaps every imap and imap-login process) plus the master's own.
dovecot_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$MASTER_PID/stat"; }

# pull NAME PORT: mbsync pulls every folder from 127.0.0.1:PORT into a
# fresh Maildir; sets T_SEC, T_KB (mbsync's peak RSS), T_CPU (mbsync's
# CPU seconds) and T_PRE (the times mbsync was preempted: involuntary
# context switches).
pull() {
	PULLS=$((PULLS + 1))
	local name=$1 port=$2 dest=$PULLED/$PULLS-$1
	rm -rf "$WORK/serve-mbsync-state"
	mkdir -p "$dest" "$WORK/serve-mbsync-state"
	cat >"$WORK/serve-mbsyncrc" <<EOF
FSync $FSYNC

IMAPAccount bench
$(if [ "$TLS" = yes ]; then
		printf 'Host localhost\nSSLType IMAPS\nCertificateFile %s\n' "$DOVECOT_CERT"
	else
		printf 'Host 127.0.0.1\nSSLType None\n'
	fi)
Port $port
User bench
Pass bench
$([ -z "$DEPTH" ] || echo "PipelineDepth $DEPTH")

IMAPStore remote
Account bench

MaildirStore local
Path $dest/
Inbox $dest/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState $WORK/serve-mbsync-state/
CopyArrivalDate yes
EOF
	# With FSync no, the pages one pull leaves dirty would otherwise be
	# written back during the next.
	sync
	"${PIN_CLIENT[@]}" /usr/bin/time -f '%e %M %U %S %c' -o "$WORK/t.serve-$name.time" mbsync -c "$WORK/serve-mbsyncrc" -a >"$WORK/t.serve-$name.out" 2>&1 && T_RC=0 || T_RC=$?
	read -r T_SEC T_KB T_USER T_SYS T_PRE <"$WORK/t.serve-$name.time"
	T_CPU=$(awk -v u="$T_USER" -v s="$T_SYS" 'BEGIN { printf "%.1f", u + s }')
	if [ "$T_RC" != 0 ]; then
		log "mbsync from $name failed:"
		tail -n 5 "$WORK/t.serve-$name.out" >&2
		exit 1
	fi
	local got
	got=$(find "$dest" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
	if [ "$got" != "$TOTAL" ]; then
		log "mbsync from $name wrote $got messages, want $TOTAL"
		exit 1
	fi
	[ "$DROP_PULLS" = no ] || rm -rf "$dest"
}

HZ=$(getconf CLK_TCK)
cpu_seconds() { awk -v hz="$HZ" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat"; }
rate() { awk -v n="$TOTAL" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$WORK/t.serve-runs"
# serve_run: planb serve is started, its first message timed, mbsync
# pulls from it; sets ps pm pp first hwm pcpu.
serve_run() {
	PORT=$("$WORK/bin/firstmessage" -freeport)
	local tls=() ca=()
	if [ "$TLS" = yes ]; then
		tls=(--tls-cert "$DOVECOT_CERT" --tls-key "$DOVECOT_KEY")
		ca=(-ca "$DOVECOT_CERT")
	fi
	t0=$(date +%s%N)
	"${PIN_SERVER[@]}" "$PLANB" --quiet serve --listen "127.0.0.1:$PORT" "${tls[@]}" --users "$WORK/serve-users.toml" >"$WORK/t.serve-server.log" 2>&1 &
	SERVE_PID=$!
	first=$("$WORK/bin/firstmessage" -addr "127.0.0.1:$PORT" "${ca[@]}" -user bench -password bench -since "$t0")
	pull planb "$PORT"
	ps=$T_SEC pm=$T_CPU pp=$T_PRE
	hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$SERVE_PID/status")
	pcpu=$(cpu_seconds "$SERVE_PID")
	kill "$SERVE_PID"
	wait "$SERVE_PID" || true
	SERVE_PID=
}

# dovecot_run: mbsync pulls from Dovecot; sets ds dm dp dcpu.
dovecot_run() {
	local d0
	d0=$(dovecot_ticks)
	if [ "$TLS" = yes ]; then
		pull dovecot "$DOVECOT_TLS_PORT"
	else
		pull dovecot "$DOVECOT_PORT"
	fi
	ds=$T_SEC dm=$T_CPU dp=$T_PRE
	sleep 1 # let the master reap the session's processes
	dcpu=$(awk -v t="$(($(dovecot_ticks) - d0))" -v hz="$HZ" 'BEGIN { printf "%.1f", t / hz }')
}

wait_removed
# Untimed pulls first: the first pull of a series was slower than the rest
# whichever server it was from (mbsync's CPU 4.9 s against 2.3-3.0 s, the
# tmpfs it writes to filling for the first time).
for _ in $(seq "$WARMUP"); do
	serve_run
	dovecot_run
done
: >"$WORK/t.serve-runs"
for i in $(seq "$RUNS"); do
	# Alternate which goes first: the load of a shared machine drifts.
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	if [ $((i % 2)) = 1 ]; then
		serve_run
		dovecot_run
	else
		dovecot_run
		serve_run
	fi
	echo "run $i of $RUNS (load average before: $load; $(nproc) CPUs):"
	printf '  %-23s %5.1f s %5s msgs/s %6.1f MB/s  server CPU %4s s  mbsync CPU %4s s, preempted %5d times  first message %4d ms  peak RSS %3d MiB\n' \
		"mbsync from planb serve" "$ps" "$(rate "$ps")" "$(awk -v b="$BYTES" -v s="$ps" 'BEGIN { print b/1e6/s }')" "$pcpu" "$pm" "$pp" "$first" "$((hwm / 1024))"
	printf '  %-23s %5.1f s %5s msgs/s %6.1f MB/s  server CPU %4s s  mbsync CPU %4s s, preempted %5d times\n' \
		"mbsync from Dovecot" "$ds" "$(rate "$ds")" "$(awk -v b="$BYTES" -v s="$ds" 'BEGIN { print b/1e6/s }')" "$dcpu" "$dm" "$dp"
	echo "RESULT run=$i fsync=$FSYNC pin=$PIN compression=$COMPRESSION tls=$TLS depth=${DEPTH:-unlimited} messages=$TOTAL planb_s=$ps planb_msgs_per_s=$(rate "$ps") first_message_ms=$first planb_peak_rss_kb=$hwm planb_cpu_s=$pcpu mbsync_cpu_s=$pm mbsync_preempted=$pp dovecot_s=$ds dovecot_msgs_per_s=$(rate "$ds") dovecot_cpu_s=$dcpu dovecot_mbsync_cpu_s=$dm dovecot_mbsync_preempted=$dp"
	echo "$ps $ds $first $hwm $pp $dp" >>"$WORK/t.serve-runs"
done
mp=$(cut -d' ' -f1 "$WORK/t.serve-runs" | median)
md=$(cut -d' ' -f2 "$WORK/t.serve-runs" | median)
mf=$(cut -d' ' -f3 "$WORK/t.serve-runs" | median)
maxf=$(cut -d' ' -f3 "$WORK/t.serve-runs" | sort -n | tail -1)
maxh=$(cut -d' ' -f4 "$WORK/t.serve-runs" | sort -n | tail -1)
spread() { sort -g | awk -v n="$TOTAL" 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f-%.0f msgs/s", n / hi, n / lo }'; }
echo "medians of $RUNS runs: planb serve $(rate "$mp") msgs/s ($mp s; runs $(cut -d' ' -f1 "$WORK/t.serve-runs" | spread)), Dovecot $(rate "$md") msgs/s ($md s; runs $(cut -d' ' -f2 "$WORK/t.serve-runs" | spread))"
echo "planb serve / Dovecot, messages/s: $(awk -v p="$mp" -v d="$md" 'BEGIN { printf "%.2f", d/p }') (target >= 1); per run: $(awk -v n="$TOTAL" '{ printf "%.2f ", $2/$1 }' "$WORK/t.serve-runs")"
echo "first message: median $mf ms, worst $maxf ms (target < 2000); peak RSS: worst $((maxh / 1024)) MiB (target < 150)"
echo "mbsync preempted (involuntary context switches): median $(cut -d' ' -f5 "$WORK/t.serve-runs" | median) times a pull from planb serve, $(cut -d' ' -f6 "$WORK/t.serve-runs" | median) from Dovecot"
