#!/usr/bin/env bash
# dovecot.sh — a throwaway Dovecot IMAP server on 127.0.0.1 for tests and
# benchmarks. It never touches a system-wide Dovecot: it runs with its own
# configuration (-c), base_dir, state, log and mail folders, all below one
# directory.
#
# Usage: scripts/dovecot.sh start [USER:PASSWORD]...
#        scripts/dovecot.sh stop
#        scripts/dovecot.sh kill     (SIGKILL: a crash, for fault tests)
#        scripts/dovecot.sh status
#
# The directory is $DOVECOT_DIR (default: a new temporary directory on
# start; stop and status need it). Users come from the arguments, else from
# $DOVECOT_USERS ("user1:pass1 user2:pass2"), else user1..user3 with
# passwords pass1..pass3. Mail is stored as Maildir in
# $DOVECOT_DIR/mail/USER/Maildir (Maildir++ layout, "." as the IMAP
# hierarchy delimiter), with SPECIAL-USE folders Sent, Drafts, Trash, Junk
# and Archive created on first login; CONDSTORE and QRESYNC are offered.
#
# Two listeners on free ports: DOVECOT_PORT (plaintext, STARTTLS offered,
# plaintext LOGIN allowed) and DOVECOT_TLS_PORT (implicit TLS), with a
# self-signed certificate for 127.0.0.1/localhost made by openssl.
#
# DOVECOT_MAIL_FORMAT=sdbox or mdbox on the first start (remembered in
# $DOVECOT_DIR/format) stores mail in Dovecot's own single- or multi-file
# dbox format (in $DOVECOT_DIR/mail/USER/sdbox or .../mdbox) instead of
# Maildir, as many providers do; the default stays maildir.
#
# A second start in the same directory (after stop) keeps the users, their
# mail and, when still free, the ports.
#
# start prints, and writes to $DOVECOT_DIR/env, sourceable KEY=value lines:
# DOVECOT_DIR, DOVECOT_HOST, DOVECOT_PORT, DOVECOT_TLS_PORT, DOVECOT_CERT,
# DOVECOT_KEY (the certificate's private key), DOVECOT_USERS, DOVECOT_MAIL_UID, DOVECOT_MAIL_GID (owner of the mail; as
# root, a system user "planbmail" created if missing). When dovecot is missing it is installed
# with apt-get (package dovecot-imapd) if we are root.
# Exit status: 0 on success; 1 on failure (details on stderr); status
# exits 1 when the server is not running.
set -euo pipefail

SCRIPT=dovecot.sh
# shellcheck source=scripts/server-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"

find_dovecot() {
	if command -v dovecot >/dev/null 2>&1; then
		command -v dovecot
	elif [ -x /usr/sbin/dovecot ]; then
		echo /usr/sbin/dovecot
	fi
}

install_dovecot() {
	[ -n "$(find_dovecot)" ] && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		die "dovecot is not installed (apt-get install dovecot-imapd)"
	fi
	echo "dovecot.sh: installing dovecot-imapd" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || die "apt-get update failed"
	apt-get install -y -qq dovecot-imapd >&2 || die "apt-get install dovecot-imapd failed"
	[ -n "$(find_dovecot)" ] || die "dovecot still missing after installing dovecot-imapd"
}

pid_of() {
	local f=$DOVECOT_DIR/run/master.pid
	[ -f "$f" ] || return 1
	local pid
	pid=$(cat "$f")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	echo "$pid"
}

internal_user() {
	if [ "$(id -u)" != 0 ]; then
		id -un
	elif id dovecot >/dev/null 2>&1; then
		echo dovecot
	else
		echo root
	fi
}

# mail_ids prints the uid and gid that own the mail: ours, or when we are
# root (Dovecot refuses mail access as root) those of a system user
# "planbmail", created if missing.
mail_ids() {
	if [ "$(id -u)" != 0 ]; then
		echo "$(id -u) $(id -g)"
		return
	fi
	if ! id planbmail >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin planbmail >&2 ||
			die "could not create the system user planbmail"
	fi
	echo "$(id -u planbmail) $(id -g planbmail)"
}

