#!/usr/bin/env bash
# bench-targets.sh — restore speed into the three test servers: Dovecot
# (against an earlier planb, to show a change costs nothing there), the
# strict Cyrus IMAP (scripts/cyrus.sh) and the Proton Mail Bridge-shaped
# server on gluon (scripts/bridge.sh).
#
# Usage: scripts/bench-targets.sh [--messages 20000] [--size 1G] [--seed 1]
#            [--runs 5] [--base REV] [--targets dovecot,cyrus,bridge]
#
# The Maildir comes from cmd/mailgen (cached in $WORK/data); planb at the
# work tree's HEAD (and, with --base, at REV, built from a temporary
# checkout) backs it up once into a repository of its own, then restores
# the latest snapshot into a fresh account, over TLS, --runs times per
# server. Into Dovecot the runs of REV and of HEAD alternate, and the
# script prints each pair, the medians and the ratio HEAD/REV of the
# medians. Into Cyrus and the Bridge-shaped server it prints msgs/s and
# how many messages the server refused (a restore without --repair; see
# the README's "Restoring into strict and rewriting servers").
# Work files live in ${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}
BENCH=bench-targets
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
MESSAGES=20000 SIZE=1G SEED=1 RUNS=5 BASE= TARGETS=dovecot,cyrus,bridge
parse_args messages=MESSAGES size=SIZE seed=SEED runs=RUNS base=BASE targets=TARGETS -- "$@"
ensure_time
mkdir -p "$WORK/data" "$WORK/bin"
(cd "$ROOT" && build_bin "$WORK/bin/mailgen" ./cmd/mailgen && build_bin "$WORK/bin/planb-head" ./cmd/planb)
DATA=$WORK/data/maildir-m$MESSAGES-s$SIZE-seed$SEED
generate "$DATA" -messages "$MESSAGES" -size "$SIZE" -seed "$SEED" -q

versions=(head)
if [ -n "$BASE" ]; then
	src=$(mktemp -d)
	git -C "$ROOT" worktree add -q --detach "$src" "$BASE"
	(cd "$src" && build_bin "$WORK/bin/planb-base" ./cmd/planb)
	git -C "$ROOT" worktree remove --force "$src"
	versions=(base head)
	log "base: $(git -C "$ROOT" rev-parse --short "$BASE"), head: $(git -C "$ROOT" rev-parse --short HEAD)"
fi

printf bench-repo-password >"$WORK/repo-password"
export PLANB_PASSWORD_FILE=$WORK/repo-password
export PLANB_STATE_DIR=$WORK/targets-state
printf bench >"$WORK/imap-password"
export PLANB_IMAP_PASSWORD_FILE=$WORK/imap-password
for v in "${versions[@]}"; do
	repo=$WORK/targets-repo-$v-m$MESSAGES-s$SIZE-seed$SEED
	key=$(sha256sum "$WORK/bin/planb-$v" | cut -c1-16)
	if [ ! -f "$repo.done" ] || [ "$(cat "$repo.done")" != "$key" ]; then
		log "backing up $DATA with planb-$v"
		rm -rf "$repo"
		PLANB_REPOSITORY=$repo "$WORK/bin/planb-$v" --quiet init >/dev/null
		PLANB_REPOSITORY=$repo "$WORK/bin/planb-$v" --quiet backup maildir --path "$DATA"
		printf '%s\n' "$key" >"$repo.done"
	fi
done

