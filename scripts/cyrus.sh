#!/usr/bin/env bash
# cyrus.sh — a throwaway Cyrus IMAP server on 127.0.0.1 for tests: a strict
# server beside the kind Dovecot of dovecot.sh, driven the same way.
#
# Usage: scripts/cyrus.sh start [USER:PASSWORD]...
#        scripts/cyrus.sh stop
#        scripts/cyrus.sh kill     (SIGKILL: a crash, for fault tests)
#        scripts/cyrus.sh status
#        scripts/cyrus.sh install  (what start fetches and installs the
#                                   first time, and nothing else)
#
# Debian's cyrus-imapd conflicts with dovecot-imapd, so it is never
# installed: on first use the .deb files of cyrus-imapd and cyrus-common
# (the latter holds master, imapd and the libcyrus libraries) are fetched
# with "apt-get download" and unpacked with "dpkg-deb -x" into
# ${XDG_CACHE_HOME:-$HOME/.cache}/planb/cyrus-VERSION (or $CYRUS_CACHE/
# cyrus-VERSION); the runtime libraries they depend on (libical3,
# libpcre3...), db-util and openssl are installed with apt-get when missing
# and we are root. As root, Cyrus drops its privileges to the system user
# "cyrus" (created if missing, group mail). Nothing else system-wide is
# touched: Cyrus's master runs with its own imapd.conf and cyrus.conf, and
# all its state, sockets, locks and logs are below one directory.
#
# The directory is $CYRUS_DIR (default: a new temporary directory on start;
# stop and status need it). Users come from the arguments, else from
# $CYRUS_USERS ("user1:pass1 user2:pass2"), else user1..user3 with passwords
# pass1..pass3. A user name must not contain "." (the hierarchy separator).
# Passwords are real (SASL auxprop, a sasldb in $CYRUS_DIR): a wrong one is
# refused, at once (failedloginpause: 0; Cyrus waits 3s by default).
#
# A user's INBOX is created at its first login (autocreate), with the
# folders Sent, Drafts, Trash, Junk and Archive, subscribed and marked with
# their special use. Sessions that log in while the first login makes them
# see them half made (imaptest's NewUser therefore logs a user in once
# first). Otherwise Cyrus 3.6's defaults are kept, strict message checks
# included; no idled runs, so IDLE polls every 60s (imapidlepoll).
#
# Two listeners on free ports: CYRUS_PORT (plaintext, STARTTLS offered,
# plaintext LOGIN allowed) and CYRUS_TLS_PORT (implicit TLS), with a
# self-signed certificate (EC P-256: fast to make) for 127.0.0.1/localhost
# made by openssl.
#
# A second start in the same directory (after stop) keeps the users, their
# mail and, when still free, the ports.
#
# start prints, and writes to $CYRUS_DIR/env, sourceable KEY=value lines:
# CYRUS_DIR, CYRUS_HOST, CYRUS_PORT, CYRUS_TLS_PORT, CYRUS_CERT and
# CYRUS_USERS. Logs: Cyrus logs only to syslog, so a small LD_PRELOAD
# library (built with cc, cached) sends its syslog lines to
# $CYRUS_DIR/log/cyrus.log; master's own output goes to
# $CYRUS_DIR/log/master.out. Progress goes to stderr.
# Exit status: 0 on success; 1 on failure (details on stderr); status
# exits 1 when the server is not running.
#
# What this server is (Debian bookworm, cyrus-imapd 3.6.1-4+deb12u5), as
# seen on the wire (imap/cyrus_test.go asserts what the tests rely on):
#
# Greeting, plaintext port:
#   * OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN
#   AUTH=LOGIN SASL-IR] localhost Cyrus IMAP 3.6.1-Debian-3.6.1-4+deb12u5
#   server ready
#   (on the TLS port the same without STARTTLS)
# CAPABILITY before login, plaintext port (on the TLS port, and after
# STARTTLS, the same without STARTTLS):
#   IMAP4rev1 LITERAL+ ID ENABLE ACL ANNOTATE-EXPERIMENT-1 BINARY CATENATE
#   CHILDREN CONDSTORE CREATE-SPECIAL-USE ESEARCH ESORT LIST-EXTENDED
#   LIST-MYRIGHTS LIST-STATUS MAILBOX-REFERRALS METADATA MOVE MULTIAPPEND
#   NAMESPACE OBJECTID PREVIEW QRESYNC QUOTA RIGHTS=kxten SAVEDATE
#   SEARCH=FUZZY SORT SORT=DISPLAY SPECIAL-USE STATUS=SIZE
#   THREAD=ORDEREDSUBJECT THREAD=REFERENCES UIDPLUS UNSELECT URLAUTH
#   URLAUTH=BINARY WITHIN DIGEST=SHA1 LIST-METADATA NO_ATOMIC_RENAME SCAN
#   SORT=MODSEQ SORT=UID THREAD=REFS X-CREATEDMODSEQ X-REPLICATION
#   X-SIEVE-MAILBOX XLIST XMOVE STARTTLS AUTH=PLAIN AUTH=LOGIN SASL-IR
#   COMPRESS=DEFLATE X-QUOTA=STORAGE X-QUOTA=MESSAGE
#   X-QUOTA=X-ANNOTATION-STORAGE X-QUOTA=X-NUM-FOLDERS IDLE
#   APPENDLIMIT=4294967295
# CAPABILITY after login (also in LOGIN's OK): the same but without
#   STARTTLS and SASL-IR, and with LOGINDISABLED after XMOVE.
# So: MULTIAPPEND, LITERAL+ (not LITERAL-), BINARY, APPENDLIMIT=4294967295,
#   UIDPLUS, SPECIAL-USE, CREATE-SPECIAL-USE, NAMESPACE, CONDSTORE,
#   QRESYNC, ID, MOVE, IDLE; no UTF8=ACCEPT, no IMAP4rev2.
# LOGIN with a wrong password or an unknown user:
#   NO Login failed: authentication failure
# NAMESPACE: * NAMESPACE (("" ".")) (("Other Users." ".")) (("Shared Folders." "."))
#   (altnamespace, Cyrus 3's default: folders beside INBOX, no "INBOX."
#   prefix.)
# LIST "" "*" (special-use attributes always, in lower case):
#   (\HasNoChildren) "." INBOX         (\HasNoChildren \archive) "." Archive
#   (\HasNoChildren \drafts) "." Drafts (\HasNoChildren \junk) "." Junk
#   (\HasNoChildren \sent) "." Sent     (\HasNoChildren \trash) "." Trash
# APPEND answers:
#   bare LF (header or body)    NO Message contains bare newlines
#   bare CR                     OK, stored as sent
#   NUL byte (header or body)   NO Message contains NUL characters
#   8-bit bytes in a header     OK, but each 8-bit byte is stored as "X"
#                               (munge8bit): "Subject: caf\xe9" -> "cafX",
#                               UTF-8 "caf\xc3\xa9" -> "cafXX"
#   8-bit bytes in the body     OK, stored as sent
#   header line > 998 bytes     OK, stored as sent
#   body line > 998 bytes       OK, stored as sent
#   no Date header              OK, stored as sent (no Date added)
#   "From: not an address"      OK, stored as sent
#   "Bad Header: x" (space in   NO Message contains invalid header
#   the name; also a tab, or a
#   space before the colon)
#   no header: the first line   NO Message contains invalid header
#   has no colon (a message that starts with CRLF, an empty header, is
#   accepted; so is an mbox "From " first line, kept as sent)
#   zero-length literal         NO Zero-length message literal
# The APPEND internal date is kept to the second, but FETCH gives it in
# the server's time zone (+0000 here): "02-Mar-2021 12:34:56 +0100" comes
# back as " 2-Mar-2021 11:34:56 +0000". FETCH BODY[] returns the bytes as
# appended, nothing added, but for the 8-bit header bytes above.
set -euo pipefail

