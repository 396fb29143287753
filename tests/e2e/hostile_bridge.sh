#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Hostile vhost-user backends against the server's bridge, and hostile windows (issue 9):
#   - a backend that never accepts must not stall the server's other clients (item 12);
#   - a window over the server's cap is refused; a client punching holes in its window
#     under the server harms nobody but itself (item 14);
#   - what a bridged device's backend can read: the whole window of its client
#     connection, other devices' data included; nothing of other connections (item 13);
#   - a backend whose connection drops while its process lives on (still holding the
#     window) must not be followed by EVENT RESTART until that process has exited, and
#     the device breaks if it never does (item 7).
# The hostile backends are tests/e2e/hostile_backend.c, built here; the real backend
# behind the proxy is qemu-storage-daemon.  Prints TAP.
. "$(dirname "$0")/lib.sh"

E2E=${XVL_E2E:-$(dirname "$XVL")/../../tests/e2e/xvl_e2e}
QSD=${QSD:-/usr/bin/qemu-storage-daemon}
HB=$T/hostile_backend
MB=$((1 << 20))

cc -std=gnu11 -O2 -Wall -Wextra -Werror "$E2E_ROOT/tests/e2e/hostile_backend.c" -o "$HB" ||
	{ fail "hostile_backend.c builds"; finish; }

# grep_within SECONDS PATTERN FILE: wait for PATTERN to appear in FILE.
grep_within() {
	for _ in $(seq 1 $(($1 * 20))); do
		grep -q "$2" "$3" && return 0
		sleep 0.05
	done
	return 1
}

ms_now() { date +%s%3N; }

# ------------------------------------------------------------ item 12: a backend that never accepts
bg "$T/na.log" "$HB" noaccept "$T/na.sock"
wait_sock "$T/na.sock" "$BG_PID"
t0=$(ms_now)
if start_server "$T/s.log" "$T/s.sock" --dev name=r,backend=ram,size=8M \
	--dev "name=h,backend=vhost-user,path=$T/na.sock" \
	--dev "name=h2,backend=vhost-user,path=$T/na.sock" \
	--dev "name=h3,backend=vhost-user,path=$T/na.sock"; then
	el=$(($(ms_now) - t0))
	if [ "$el" -lt 2000 ]; then
		ok "server with 3 devices on a never-accepting backend listens after $el ms (first probes waited for together, 1 s at most)"
	else
		fail "server with 3 stalled backends took $el ms to listen"
	fi
else
	fail "server with a never-accepting backend did not listen within 5 s"
	sed 's/^/#   /' "$T/s.log"
fi
# DEV_INFO on the bad device triggers probes; each must run off the loop.
for i in 1 2 3 4 5 6; do
	timeout 4 "$XVL" blk info -c "$T/s.sock" -d h >"$T/info$i" 2>&1 &
	E2E_PIDS+=($!)
done
sleep 0.3
t0=$(ms_now)
if timeout 3 "$XVL" blk write -c "$T/s.sock" -d r --offset 0 --length 1M --seed 3 >"$T/w" 2>&1 &&
	timeout 3 "$XVL" blk read -c "$T/s.sock" -d r --offset 0 --length 1M --output "$T/rd" >>"$T/w" 2>&1; then
	el=$(($(ms_now) - t0))
	if [ "$el" -lt 1500 ]; then
		ok "while 6 clients probe the never-accepting backend, another device serves 1 MiB write+read in $el ms"
	else
		fail "other device slowed down by the stalled backend: $el ms"
	fi
else
	fail "other device not served while the backend never accepts"
	sed 's/^/#   /' "$T/w"
fi
t0=$(ms_now)
stop_server "$SRV_PID"
rc=$?
el=$(($(ms_now) - t0))
if [ "$rc" -eq 0 ] && [ "$el" -lt 3000 ]; then
	ok "SIGTERM while a probe hangs on the backend: the server exits 0 in $el ms"
else
	fail "SIGTERM while a probe hangs on the backend: exit $rc after $el ms"
fi

# Probes triggered by DEV_INFO are rate-limited: 30 clients asking about an absent backend
# within two seconds start a handful of probes, not 30.
start_server "$T/g.log" "$T/g.sock" --dev name=r,backend=ram,size=8M \
	--dev "name=g,backend=vhost-user,path=$T/nobody.sock"
t0=$(ms_now)
for _ in $(seq 1 30); do "$XVL" blk info -c "$T/g.sock" -d g >/dev/null 2>&1; sleep 0.05; done
el=$(($(ms_now) - t0))
sleep 0.2
probes=$(grep -c "device g: vhost-user backend .*connect" "$T/g.log")
if [ "$probes" -le $((el / 500 + 2)) ]; then
	ok "30 DEV_INFOs in $el ms on an absent backend: $probes probes, the one at start included (at most one per 500 ms)"