started=()
cleanup() {
	for s in "${started[@]}"; do
		"$ROOT/scripts/$s.sh" stop >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

# start KIND USERS...: a fresh server; sets PORT (implicit TLS, else
# STARTTLS) and CERT.
start() {
	local kind=$1 prefix
	shift
	prefix=$(echo "$kind" | tr '[:lower:]' '[:upper:]')
	local dir=$WORK/$kind-targets
	if [ -d "$dir" ]; then
		env "${prefix}_DIR=$dir" "$ROOT/scripts/$kind.sh" stop >/dev/null 2>&1 || true
		rm -rf "$dir"
	fi
	mkdir -p "$dir"
	export "${prefix}_DIR=$dir"
	"$ROOT/scripts/$kind.sh" start "$@" >/dev/null
	started+=("$kind")
	# shellcheck disable=SC1091
	. "$dir/env"
	local tls plain
	tls=$(eval echo "\${${prefix}_TLS_PORT:-0}")
	plain=$(eval echo "\${${prefix}_PORT}")
	CERT=$(eval echo "\${${prefix}_CERT}")
	if [ "$tls" != 0 ]; then
		SCHEME=imaps PORT=$tls
	else
		SCHEME=imap PORT=$plain
	fi
}

# restore VERSION USER: prints "wall appended refused".
restore() {
	local v=$1 user=$2 out=$WORK/t.targets-$1-$2 rc=0
	# Into Dovecot both versions skip the certificate check (the earlier
	# one may have no --ca-file): the same TLS work for both.
	local trust=(--ca-file "$CERT")
	[ "$target" != dovecot ] || trust=(--insecure-skip-verify)
	PLANB_REPOSITORY=$WORK/targets-repo-$v-m$MESSAGES-s$SIZE-seed$SEED \
		/usr/bin/time -f '%e' -o "$out.time" "$WORK/bin/planb-$v" --json restore latest \
		--to "$SCHEME://$user@127.0.0.1:$PORT" "${trust[@]}" >"$out.json" 2>"$out.log" || rc=$?
	if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
		log "restore $v into $user failed (exit $rc)"
		tail -n 5 "$out.log" >&2
		exit 1
	fi
	local appended refused
	appended=$(grep -o '"appended":[0-9]*' "$out.json" | tail -1 | cut -d: -f2)
	refused=$( (grep -o '"error":"refused by the target' "$out.json" || true) | wc -l)
	echo "$(tail -1 "$out.time") $appended $refused"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
users=()
for i in $(seq "$RUNS"); do users+=("head$i:bench" "base$i:bench"); done

for target in ${TARGETS//,/ }; do
	log "starting $target"
	start "$target" "${users[@]}"
	: >"$WORK/t.targets-runs"
	for i in $(seq "$RUNS"); do
		line="run $i of $RUNS into $target:"
		for v in "${versions[@]}"; do
			[ "$target" = dovecot ] || [ "$v" = head ] || continue
			read -r w m r < <(restore "$v" "$v$i")
			line+=$(awk -v v="$v" -v w="$w" -v m="$m" -v r="$r" 'BEGIN { printf "  %s %.2f s, %d appended (%.0f msgs/s), %d refused", v, w, m, m/w, r }')
			echo "$v $w $m" >>"$WORK/t.targets-runs"
		done
		echo "$line"
	done
	for v in "${versions[@]}"; do
		grep -q "^$v " "$WORK/t.targets-runs" || continue
		med=$(awk -v v="$v" '$1 == v { print $2 }' "$WORK/t.targets-runs" | median)
		m=$(awk -v v="$v" '$1 == v { print $3; exit }' "$WORK/t.targets-runs")
		echo "RESULT target=$target version=$v median_s=$med messages=$m msgs_per_s=$(awk -v m="$m" -v w="$med" 'BEGIN { printf "%.0f", m/w }')"
	done
	if [ -n "$BASE" ] && [ "$target" = dovecot ]; then
		b=$(awk '$1 == "base" { print $2 }' "$WORK/t.targets-runs" | median)
		h=$(awk '$1 == "head" { print $2 }' "$WORK/t.targets-runs" | median)
		awk -v b="$b" -v h="$h" 'BEGIN { printf "dovecot: head/base of the medians %.3f (%+.1f%%; target within 5%%)\n", h/b, 100*(h/b-1) }'
	fi
	"$ROOT/scripts/$target.sh" stop >/dev/null 2>&1 || true
done