SCRIPT=cyrus.sh
# shellcheck source=scripts/server-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/server-lib.sh"
say() { echo "cyrus.sh: $*" >&2; }

# The executables of the prefix that a server runs.
BINARIES="master imapd ctl_cyrusdb"

cache_root() {
	if [ -n "${CYRUS_CACHE:-}" ]; then
		echo "$CYRUS_CACHE"
	else
		echo "${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/planb"
	fi
}

# find_prefix prints the newest complete unpacked Cyrus in the cache.
find_prefix() {
	local d best=""
	for d in "$(cache_root)"/cyrus-*/; do
		[ -f "$d/complete" ] && best=${d%/}
	done
	[ -n "$best" ] && echo "$best"
}

is_root() { [ "$EUID" = 0 ]; }

apt_update() {
	is_root || die "apt-get update needed but we are not root"
	say "apt-get update"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
}

# candidate prints the version of cyrus-imapd that apt would install.
candidate() {
	apt-cache policy cyrus-imapd 2>/dev/null | sed -n 's/^ *Candidate: //p'
}

# runtime_packages prints the library packages that cyrus-imapd and
# cyrus-common depend on (less libclamav and libzephyr, only needed by
# programs we do not run), and what this script uses.
runtime_packages() {
	local deb
	for deb in "$@"; do
		dpkg-deb -f "$deb" Depends
	done | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//; s/[[:space:]]//g' |
		grep '^lib' | grep -v -e '^libclamav' -e '^libzephyr' || true
	echo libsasl2-modules-db db-util openssl
}

