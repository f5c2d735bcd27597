#!/usr/bin/env bash
# scripts/fuzz.sh [DURATION] [PATTERN]: runs every fuzz target of the module
# one after another, each for DURATION (default 2m, any -fuzztime value),
# then lists each target's executions and exits non-zero if any target
# failed. PATTERN, an extended regular expression, keeps only the targets
# whose "package FuzzName" matches it.
#
# The targets are found, not listed here: every "func FuzzX(" of a
# *_test.go file. A target that fails leaves its input in its package's
# testdata/fuzz/FuzzX/, where `go test` (and so CI) replays it from then
# on with the rest of the seed corpus; keep it there once the bug is fixed.
# Each target's full output is kept in $FUZZ_LOGS (default a temporary
# folder). FUZZ_PARALLEL sets go test's -parallel (default: every CPU).
set -uo pipefail
cd "$(dirname "$0")/.."

duration=${1:-2m}
pattern=${2:-}
logs=${FUZZ_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/planb-fuzz.XXXXXX")}
mkdir -p "$logs"
parallel=()
[ -n "${FUZZ_PARALLEL:-}" ] && parallel=(-parallel "$FUZZ_PARALLEL")

# "./pkg FuzzName" lines, sorted, from the test files.
mapfile -t targets < <(
	grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*\(' . |
		sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' |
		sort -u
)
if [ -n "$pattern" ]; then
	mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -E -- "$pattern")
fi
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz target found${pattern:+ matching $pattern}" >&2
	exit 2
fi
echo "fuzz: ${#targets[@]} targets, $duration each; logs in $logs" >&2

failed=0
results=()
for t in "${targets[@]}"; do
	pkg=${t% *}
	name=${t#* }
	log="$logs/$(echo "${pkg#./}" | tr / _)_$name.log"
	echo "fuzz: $pkg $name" >&2
	go test "${parallel[@]}" -run '^$' -fuzz "^$name\$" -fuzztime "$duration" "$pkg" >"$log" 2>&1
	rc=$?
	# The last progress line carries the total: "fuzz: elapsed: 2m0s,
	# execs: 123456 (1028/sec), new interesting: ...".
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	status=ok
	if [ "$rc" -ne 0 ]; then
		status=FAILED
		failed=$((failed + 1))
		crasher=$(grep -o 'testdata/fuzz/[^ ]*' "$log" | tail -n 1)
		[ -n "$crasher" ] && status="FAILED (input kept in ${pkg#./}/$crasher)"
		grep -E -- '--- FAIL|panic:|fuzz_test|_test\.go:[0-9]+:' "$log" | head -n 5 | sed 's/^/    /' >&2
	fi
	results+=("$(printf '%-28s %-22s %12s  %s' "${pkg#./}" "$name" "${execs:-?}" "$status")")
done

printf '%-28s %-22s %12s  %s\n' package target executions result
printf '%s\n' "${results[@]}"
if [ "$failed" -gt 0 ]; then
	echo "fuzz: $failed of ${#targets[@]} targets failed; logs in $logs" >&2
	exit 1
fi
