#!/usr/bin/env bash
# The virtio-net driver side (libxvloop's xvl_net_*, `xvl net`) against the
# real device side: an xvl server with two ports on its built-in switch.
#   - xvl net info: MAC, MTU, link up, the negotiated features
#   - xvl net ping between two clients through the switch (a responder on
#     one port), and perf: frames per second one way and round-trip p50/p99,
#     64 B and 1500 B, and 9000 B between two MTU 9000 ports (zero copy and copied)
#   - a control queue setting (two queue pairs, VQ_PAIRS_SET) and a
#     malformed argument refused
#   - kill -9 of the server during a ping stream and a restart: both clients
#     (--reconnect-ms) reconnect, set their devices up again, the stream resumes
#   - one client with a block device and two net devices open (blk_net_client.c), in one
#     thread and in two (under TSan): after a server kill -9 and restart both work again
#   - the tap front-end in two network namespaces: the kernels' own ping
#     and, when installed, iperf3 TCP through xvloop (checksum + TSO offload
#     metadata end to end); no frame dropped by the driver's checks
# Hostile devices: tests/e2e/net_hostile.sh.  TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no $XVL (build first)"; exit 0; }
S=$T/s.sock
if ! start_server "$T/srv.log" "$S" -d name=a,type=net,backend=switch \
	-d name=b,type=net,backend=switch -d name=m,type=net,backend=switch,queues=2 \
	-d name=j1,type=net,backend=switch,switch=jumbo,mtu=9000 \
	-d name=j2,type=net,backend=switch,switch=jumbo,mtu=9000 -d name=d0,backend=ram,size=1M; then
	echo "1..0 # SKIP the server does not serve type=net,backend=switch devices"
	sed 's/^/# /' "$T/srv.log" | head -5
	exit 0
fi

info=$("$XVL" net info -c "$S" -d a 2>&1)
if echo "$info" | grep -q '^link *up' && echo "$info" | grep -q '^mtu *1500' &&
	echo "$info" | grep -q 'MRG_RXBUF' && echo "$info" | grep -q 'CTRL_VQ'; then
	ok "xvl net info: link up, mtu 1500, MRG_RXBUF and CTRL_VQ negotiated"
else
	fail "xvl net info"
	echo "$info" | sed 's/^/#   /'
fi
mac_a=$(echo "$info" | awk '$1 == "mac" { print $2 }')
json=$("$XVL" net info -c "$S" -d b --json 2>&1)
echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["link_up"] and d["mac"] != sys.argv[1]' "$mac_a" \
	&& ok "xvl net info --json: device b has its own MAC" || fail "xvl net info --json ($json)"

out=$("$XVL" net info -c "$S" -d d0 2>&1)
[ $? -eq 1 ] && echo "$out" | grep -q 'not a net device' && ok "a block device is refused as a net device" ||
	fail "a block device is refused as a net device ($out)"

minfo=$("$XVL" net info -c "$S" -d m --pairs 2 2>&1)
echo "$minfo" | grep -q 'queue pairs  2 of 2' && ok "two queue pairs set through the control queue (MQ)" ||
	fail "two queue pairs (MQ): $(echo "$minfo" | grep -i 'pairs\|cannot')"

bg "$T/resp.log" "$XVL" net ping -c "$S" -d a --responder
RESP=$BG_PID
sleep 0.3
ping_out=$(timeout 20 "$XVL" net ping -c "$S" -d b --count 5 --interval-ms 20 --size 1000 2>&1)
if echo "$ping_out" | grep -q "5 sent, 5 received, 0% loss" && echo "$ping_out" | grep -q "from $mac_a"; then
	ok "xvl net ping b -> a through the switch: 5 of 5 answered by a ($(echo "$ping_out" | tail -1 | sed 's/.*rtt/rtt/'))"
else
	fail "xvl net ping b -> a"
	echo "$ping_out" | tail -5 | sed 's/^/#   /'
fi
perf=$(timeout 30 "$XVL" net perf -c "$S" -d b --sizes 64,1500 --time 0.5 --json 2>&1)
if echo "$perf" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = {x["size"]: x for x in d["results"]}
assert set(r) == {64, 1500}, r
for x in r.values():
    assert x["rx_pps"] > 1000 and x["rounds"] > 100 and 0 < x["rtt_p50_us"] <= x["rtt_p99_us"], x