# fetch_cyrus downloads and unpacks Cyrus into the cache and prints its
# directory.
fetch_cyrus() {
	local root prefix
	root=$(cache_root)
	command -v apt-get >/dev/null 2>&1 || die "Cyrus is not in $root and there is no apt-get"
	local version
	version=$(candidate)
	if [ -z "$version" ] || [ "$version" = "(none)" ]; then
		apt_update
		version=$(candidate)
	fi
	if [ -z "$version" ] || [ "$version" = "(none)" ]; then
		die "apt knows no cyrus-imapd package"
	fi
	say "fetching cyrus-imapd $version into $root (once)"
	local tmp
	tmp=$(mktemp -d "$root/.fetch.XXXXXX")
	# As root, apt would hand the download to its sandbox user, who may
	# not write here. Stale package lists may name a version the mirror
	# no longer has: update them and try again.
	(cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
		"cyrus-imapd=$version" "cyrus-common=$version" >download.log 2>&1) ||
		{ is_root && apt_update && version=$(candidate) &&
			(cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
				"cyrus-imapd=$version" "cyrus-common=$version" >download.log 2>&1); } || {
		cat "$tmp/download.log" >&2
		rm -rf "$tmp"
		die "apt-get download cyrus-imapd cyrus-common failed"
	}
	local deb
	for deb in "$tmp"/*.deb; do
		dpkg-deb -x "$deb" "$tmp/root" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
	done
	runtime_packages "$tmp"/*.deb | sort -u >"$tmp/packages"
	rm -f "$tmp"/*.deb "$tmp/download.log"
	local b
	for b in $BINARIES; do
		[ -x "$tmp/root/usr/lib/cyrus/bin/$b" ] || { rm -rf "$tmp"; die "no $b in cyrus-imapd $version"; }
	done
	touch "$tmp/complete"
	prefix=$root/cyrus-$version
	rm -rf "$prefix"
	mv "$tmp" "$prefix"
	echo "$prefix"
}

# install_packages installs the runtime packages of prefix that are missing
# (checked again only when dpkg's database changed since the last check).
install_packages() {
	local prefix=$1 missing
	packages_checked "$prefix" && return 0
	# dpkg-query fails when it does not know a package: awk tells.
	# shellcheck disable=SC2046
	missing=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $(cat "$prefix/packages") 2>&1 |
		awk '$1 != "ii" { printf "%s ", $NF }') || true
	missing=${missing% }
	if [ -z "$missing" ]; then
		touch "$prefix/packages-checked"
		return 0
	fi
	if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
		die "packages missing for Cyrus: $missing (apt-get install them)"
	fi
	say "installing $missing"
	export DEBIAN_FRONTEND=noninteractive
	local opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=300)
	# shellcheck disable=SC2086
	if ! apt-get install "${opts[@]}" $missing >"$prefix/apt.log" 2>&1; then
		apt_update
		# shellcheck disable=SC2086
		apt-get install "${opts[@]}" $missing >"$prefix/apt.log" 2>&1 || {
			cat "$prefix/apt.log" >&2
			die "apt-get install $missing failed"
		}
	fi
	touch "$prefix/packages-checked"
}

# packages_checked tells whether the runtime packages of prefix were found
# installed since dpkg's database last changed.
packages_checked() {
	[ "$1/packages-checked" -nt /var/lib/dpkg/status ]
}

# prepare sets prefix and syslib: Cyrus unpacked in the cache, its runtime
# packages installed and the syslog library built; when something is to
# do, under a lock, for servers started at once.
prepare() {
	if prefix=$(find_prefix) && packages_checked "$prefix" &&
		[ -f "$prefix/planb-syslog-$SYSLOG_VERSION.so" ]; then
		syslib=$prefix/planb-syslog-$SYSLOG_VERSION.so
		return 0
	fi
	local root
	root=$(cache_root)
	mkdir -p "$root"
	exec 9>"$root/.lock"
	flock 9
	prefix=$(find_prefix) || prefix=$(fetch_cyrus)
	install_packages "$prefix"
	syslog_library "$prefix"
	exec 9>&-
}

# The syslog replacement preloaded into Cyrus: Cyrus's daemons log only
# with syslog(3), and a test machine may have no syslog daemon. Change
# SYSLOG_VERSION with syslog_source, so that the cached library is rebuilt.
SYSLOG_VERSION=1
syslog_source() {
	cat <<'EOF'
/* Generated by scripts/cyrus.sh: syslog(3) appending to $PLANB_SYSLOG_FILE. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static char ident[64] = "cyrus";
static int mask = 0xff;

void openlog(const char *id, int option, int facility)
{
	(void)option;
	(void)facility;
	if (id)
		snprintf(ident, sizeof ident, "%s", id);
}

void closelog(void) {}

int setlogmask(int m)
{
	int old = mask;
	if (m)
		mask = m;
	return old;
}

void vsyslog(int pri, const char *fmt, va_list ap)
{
	static const char *level[] = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};
	int saved = errno;
	const char *path = getenv("PLANB_SYSLOG_FILE");
	if (!path || !(LOG_MASK(LOG_PRI(pri)) & mask))
		return;
	char buf[8192];
	time_t now = time(NULL);
	struct tm tm;
	size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
	int k = snprintf(buf + n, sizeof buf - n, " %s[%d] %s: ", ident, (int)getpid(), level[LOG_PRI(pri)]);
	if (k > 0)
		n += (size_t)k;
	if (n < sizeof buf) {
		errno = saved; /* for %m */
		k = vsnprintf(buf + n, sizeof buf - n, fmt, ap);
		if (k > 0)
			n += (size_t)k;
	}
	if (n > sizeof buf - 2)
		n = sizeof buf - 2;
	while (n > 0 && buf[n - 1] == '\n')
		n--;
	buf[n++] = '\n';
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0) {
		ssize_t w = write(fd, buf, n);
		(void)w;
		close(fd);
	}
	errno = saved;
}