else
	fail "30 DEV_INFOs in $el ms started $probes probes"
fi
stop_server "$SRV_PID"

# ------------------------------------------------------------ item 14: window cap, punched holes
start_server "$T/c.log" "$T/c.sock" --dev name=r,backend=ram,size=8M --max-window 64M
if ! "$XVL" blk info -c "$T/c.sock" -W 128M >"$T/i" 2>&1 &&
	grep -q "window of 134217728 bytes refused: this server takes at most 67108864" "$T/c.log"; then
	ok "--max-window 64M: a 128 MiB window is refused, the log says why"
else
	fail "--max-window 64M: a 128 MiB window was not refused"
	sed 's/^/#   /' "$T/i" "$T/c.log" | tail -5
fi
check "--max-window 64M: a 64 MiB window is accepted" "$XVL" blk info -c "$T/c.sock" -W 64M
stop_server "$SRV_PID"
start_server "$T/c2.log" "$T/c2.sock" --dev name=r,backend=ram,size=8M
if ! "$XVL" blk info -c "$T/c2.sock" -W 2G >"$T/i" 2>&1 &&
	grep -q "window of 2147483648 bytes refused: this server takes at most 1073741824" "$T/c2.log"; then
	ok "default cap: a 2 GiB window is refused (1 GiB at most)"
else
	fail "default cap: a 2 GiB window was not refused"
fi
# Clients that keep I/O going (churn) while "they" punch holes in their own window
# (ring, header and buffers: the client breaks itself; the server must not care).
punched=0
for round in 1 2 3 4 5; do
	bg "$T/punch$round.log" env XVL_E2E_DEADLINE=20 "$E2E" churn "$T/c2.sock" $((8 * MB)) 1000000 8 "$round" "$T/pexp" allow-fail
	VPID=$BG_PID
	grep_within 5 "^progress" "$T/punch$round.log"
	wfd=$(ls -l "/proc/$VPID/fd" 2>/dev/null | awk '/memfd:xvloop-window/ {print $9; exit}')
	for _ in 1 2 3; do
		[ -n "$wfd" ] && fallocate -p -o 0 -l $((64 * MB)) "/proc/$VPID/fd/$wfd" 2>/dev/null &&
			punched=$((punched + 1))
		sleep 0.05
	done
	kill "$VPID" 2>/dev/null
	wait "$VPID" 2>/dev/null
done
if [ "$punched" -ge 5 ] && alive "$SRV_PID" &&
	timeout 5 "$XVL" blk write -c "$T/c2.sock" -d r --offset 0 --length 1M --seed 5 >"$T/w" 2>&1; then
	ok "5 clients punched holes in their memfd windows ($punched punches) under I/O: the server lives and serves the next client"
else
	fail "holes punched in a client's window (punched $punched): server alive? $(alive "$SRV_PID" && echo yes || echo no)"
	sed 's/^/#   /' "$T/w"
fi
stop_server "$SRV_PID"

# ------------------------------------------------------------ item 7: the old instance lives on
if [ ! -x "$QSD" ]; then
	skip "qemu-storage-daemon not installed: old-instance scenarios"
	finish
fi
truncate -s $((64 * MB)) "$T/disk.img"
bg "$T/qsd.log" "$QSD" --blockdev "driver=file,node-name=n0,filename=$T/disk.img" \
	--export "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=$T/q.sock,writable=on,num-queues=2"
wait_sock "$T/q.sock" "$BG_PID"

start_proxy() {
	rm -f "$T/p.sock" # a stale socket file would pass wait_sock before the proxy listens
	bg "$T/proxy$1.log" "$HB" proxy "$T/p.sock" "$T/q.sock"
	PROXY=$BG_PID
	wait_sock "$T/p.sock" "$PROXY"
}

# churn_until_progress LOG SOCK OPS SEED [allow-fail]: background churn; CHURN=pid
churn_bg() {
	local log=$1 sock=$2 ops=$3 seed=$4
	shift 4
	XVL_E2E_DEADLINE=30 "$E2E" churn "$sock" $((16 * MB)) "$ops" 8 "$seed" "$T/expect" "$@" >"$log" 2>&1 &
	CHURN=$!
	E2E_PIDS+=("$CHURN")
	grep_within 10 "^progress" "$log"
}

