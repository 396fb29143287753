#!/usr/bin/env bash
# The server's virtio-net devices (issue 13, device side) against a raw
# hostile driver peer, tests/hostile/net_attack.c (case mrgwhole: a merged
# frame is never half-published).  TAP.
#
# Each case gets a fresh `xvl server` (the ASan/UBSan build when build-asan
# exists) with switch ports a, b, c, s (spoof=on) and a RAM blk device next
# to them.  Besides the peer's PASS/FAIL lines, after each case: the blk
# device is still served (xvl blk verify) and the server exits with status 0
# and no sanitizer report.  Then, when run as root with ip(8): a tap device
# in a fresh network namespace, pinged from the namespace's kernel with the
# peer answering on the driver side.  The switch's frame rate (64-byte
# frames, one peer process driving both ports) is printed as a note.  With
# the driver side (xvl net): ping and perf between two switch ports, and two
# driver compartments (network namespaces with `xvl net tap`) whose kernels
# ping and iperf3 each other through the switch; and two devices bridged to
# dpdk-testpmd (net_vhost, io forward) with traffic counted by testpmd.
set -u
. "$(dirname "$0")/lib.sh"

R=$E2E_ROOT
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
SRV=${XVL_SERVER_BIN:-$R/build-asan/src/cli/xvl}
[ -x "$SRV" ] || SRV=$XVL
CC=${CC:-gcc}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

F=(-std=gnu11 -g -O2 -Wall -Wextra -Wno-unused-function -D_GNU_SOURCE -I"$R/include"
	-I"$R/src/core" -I"$R/src/os" -I"$R/tests/hostile")
if ! "$CC" "${F[@]}" "$R"/src/core/window.c "$R"/src/core/virtq.c "$R"/src/core/proto.c \
	"$R"/src/core/net.c "$R"/src/os/os_misc.c "$R"/src/os/os_window.c "$R"/src/os/os_sock.c \
	"$R/tests/hostile/net_attack.c" -o "$T/attack" 2>"$T/cc.log"; then
	fail "build tests/hostile/net_attack.c"
	sed 's/^/#   /' "$T/cc.log" | grep -E 'error' | head -20
	finish
fi
ok "build tests/hostile/net_attack.c"
note "server: $SRV"

# report FILE CASE: the peer's verdict lines as TAP
report() {
	while read -r verdict rest; do
		case $verdict in
		PASS) ok "$2: ${rest#*: }" ;;
		FAIL) fail "$2: ${rest#*: }" ;;
		'#') note "$2: $rest" ;;
		esac
	done <"$1"
}

# stop_checked PID LOG WHAT: SIGTERM, exit 0 and no sanitizer report
stop_checked() {
	local sp=$1 rc=0
	kill -TERM "$sp" 2>/dev/null
	for _ in $(seq 50); do alive "$sp" || break; sleep 0.1; done
	if alive "$sp"; then
		kill -KILL "$sp"
		rc=124
	fi
	wait "$sp" 2>/dev/null || rc=$?
	if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$2"; then
		ok "$3: server exits cleanly, no sanitizer report"
	else
		fail "$3: server exit status $rc or sanitizer report"
		grep -E -A8 'ERROR: |runtime error:' "$2" | head -20 | sed 's/^/#   /'
	fi
}

