# Functions shared by the scripts that run throwaway test servers
# (dovecot.sh, cyrus.sh, bridge.sh); source it after setting SCRIPT (the
# script's name, for messages).

die() { echo "$SCRIPT: $*" >&2; exit 1; }

# port_free reports whether nothing listens on 127.0.0.1:PORT.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port prints a port of 127.0.0.1 on which nothing listens.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if port_free "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_gone PID waits (up to 2 s) until the process PID has ended.
wait_gone() {
	local i
	for i in $(seq 1 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.02
	done
}

# show_status DIR PID prints whether the server of DIR runs (PID empty:
# it does not) with its env file, and returns 1 when it does not.
show_status() {
	local dir=$1 pid=$2
	if [ -n "$pid" ]; then
		echo "running pid=$pid dir=$dir"
		[ -f "$dir/env" ] && cat "$dir/env"
		return 0
	fi
	echo "not running dir=$dir"
	return 1
}

# usage_text prints the script's leading comment.
usage_text() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