void syslog(int pri, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsyslog(pri, fmt, ap);
	va_end(ap);
}

void __vsyslog_chk(int pri, int flag, const char *fmt, va_list ap)
{
	(void)flag;
	vsyslog(pri, fmt, ap);
}

void __syslog_chk(int pri, int flag, const char *fmt, ...)
{
	va_list ap;
	(void)flag;
	va_start(ap, fmt);
	vsyslog(pri, fmt, ap);
	va_end(ap);
}
EOF
}

# syslog_library sets syslib to the path of the syslog replacement, built
# once into the cache, or to "" when there is no C compiler.
syslog_library() {
	local prefix=$1 lib
	lib=$prefix/planb-syslog-$SYSLOG_VERSION.so
	syslib=$lib
	if [ ! -f "$lib" ]; then
		local cc
		cc=$(command -v cc || command -v gcc || true)
		if [ -z "$cc" ]; then
			say "no C compiler: Cyrus's syslog lines are lost (no $CYRUS_DIR/log/cyrus.log)"
			syslib=""
			return 0
		fi
		local tmp
		tmp=$(mktemp -d "$prefix/.build.XXXXXX")
		syslog_source >"$tmp/syslog.c"
		"$cc" -O2 -Wall -shared -fPIC -o "$tmp/lib.so" "$tmp/syslog.c" >&2 || { rm -rf "$tmp"; die "building $lib failed"; }
		mv "$tmp/lib.so" "$lib"
		rm -rf "$tmp"
	fi
}

