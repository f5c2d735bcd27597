#!/usr/bin/env bash
# bench-plan.sh — restore --plan of 20 accounts against one restore of the
# same mail into one account, on the same Dovecot.
#
# Usage: scripts/bench-plan.sh [--messages 20000] [--size 1G] [--seed 1]
#            [--accounts 20] [--parallel 4] [--runs 3]
#
# A Maildir from cmd/mailgen (cached in $WORK/data) is backed up whole into
# one repository, and its messages, dealt round-robin into --accounts
# Maildirs (hard links), are backed up one snapshot per Maildir into a
# second repository: the same messages and bytes either way, each stored
# as its own backups store it. (In one repository the parts' messages
# would be found in the whole's packs, each pack frame holding messages of
# every account: each account's restore would then decrypt and decompress
# frames mostly for the others' mail, which no real organisation's
# repository looks like, its mailboxes being backed up one by one.)
# Each run restores the whole snapshot into one fresh account (planb
# restore, as a single account goes) and the plan of --accounts lines
# into as many fresh accounts (planb restore --plan --parallel N), over
# TLS, the single account first in odd runs and the plan first in even
# ones (a machine's speed drifts over a series), and prints both times,
# messages/s and the ratio plan/single of
# messages/s (target: at least 0.9), with the medians over --runs runs.
# Work files live in ${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${PLANB_BENCH_DIR:-${TMPDIR:-/tmp}/planb-bench}
BENCH=bench-plan
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
MESSAGES=20000 SIZE=1G SEED=1 ACCOUNTS=20 PARALLEL=4 RUNS=3
parse_args messages=MESSAGES size=SIZE seed=SEED accounts=ACCOUNTS parallel=PARALLEL runs=RUNS -- "$@"
ensure_time
mkdir -p "$WORK/data" "$WORK/bin"
(cd "$ROOT" && build_bin "$WORK/bin/mailgen" ./cmd/mailgen && build_bin "$WORK/bin/planb" ./cmd/planb)
PLANB=$WORK/bin/planb
DATA=$WORK/data/maildir-m$MESSAGES-s$SIZE-seed$SEED
generate "$DATA" -messages "$MESSAGES" -size "$SIZE" -seed "$SEED" -q

