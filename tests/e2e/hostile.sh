#!/usr/bin/env bash
# Hostile peers on live connections (issue 6, item 2).  TAP on stdout.
#
# Hostile DRIVER (tests/hostile/hostile_driver.c) against a real `xvl
# server` (the ASan/UBSan build when build-asan exists): on a live queue of
# a file-backed device it writes out-of-range heads and `next`s, loops,
# buffers outside the window or overflowing, readable-after-writable,
# nested/bad/out-of-window indirect tables, avail idx jumps, over-long
# chains, a head reused in flight, chains without a status byte; it offers
# rings outside the window and a window it could shrink; it goes silent
# mid-request and is killed.  Each ring violation must break THAT device
# (EVENT BROKEN with a reason, GET_STATUS NEEDS_RESET), the device must work
# again after RESET, the server must stay up, and a well-behaved client must
# verify another device of the same server all along.
#
# Hostile DEVICE (tests/hostile/hostile_device.c, a fake server) against a
# client using the public API (tests/hostile/hostile_client.c, ASan/UBSan):
# bad used ids, used idx jumps, a double completion, oversized used lengths,
# a bad status byte, EVENT BROKEN, a dropped link, and silence.
#
# Finally the server must exit cleanly with no sanitizer report.
set -u
. "$(dirname "$0")/lib.sh"

R=$E2E_ROOT
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
SRV=${XVL_SERVER_BIN:-$R/build-asan/src/cli/xvl}
if [ ! -x "$SRV" ]; then
	note "no ASan build at $SRV (make build-asan): using $XVL for the server"
	SRV=$XVL
fi
CC=${CC:-gcc}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# ---------------------------------------------------------------- build the peers
F=(-std=gnu11 -g -O1 -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=undefined
	-D_GNU_SOURCE -I"$R/include" -I"$R/src/core" -I"$R/src/os" -I"$R/src/vhost"
	-I"$R/src/client" -I"$R/tests/hostile")