# Flavour "alt" (DOVECOT_FLAVOR=alt on the first start, remembered in
# $DOVECOT_DIR/flavor): "/" as the hierarchy separator (LAYOUT=fs) and the
# special-use folders named as Microsoft names them ("Sent Items",
# "Deleted Items", "Junk E-mail"), for restore tests across layouts.
#
# Flavour "gmail": an account laid out as Gmail shows itself over IMAP,
# with Dovecot's virtual plugin. INBOX and the user's labels are plain
# folders ("/" separator); a message with several labels is a copy in each
# label's folder. "[Gmail]/" holds virtual folders: "All Mail" (\All: every
# message but Spam and Trash, so each labelled message as many times as it
# has copies), "Starred" (\Flagged: the flagged ones), and "Sent Mail"
# (\Sent), "Drafts", "Spam" (\Junk) and "Trash", each a view of one
# folder of the hidden namespace "Store/" (Store/Sent, Store/Drafts,
# Store/Spam, Store/Trash) that APPEND into the view stores into. Archived
# mail (in All Mail only) lives in Store/Archived, which no LIST shows.
flavor() {
	local dir=$1
	if [ ! -f "$dir/flavor" ]; then
		echo "${DOVECOT_FLAVOR:-default}" >"$dir/flavor"
	fi
	cat "$dir/flavor"
}

# mail_location prints the mail_location setting: Maildir by default, or
# the dbox format chosen with DOVECOT_MAIL_FORMAT on the first start.
mail_location() {
	local dir=$1 format
	if [ ! -f "$dir/format" ]; then
		echo "${DOVECOT_MAIL_FORMAT:-maildir}" >"$dir/format"
	fi
	format=$(cat "$dir/format")
	case $format in
	maildir) echo "maildir:~/Maildir$(layout_option "$dir")" ;;
	sdbox | mdbox) echo "$format:~/$format$(layout_option "$dir")" ;;
	*) die "DOVECOT_MAIL_FORMAT=$format: want maildir, sdbox or mdbox" ;;
	esac
}

# list_index_setting turns the mailbox list index off in the "alt"
# flavour. With it, Dovecot 2.3.19 there panics now and then
# ("fcntl(.../dovecot.list.index.log, write-lock, F_SETLKW) locking
# failed: Resource deadlock avoided") when two sessions of one user open
# special-use folders it auto-creates at the same moment, and drops both
# connections. planb resumes after that (restore.txtar caught it doing so,
# with a "resuming" line on stderr), but tests must not depend on it. The
# other flavours keep it: Dovecot offers NOTIFY only with it.
list_index_setting() {
	[ "$(flavor "$1")" = alt ] && echo "mailbox_list_index = no"
	return 0
}

layout_option() {
	case $(flavor "$1") in alt | gmail) echo ":LAYOUT=fs" ;; esac
}