' 2>"$T/perf.err"; then
	ok "xvl net perf: 64 B and 1500 B one way and round trip"
	echo "$perf" | python3 -c '
import json, sys
for x in json.load(sys.stdin)["results"]:
    print("# %5d B: %.2f Mpps sent, %.2f Mpps received, rtt p50 %.1f us p99 %.1f us" %
          (x["size"], x["tx_pps"] / 1e6, x["rx_pps"] / 1e6, x["rtt_p50_us"], x["rtt_p99_us"]))'
else
	fail "xvl net perf"
	{ echo "$perf"; cat "$T/perf.err"; } | tail -5 | sed 's/^/#   /'
fi
out=$("$XVL" net perf -c "$S" -d b --sizes 63 2>&1)
[ $? -eq 2 ] && ok "perf refuses a 63-byte frame size (exit 2)" || fail "perf --sizes 63 ($out)"
kill -TERM "$RESP" 2>/dev/null
wait "$RESP" 2>/dev/null
grep -q 'answered [1-9]' "$T/resp.log" && ok "the responder exits on SIGTERM and says what it answered" ||
	fail "responder on SIGTERM: $(tail -2 "$T/resp.log")"

# 9 KiB frames on a switch of MTU 9000 ports, zero copy and copied.
bg "$T/respj.log" "$XVL" net perf -c "$S" -d j1 --responder
RJ=$BG_PID
sleep 0.3
for mode in "" --copy; do
	pj=$(timeout 30 "$XVL" net perf -c "$S" -d j2 --sizes 9000 --time 0.3 --json $mode 2>&1)
	if echo "$pj" | python3 -c '
import json, sys
r = json.load(sys.stdin)["results"]
assert len(r) == 1 and r[0]["size"] == 9000 and r[0]["rx_pps"] > 1000 and r[0]["rounds"] > 50, r' 2>/dev/null; then
		ok "9000-byte frames between two MTU 9000 ports${mode:+ ($mode)}: $(echo "$pj" | python3 -c 'import json,sys; x=json.load(sys.stdin)["results"][0]; print("%.0f frames/s, rtt p50 %.1f us" % (x["rx_pps"], x["rtt_p50_us"]))')"
	else
		fail "9000-byte frames${mode:+ ($mode)}: $pj"
	fi
done
kill -TERM "$RJ" 2>/dev/null
wait "$RJ" 2>/dev/null

# ---------------------------------------------------------------- server kill -9 and restart
# Both clients with --reconnect-ms: the stream of echo requests goes on once the server is back.
S2=$T/r.sock
if start_server "$T/srv2.log" "$S2" -d name=a,type=net,backend=switch -d name=b,type=net,backend=switch; then
	S2_PID=$SRV_PID
	bg "$T/resp2.log" "$XVL" net ping -c "$S2" -d a --responder --reconnect-ms 5000
	sleep 0.3
	bg "$T/ping2.log" timeout 30 "$XVL" net ping -c "$S2" -d b --reconnect-ms 5000 --count 30 --interval-ms 100
	P2=$BG_PID
	sleep 1
	kill -KILL "$S2_PID"
	wait "$S2_PID" 2>/dev/null
	sleep 0.3
	start_server "$T/srv3.log" "$S2" -d name=a,type=net,backend=switch -d name=b,type=net,backend=switch
	wait "$P2"
	prc=$?
	got=$(sed -n 's/^30 sent, \([0-9]*\) received.*/\1/p' "$T/ping2.log")
	if [ "$prc" -eq 0 ] && [ "${got:-0}" -ge 25 ] && tail -3 "$T/ping2.log" | grep -q 'seq=30'; then
		ok "server kill -9 and restart during a ping stream: $got of 30 answered, the stream resumed"
	else
		fail "server kill -9 and restart during a ping stream (exit $prc, $got answered)"
		tail -5 "$T/ping2.log" "$T/resp2.log" | sed 's/^/#   /'
	fi
else
	fail "second server"
fi