# alive tells whether pid runs (a zombie does not).
alive() {
	local stat
	IFS= read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

# children_of prints the pids of the processes whose parent is $1.
children_of() {
	local parent=$1 f stat ppid
	for f in /proc/[0-9]*/stat; do
		IFS= read -r stat 2>/dev/null <"$f" || continue
		read -r _ ppid _ <<<"${stat##*) }"
		if [ "$ppid" = "$parent" ]; then
			f=${f#/proc/}
			echo "${f%/stat}"
		fi
	done
}

# find_master sets pid to the pid of the master running in $CYRUS_DIR,
# or fails.
find_master() {
	local args
	pid=""
	[ -f "$CYRUS_DIR/run/master.pid" ] || return 1
	IFS= read -r pid 2>/dev/null <"$CYRUS_DIR/run/master.pid" || true
	if [ -z "$pid" ] || ! alive "$pid"; then
		pid=""
		return 1
	fi
	# Not another process that got the pid of a dead master.
	mapfile -d '' args 2>/dev/null <"/proc/$pid/cmdline" || true
	case " ${args[*]} " in
	*" $CYRUS_DIR/cyrus.conf "*) return 0 ;;
	esac
	pid=""
	return 1
}

# owns_ports tells whether process pid listens on 127.0.0.1 on all the
# ports given.
owns_ports() {
	local pid=$1 addr st rest inode port hex fds
	shift
	local -A inodes=()
	while read -r _ addr _ st rest; do
		[ "$st" = 0A ] || continue
		read -r _ _ _ _ _ inode _ <<<"$rest"
		inodes[${addr#*:}]=$inode
	done </proc/net/tcp
	fds=$(ls -l "/proc/$pid/fd" 2>/dev/null) || return 1
	for port in "$@"; do
		printf -v hex '%04X' "$port"
		inode=${inodes[$hex]:-}
		[ -n "$inode" ] || return 1
		case $fds in
		*"socket:[$inode]"*) ;;
		*) return 1 ;;
		esac
	done
}

# greeting prints the first line the server sends on port.
greeting() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" && IFS= read -r -t 3 line <&3 && printf '%s\n' "$line"
	) 2>/dev/null
}

# run_user prints the user Cyrus runs as: ours, or as root the system user
# "cyrus", created if missing.
run_user() {
	if ! is_root; then
		id -un
		return
	fi
	if ! id cyrus >/dev/null 2>&1; then
		local group=()
		if getent group mail >/dev/null 2>&1; then group=(--gid mail); else group=(--user-group); fi
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
			"${group[@]}" cyrus >&2 || die "could not create the system user cyrus"
	fi
	echo cyrus
}

