#!/usr/bin/env bash
# bridge.sh — a throwaway Proton Mail Bridge-shaped IMAP server on
# 127.0.0.1 for tests and benchmarks: imap/imaptest/bridgeserver, which is
# gluon (Bridge's own IMAP engine) with a connector that follows Bridge's
# rules over a local model of the Proton API. Everything lives below one
# directory; nothing system-wide is touched.
#
# Usage: scripts/bridge.sh start [USER:PASSWORD]...
#        scripts/bridge.sh stop
#        scripts/bridge.sh kill     (SIGKILL: a crash, for fault tests)
#        scripts/bridge.sh status
#
# The directory is $BRIDGE_DIR (default: a new temporary directory on
# start; stop and status need it). Users come from the arguments, else
# from $BRIDGE_USERS ("user1:pass1 user2:pass2"), else user1..user3 with
# passwords pass1..pass3; each user is an empty Proton account of its own.
#
# Mailboxes as Bridge shows them: INBOX, Drafts, Sent, Starred, Archive,
# Spam, Trash, All Mail (RFC 6154 attributes) and the \Noselect roots
# Folders and Labels ("/" separator); CREATE works only below Folders/
# (nested) and Labels/ (flat). See imap/imaptest/bridgeserver for the rules.
#
# Two listeners on free ports: BRIDGE_PORT (plaintext, STARTTLS offered, as
# Bridge's 1143) and BRIDGE_TLS_PORT (implicit TLS), with a self-signed
# certificate for 127.0.0.1 made by the server on its first start.
#
# start builds the server (go build, into $PLANB_BRIDGE_BIN or
# ${XDG_CACHE_HOME:-~/.cache}/planb/bridgeserver: about a minute on a cold
# Go build cache, a second or two after that; PLANB_BRIDGE_RACE=1 builds
# it with the race detector), starts it in the background (log:
# $BRIDGE_DIR/log/bridge.log; BRIDGE_IMAP_LOG_IN=1 and
# BRIDGE_IMAP_LOG_OUT=1 also log the IMAP traffic there), waits until it
# answers, then prints and writes to $BRIDGE_DIR/env sourceable KEY=value
# lines: BRIDGE_DIR, BRIDGE_HOST, BRIDGE_PORT, BRIDGE_TLS_PORT,
# BRIDGE_CERT, BRIDGE_USERS.
#
# A second start in the same directory (after stop or kill) keeps the
# users, their mail and, when still free, the ports.
# Exit status: 0 on success; 1 on failure (details on stderr); status
# exits 1 when the server is not running.
set -euo pipefail

SCRIPT=bridge.sh
# shellcheck source=scripts/server-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

find_go() {
	if command -v go >/dev/null 2>&1; then
		command -v go
	elif [ -x /usr/local/go/bin/go ]; then
		echo /usr/local/go/bin/go
	else
		die "go is not installed"
	fi
}

# build builds the server binary (once for concurrent starts) and prints
# its path.
build() {
	local bin=${PLANB_BRIDGE_BIN:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/planb/bridgeserver}
	local gobin flags=()
	gobin=$(find_go)
	if [ "${PLANB_BRIDGE_RACE:-}" = 1 ]; then
		flags=(-race)
		bin=$bin-race
	fi
	mkdir -p "$(dirname "$bin")"
	(
		if command -v flock >/dev/null 2>&1; then flock 9; fi
		cd "$root"
		CGO_ENABLED=1 "$gobin" build "${flags[@]}" -o "$bin" ./imap/imaptest/bridgeserver >&2
	) 9>"$bin.lock" || die "go build ./imap/imaptest/bridgeserver failed"
	echo "$bin"
}