printf bench-repo-password >"$WORK/repo-password"
export PLANB_PASSWORD_FILE=$WORK/repo-password
SINGLE_REPO=$WORK/plan-single-repo-m$MESSAGES-s$SIZE-seed$SEED
export PLANB_REPOSITORY=$WORK/plan-parts-repo-m$MESSAGES-s$SIZE-seed$SEED-a$ACCOUNTS
export PLANB_STATE_DIR=$WORK/plan-state
SPLIT=$WORK/data/split-m$MESSAGES-s$SIZE-seed$SEED-a$ACCOUNTS
if [ ! -f "$SPLIT.done" ]; then
	log "dealing $DATA into $ACCOUNTS Maildirs"
	rm -rf "$SPLIT" "$PLANB_REPOSITORY" "$PLANB_REPOSITORY.done"
	i=0
	while IFS= read -r f; do
		rel=${f#"$DATA"/}
		acct=$((i % ACCOUNTS))
		mkdir -p "$SPLIT/acct$acct/$(dirname "$rel")"
		ln "$f" "$SPLIT/acct$acct/$rel"
		i=$((i + 1))
	done < <(find "$DATA" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | sort)
	touch "$SPLIT.done"
fi
if ! repo_current "$SINGLE_REPO"; then
	log "backing up the whole Maildir"
	rm -rf "$SINGLE_REPO"
	PLANB_REPOSITORY=$SINGLE_REPO "$PLANB" --quiet init >/dev/null
	PLANB_REPOSITORY=$SINGLE_REPO "$PLANB" --quiet backup maildir --path "$DATA"
	mark_repo "$SINGLE_REPO"
fi
if ! repo_current "$PLANB_REPOSITORY"; then
	log "backing up the $ACCOUNTS parts"
	rm -rf "$PLANB_REPOSITORY"
	"$PLANB" --quiet init >/dev/null
	for a in $(seq 0 $((ACCOUNTS - 1))); do
		"$PLANB" --quiet backup maildir --path "$SPLIT/acct$a"
	done
	mark_repo "$PLANB_REPOSITORY"
fi

export DOVECOT_DIR=$WORK/dovecot-plan
if [ -d "$DOVECOT_DIR" ]; then
	"$ROOT/scripts/dovecot.sh" stop >/dev/null 2>&1 || true
	remove "$DOVECOT_DIR"
fi
trap '"$ROOT/scripts/dovecot.sh" stop >/dev/null 2>&1 || true' EXIT
users=()
for r in $(seq "$RUNS"); do
	users+=("single$r:bench")
	for a in $(seq 0 $((ACCOUNTS - 1))); do users+=("p${r}a$a:bench"); done
done
eval "$("$ROOT/scripts/dovecot.sh" start "${users[@]}")"
printf bench >"$WORK/imap-password"
export PLANB_IMAP_PASSWORD_FILE=$WORK/imap-password

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$WORK/t.plan-runs"
wait_removed # the last series' Dovecot
# single_run R: one restore of the whole snapshot; sets single.
single_run() {
	# Dovecot writes without fsync (mail_fsync = never): the pages one
	# restore leaves dirty would otherwise be written back during the next.
	sync
	PLANB_REPOSITORY=$SINGLE_REPO /usr/bin/time -f '%e' -o "$WORK/t.plan-single" "$PLANB" --quiet restore latest --source "maildir:$DATA" \
		--to "imaps://single$1@127.0.0.1:$DOVECOT_TLS_PORT" --ca-file "$DOVECOT_CERT" >"$WORK/t.plan-single.log" 2>&1
	single=$(tail -1 "$WORK/t.plan-single")
}
# plan_run R: restore --plan of the parts; sets bulk and appended.
plan_run() {
	local plan=$WORK/plan-$1.csv rc=0
	echo "source,to,password_file" >"$plan"
	for a in $(seq 0 $((ACCOUNTS - 1))); do
		echo "maildir:$SPLIT/acct$a,imaps://p${1}a$a@127.0.0.1:$DOVECOT_TLS_PORT,$WORK/imap-password" >>"$plan"
	done
	sync
	/usr/bin/time -f '%e' -o "$WORK/t.plan-plan" "$PLANB" --json restore --plan "$plan" --parallel "$PARALLEL" \
		--ca-file "$DOVECOT_CERT" >"$WORK/t.plan-plan.json" 2>"$WORK/t.plan-plan.log" || rc=$?
	[ "$rc" = 0 ] || { log "restore --plan failed ($rc)"; tail -5 "$WORK/t.plan-plan.log" >&2; exit 1; }
	bulk=$(tail -1 "$WORK/t.plan-plan")
	appended=$(grep '"type":"summary"' "$WORK/t.plan-plan.json" | grep -o '"appended":[0-9]*' | tail -1 | cut -d: -f2)
}
for r in $(seq "$RUNS"); do
	rm -rf "$PLANB_STATE_DIR"
	if [ $((r % 2)) = 1 ]; then
		single_run "$r"
		plan_run "$r"
	else
		plan_run "$r"
		single_run "$r"
	fi
	awk -v r="$r" -v n="$RUNS" -v s="$single" -v b="$bulk" -v m="$MESSAGES" -v a="$appended" -v k="$ACCOUNTS" -v p="$PARALLEL" 'BEGIN {
		printf "run %d of %d: single account %.2f s (%.0f msgs/s); plan of %d accounts, --parallel %d: %.2f s, %d appended (%.0f msgs/s); plan/single %.2f\n",
			r, n, s, m/s, k, p, b, a, a/b, (a/b)/(m/s) }'
	echo "$single $bulk" >>"$WORK/t.plan-runs"
done
ms=$(cut -d' ' -f1 "$WORK/t.plan-runs" | median)
mb=$(cut -d' ' -f2 "$WORK/t.plan-runs" | median)
awk -v s="$ms" -v b="$mb" -v m="$MESSAGES" 'BEGIN {
	printf "medians: single %.2f s (%.0f msgs/s), plan %.2f s (%.0f msgs/s): plan/single %.2f (target >= 0.90)\n", s, m/s, b, m/b, s/b }'