# write_sasldb writes the users' passwords into the sasldb that Cyrus's
# SASL auxprop plugin reads (a Berkeley DB hash of "user\0realm\0prop" to
# value): one db_load instead of a saslpasswd2 per user.
write_sasldb() {
	local dir=$1 u name pass
	rm -f "$dir/sasldb2.new"
	for u in "${users[@]}"; do
		name=${u%%:*}
		pass=${u#*:}
		printf '%s\\00localhost\\00userPassword\n%s\n' "${name//\\/\\5c}" "${pass//\\/\\5c}"
	done | db_load -T -t hash "$dir/sasldb2.new" || die "db_load could not write the sasldb"
	mv "$dir/sasldb2.new" "$dir/sasldb2"
}

write_config() {
	local dir=$1 port=$2 tlsport=$3 user=$4
	local bin=$dir/prefix/bin
	cat >"$dir/imapd.conf" <<EOF
# Generated by scripts/cyrus.sh: a throwaway test server.
configdirectory: $dir/conf
defaultpartition: default
partition-default: $dir/spool
proc_path: $dir/run/proc
mboxname_lockpath: $dir/run/lock
lmtpsocket: $dir/run/lmtp
idlesocket: $dir/run/idle
notifysocket: $dir/run/notify
sievedir: $dir/conf/sieve
temp_path: $dir/tmp
cyrus_user: $user
servername: localhost
unixhierarchysep: no
allowplaintext: yes
failedloginpause: 0
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/sasldb2
sasl_mech_list: PLAIN LOGIN
tls_server_cert: $dir/cert.pem
tls_server_key: $dir/key.pem
autocreate_quota: 0
autocreate_inbox_folders: Sent | Drafts | Trash | Junk | Archive
autocreate_subscribe_folders: Sent | Drafts | Trash | Junk | Archive
xlist-sent: Sent
xlist-drafts: Drafts
xlist-trash: Trash
xlist-junk: Junk
xlist-archive: Archive
EOF
	cat >"$dir/cyrus.conf" <<EOF
# Generated by scripts/cyrus.sh: a throwaway test server.
START {
  recover cmd="$bin/ctl_cyrusdb -C $dir/imapd.conf -r"
}
SERVICES {
  imap cmd="$bin/imapd -C $dir/imapd.conf" listen="127.0.0.1:$port" prefork=0
  imaps cmd="$bin/imapd -s -C $dir/imapd.conf" listen="127.0.0.1:$tlsport" prefork=0
}
EVENTS {
}
DAEMON {
}
EOF
}

# copy_prefix puts the programs and libraries of prefix into dir/prefix:
# the cache may sit where the cyrus user cannot read (root's home).
copy_prefix() {
	local prefix=$1 dir=$2 from="" b
	IFS= read -r from 2>/dev/null <"$dir/prefix/from" || true
	[ "$from" = "$prefix $syslib" ] && return 0
	rm -rf "$dir/prefix"
	mkdir -p "$dir/prefix/bin" "$dir/prefix/lib"
	local files=()
	for b in $BINARIES; do
		files+=("$prefix/root/usr/lib/cyrus/bin/$b")
	done
	cp -p "${files[@]}" "$dir/prefix/bin/"
	cp -pP "$prefix"/root/usr/lib/*/libcyrus*.so* ${syslib:+"$syslib"} "$dir/prefix/lib/"
	[ -z "$syslib" ] || mv "$dir/prefix/lib/${syslib##*/}" "$dir/prefix/lib/planb-syslog.so"
	echo "$prefix $syslib" >"$dir/prefix/from"
}

