# shellcheck shell=bash
# Helpers for the end-to-end scripts (sourced, not run: not executable, so
# tests/run.sh skips it).  Each script: `. "$(dirname "$0")/lib.sh"`.
#
# Gives: $XVL (the xvl binary), $T (a private temp dir), TAP output with
# `ok`/`fail`/`check`, process bookkeeping so that the EXIT trap kills
# every process the script started, and server helpers.

set -u

E2E_ROOT=${XVL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
XVL=${XVL_BIN:-$E2E_ROOT/build/src/cli/xvl}
T=$(mktemp -d "${TMPDIR:-/tmp}/xvl-e2e.XXXXXX")
E2E_N=0
E2E_FAILED=0
E2E_PIDS=()

e2e_cleanup() {
	local p
	for p in "${E2E_PIDS[@]}"; do
		kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
	done
	for p in "${E2E_PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$T"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

ok() { E2E_N=$((E2E_N + 1)); echo "ok $E2E_N - $*"; }
fail() { E2E_N=$((E2E_N + 1)); E2E_FAILED=$((E2E_FAILED + 1)); echo "not ok $E2E_N - $*"; }
skip() { E2E_N=$((E2E_N + 1)); echo "ok $E2E_N - $* # SKIP"; }
# check DESCRIPTION COMMAND...: ok when the command exits 0; else shows its log
check() {
	local d=$1
	shift
	if "$@" >"$T/last.log" 2>&1; then
		ok "$d"
	else
		local rc=$?
		fail "$d (exit $rc)"
		sed 's/^/#   /' "$T/last.log" | tail -n 15
	fi
}
# expect WHAT GOT DESCRIPTION
expect_eq() {
	if [ "$1" = "$2" ]; then ok "$3"; else fail "$3 (expected '$1', got '$2')"; fi
}
note() { echo "# $*"; }
finish() {
	echo "1..$E2E_N"
	[ "$E2E_FAILED" -eq 0 ] && exit 0
	note "$E2E_FAILED check(s) failed"
	exit 1
}

# Start a process in the background and remember it: bg LOG CMD...; sets BG_PID.
bg() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 &
	BG_PID=$!
	E2E_PIDS+=("$BG_PID")
}

# wait_sock PATH PID: wait up to 5 s for a listening socket; fails if PID died.
wait_sock() {
	for _ in $(seq 1 100); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# start_server LOG SOCK ARGS...: xvl server --listen SOCK ARGS; sets SRV_PID.
start_server() {
	local log=$1 sock=$2
	shift 2
	bg "$log" "$XVL" server --listen "$sock" "$@"
	SRV_PID=$BG_PID
	wait_sock "$sock" "$SRV_PID"
}

# stop_server PID: SIGTERM, wait up to 5 s; returns its exit status (or 124).
stop_server() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		return 124
	fi
	wait "$pid"
}

alive() { kill -0 "$1" 2>/dev/null; }

# Resource counts of a process: open fds, and mappings of memfds (windows).
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
memfd_maps() { grep -c 'memfd:' "/proc/$1/maps" 2>/dev/null; }
res_of() { echo "fds=$(fd_count "$1") memfd-maps=$(memfd_maps "$1")"; }

# back_to PID "fds=N memfd-maps=M": wait up to 3 s for the counts to return.
back_to() {
	for _ in $(seq 1 60); do
		[ "$(res_of "$1")" = "$2" ] && return 0
		sleep 0.05
	done
	return 1
}
