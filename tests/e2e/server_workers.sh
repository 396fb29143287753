#!/usr/bin/env bash
# The server's worker threads (--cpus) and adaptive polling (issue 15 items
# 1 and 2).  TAP on stdout.  About 20 s.
#
# - tests/hostile/tsan_server.c under ThreadSanitizer: an in-process server
#   with two workers and a client that sets a 4-queue device up, moves data on
#   every queue from a thread each, and tears it down (close, reset and reopen,
#   client close), round after round: every queue handed to a worker and back.
# - the real server with two workers: data verified through the file backend
#   (the workers' own io_uring) with notifications and in poll mode, 4 queues
#   at once, a kill -9 of a client in the middle of I/O (the device drains
#   and serves the next client), and the CPU of an idle server after activity
#   (the polling bound: < 1% of a core over 3 s).
. "$(dirname "$0")/lib.sh"
R=$E2E_ROOT
CC=${CC:-cc}
# res DESCRIPTION STATUS: ok when STATUS is 0
res() { if [ "$2" = 0 ]; then ok "$1"; else fail "$1 (exit $2)"; fi; }

CORE=("$R"/src/core/*.c "$R"/src/os/*.c)
SERVER=("$R"/src/server/*.c "$R"/src/vhost/*.c)
if "$CC" -std=gnu11 -g -O1 -Wno-tsan -fsanitize=thread -D_GNU_SOURCE -I"$R/include" -I"$R/src/core" \
	-I"$R/src/os" -I"$R/src/vhost" -I"$R/src/client" -I"$R/src/server" "${CORE[@]}" \
	"${SERVER[@]}" "$R"/src/client/*.c "$R/tests/hostile/tsan_server.c" -luring -lpthread \
	-o "$T/tsan_server" 2>"$T/cc.log"; then
	if TSAN_OPTIONS=halt_on_error=1:exitcode=66 timeout -k 2 90 "$T/tsan_server" "$T/ts.sock" 24 \
		>"$T/tsan.out" 2>&1 && ! grep -q 'WARNING: ThreadSanitizer' "$T/tsan.out"; then
		ok "TSan: $(tail -n 1 "$T/tsan.out"), no data race"
	else
		fail "TSan run of tests/hostile/tsan_server.c"
		head -60 "$T/tsan.out" | sed 's/^/#   /'
	fi
else
	skip "TSan build of tests/hostile/tsan_server.c failed ($(head -c 300 "$T/cc.log"))"
fi

truncate -s 32M "$T/f0.img"
if ! start_server "$T/srv.log" "$T/s.sock" --cpus 0,1 -d "name=f0,backend=file,path=$T/f0.img,queues=4" \
	-d "name=n0,backend=null,size=1G"; then
	fail "server with --cpus 0,1 did not start"
	sed 's/^/#   /' "$T/srv.log"
	finish
fi
grep -q "with 2 worker thread(s)" "$T/srv.log"
res "the server says it runs 2 worker threads" $?

"$XVL" blk verify -c "$T/s.sock" -d f0 --size 16M --qd 16 --time 2 >"$T/v1.log" 2>&1
res "file backend through the workers' io_uring, notifications: $(grep -o 'verified.*' "$T/v1.log")" $?
"$XVL" blk verify -c "$T/s.sock" -d f0 --size 16M --qd 8 --poll --time 1 >"$T/v2.log" 2>&1
res "file backend through the workers, poll mode: $(grep -o 'verified.*' "$T/v2.log")" $?
"$XVL" blk verify -c "$T/s.sock" -d f0 --size 16M --queues 4 --qd 8 --time 1 >"$T/v3.log" 2>&1
res "4 queues over 2 workers: $(grep -o 'verified.*' "$T/v3.log")" $?

# a client killed in the middle of I/O: the control thread drains the device
# (every queue released by its worker) and frees it for the next client
"$XVL" blk verify -c "$T/s.sock" -d f0 --size 16M --queues 4 --qd 32 --ops 100000000 --time 30 >"$T/k.log" 2>&1 &
KP=$!
E2E_PIDS+=("$KP")
sleep 1
kill -KILL "$KP"
wait "$KP" 2>/dev/null
ok=1
for _ in $(seq 50); do
	"$XVL" blk verify -c "$T/s.sock" -d f0 --size 16M --qd 4 --ops 500 >"$T/v4.log" 2>&1 && { ok=0; break; }
	sleep 0.1
done
res "after a client was killed in mid-I/O the device serves the next one: $(grep -o 'verified.*' "$T/v4.log")" $ok

# idle after activity: the adaptive window is bounded, then the workers sleep
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
"$XVL" blk verify -c "$T/s.sock" -d n0 --size 16M --qd 1 --no-final --time 1 >/dev/null 2>&1
sleep 0.5
a=$(ticks "$SRV_PID")
sleep 3
b=$(ticks "$SRV_PID")
hz=$(getconf CLK_TCK)
pct=$(awk -v d=$((b - a)) -v hz="$hz" 'BEGIN { printf "%.2f", 100 * d / hz / 3 }')
awk -v p="$pct" 'BEGIN { exit !(p < 1.0) }'
res "an idle server with 2 workers uses ${pct}% of a core over 3 s (< 1%)" $?

alive "$SRV_PID"
res "the server is still running" $?
stop_server "$SRV_PID"
res "the server exits cleanly on SIGTERM" $?
finish
