# Functions shared by the benchmark scripts; source it after setting ROOT
# (the repository), WORK (the cache folder) and BENCH (the script's name).

log() { printf '%s: %s\n' "$BENCH" "$*" >&2; }

# ensure_cmd CMD PACKAGE: installs the Debian PACKAGE (as root, else with
# sudo -n) when the command or path CMD is missing; fails, saying so, when
# CMD is still missing after that.
ensure_cmd() {
	command -v "$1" >/dev/null 2>&1 && return 0
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
	log "installing $2 ($1 is missing)"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
		{ "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; } || true
	command -v "$1" >/dev/null 2>&1 && return 0
	log "$1 missing, and apt-get install $2 failed"
	return 1
}

# build_bin DEST PACKAGE: builds the Go command PACKAGE (run from the
# repository) and installs it at DEST as a package manager would, by
# copying. The linker writes its output through a shared mapping, and
# while those page-cache pages stay, every process of that file maps more
# of it: on a 6.18 kernel `planb snapshots` peaked at 49.5 MiB run from
# the just-linked file and at 37.7 MiB from a copy (or from the same file
# once the page cache was dropped). The copy measures what an installed
# planb uses, as restic from its Debian package is measured.
build_bin() {
	go build -o "$1.link" "$2" || return
	install -m 0755 "$1.link" "$1"
	rm -f "$1.link"
}

# ensure_time installs GNU time when /usr/bin/time is missing.
ensure_time() { ensure_cmd /usr/bin/time time; }

# REPO_LAYOUT names how a backup fills packs and entries: a cached
# benchmark repository made by another layout is made again (2: a frame
# holds one folder's messages, since 1879355; 3: entries record their
# wire size, which planb serve uses; 4: the key file has the key
# derivation of new repositories, 9 MiB instead of 64 MiB, since ef27495;
# 5: frames of base64 lines hold them decoded).
REPO_LAYOUT=5

# repo_current REPO reports whether the cached repository REPO was made by
# this layout (mark_repo REPO records that it was).
repo_current() { [ -d "$1" ] && [ "$(cat "$1.done" 2>/dev/null)" = "layout=$REPO_LAYOUT${2:+ $2}" ]; }
mark_repo() { echo "layout=$REPO_LAYOUT${2:+ $2}" >"$1.done"; }

# On ext4 without a journal (as on this project's machine), a file created
# within a minute after thousands were deleted makes the kernel check each
# of their inodes (recently_deleted): seconds of CPU for whoever writes
# next. remove PATH... deletes what exists and notes when; wait_removed
# waits until a minute has passed since, before anything is timed.
REMOVED=0
remove() {
	local p
	for p; do
		[ -e "$p" ] || continue
		rm -rf "$p"
		REMOVED=$(date +%s)
	done
}
wait_removed() {
	local w=$((REMOVED + 61 - $(date +%s)))
	[ "$w" -gt 0 ] || return 0
	log "waiting $w s: files deleted less than a minute ago slow down creating new ones"
	sleep "$w"
}

# mailgen_key prints a hash of mailgen's source, so cached data is rebuilt
# when the generator changes.
mailgen_key() { cat "$ROOT"/cmd/mailgen/*.go | sha256sum | cut -c1-16; }

# generate DIR ARGS... runs mailgen into DIR unless DIR is already complete
# for the same arguments and generator.
generate() {
	local dir=$1; shift
	local key
	key="$(mailgen_key) $*"
	if [ -f "$dir.done" ] && [ "$(cat "$dir.done")" = "$key" ] && [ -d "$dir" ]; then
		log "reusing $dir"
		return 0
	fi
	rm -rf "$dir" "$dir.done"
	log "generating $dir (mailgen $*)"
	"$WORK/bin/mailgen" -out "$dir" "$@"
	printf '%s\n' "$key" >"$dir.done"
}

# timed LOG CMD... runs CMD with its output in LOG.out and sets T_SEC,
# T_KB (peak RSS) and T_RC.
timed() {
	local logf=$1; shift
	T_RC=0
	/usr/bin/time -f '%e %M' -o "$logf.time" "$@" >"$logf.out" 2>&1 || T_RC=$?
	read -r T_SEC T_KB < <(tail -n 1 "$logf.time")
}

# parse_args NAME=VAR... -- ARG...: reads the script's arguments: for each
# NAME=VAR pair, "--NAME VALUE" sets the variable VAR; -h and --help print
# the script's usage; anything else ends the script with exit 2.
parse_args() {
	local -A vars=()
	while [ "$1" != -- ]; do
		vars[${1%%=*}]=${1#*=}
		shift
	done
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		-h | --help) usage; exit 0 ;;
		--*)
			if [ -z "${vars[${1#--}]:-}" ]; then
				echo "$BENCH: unknown argument: $1 (try --help)" >&2
				exit 2
			fi
			printf -v "${vars[${1#--}]}" '%s' "${2:?$BENCH: $1 needs a value}"
			shift
			;;
		*) echo "$BENCH: unknown argument: $1 (try --help)" >&2; exit 2 ;;
		esac
		shift
	done
}
