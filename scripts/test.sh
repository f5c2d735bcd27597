#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
#
# The IMAP tests need a real Dovecot and the S3 tests a real S3 server
# (versitygw): both are installed here when missing, and the tests are told
# to fail rather than skip when they cannot start them. Each test starts its
# own throwaway server on 127.0.0.1; nothing system-wide is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
if ! command -v dovecot >/dev/null 2>&1; then
	echo "test: installing dovecot-imapd" >&2
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
fi
if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/versitygw" ]; then
	echo "test: installing versitygw (an S3 server; builds in a few minutes)" >&2
	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
export PLANB_REQUIRE_DOVECOT=1 PLANB_REQUIRE_S3=1

go vet ./...
go test ./...