CORE=("$R"/src/core/window.c "$R"/src/core/virtq.c "$R"/src/core/proto.c "$R"/src/core/mailbox.c "$R"/src/core/net.c "$R"/src/os/*.c)
if ! "$CC" "${F[@]}" "${CORE[@]}" "$R/tests/hostile/hostile_driver.c" -o "$T/hostile_driver" 2>"$T/cc.log" ||
	! "$CC" "${F[@]}" "${CORE[@]}" "$R/tests/hostile/hostile_device.c" -o "$T/hostile_device" 2>>"$T/cc.log" ||
	! "$CC" "${F[@]}" "${CORE[@]}" "$R"/src/vhost/*.c "$R"/src/client/*.c \
		"$R/tests/hostile/hostile_client.c" -o "$T/hostile_client" 2>>"$T/cc.log"; then
	fail "build the hostile peers with $CC -fsanitize=address,undefined"
	sed 's/^/#   /' "$T/cc.log" | grep -E 'error|undefined' | head -20
	finish
fi
ok "build the hostile peers (ASan/UBSan)"

# ---------------------------------------------------------------- server
truncate -s 64M "$T/bad.img"
"$SRV" server ${XVL_SERVER_ARGS:-} -l "$T/s.sock" -d "name=bad,backend=file,path=$T/bad.img" \
	-d "name=good,backend=ram,size=64M" -d "name=mq,backend=ram,size=16M,queues=4" \
	>"$T/srv.log" 2>&1 &
SP=$!
E2E_PIDS+=("$SP")
for _ in $(seq 100); do [ -S "$T/s.sock" ] && break; sleep 0.05; done
[ -S "$T/s.sock" ] || { fail "server did not start"; tail "$T/srv.log" | sed 's/^/#   /'; finish; }
note "server: $SRV (pid $SP)"

alive() { kill -0 "$SP" 2>/dev/null; }

# A well-behaved client verifies device "good" while the hostile driver works on "bad".
"$XVL" blk verify -c "$T/s.sock" -d good --size 8M --ops 100000000 --time 15 --qd 4 \
	>"$T/verify.log" 2>&1 &
VP=$!
E2E_PIDS+=("$VP")

# ---------------------------------------------------------------- hostile driver
n_ring=0
while IFS=$'\t' read -r c what; do
	if timeout -k 2 20 "$T/hostile_driver" "$T/s.sock" 0 "$c" >"$T/hd.out" 2>"$T/hd.err" && alive; then
		ok "hostile driver $c ($what): $(grep '^broken:' "$T/hd.out" | cut -c9-)"
		n_ring=$((n_ring + 1))
	else
		fail "hostile driver $c ($what)$(alive || echo '; SERVER DIED')"
		sed 's/^/#   /' "$T/hd.out" "$T/hd.err" | tail -n 15
	fi
done < <("$T/hostile_driver" list)
note "ring violations that broke the device and recovered after RESET: $n_ring"

for c in ring_oob window_shrink window_unsealable; do
	if timeout -k 2 20 "$T/hostile_driver" "$T/s.sock" 0 "$c" >"$T/hd.out" 2>"$T/hd.err" && alive; then
		ok "hostile driver $c: $(tail -n 1 "$T/hd.out")"
	else
		fail "hostile driver $c$(alive || echo '; SERVER DIED')"
		sed 's/^/#   /' "$T/hd.out" "$T/hd.err" | tail -n 15
	fi
done

# Silent mid-request, then killed: the server must neither break nor hang.
"$T/hostile_driver" "$T/s.sock" 0 silent 60 >"$T/hd.out" 2>"$T/hd.err" &
HP=$!
E2E_PIDS+=("$HP")
sleep 2
if kill -0 "$HP" 2>/dev/null && grep -q 'now silent' "$T/hd.out"; then
	ok "hostile driver silent mid-request for 2 s: no event, link kept, server up"
else
	fail "hostile driver silent"
	sed 's/^/#   /' "$T/hd.out" "$T/hd.err" | tail -n 10
fi
kill -KILL "$HP" 2>/dev/null
wait "$HP" 2>/dev/null
sleep 0.3
if alive && "$XVL" blk verify -c "$T/s.sock" -d bad --size 4M --ops 2000 >"$T/v2.log" 2>&1; then
	ok "after the silent peer was killed (-9) the device serves a good client: $(grep -o 'verified.*' "$T/v2.log")"
else
	fail "device bad after the silent peer was killed"
	tail -n 10 "$T/v2.log" | sed 's/^/#   /'
fi

if wait "$VP"; then
	ok "a well-behaved client verified device good throughout: $(grep -o 'verified.*' "$T/verify.log")"
else
	fail "concurrent verify on device good"
	tail -n 10 "$T/verify.log" | sed 's/^/#   /'
fi

# ---------------------------------------------------------------- TSan
# The threaded use of the library (the fio engine's thread=1): one connection,
# one thread per queue.  ThreadSanitizer over the client library and core.
if "$CC" -std=gnu11 -g -O1 -Wno-tsan -fsanitize=thread -D_GNU_SOURCE -I"$R/include" -I"$R/src/core" \
	-I"$R/src/os" -I"$R/src/vhost" -I"$R/src/client" "${CORE[@]}" "$R"/src/vhost/*.c \
	"$R"/src/client/*.c "$R/tests/hostile/tsan_queues.c" -lpthread -o "$T/tsan_queues" 2>"$T/cc.log"; then
	if TSAN_OPTIONS=halt_on_error=1:exitcode=66 timeout -k 2 60 "$T/tsan_queues" "$T/s.sock" 2 4 1000 \
		>"$T/tsan.out" 2>&1 && ! grep -q 'WARNING: ThreadSanitizer' "$T/tsan.out"; then
		ok "TSan: $(tail -n 1 "$T/tsan.out"), no data race"
	else
		fail "TSan run of tests/hostile/tsan_queues.c"
		head -40 "$T/tsan.out" | sed 's/^/#   /'
	fi
else
	skip "TSan build of tests/hostile/tsan_queues.c failed ($(head -c 200 "$T/cc.log"))"
fi

# ---------------------------------------------------------------- hostile device
for c in used_id_unsubmitted used_id_oob used_idx_jump double_completion used_len_big \
	bad_status event_broken link_drop silent good; do
	rm -f "$T/d.sock"
	"$T/hostile_device" "$T/d.sock" "$c" >"$T/dev.out" 2>&1 &
	DP=$!
	E2E_PIDS+=("$DP")
	for _ in $(seq 100); do [ -S "$T/d.sock" ] && break; sleep 0.05; done
	if timeout -k 2 20 "$T/hostile_client" "$T/d.sock" "$c" >"$T/hc.out" 2>"$T/hc.err"; then
		ok "hostile device $c: $(paste -sd";" "$T/hc.out" | cut -c1-220)"
	else
		fail "hostile device $c"
		sed 's/^/#   /' "$T/hc.out" "$T/hc.err" | tail -n 20
	fi
	kill "$DP" 2>/dev/null
	wait "$DP" 2>/dev/null
done

# ---------------------------------------------------------------- server exit, sanitizers
kill -TERM "$SP"
wait "$SP"
rc=$?
if [ "$rc" -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/srv.log"; then
	ok "server exits cleanly, no sanitizer report ($(basename "$(dirname "$(dirname "$(dirname "$SRV")")")"))"
else
	fail "server exit status $rc or sanitizer report"
	grep -E -A12 'ERROR: |runtime error:' "$T/srv.log" | head -40 | sed 's/^/#   /'
fi
finish