# ------------------------------------------------------------ item 13: what a backend sees
BLD=$(cd "$(dirname "$E2E")/../.." && pwd) # the build tree: its client libraries
export HB_MAGIC=XVL-SPY-$RANDOM-$$
head -c 65536 < <(yes "$HB_MAGIC" | tr -d '\n') >"$T/magic"
start_proxy 3
start_server "$T/v.log" "$T/v.sock" --dev name=r,backend=ram,size=8M \
	--dev "name=b,backend=vhost-user,path=$T/p.sock"
"$XVL" blk write -c "$T/v.sock" -d r --offset 0 --input "$T/magic" >/dev/null 2>&1
"$XVL" blk read -c "$T/v.sock" -d b --offset 0 --length 4K --output /dev/null >/dev/null 2>&1
kill -USR2 "$PROXY"
if grep_within 3 "$HB_MAGIC not found" "$T/proxy3.log"; then
	ok "r and b on separate client connections: b's backend finds none of r's data"
else
	fail "b's backend found data of a device on another connection"
	sed 's/^/#   /' "$T/proxy3.log"
fi
kill -TERM "$PROXY"
start_proxy 4
# (an ASan build tree's libraries link only with the sanitizers)
build_tdc() {
	cc -std=gnu11 -O2 "$@" -I"$E2E_ROOT/include" "$E2E_ROOT/tests/e2e/two_dev_client.c" \
		"$BLD/src/client/libxvloop.a" "$BLD/src/vhost/libxvl_vhost.a" "$BLD/src/os/libxvl_os.a" \
		"$BLD/src/core/libxvl_core.a" -pthread -o "$T/two_dev_client" 2>>"$T/cc.log"
}
if build_tdc || build_tdc -fsanitize=address,undefined; then
	mkfifo "$T/in"
	"$T/two_dev_client" "$T/v.sock" r b "$HB_MAGIC" <"$T/in" >"$T/tdc.out" 2>&1 &
	TDC=$!
	E2E_PIDS+=("$TDC")
	exec 7>"$T/in"
	grep_within 5 ready "$T/tdc.out"
	kill -USR2 "$PROXY"
	if grep_within 3 "found $HB_MAGIC" "$T/proxy4.log" &&
		grep -q "holding the window (67108864 bytes; memory table region of 67108864" "$T/proxy4.log"; then
		ok "r and b on one connection: b's backend maps the whole 64 MiB window and reads r's data ($(grep -o 'at offset [0-9]*' "$T/proxy4.log"))"
	else
		fail "what b's backend sees of one connection's window is not as docs/SECURITY.md says"
		sed 's/^/#   /' "$T/proxy4.log" "$T/tdc.out"
	fi
	exec 7>&-
	wait "$TDC"
else
	fail "two_dev_client.c builds"
	sed 's/^/#   /' "$T/cc.log"
fi
kill -TERM "$PROXY"
wait "$PROXY" 2>/dev/null
stop_server "$SRV_PID"

start_proxy 1
start_server "$T/l.log" "$T/l.sock" --dev "name=d,backend=vhost-user,path=$T/p.sock,reconnect-ms=8000"
churn_bg "$T/churn1" "$T/l.sock" 30000 42
grep_within 5 "holding the window" "$T/proxy1.log" || note "the proxy never saw the window"
kill -USR1 "$PROXY"
grep_within 3 "went away" "$T/l.log"
sleep 1.5
if alive "$PROXY" && grep -q "went away" "$T/l.log" && ! grep -q "is back" "$T/l.log"; then
	ok "connection dropped, old instance alive with the window: no RESTART for 1.5 s (probes answer)"
else
	fail "RESTART sent while the old backend instance still lives with the window"
	sed "s/^/#   /" "$T/l.log"
fi
kill -TERM "$PROXY"
start_proxy 2
if wait "$CHURN" && grep_within 5 "is back" "$T/l.log" &&
	cmp "$T/expect" <(head -c $((16 * MB)) "$T/disk.img"); then
	ok "old instance exited: RESTART, then every completed write intact, none failed or twice ($(grep '^churn:' "$T/churn1" | cut -c1-60))"
else
	fail "after the old instance exited the workload did not finish intact"
	tail -3 "$T/churn1" | sed 's/^/#   /'
fi
grep -h "went away\|exited\|is back" "$T/l.log" | sed 's/^/#   /'
stop_server "$SRV_PID"