run_case() {
	local c=$1 n=${2:-} pin_s=() pin_a=()
	# mrgwhole watches the server write: the two must run at the same time
	if [ "$c" = mrgwhole ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
		pin_s=(taskset -c 0)
		pin_a=(taskset -c 1)
	fi
	rm -f "$T/s.sock"
	"${pin_s[@]}" "$SRV" server -l "$T/s.sock" -d "name=a,type=net,backend=switch" \
		-d "name=b,type=net,backend=switch" -d "name=c,type=net,backend=switch" \
		-d "name=s,type=net,backend=switch,spoof=on" -d "name=ram1,backend=ram,size=16M" \
		>"$T/srv.log" 2>&1 &
	local sp=$!
	E2E_PIDS+=("$sp")
	if ! wait_sock "$T/s.sock" "$sp"; then
		fail "$c: server did not start"
		sed 's/^/#   /' "$T/srv.log" | tail -5
		return
	fi
	"${pin_a[@]}" timeout -k 1 30 "$T/attack" "$T/s.sock" "$c" $n >"$T/a.out" 2>"$T/a.err"
	local rc=$?
	report "$T/a.out" "$c"
	[ $rc -eq 0 ] || fail "$c: peer exit status $rc: $(grep -m1 FAIL "$T/a.err")"
	if alive "$sp" && timeout -k 1 10 "$XVL" blk verify -c "$T/s.sock" -d ram1 --size 1M \
		--ops 200 >"$T/v.log" 2>&1; then
		ok "$c: the blk device next to the net devices is served afterwards"
	else
		fail "$c: the blk device next to the net devices is served afterwards$(alive "$sp" || echo ' (SERVER DIED)')"
		tail -n 3 "$T/v.log" | sed 's/^/#   /'
	fi
	stop_checked "$sp" "$T/srv.log" "$c"
	if [ "$c" = badtx ] && grep -q 'frame dropped: tx frame of 1519 bytes' "$T/srv.log"; then
		ok "badtx: the server log says why a frame was dropped"
	elif [ "$c" = badtx ]; then
		fail "badtx: the server log says why a frame was dropped"
	fi
}

# Device specs the server refuses, each with a message naming the problem.
while IFS='|' read -r spec want; do
	if "$SRV" server -l "$T/bad.sock" -d "$spec" >"$T/bad.log" 2>&1; then
		fail "spec '$spec' is refused"
	elif grep -q -- "$want" "$T/bad.log"; then
		ok "spec '$spec' is refused ($want)"
	else
		fail "spec '$spec' is refused with a message saying '$want' ($(head -1 "$T/bad.log"))"
	fi
done <<'SPECS'
name=n,type=net,backend=file,path=/dev/null|type=net takes backend=switch, tap or vhost-user
name=n,backend=switch|need type=net
name=n,type=net,backend=switch,mac=01:00:5e:00:00:01|bad value '01:00:5e:00:00:01' for mac
name=n,type=net,backend=switch,mac=52:54:00:12:34|bad value
name=n,type=net,backend=switch,mtu=67|bad value '67' for mtu
name=n,type=net,backend=switch,queues=8|at most 7
name=n,type=net,backend=tap|needs ifname=
name=n,type=net,backend=vhost-user,path=/x,queues=8|at most 7
name=n,type=net,backend=vhost-user|path= is missing
name=n,type=nic,backend=switch|bad value 'nic' for type
SPECS

for c in ${NET_CASES:-forward badtx ctrl norefill:2000 rxoutside txwrite spoof rate:200000 mrgwhole:5000}; do
	run_case "${c%%:*}" "$(case $c in *:*) echo "${c#*:}";; esac)"
done

# The driver side (xvl net, src/client) through the switch: two devices, a responder on one.
rm -f "$T/w.sock"
"$SRV" server -l "$T/w.sock" -d "name=a,type=net,backend=switch,queues=2" \
	-d "name=b,type=net,backend=switch,queues=2" \
	>"$T/wsrv.log" 2>&1 &
WSP=$!
E2E_PIDS+=("$WSP")
if wait_sock "$T/w.sock" "$WSP" && "$XVL" net --help >/dev/null 2>&1; then
	"$XVL" net ping -c "$T/w.sock" -d a --pairs 2 --responder >"$T/resp.log" 2>&1 &
	RESP=$!
	E2E_PIDS+=("$RESP")
	sleep 0.3
	if timeout -k 1 15 "$XVL" net ping -c "$T/w.sock" -d b --pairs 2 --count 5 --interval-ms 50 \
		>"$T/np.log" 2>&1 && grep -q '5 received' "$T/np.log"; then
		ok "switch: xvl net ping b -> a, two queue pairs each (MQ) ($(tail -1 "$T/np.log"))"
	else
		fail "switch: xvl net ping b -> a, two queue pairs each (MQ)"
		tail -n 3 "$T/np.log" | sed 's/^/#   /'
	fi
	if timeout -k 1 30 "$XVL" net perf -c "$T/w.sock" -d b --sizes 64,1500 --time 1 \
		>"$T/perf.log" 2>&1; then
		ok "switch: xvl net perf b -> a ran"
		sed 's/^/# perf: /' "$T/perf.log"
	else
		fail "switch: xvl net perf b -> a"
		tail -n 3 "$T/perf.log" | sed 's/^/#   /'
	fi
	kill -TERM "$RESP" 2>/dev/null
	wait "$RESP" 2>/dev/null
else
	skip "switch: the driver side's xvl net is not in this build"
fi

# Device side killed (-9) and restarted during a stream: both drivers reconnect
# (--reconnect-ms), the pings resume; at most a few are lost around the restart.
start_rs() {
	"$SRV" server -l "$T/r.sock" -d "name=a,type=net,backend=switch" \
		-d "name=b,type=net,backend=switch" >>"$T/rsrv.log" 2>&1 &
	RSP=$!
	E2E_PIDS+=("$RSP")
}
if "$XVL" net --help 2>/dev/null | grep -q reconnect-ms; then
	rm -f "$T/r.sock"
	start_rs
	if wait_sock "$T/r.sock" "$RSP"; then
		"$XVL" net ping -c "$T/r.sock" -d a --responder -R 5000 >"$T/rr.log" 2>&1 &
		RRP=$!
		E2E_PIDS+=("$RRP")
		sleep 0.3
		"$XVL" net ping -c "$T/r.sock" -d b --count 40 --interval-ms 100 -R 5000 >"$T/rp.log" 2>&1 &
		RPP=$!
		E2E_PIDS+=("$RPP")
		sleep 1.5
		kill -KILL "$RSP"
		wait "$RSP" 2>/dev/null
		sleep 0.2
		start_rs
		wait "$RPP"
		got=$(grep -c 'bytes from' "$T/rp.log")
		if [ "$got" -ge 30 ] && grep -q 'seq=40' "$T/rp.log"; then
			ok "restart: kill -9 of the device side mid-stream, restarted: pings resume ($got of 40 answered)"
		else
			fail "restart: kill -9 of the device side mid-stream, restarted: pings resume ($got of 40 answered)"
			tail -n 5 "$T/rp.log" | sed 's/^/#   /'
		fi
		kill -TERM "$RRP" 2>/dev/null
		wait "$RRP" 2>/dev/null
		stop_checked "$RSP" "$T/rsrv.log" "restart"
	else
		fail "restart: server did not start"
	fi
else
	skip "restart: the driver side has no --reconnect-ms"
fi

# vhost-user-net bridge: two devices bridged to an unmodified dpdk-testpmd (two net_vhost
# ports, io forward): a responder behind one, pings and a perf run from the other; the
# server is off the data path, testpmd's own counters must show the frames.
if command -v dpdk-testpmd >/dev/null && "$XVL" net --help >/dev/null 2>&1; then
	mkfifo "$T/tp.in"
	dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix "xvl-netdev-$$" \
		--vdev "net_vhost0,iface=$T/vh0.sock,client=0" --vdev "net_vhost1,iface=$T/vh1.sock,client=0" \
		-- --forward-mode=io --auto-start --stats-period 0 --nb-cores=1 <"$T/tp.in" >"$T/tp.log" 2>&1 &
	TP=$!
	E2E_PIDS+=("$TP")
	exec 7>"$T/tp.in" # testpmd exits at the end of its stdin
	for _ in $(seq 100); do [ -S "$T/vh1.sock" ] && break; sleep 0.1; done
	rm -f "$T/v.sock"
	"$SRV" server -l "$T/v.sock" -d "name=va,type=net,backend=vhost-user,path=$T/vh0.sock" \
		-d "name=vb,type=net,backend=vhost-user,path=$T/vh1.sock" >"$T/vsrv.log" 2>&1 &
	VSP=$!
	E2E_PIDS+=("$VSP")
	if [ -S "$T/vh1.sock" ] && wait_sock "$T/v.sock" "$VSP"; then
		"$XVL" net ping -c "$T/v.sock" -d va --responder >"$T/vresp.log" 2>&1 &
		VRESP=$!
		E2E_PIDS+=("$VRESP")
		# the responder's session with testpmd must be up before frames are sent to it
		for _ in $(seq 100); do
			grep -q 'vhost-user backend .*vh0.sock.* serves' "$T/vsrv.log" && break
			sleep 0.1
		done
		sleep 0.3
		# io forward drops while a port's rings are not started: 5 of 10 answered is enough
		timeout -k 1 20 "$XVL" net ping -c "$T/v.sock" -d vb --count 10 --interval-ms 100 \
			>"$T/vp.log" 2>&1
		vgot=$(sed -n 's/.* sent, \([0-9]*\) received.*/\1/p' "$T/vp.log")
		if [ "${vgot:-0}" -ge 5 ]; then
			ok "testpmd: xvl net ping vb -> testpmd io forward -> va ($(tail -1 "$T/vp.log"))"
		else
			fail "testpmd: xvl net ping vb -> testpmd io forward -> va"
			tail -n 3 "$T/vp.log" "$T/vsrv.log" | sed 's/^/#   /'
		fi
		# a measurement, not a check: testpmd spins a core, on a loaded machine the
		# figures (and the run itself) vary; the checks are the pings and the counters
		timeout -k 1 30 "$XVL" net perf -c "$T/v.sock" -d vb --sizes 64,1500 --time 1 \
			>"$T/vperf.log" 2>&1
		sed 's/^/# perf via testpmd: /' "$T/vperf.log"
		kill -TERM "$VRESP" 2>/dev/null
		wait "$VRESP" 2>/dev/null
		if grep -q 'vhost-user backend .*vh1.sock.* serves 2 queue' "$T/vsrv.log"; then
			ok "testpmd: the server handed the rings to the backend (off the data path)"
		else
			fail "testpmd: the server handed the rings to the backend (off the data path)"
		fi
	else
		fail "testpmd: testpmd or the server did not start"
		tail -n 5 "$T/tp.log" "$T/vsrv.log" | sed 's/^/#   /'
	fi
	"$XVL" net ping -c "$T/v.sock" -d vb --count 30 --interval-ms 100 >/dev/null 2>&1 &
	HOLD=$!
	E2E_PIDS+=("$HOLD")
	sleep 0.5
	kill -INT "$TP" 2>/dev/null
	exec 7>&-
	wait "$TP" 2>/dev/null
	for _ in $(seq 30); do grep -q 'device vb: link down' "$T/vsrv.log" && break; sleep 0.1; done
	if grep -q 'device vb: link down' "$T/vsrv.log"; then
		ok "testpmd: testpmd gone: the link of the attached device goes down (EVENT CONFIG)"
	else
		fail "testpmd: testpmd gone: the link of the attached device goes down (EVENT CONFIG)"
	fi
	kill -TERM "$HOLD" 2>/dev/null
	wait "$HOLD" 2>/dev/null
	stop_checked "$VSP" "$T/vsrv.log" "testpmd"
	rx1=$(grep -A1 'statistics for port 1' "$T/tp.log" | grep -o 'RX-packets: *[0-9]*' | grep -o '[0-9]*$')
	if [ "${rx1:-0}" -gt 5 ]; then
		ok "testpmd: its port 1 counted the frames from vb ($rx1 received)"
	else
		fail "testpmd: its port 1 counted the frames from vb (${rx1:-none})"
		tail -n 20 "$T/tp.log" | sed 's/^/#   /'
	fi
else
	skip "testpmd: needs dpdk-testpmd and the driver side's xvl net"
fi

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v ping >/dev/null ||
	[ ! -c /dev/net/tun ]; then
	skip "netns: needs root, ip, ping and /dev/net/tun"
	finish
fi
NS=xvl-netdev-$$
NSA=xvl-nda-$$
NSB=xvl-ndb-$$
if ! ip netns add "$NS" 2>"$T/ns.log"; then
	skip "netns: cannot create a network namespace ($(head -1 "$T/ns.log"))"
	finish
fi
cleanup_ns() { for n in "$NS" "$NSA" "$NSB"; do ip netns del "$n" 2>/dev/null; done; e2e_cleanup; }
trap cleanup_ns EXIT

# Two driver compartments (network namespaces, each with the driver side's tap
# front-end on its own switch port): their kernels ping and iperf3 each other.
if "$XVL" net --help >/dev/null 2>&1 && ip netns add "$NSA" && ip netns add "$NSB"; then
	ip netns exec "$NSA" "$XVL" net tap -c "$T/w.sock" -d a --ifname xn0 >"$T/ta.log" 2>&1 &
	E2E_PIDS+=("$!")
	ip netns exec "$NSB" "$XVL" net tap -c "$T/w.sock" -d b --ifname xn0 >"$T/tb.log" 2>&1 &
	E2E_PIDS+=("$!")
	for _ in $(seq 50); do
		ip netns exec "$NSA" ip link show xn0 >/dev/null 2>&1 &&
			ip netns exec "$NSB" ip link show xn0 >/dev/null 2>&1 && break
		sleep 0.1
	done
	ip netns exec "$NSA" ip addr add 10.98.0.1/24 dev xn0
	ip netns exec "$NSB" ip addr add 10.98.0.2/24 dev xn0
	ip netns exec "$NSA" ip link set lo up
	ip netns exec "$NSB" ip link set lo up
	if ip netns exec "$NSA" ping -c 5 -i 0.2 -W 2 10.98.0.2 >"$T/ping-ab.log" 2>&1; then
		ok "switch: kernel ping between two driver compartments ($(grep -o 'rtt.*' "$T/ping-ab.log"))"
	else
		fail "switch: kernel ping between two driver compartments"
		tail -n 3 "$T/ping-ab.log" "$T/ta.log" "$T/tb.log" | sed 's/^/#   /'
	fi
	if command -v iperf3 >/dev/null; then
		ip netns exec "$NSB" iperf3 -s -1 >"$T/iperf-s.log" 2>&1 &
		E2E_PIDS+=("$!")
		sleep 0.5
		if ip netns exec "$NSA" timeout -k 1 20 iperf3 -c 10.98.0.2 -t 3 >"$T/iperf.log" 2>&1; then
			ok "switch: iperf3 TCP between two driver compartments ($(grep receiver "$T/iperf.log" | grep -o '[0-9.]* [GM]bits/sec'))"
		else
			fail "switch: iperf3 TCP between two driver compartments"
			tail -n 3 "$T/iperf.log" | sed 's/^/#   /'
		fi
	else
		skip "switch: iperf3 is not installed (scripts/deps.sh)"
	fi
else
	skip "switch: two driver compartments need xvl net and ip netns"
fi
stop_checked "$WSP" "$T/wsrv.log" "switch with the driver side"

# tap backend: a namespace of our own, its kernel pings the peer through the device
rm -f "$T/t.sock"
ip netns exec "$NS" "$SRV" server -l "$T/t.sock" -d "name=t,type=net,backend=tap,ifname=xvt0" \
	-d "name=t2,type=net,backend=tap,ifname=xvt1,queues=2" >"$T/tsrv.log" 2>&1 &
TSP=$!
E2E_PIDS+=("$TSP")
if ! wait_sock "$T/t.sock" "$TSP"; then
	fail "tap: server did not start"
	sed 's/^/#   /' "$T/tsrv.log" | tail -5
	finish
fi
ok "tap: server opened a single-queue and a two-queue (IFF_MULTI_QUEUE) tap"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip addr add 10.99.0.1/24 dev xvt0
ip netns exec "$NS" ip link set xvt0 up
"$T/attack" "$T/t.sock" tapecho 5 >"$T/te.out" 2>"$T/te.err" &
TE=$!
E2E_PIDS+=("$TE")
for _ in $(seq 100); do grep -q '^READY' "$T/te.out" && break; sleep 0.05; done
if ip netns exec "$NS" ping -c 5 -i 0.2 -W 1 10.99.0.2 >"$T/ping.log" 2>&1; then
	ok "tap: ping from the namespace's kernel to the driver through the device ($(grep -o 'rtt.*' "$T/ping.log"))"
else
	fail "tap: ping from the namespace's kernel to the driver through the device"
	sed 's/^/#   /' "$T/ping.log" | tail -3
fi
if ip netns exec "$NS" ping -c 3 -s 1400 -i 0.2 -W 1 10.99.0.2 >"$T/ping2.log" 2>&1; then
	ok "tap: 1428-byte pings too"
else
	fail "tap: 1428-byte pings too"
fi
wait "$TE"
report "$T/te.out" tap
# A tap device its driver broke while the kernel keeps sending: the server stays idle.
"$T/attack" "$T/t.sock" tapbreak 3 >"$T/tb.out" 2>"$T/tb.err" &
TB=$!
E2E_PIDS+=("$TB")
for _ in $(seq 100); do grep -q '^READY' "$T/tb.out" && break; sleep 0.05; done
ip netns exec "$NS" ping -c 20 -i 0.05 -W 1 10.99.0.2 >/dev/null 2>&1 &
E2E_PIDS+=("$!")
sleep 0.5
t0=$(awk '{print $14 + $15}' "/proc/$TSP/stat")
sleep 1
t1=$(awk '{print $14 + $15}' "/proc/$TSP/stat")
if [ $((t1 - t0)) -lt 20 ]; then
	ok "tap: broken device, kernel still sending: server idle ($((t1 - t0)) CPU ticks in 1 s)"
else
	fail "tap: broken device, kernel still sending: server idle ($((t1 - t0)) CPU ticks in 1 s, limit 20)"
fi
wait "$TB"
report "$T/tb.out" tap
stop_checked "$TSP" "$T/tsrv.log" tap
finish