pid_of() {
	local f=$BRIDGE_DIR/pid
	[ -f "$f" ] || return 1
	local pid
	pid=$(cat "$f")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	grep -q bridgeserver "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

start() {
	if [ -z "${BRIDGE_DIR:-}" ]; then
		BRIDGE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/planb-bridge.XXXXXX")
	fi
	mkdir -p "$BRIDGE_DIR"
	BRIDGE_DIR=$(cd "$BRIDGE_DIR" && pwd)
	if pid_of >/dev/null; then
		die "a server already runs in $BRIDGE_DIR (stop it first)"
	fi
	mkdir -p "$BRIDGE_DIR/log"

	local users=()
	if [ $# -eq 0 ] && [ -z "${BRIDGE_USERS:-}" ] && [ -s "$BRIDGE_DIR/users" ]; then
		# A restart: keep the users (and their mail) as they are.
		while IFS= read -r u; do users+=("$u"); done <"$BRIDGE_DIR/users"
	elif [ $# -gt 0 ]; then
		users=("$@")
	elif [ -n "${BRIDGE_USERS:-}" ]; then
		read -r -a users <<<"$BRIDGE_USERS"
	else
		users=(user1:pass1 user2:pass2 user3:pass3)
	fi
	local u
	: >"$BRIDGE_DIR/users.new"
	for u in "${users[@]}"; do
		case $u in
		?*:*) ;;
		*) die "user $u: want USER:PASSWORD" ;;
		esac
		printf '%s\n' "$u" >>"$BRIDGE_DIR/users.new"
	done
	chmod 600 "$BRIDGE_DIR/users.new"
	mv "$BRIDGE_DIR/users.new" "$BRIDGE_DIR/users"

	local bin
	bin=$(build)

	# A restart keeps the previous ports when they are still free, so that
	# clients can reconnect.
	local port tlsport try oldport="" oldtls="" pid=""
	if [ -f "$BRIDGE_DIR/env" ]; then
		oldport=$(sed -n 's/^BRIDGE_PORT=//p' "$BRIDGE_DIR/env")
		oldtls=$(sed -n 's/^BRIDGE_TLS_PORT=//p' "$BRIDGE_DIR/env")
	fi
	local log=$BRIDGE_DIR/log/bridge.log
	for try in 1 2 3 4 5; do
		if [ "$try" = 1 ] && [ -n "$oldport" ] && [ -n "$oldtls" ] && port_free "$oldport" && port_free "$oldtls"; then
			port=$oldport
			tlsport=$oldtls
		else
			port=$(free_port)
			tlsport=$(free_port)
		fi
		[ "$port" != "$tlsport" ] || continue
		echo "bridge.sh: start $(date '+%F %T') port $port TLS port $tlsport" >>"$log"
		rm -f "$BRIDGE_DIR/pid"
		# A daemon: its own session, no terminal, nothing of ours open, so
		# that it outlives this script and its caller's pipes.
		setsid "$bin" -dir "$BRIDGE_DIR" -port "$port" -tls-port "$tlsport" </dev/null >>"$log" 2>&1 &
		pid=$!
		local i
		for i in $(seq 1 600); do
			if ! port_free "$port" && ! port_free "$tlsport" && pid_of >/dev/null; then
				break 2
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		# Lost a race for a port, or failed: stop what may run, try again.
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
		if [ "$try" = 5 ]; then
			tail -n 20 "$log" >&2 || true
			die "the server did not start (log: $log)"
		fi
	done

	{
		echo "BRIDGE_DIR=$BRIDGE_DIR"
		echo "BRIDGE_HOST=127.0.0.1"
		echo "BRIDGE_PORT=$port"
		echo "BRIDGE_TLS_PORT=$tlsport"
		echo "BRIDGE_CERT=$BRIDGE_DIR/cert.pem"
		echo "BRIDGE_USERS='${users[*]}'"
	} >"$BRIDGE_DIR/env"
	cat "$BRIDGE_DIR/env"
}

stop() {
	[ -n "${BRIDGE_DIR:-}" ] || die "stop: set BRIDGE_DIR"
	local pid
	pid=$(pid_of) || { echo "bridge.sh: not running" >&2; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	local i
	for i in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	echo "bridge.sh: no clean stop in 30 s, killing" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

# kill_server kills the server at once, as a crash would.
kill_server() {
	[ -n "${BRIDGE_DIR:-}" ] || die "kill: set BRIDGE_DIR"
	local pid
	pid=$(pid_of) || { echo "bridge.sh: not running" >&2; return 0; }
	kill -KILL "$pid" 2>/dev/null || true
	wait_gone "$pid"
	rm -f "$BRIDGE_DIR/pid"
}

status() {
	[ -n "${BRIDGE_DIR:-}" ] || die "status: set BRIDGE_DIR"
	local pid
	pid=$(pid_of) || pid=""
	show_status "$BRIDGE_DIR" "$pid"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
start) start "$@" ;;
stop) stop ;;
kill) kill_server ;;
status) status ;;
-h | --help | help) usage_text ;;
*) die "usage: bridge.sh start [USER:PASSWORD]... | stop | kill | status" ;;
esac
