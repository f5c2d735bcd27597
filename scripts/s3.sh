#!/usr/bin/env bash
# s3.sh start|stop: a real S3 server (versitygw) on 127.0.0.1 for tests and
# the demo.
#
#   set -a; eval "$(scripts/s3.sh start)"; set +a   # KEY=value lines, exported
#   ... planb --repo "s3:$S3_ENDPOINT/$S3_BUCKET/repo" --insecure-plaintext ...
#   scripts/s3.sh stop     # uses S3_PID and S3_DIR from the environment
#   scripts/s3.sh stop PID DIR
#   scripts/s3.sh adduser ACCESS SECRET [ROLE]   # a user of the running server
#
# start installs versitygw into $(go env GOPATH)/bin if it is neither on
# PATH nor there (about a minute), picks a free port, serves a fresh
# temporary folder (or $S3_DIR if set) whose sub-folder $S3_BUCKET (default
# "planb") is the bucket, and prints S3_ENDPOINT, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, S3_BUCKET, S3_PID and S3_DIR. The server's log is
# $S3_DIR.log. The server keeps its users in $S3_DIR.iam and object versions
# (of buckets with versioning enabled) in $S3_DIR.versions, so that an
# append-only repository can be tried: adduser creates a user (role "user",
# no rights but those a bucket policy grants, unless ROLE says otherwise)
# with the root credentials of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
# at S3_ENDPOINT. stop kills the server and removes S3_DIR (and its .iam
# and .versions folders) if start made it.
set -euo pipefail

VERSITYGW_VERSION=v1.8.0

die() { echo "s3.sh: $*" >&2; exit 1; }

find_versitygw() {
	if command -v versitygw >/dev/null 2>&1; then
		command -v versitygw
		return
	fi
	local bin
	bin="$(go env GOPATH)/bin/versitygw"
	if [[ ! -x $bin ]]; then
		echo "s3.sh: installing versitygw $VERSITYGW_VERSION into $(go env GOPATH)/bin" >&2
		go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2 ||
			die "go install versitygw failed"
	fi
	echo "$bin"
}

# port_free reports whether nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
	local vgw dir made=0 bucket port="" pid
	vgw=$(find_versitygw)
	bucket=${S3_BUCKET:-planb}
	if [[ -n ${S3_DIR:-} ]]; then
		dir=$S3_DIR
		mkdir -p "$dir"
	else
		dir=$(mktemp -d "${TMPDIR:-/tmp}/planb-s3.XXXXXX")
		made=1
	fi
	mkdir -p "$dir/$bucket" "$dir.iam" "$dir.versions"
	[[ $made == 1 ]] && touch "$dir/.planb-s3-made"
	for _ in $(seq 50); do
		local p=$((20000 + RANDOM % 40000))
		if port_free "$p"; then
			port=$p
			break
		fi
	done
	[[ -n $port ]] || die "no free port found"
	local access=${AWS_ACCESS_KEY_ID:-planbtest}
	local secret=${AWS_SECRET_ACCESS_KEY:-planbtestsecret$RANDOM$RANDOM}
	# setsid: the server outlives this script and ignores the caller's
	# terminal signals.
	setsid "$vgw" --access "$access" --secret "$secret" --port "127.0.0.1:$port" --quiet \
		--iam-dir "$dir.iam" posix --versioning-dir "$dir.versions" "$dir" >"$dir.log" 2>&1 </dev/null &
	pid=$!
	for _ in $(seq 100); do
		if ! port_free "$port"; then
			break
		fi
		kill -0 "$pid" 2>/dev/null || die "versitygw exited; see $dir.log"
		sleep 0.1
	done
	port_free "$port" && { kill "$pid"; die "versitygw did not listen on port $port; see $dir.log"; }
	cat <<EOF
S3_ENDPOINT=http://127.0.0.1:$port
AWS_ACCESS_KEY_ID=$access
AWS_SECRET_ACCESS_KEY=$secret
S3_BUCKET=$bucket
S3_PID=$pid
S3_DIR=$dir
EOF
}

stop() {
	S3_PID=${1:-${S3_PID:-}}
	S3_DIR=${2:-${S3_DIR:-}}
	[[ -n ${S3_PID:-} ]] || die "stop: S3_PID is not set (export the output of start, or give PID and DIR)"
	if kill "$S3_PID" 2>/dev/null; then
		for _ in $(seq 50); do
			kill -0 "$S3_PID" 2>/dev/null || break
			sleep 0.1
		done
	fi
	if [[ -n ${S3_DIR:-} && -e $S3_DIR/.planb-s3-made ]]; then
		rm -rf -- "$S3_DIR" "$S3_DIR.log" "$S3_DIR.iam" "$S3_DIR.versions"
	fi
}

adduser() {
	[[ $# == 2 || $# == 3 ]] || die "usage: s3.sh adduser ACCESS SECRET [ROLE]"
	[[ -n ${S3_ENDPOINT:-} && -n ${AWS_ACCESS_KEY_ID:-} && -n ${AWS_SECRET_ACCESS_KEY:-} ]] ||
		die "adduser: S3_ENDPOINT, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (export the output of start)"
	local vgw
	vgw=$(find_versitygw)
	"$vgw" admin --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" --endpoint-url "$S3_ENDPOINT" \
		create-user --access "$1" --secret "$2" --role "${3:-user}" >&2 || die "adduser: versitygw admin create-user failed"
}

case ${1:-} in
start) start ;;
stop) stop "${@:2}" ;;
adduser) adduser "${@:2}" ;;
*) die "usage: s3.sh start|stop|adduser" ;;
esac