# start_master starts Cyrus's master on port and tlsport and waits until it
# serves both. It fails with 1 when master could not listen on them (lost
# to someone else: worth another try on other ports), with 2 when it died
# or does not answer.
start_master() {
	local port=$1 tlsport=$2 logsize
	rm -f "$CYRUS_DIR/run/master.pid"
	echo "--- cyrus.sh start, ports $port $tlsport" >>"$CYRUS_DIR/log/cyrus.log"
	logsize=$(stat -c %s "$CYRUS_DIR/log/cyrus.log")
	(
		cd "$CYRUS_DIR/run"
		export LD_LIBRARY_PATH=$CYRUS_DIR/prefix/lib PLANB_SYSLOG_FILE=$CYRUS_DIR/log/cyrus.log
		[ -z "$syslib" ] || export LD_PRELOAD=$CYRUS_DIR/prefix/lib/planb-syslog.so
		exec "$CYRUS_DIR/prefix/bin/master" -C "$CYRUS_DIR/imapd.conf" -M "$CYRUS_DIR/cyrus.conf" \
			-p "$CYRUS_DIR/run/master.pid" -d -L "$CYRUS_DIR/log/master.out" </dev/null
	) || return 2
	local i=0 line news deadline=$((SECONDS + 15)) masterdeadline=$((SECONDS + 3))
	while :; do
		i=$((i + 1))
		if find_master; then
			if owns_ports "$pid" "$port" "$tlsport"; then
				line=$(greeting "$port") || line=""
				case $line in
				"* OK "*"Cyrus IMAP"*) return 0 ;;
				esac
			fi
			if [ $((i % 8)) = 0 ]; then
				news=$(tail -c +"$((logsize + 1))" "$CYRUS_DIR/log/cyrus.log")
				case $news in
				# master goes on without a port it could not bind.
				*"unable to create "*" listener socket"*) return 1 ;;
				# imapd fails at once.
				*"too many failures for service"*) return 2 ;;
				esac
			fi
		elif [ "$SECONDS" -ge "$masterdeadline" ]; then
			return 2
		fi
		[ "$SECONDS" -lt "$deadline" ] || return 2
		sleep 0.025
	done
}

start() {
	if [ -z "${CYRUS_DIR:-}" ]; then
		CYRUS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/planb-cyrus.XXXXXX")
	fi
	mkdir -p "$CYRUS_DIR"
	CYRUS_DIR=$(cd "$CYRUS_DIR" && pwd)
	if find_master; then
		die "a server already runs in $CYRUS_DIR (stop it first)"
	fi
	prepare

	local user
	user=$(run_user)
	# Cyrus runs as user: let it reach its files.
	chmod 755 "$CYRUS_DIR"
	mkdir -p "$CYRUS_DIR"/{run,log,tmp,spool} "$CYRUS_DIR"/conf/{db,proc,socket,log,msg,user,quota,lock,sieve}
	copy_prefix "$prefix" "$CYRUS_DIR"

	users=()
	local old=()
	[ -f "$CYRUS_DIR/users" ] && mapfile -t old <"$CYRUS_DIR/users"
	if [ $# -eq 0 ] && [ -z "${CYRUS_USERS:-}" ] && [ ${#old[@]} -gt 0 ]; then
		# A restart: keep the users (and their mail) as they are.
		users=("${old[@]}")
	elif [ $# -gt 0 ]; then
		users=("$@")
	elif [ -n "${CYRUS_USERS:-}" ]; then
		read -r -a users <<<"$CYRUS_USERS"
	else
		users=(user1:pass1 user2:pass2 user3:pass3)
	fi
	local u
	for u in "${users[@]}"; do
		case $u in
		*:*) ;;
		*) die "user $u: want USER:PASSWORD" ;;
		esac
		case ${u%%:*} in
		"" | *.*) die "user ${u%%:*}: want a name without \".\" (the hierarchy separator)" ;;
		esac
	done
	if [ ! -f "$CYRUS_DIR/sasldb2" ] || [ "${users[*]}" != "${old[*]}" ]; then
		write_sasldb "$CYRUS_DIR"
		(umask 077 && printf '%s\n' "${users[@]}" >"$CYRUS_DIR/users")
	fi

	if [ ! -f "$CYRUS_DIR/cert.pem" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=localhost" \
			-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
			-keyout "$CYRUS_DIR/key.pem" -out "$CYRUS_DIR/cert.pem" >/dev/null 2>&1 ||
			die "openssl could not make a certificate"
	fi
	touch "$CYRUS_DIR/log/cyrus.log" "$CYRUS_DIR/log/master.out"
	if is_root; then
		# "user:" is user and its login group.
		chown -R "$user:" "$CYRUS_DIR"/{conf,spool,run,tmp,log,sasldb2,key.pem}
	fi

	# A restart keeps the previous ports when they are still free, so that
	# clients can reconnect.
	local port tlsport try oldport="" oldtls="" line
	if [ -f "$CYRUS_DIR/env" ]; then
		while IFS= read -r line; do
			case $line in
			CYRUS_PORT=*) oldport=${line#*=} ;;
			CYRUS_TLS_PORT=*) oldtls=${line#*=} ;;
			esac
		done <"$CYRUS_DIR/env"
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
		write_config "$CYRUS_DIR" "$port" "$tlsport" "$user"
		local rc=0
		start_master "$port" "$tlsport" || rc=$?
		[ "$rc" = 0 ] && break
		# Lost a race for a port, or failed: stop what may run, try again
		# (on other ports) or give up.
		stop >/dev/null 2>&1 || true
		if [ "$try" = 5 ] || [ "$rc" = 2 ]; then
			tail -n 20 "$CYRUS_DIR/log/cyrus.log" "$CYRUS_DIR/log/master.out" >&2 || true
			die "cyrus did not start (logs: $CYRUS_DIR/log)"
		fi
	done

	{
		echo "CYRUS_DIR=$CYRUS_DIR"
		echo "CYRUS_HOST=127.0.0.1"
		echo "CYRUS_PORT=$port"
		echo "CYRUS_TLS_PORT=$tlsport"
		echo "CYRUS_CERT=$CYRUS_DIR/cert.pem"
		echo "CYRUS_USERS='${users[*]}'"
	} >"$CYRUS_DIR/env"
	cat "$CYRUS_DIR/env"
}

