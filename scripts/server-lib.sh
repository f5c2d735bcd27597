# Functions shared by the scripts that run throwaway test servers
# (dovecot.sh, cyrus.sh, bridge.sh); source it after setting SCRIPT (the
# script's name, for messages).

die() { echo "$SCRIPT: $*" >&2; exit 1; }

# port_free reports whether nothing listens on 127.0.0.1:PORT.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port prints a port of 127.0.0.1 on which nothing listens, below
# the kernel's range of ephemeral ports (32768-60999 by default): a port
# from that range may be taken meanwhile by any connection's local end or
# any listener on port 0, and a server restarted on its old port (a test
# of an outage) would then find it gone.
free_port() {
	local p i lo=20000 hi=32767 eph
	if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && [ "$eph" -gt $((lo + 1000)) ]; then
		hi=$((eph - 1))
	fi
	for i in $(seq 1 200); do
		p=$((lo + RANDOM % (hi - lo + 1)))
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