# ---------------------------------------------------------------- blk and net on one client
# One client connection with a block device and two net devices open (tests/e2e/blk_net_client.c):
# after the server's kill -9 and restart, the reconnection must set up every device of the
# connection again, the net devices too (they used to break when a block device was open).
MAIN_SRV_PID=$SRV_PID # start_server below sets SRV_PID: the first server is checked at the end
BLD=$(dirname "$(dirname "$(dirname "$XVL")")")
build_bnc() {
	cc -std=gnu11 -O2 "$@" -I"$E2E_ROOT/include" "$E2E_ROOT/tests/e2e/blk_net_client.c" \
		"$BLD/src/client/libxvloop.a" "$BLD/src/vhost/libxvl_vhost.a" "$BLD/src/os/libxvl_os.a" \
		"$BLD/src/core/libxvl_core.a" -pthread -o "$T/blk_net_client" 2>>"$T/cc.log"
}
S3=$T/bn.sock
truncate -s 1M "$T/bn.img" # a file: what was written before the kill is still there after it
BN_DEVS=(-d "name=d0,backend=file,path=$T/bn.img" -d name=a,type=net,backend=switch -d name=b,type=net,backend=switch)
if ! { build_bnc || build_bnc -fsanitize=address,undefined; }; then
	fail "tests/e2e/blk_net_client.c builds"
	sed 's/^/#   /' "$T/cc.log" | head -5
elif start_server "$T/srv-bn.log" "$S3" "${BN_DEVS[@]}"; then
	S3_PID=$SRV_PID
	bg "$T/bnc.log" timeout 40 "$T/blk_net_client" "$S3" d0 a b 3
	BNC=$BG_PID
	for _ in $(seq 1 100); do grep -q ' round 3 ok' "$T/bnc.log" && break; sleep 0.05; done
	kill -KILL "$S3_PID"
	wait "$S3_PID" 2>/dev/null
	sleep 0.3
	start_server "$T/srv-bn2.log" "$S3" "${BN_DEVS[@]}"
	wait "$BNC"
	brc=$?
	stop_server "$SRV_PID"
	if [ "$brc" -eq 0 ]; then
		ok "blk + net on one client, server kill -9 and restart: both come back ($(tail -1 "$T/bnc.log"))"
	else
		fail "blk + net on one client after a server restart (exit $brc)"
		grep -v " round [0-9]* ok" "$T/bnc.log" | tail -6 | sed 's/^/#   /'
	fi
else
	fail "server for the blk + net client"
fi

