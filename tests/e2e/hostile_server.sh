#!/usr/bin/env bash
# A hostile driver against the server's state machine and event loop
# (issue 9: items 10, 11, 16-20 and the protocol-agreement points).  TAP.
#
# tests/hostile/server_attack.c speaks the link protocol by hand.  Each case
# gets a fresh `xvl server` (the ASan/UBSan build when build-asan exists)
# with device 0 a file and device 1 RAM, so that one broken case cannot
# hide or cause another.  Besides the peer's own PASS/FAIL lines:
#   spinning: the server's CPU time (utime+stime from /proc/PID/stat) over
#     ~1 s of idleness after the attack must stay under 20 ticks of 100
#     (a spinning server shows ~100);
#   blocking: the peer checks that a second client's HELLO is answered
#     within 1 s while it misbehaves;
#   the server must still serve a well-behaved client and exit cleanly
#     with no sanitizer report.
set -u
. "$(dirname "$0")/lib.sh"

R=$E2E_ROOT
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
SRV=${XVL_SERVER_BIN:-$R/build-asan/src/cli/xvl}
[ -x "$SRV" ] || SRV=$XVL
CC=${CC:-gcc}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
TICKS_MAX=20

F=(-std=gnu11 -g -O1 -Wall -Wextra -D_GNU_SOURCE -I"$R/include" -I"$R/src/core" -I"$R/src/os"
	-I"$R/tests/hostile")
if ! "$CC" "${F[@]}" "$R"/src/core/window.c "$R"/src/core/virtq.c "$R"/src/core/proto.c \
	"$R"/src/os/os_*.c "$R/tests/hostile/server_attack.c" -o "$T/attack" 2>"$T/cc.log"; then
	fail "build tests/hostile/server_attack.c"
	sed 's/^/#   /' "$T/cc.log" | grep -E 'error' | head -20
	finish
fi
ok "build tests/hostile/server_attack.c"
note "server: $SRV"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# run_case CASE [HOLD]: fresh server, the peer, CPU over the idle second
# when the peer says READY, then a good client and a clean exit.
run_case() {
	local c=$1 hold=${2:-0}
	truncate -s 64M "$T/f0.img"
	rm -f "$T/s.sock"
	"$SRV" server ${XVL_SERVER_ARGS:-} -l "$T/s.sock" -d "name=f0,backend=file,path=$T/f0.img" \
		-d "name=ram1,backend=ram,size=64M" >"$T/srv.log" 2>&1 &
	local sp=$!
	E2E_PIDS+=("$sp")
	if ! wait_sock "$T/s.sock" "$sp"; then
		fail "$c: server did not start"
		return
	fi
	"$T/attack" "$T/s.sock" "$c" "$hold" "$T/f0.img" >"$T/a.out" 2>"$T/a.err" &
	local ap=$!
	E2E_PIDS+=("$ap")
	if [ "$hold" -gt 0 ]; then
		for _ in $(seq 100); do grep -q '^READY' "$T/a.out" && break; sleep 0.05; done
		sleep 0.2
		local t0 t1
		t0=$(ticks "$sp")
		sleep 1
		t1=$(ticks "$sp")
		local used=$((t1 - t0))
		if grep -q '^READY' "$T/a.out" && [ "$used" -lt $TICKS_MAX ]; then
			ok "$c: server idle after the attack ($used CPU ticks in 1 s)"
		else
			fail "$c: server idle after the attack ($used CPU ticks in 1 s, limit $TICKS_MAX)"
		fi
	fi
	local waited=0
	while kill -0 "$ap" 2>/dev/null && [ $waited -lt 150 ]; do sleep 0.1; waited=$((waited + 1)); done
	kill -KILL "$ap" 2>/dev/null
	wait "$ap" 2>/dev/null
	while read -r verdict rest; do
		case $verdict in
		PASS) ok "$c: $rest" ;;
		FAIL) fail "$c: $rest" ;;
		'#') note "$c: $rest" ;;
		esac
	done <"$T/a.out"
	if [ -s "$T/a.err" ]; then
		grep -q FAIL "$T/a.err" && fail "$c: peer: $(grep FAIL "$T/a.err" | head -1)"
	fi
	if alive "$sp" && timeout -k 1 10 "$XVL" blk verify -c "$T/s.sock" -d ram1 --size 1M \
		--ops 200 >"$T/v.log" 2>&1; then
		ok "$c: a well-behaved client is served afterwards"
	else
		fail "$c: a well-behaved client is served afterwards$(alive "$sp" || echo ' (SERVER DIED)')"
		tail -n 3 "$T/v.log" | sed 's/^/#   /'
	fi
	kill -TERM "$sp" 2>/dev/null
	local rc=0
	for _ in $(seq 50); do alive "$sp" || break; sleep 0.1; done
	if alive "$sp"; then
		kill -KILL "$sp"
		rc=124
	fi
	wait "$sp" 2>/dev/null || rc=$?
	if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/srv.log"; then
		ok "$c: server exits cleanly, no sanitizer report"
	else
		fail "$c: server exit status $rc or sanitizer report"
		grep -E -A8 'ERROR: |runtime error:' "$T/srv.log" | head -20 | sed 's/^/#   /'
	fi
}

# The HELLO timeout takes 10 s: its own server, in the background meanwhile.
rm -f "$T/ht.sock"
"$SRV" server ${XVL_SERVER_ARGS:-} -l "$T/ht.sock" -d "name=ram1,backend=ram,size=1M" >"$T/ht-srv.log" 2>&1 &
HT_SRV=$!
E2E_PIDS+=("$HT_SRV")
HT_PEER=
if [ -z "${HS_CASES:-}" ] && wait_sock "$T/ht.sock" "$HT_SRV"; then
	"$T/attack" "$T/ht.sock" hello_timeout >"$T/ht.out" 2>"$T/ht.err" &
	HT_PEER=$!
	E2E_PIDS+=("$HT_PEER")
fi

CASES=${HS_CASES:-"toggle:3 toggle_detach:3 kickfd_hup:3 reset_inflight enable_flag unread callfd_full callfd_flip callfd_max:3 callfd_pipe conn_limit bases proto blk"}
for c in $CASES; do run_case "${c%%:*}" "$(case $c in *:*) echo "${c#*:}";; *) echo 0;; esac)"; done

if [ -n "$HT_PEER" ]; then
	wait "$HT_PEER"
	while read -r verdict rest; do
		case $verdict in
		PASS) ok "hello_timeout: $rest" ;;
		FAIL) fail "hello_timeout: $rest" ;;
		esac
	done <"$T/ht.out"
	grep -q FAIL "$T/ht.err" && fail "hello_timeout: peer: $(grep FAIL "$T/ht.err" | head -1)"
	if grep -q 'no HELLO within' "$T/ht-srv.log"; then
		ok "hello_timeout: the server logged why it closed the silent connection"
	else
		fail "hello_timeout: the server logged why it closed the silent connection"
	fi
fi
stop_server "$HT_SRV"
expect_eq 0 $? "hello_timeout: that server exits with status 0"
finish
