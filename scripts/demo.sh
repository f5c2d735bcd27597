#!/usr/bin/env bash
# demo.sh: planb's main job on the bundled sample mail, every step printed.
#
# Builds planb into a temporary directory, creates a repository there with
# a generated password file, backs up testdata/mail/maildir, lists what was
# stored, exports it as .eml files and checks that every message came back
# byte for byte, then checks the repository and shows its size. Nothing
# outside the temporary directory is touched; it is removed at the end
# unless KEEP=1 is set.
set -euo pipefail
cd "$(dirname "$0")/.."

mail=testdata/mail/maildir
if [[ ! -d $mail ]]; then
	echo "demo: $mail is missing" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/planb-demo.XXXXXX")
if [[ ${KEEP:-} == 1 ]]; then
	trap 'echo; echo "demo: kept $work"' EXIT
else
	trap 'rm -rf "$work"' EXIT
fi

# run prints a command, shell-style, then runs it.
run() {
	printf '\n$'
	printf ' %q' "$@"
	printf '\n'
	"$@"
}
planb() { "$work/planb" "$@"; }

run go build -o "$work/planb" ./cmd/planb

# The password is random and only ever in this file.
(umask 077 && head -c 24 /dev/urandom | base64 >"$work/password")
export PLANB_REPOSITORY="$work/repo"
export PLANB_PASSWORD_FILE="$work/password"
printf '\n$ export PLANB_REPOSITORY=%q PLANB_PASSWORD_FILE=%q\n' "$PLANB_REPOSITORY" "$PLANB_PASSWORD_FILE"

run planb init
run planb backup maildir --path "$mail" --tag demo
run planb snapshots
run planb ls latest
run planb ls latest INBOX
run planb export latest --format eml --out "$work/eml"

# Every message of the Maildir must come back with the same bytes: compare
# the sorted SHA-256 sums of the originals and of the exported files.
sums() { find "$@" -type f -exec sha256sum {} + | cut -d' ' -f1 | sort; }
printf '\n$ compare the exported .eml files with the Maildir messages\n'
want=$(sums "$mail" \( -path '*/cur/*' -o -path '*/new/*' \))
got=$(sums "$work/eml" -name '*.eml')
if [[ $want != "$got" ]]; then
	echo "FAILED: the export differs from the Maildir:" >&2
	diff <(echo "$want") <(echo "$got") >&2 || true
	exit 1
fi
echo "OK: all $(wc -l <<<"$want") messages are byte-identical"

run planb check --read-data
run planb stats