# The same with the block rounds and the net rounds in two threads sharing the connection,
# under ThreadSanitizer where clang can build it: either thread may notice the loss and run
# the recovery while the other is busy (lock order, flags set across threads).
R=$E2E_ROOT
TS_CORE=("$R"/src/core/window.c "$R"/src/core/virtq.c "$R"/src/core/proto.c "$R"/src/core/mailbox.c "$R"/src/core/net.c "$R"/src/os/*.c)
BNT=$T/blk_net_tsan
if command -v clang >/dev/null && clang -std=gnu11 -g -O1 -fsanitize=thread -D_GNU_SOURCE -I"$R/include" \
	-I"$R/src/core" -I"$R/src/os" -I"$R/src/vhost" -I"$R/src/client" "${TS_CORE[@]}" "$R"/src/vhost/*.c \
	"$R"/src/client/*.c "$R/tests/e2e/blk_net_client.c" -lpthread -o "$BNT" 2>"$T/cc-tsan.log"; then
	how="TSan"
else
	how="no TSan (clang could not build it)"
	BNT=$T/blk_net_client
fi
S4=$T/bt.sock
if start_server "$T/srv-bt.log" "$S4" "${BN_DEVS[@]}"; then
	S4_PID=$SRV_PID
	TSAN_OPTIONS=halt_on_error=1:exitcode=66 bg "$T/bnt.log" timeout 60 "$BNT" "$S4" d0 a b 4 threads
	BNC=$BG_PID
	for _ in $(seq 1 200); do
		grep -q 'net round 3 ok' "$T/bnt.log" && grep -q 'blk round 3 ok' "$T/bnt.log" && break
		sleep 0.05
	done
	kill -KILL "$S4_PID"
	wait "$S4_PID" 2>/dev/null
	sleep 0.3
	start_server "$T/srv-bt2.log" "$S4" "${BN_DEVS[@]}"
	wait "$BNC"
	brc=$?
	stop_server "$SRV_PID"
	if [ "$brc" -eq 0 ] && ! grep -q 'WARNING: ThreadSanitizer' "$T/bnt.log"; then
		ok "blk and net in two threads of one client, server kill -9 and restart ($how): $(tail -1 "$T/bnt.log")"
	else
		fail "blk and net in two threads of one client ($how, exit $brc)"
		grep -v " round [0-9]* ok" "$T/bnt.log" | head -30 | sed 's/^/#   /'
	fi
else
	fail "server for the two-thread blk + net client"
fi
SRV_PID=$MAIN_SRV_PID

# ---------------------------------------------------------------- tap front-end
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v ping >/dev/null; then
	skip "tap front-end: needs root, ip and ping"
	finish
fi
NA=xvlt-a-$$ NB=xvlt-b-$$
cleanup_ns() { ip netns del "$NA" 2>/dev/null; ip netns del "$NB" 2>/dev/null; }
trap 'e2e_cleanup; cleanup_ns' EXIT
ip netns add "$NA" && ip netns add "$NB" || { fail "ip netns add"; finish; }
bg "$T/tap-a.log" ip netns exec "$NA" "$XVL" net tap -c "$S" -d a --ifname xvl0
TA=$BG_PID
bg "$T/tap-b.log" ip netns exec "$NB" "$XVL" net tap -c "$S" -d b --ifname xvl0
TB=$BG_PID
up=0
for _ in $(seq 1 50); do
	ip -n "$NA" link show xvl0 2>/dev/null | grep -q UP && ip -n "$NB" link show xvl0 2>/dev/null | grep -q UP && { up=1; break; }
	sleep 0.1
done
if [ $up -eq 1 ]; then
	ok "xvl net tap: xvl0 up in both namespaces"
else
	fail "xvl net tap: xvl0 up"
	cat "$T/tap-a.log" "$T/tap-b.log" | sed 's/^/#   /'
fi
ip -n "$NA" addr add 10.77.0.1/24 dev xvl0
ip -n "$NB" addr add 10.77.0.2/24 dev xvl0
ip -n "$NA" link show xvl0 | grep -q "$mac_a" && ok "the tap has the device's MAC address" || fail "tap MAC"
check "kernel ping through the tap front-ends and the switch (10.77.0.1 -> 10.77.0.2)" \
	ip netns exec "$NA" ping -c 3 -i 0.2 -W 2 10.77.0.2
check "a 8000-byte ping (fragmented by the kernel) comes back" \
	ip netns exec "$NA" ping -c 2 -i 0.2 -W 2 -s 8000 10.77.0.2
if command -v iperf3 >/dev/null; then
	ip netns exec "$NB" iperf3 -s -1 -D -p 5299 --logfile "$T/iperf-s.log"
	sleep 0.3
	if ip netns exec "$NA" timeout 20 iperf3 -c 10.77.0.2 -p 5299 -t 2 -J >"$T/iperf.json" 2>&1; then
		gbps=$(python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' "$T/iperf.json")
		ok "iperf3 TCP a -> b through xvloop: $gbps Gbit/s"
	else
		fail "iperf3 TCP through xvloop"
		tail -5 "$T/iperf.json" | sed 's/^/#   /'
	fi
else
	skip "iperf3 not installed (scripts/deps.sh)"
fi
kill -TERM "$TA" "$TB" 2>/dev/null
wait "$TA" "$TB" 2>/dev/null
if grep -q 'by checks (0 lengths, 0 num_buffers, 0 headers)' "$T/tap-a.log" &&
	grep -q 'by checks (0 lengths, 0 num_buffers, 0 headers)' "$T/tap-b.log"; then
	ok "the taps stop on SIGTERM; no frame from the real device failed the driver's checks"
else
	fail "tap statistics"
	grep 'frames out' "$T/tap-a.log" "$T/tap-b.log" | sed 's/^/#   /'
fi
alive "$SRV_PID" && ok "the server is still up" || fail "the server died"
# With a sanitizer build (XVL_BIN=build-asan/src/cli/xvl): no report from any client.
reports=$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$T"/*.log 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
expect_eq "" "$reports" "no sanitizer report in the responder's, the taps' or the server's log"
finish