# gmail_config prints the namespaces of the "gmail" flavour and writes
# the definitions of its virtual folders below $dir/virtual.
gmail_config() {
	local dir=$1 v
	v=$dir/virtual
	mkdir -p "$v/All Mail" "$v/Starred" "$v/Sent Mail" "$v/Drafts" "$v/Spam" "$v/Trash"
	local every="INBOX
*
Store/Sent
Store/Drafts
Store/Archived
-Store/Trash
-Store/Spam
-[Gmail]/*"
	printf '%s\n  all\n' "$every" >"$v/All Mail/dovecot-virtual"
	printf '%s\n  flagged\n' "$every" >"$v/Starred/dovecot-virtual"
	printf '!Store/Sent\n  all\n' >"$v/Sent Mail/dovecot-virtual"
	printf '!Store/Drafts\n  all\n' >"$v/Drafts/dovecot-virtual"
	printf '!Store/Spam\n  all\n' >"$v/Spam/dovecot-virtual"
	printf '!Store/Trash\n  all\n' >"$v/Trash/dovecot-virtual"
	chmod -R a+rX "$v"
	cat <<EOF2
mail_plugins = \$mail_plugins virtual
namespace inbox {
  inbox = yes
  separator = /
}
namespace store {
  prefix = Store/
  separator = /
  location = maildir:~/Store:LAYOUT=fs
  hidden = yes
  list = no
  subscriptions = no
  mailbox Sent {
    auto = create
  }
  mailbox Drafts {
    auto = create
  }
  mailbox Spam {
    auto = create
  }
  mailbox Trash {
    auto = create
  }
  mailbox Archived {
    auto = create
  }
}
namespace gmail {
  prefix = [Gmail]/
  separator = /
  location = virtual:$v:INDEX=~/virtual
  subscriptions = no
  mailbox "All Mail" {
    special_use = \\All
  }
  mailbox Starred {
    special_use = \\Flagged
  }
  mailbox "Sent Mail" {
    special_use = \\Sent
  }
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Spam {
    special_use = \\Junk
  }
  mailbox Trash {
    special_use = \\Trash
  }
}
EOF2
}

namespace_config() {
	if [ "$(flavor "$1")" = gmail ]; then
		gmail_config "$1"
		return
	fi
	local sent=Sent trash=Trash junk=Junk sep=""
	if [ "$(flavor "$1")" = alt ]; then
		sent="Sent Items" trash="Deleted Items" junk="Junk E-mail" sep="  separator = /"
	fi
	cat <<EOF2
namespace inbox {
  inbox = yes
$sep
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox "$sent" {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox "$trash" {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox "$junk" {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}
EOF2
}

write_config() {
	local dir=$1 port=$2 tlsport=$3 uid gid internal login
	read -r uid gid < <(mail_ids)
	internal=$(internal_user)
	login=$internal
	if [ "$uid" = 0 ] && id dovenull >/dev/null 2>&1; then
		login=dovenull
	fi
	cat >"$dir/dovecot.conf" <<EOF
# Generated by scripts/dovecot.sh: a throwaway test server.
base_dir = $dir/run
state_dir = $dir/state
instance_name = planb-$port
log_path = $dir/log/dovecot.log
info_log_path = $dir/log/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = $internal
default_login_user = $login
first_valid_uid = 0
first_valid_gid = 0
mail_uid = $uid
mail_gid = $gid
mail_location = $(mail_location "$dir")
mail_fsync = never
$(list_index_setting "$dir")
mail_max_userip_connections = 200
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
# No auth penalty for the failed logins that tests make on purpose.
login_trusted_networks = 127.0.0.0/8
ssl = yes
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
ssl_min_protocol = TLSv1.2
login_greeting = planb test dovecot ready.
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/users
}
userdb {
  driver = static
  args = home=$dir/mail/%u
}
$(namespace_config "$dir")
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $tlsport
    ssl = yes
  }
}
service imap {
  process_limit = 256
}
EOF
}

start() {
	case ${DOVECOT_MAIL_FORMAT:-maildir} in
	maildir | sdbox | mdbox) ;;
	*) die "DOVECOT_MAIL_FORMAT=$DOVECOT_MAIL_FORMAT: want maildir, sdbox or mdbox" ;;
	esac
	install_dovecot
	local bin
	bin=$(find_dovecot)
	if [ -z "${DOVECOT_DIR:-}" ]; then
		DOVECOT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/planb-dovecot.XXXXXX")
	fi
	mkdir -p "$DOVECOT_DIR"
	DOVECOT_DIR=$(cd "$DOVECOT_DIR" && pwd)
	if pid_of >/dev/null; then
		die "a server already runs in $DOVECOT_DIR (stop it first)"
	fi
	# Login processes run as an unprivileged user: let them reach base_dir.
	chmod 755 "$DOVECOT_DIR"
	mkdir -p "$DOVECOT_DIR/run" "$DOVECOT_DIR/state" "$DOVECOT_DIR/log" "$DOVECOT_DIR/mail"

	local users=()
	if [ $# -eq 0 ] && [ -z "${DOVECOT_USERS:-}" ] && [ -s "$DOVECOT_DIR/users" ]; then
		# A restart: keep the users (and their mail) as they are.
		while IFS= read -r u; do users+=("$u"); done <"$DOVECOT_DIR/users"
	elif [ $# -gt 0 ]; then
		users=("$@")
	elif [ -n "${DOVECOT_USERS:-}" ]; then
		read -r -a users <<<"$DOVECOT_USERS"
	else
		users=(user1:pass1 user2:pass2 user3:pass3)
	fi
	: >"$DOVECOT_DIR/users"
	# The auth process runs as the internal user and must read it.
	chmod 640 "$DOVECOT_DIR/users"
	chgrp "$(id -g "$(internal_user)")" "$DOVECOT_DIR/users"
	local u
	for u in "${users[@]}"; do
		case $u in
		*:*) ;;
		*) die "user $u: want USER:PASSWORD" ;;
		esac
		printf '%s:%s\n' "${u%%:*}" "${u#*:}" >>"$DOVECOT_DIR/users"
		mkdir -p "$DOVECOT_DIR/mail/${u%%:*}"
	done
	local ids
	ids=$(mail_ids)
	chown -R "${ids% *}:${ids#* }" "$DOVECOT_DIR/mail"

	if [ ! -f "$DOVECOT_DIR/cert.pem" ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
			-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
			-keyout "$DOVECOT_DIR/key.pem" -out "$DOVECOT_DIR/cert.pem" >/dev/null 2>&1 ||
			die "openssl could not make a certificate"
	fi

	# A restart keeps the previous ports when they are still free, so that
	# clients can reconnect.
	local port tlsport try oldport="" oldtls=""
	if [ -f "$DOVECOT_DIR/env" ]; then
		oldport=$(sed -n 's/^DOVECOT_PORT=//p' "$DOVECOT_DIR/env")
		oldtls=$(sed -n 's/^DOVECOT_TLS_PORT=//p' "$DOVECOT_DIR/env")
	fi
	for try in 1 2 3 4 5; do
		if [ "$try" = 1 ] && [ -n "$oldport" ] && [ -n "$oldtls" ] && port_free "$oldport" && port_free "$oldtls"; then
			port=$oldport
			tlsport=$oldtls
		else
			port=$(free_port)
			tlsport=$(free_port)
		fi
		[ "$port" != "$tlsport" ] || continue
		write_config "$DOVECOT_DIR" "$port" "$tlsport"
		: >"$DOVECOT_DIR/log/dovecot.log"
		if "$bin" -c "$DOVECOT_DIR/dovecot.conf" 2>>"$DOVECOT_DIR/log/dovecot.log"; then
			local i
			for i in $(seq 1 100); do
				if ! port_free "$port" && ! port_free "$tlsport"; then
					break 2
				fi
				pid_of >/dev/null || break
				sleep 0.05
			done
		fi
		# Lost a race for a port, or failed: stop what may run, try again.
		"$bin" -c "$DOVECOT_DIR/dovecot.conf" stop >/dev/null 2>&1 || true
		sleep 0.2
		if [ "$try" = 5 ]; then
			tail -n 20 "$DOVECOT_DIR/log/dovecot.log" >&2 || true
			die "dovecot did not start (log: $DOVECOT_DIR/log/dovecot.log)"
		fi
	done

	{
		echo "DOVECOT_DIR=$DOVECOT_DIR"
		echo "DOVECOT_HOST=127.0.0.1"
		echo "DOVECOT_PORT=$port"
		echo "DOVECOT_TLS_PORT=$tlsport"
		echo "DOVECOT_CERT=$DOVECOT_DIR/cert.pem"
		echo "DOVECOT_KEY=$DOVECOT_DIR/key.pem"
		echo "DOVECOT_USERS='${users[*]}'"
		echo "DOVECOT_MAIL_UID=$(mail_ids | cut -d" " -f1)"
		echo "DOVECOT_MAIL_GID=$(mail_ids | cut -d" " -f2)"
	} >"$DOVECOT_DIR/env"
	cat "$DOVECOT_DIR/env"
}

stop() {
	[ -n "${DOVECOT_DIR:-}" ] || die "stop: set DOVECOT_DIR"
	[ -f "$DOVECOT_DIR/dovecot.conf" ] || die "stop: no dovecot.conf in $DOVECOT_DIR"
	local pid bin
	pid=$(pid_of) || { echo "dovecot.sh: not running" >&2; return 0; }
	bin=$(find_dovecot)
	"$bin" -c "$DOVECOT_DIR/dovecot.conf" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
	local i
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null || true
}

# kill_all kills the master and its children at once, as a crash would.
kill_all() {
	[ -n "${DOVECOT_DIR:-}" ] || die "kill: set DOVECOT_DIR"
	local pid
	pid=$(pid_of) || { echo "dovecot.sh: not running" >&2; return 0; }
	kill -STOP "$pid" 2>/dev/null || true
	pkill -KILL -P "$pid" 2>/dev/null || true
	kill -KILL "$pid" 2>/dev/null || true
	wait_gone "$pid"
	rm -f "$DOVECOT_DIR/run/master.pid"
}

status() {
	[ -n "${DOVECOT_DIR:-}" ] || die "status: set DOVECOT_DIR"
	local pid
	pid=$(pid_of) || pid=""
	show_status "$DOVECOT_DIR" "$pid"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
start) start "$@" ;;
stop) stop ;;
kill) kill_all ;;
status) status ;;
-h | --help | help) usage_text ;;
*) die "usage: dovecot.sh start [USER:PASSWORD]... | stop | kill | status" ;;
esac
