#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# The IMAP tests need a real Dovecot, a real Cyrus IMAP (a strict one) and
# the S3 tests a real S3 server (versitygw): all are installed here when
# missing (Cyrus unpacked into a cache by scripts/cyrus.sh, since Debian's
# package conflicts with Dovecot's), and the tests are told to fail rather
# than skip when they cannot start them; the Proton Mail Bridge-shaped
# server of scripts/bridge.sh is built from this module (cgo, for gluon's
# SQLite). Each test starts its own throwaway server on 127.0.0.1; nothing
# else system-wide is touched (but for the system users the servers run
# as).
#
# scripts/test.sh --race runs the tests under the race detector instead
# (about three times as long; not in CI, which must stay under 30 minutes
# on a cold build cache).
set -euo pipefail
cd "$(dirname "$0")/.."

# -timeout: go test's default of 10 minutes a package is too little for
# cmd/planb on a loaded 2-core machine; CI's own limit is 30 minutes.
race=(-timeout 25m)
case ${1:-} in
"") ;;
--race) race=(-race -timeout 90m) ;;
*) echo "test: unknown argument: $1 (want nothing or --race)" >&2; exit 2 ;;
esac

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
if ! command -v dovecot >/dev/null 2>&1; then
	echo "test: installing dovecot-imapd" >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
fi
# The mail clients of planb serve's tests (mbsync is in isync).
if ! command -v mbsync >/dev/null 2>&1 || ! command -v neomutt >/dev/null 2>&1 || ! command -v tmux >/dev/null 2>&1; then
	echo "test: installing isync, neomutt and tmux" >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq isync neomutt tmux >/dev/null
fi
if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/versitygw" ]; then
	echo "test: installing versitygw (an S3 server; builds in a few minutes)" >&2
	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
# Fetched once here rather than by the first of the tests that start
# Cyrus at once (it then takes a few seconds; nothing when cached).
$sudo bash scripts/cyrus.sh install >/dev/null
export PLANB_REQUIRE_DOVECOT=1 PLANB_REQUIRE_CYRUS=1 PLANB_REQUIRE_BRIDGE=1 PLANB_REQUIRE_S3=1

go vet ./...
go test "${race[@]}" ./...