# The old instance never exits: the device breaks at reconnect-ms, nothing completes twice.
start_server "$T/l2.log" "$T/l2.sock" --dev "name=d,backend=vhost-user,path=$T/p.sock,reconnect-ms=1500"
churn_bg "$T/churn2" "$T/l2.sock" 100000 43 allow-fail
kill -USR1 "$PROXY"
if wait "$CHURN" && grep -q "duplicates 0 in-flight 0" "$T/churn2" &&
	grep -Eq "churn: .* failed [1-9]" "$T/churn2" &&
	grep -q "did not exit within 1500 ms" "$T/l2.log" && ! grep -q "is back" "$T/l2.log"; then
	ok "old instance never exits: device broken after reconnect-ms, pending requests failed, none twice"
else
	fail "old instance never exits: expected a broken device and no RESTART"
	{ tail -2 "$T/churn2"; grep "went away\|is back\|broken" "$T/l2.log"; } | sed 's/^/#   /'
fi
grep -h "did not exit" "$T/l2.log" | sed 's/^/#   /'
stop_server "$SRV_PID"

# A partitioned device compartment sees no backend pid (another pid namespace): the bridge
# watches the backend through SO_PEERPIDFD, so kill -9 and a restart still end in RESTART.
kill -TERM "$PROXY" 2>/dev/null
mkdir -p "$T/sd"
# seccomp "errno", not "kill": with an ASan build LeakSanitizer's exit-time clone (no
# CLONE_THREAD) is refused by the profile; "kill" would take the driver down before its
# report.  The namespaces, and so the invisible pid, are the same.
cat >"$T/v.cfg" <<EOF
name = "hb$$"; state_dir = "$T/sd"; seccomp = "errno";
windows = ( { name = "w"; size = "16M"; } );
devices = ( { name = "v0"; backend = "vhost-user"; socket = "$T/q.sock"; } );
compartments = ( { name = "d"; role = "device"; devices = ["v0"]; },
  { name = "a"; role = "driver"; window = "w";
    program = ["$XVL", "blk", "verify", "-c", "{link}", "--size", "4M", "--ops", "50000"]; } );
EOF
# A qemu-storage-daemon of its own: the one above went through the proxy's sessions, and
# qsd 7.2 can abort when a new connection (the config check's probe) arrives while it
# still drains the old session (util/vhost-user-server.c: Assertion `!server->wait_idle'),
# seen here once at load 10.  That is qsd's bug, not what this case is about.
wait "$PROXY" 2>/dev/null
pkill -f "addr.path=$T/q.sock" 2>/dev/null
for _ in $(seq 50); do pgrep -f "addr.path=$T/q.sock" >/dev/null || break; sleep 0.1; done
rm -f "$T/q.sock"
bg "$T/qsd1.log" "$QSD" --blockdev "driver=file,node-name=n0,filename=$T/disk.img" \
	--export "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=$T/q.sock,writable=on,num-queues=2"
QSD_PID=$BG_PID
wait_sock "$T/q.sock" "$QSD_PID"
for _ in $(seq 50); do
	"$XVL" run --check "$T/v.cfg" >/dev/null 2>&1 && break
	sleep 0.1
done
bg "$T/run.log" timeout 40 "$XVL" run "$T/v.cfg"
grep_within 10 "serves" "$T/run.log"
sleep 0.3
kill -9 "$QSD_PID"
sleep 0.3
bg "$T/qsd2.log" "$QSD" --blockdev "driver=file,node-name=n0,filename=$T/disk.img" \
	--export "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=$T/q.sock,writable=on,num-queues=2"
restarted() {
	grep -q "pid 0, watched" "$T/run.log" && grep -q "is back" "$T/run.log" &&
		[ "$(grep -c ' serves ' "$T/run.log")" -ge 2 ]
}
if nm "$XVL" 2>/dev/null | grep -q __asan_init; then
	# An ASan driver's output is lost in the sandbox (LeakSanitizer cannot start there and
	# exits before stdout is flushed); judge by the server side.
	if grep_within 35 "compartment a .* exited" "$T/run.log" && restarted; then
		ok "partitioned device side (backend pid not visible): kill -9 + restart of qsd, RESTART (ASan build: server side checked)"
	else
		fail "partitioned device side: backend loss and return did not end in RESTART"
		grep -v "^\[d\] xvl server: client\|^\[a\]   " "$T/run.log" | tail -12 | sed 's/^/#   /'
	fi
elif grep_within 35 "verify: OK" "$T/run.log" && restarted; then
	ok "partitioned device side (backend pid not visible): kill -9 + restart of qsd, RESTART, verify OK ($(grep -o 'verified.*' "$T/run.log" | head -1))"
else
	fail "partitioned device side: backend loss and return did not end in RESTART and a clean verify"
	grep -v "^\[d\] xvl server: client\|^\[a\]   " "$T/run.log" | tail -12 | sed 's/^/#   /'
fi
finish