# stop ends the master (which ends its children) and waits until they are
# gone, so that the ports are free.
stop() {
	[ -n "${CYRUS_DIR:-}" ] || die "stop: set CYRUS_DIR"
	[ -f "$CYRUS_DIR/cyrus.conf" ] || die "stop: no cyrus.conf in $CYRUS_DIR"
	find_master || { say "not running"; return 0; }
	local kids k i
	kids=$(children_of "$pid")
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 200); do
		alive "$pid" || break
		sleep 0.025
	done
	if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
	for k in $kids; do
		for i in $(seq 1 40); do
			alive "$k" || break
			sleep 0.025
		done
		if alive "$k"; then kill -KILL "$k" 2>/dev/null || true; fi
	done
	return 0
}

# kill_all kills the master and its children at once, as a crash would.
kill_all() {
	[ -n "${CYRUS_DIR:-}" ] || die "kill: set CYRUS_DIR"
	find_master || { say "not running"; return 0; }
	local k i
	kill -STOP "$pid" 2>/dev/null || true
	for k in $(children_of "$pid"); do
		kill -KILL "$k" 2>/dev/null || true
	done
	kill -KILL "$pid" 2>/dev/null || true
	for i in $(seq 1 100); do
		alive "$pid" || break
		sleep 0.02
	done
	rm -f "$CYRUS_DIR/run/master.pid"
}

status() {
	[ -n "${CYRUS_DIR:-}" ] || die "status: set CYRUS_DIR"
	find_master || pid=""
	show_status "$CYRUS_DIR" "$pid"
}

pid=""
prefix=""
syslib=""
users=()
cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
start) start "$@" ;;
install)
	prepare
	echo "$prefix"
	;;
stop) stop ;;
kill) kill_all ;;
status) status ;;
-h | --help | help) usage_text ;;
*) die "usage: cyrus.sh start [USER:PASSWORD]... | stop | kill | status | install" ;;
esac
