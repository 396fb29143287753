#!/usr/bin/env bash
# Open vSwitch with DPDK (Debian's openvswitch-switch-dpdk) behind the
# server's vhost-user-net bridge: two xvloop net devices bridged to two
# dpdkvhostuserclient ports of one OVS bridge (datapath_type=netdev, NORMAL
# learning), traffic checked end to end.  TAP.
#
# OVS runs privately: its own database and sockets in the test's temp dir,
# ovsdb-server and ovs-vswitchd-dpdk started by hand (no system service, no
# update-alternatives), DPDK with --no-huge, pinned to CPUs 0-1 (its PMD
# thread on CPU 1), torn down at the end.  dpdkvhostuserclient ports connect
# to their socket, so the devices use listen=on.
#
# Checks: DPDK initialised in OVS; the server took both ports' connections
# and probed them; xvl net ping from one device answered by a responder on
# the other, through OVS; OVS's own port counters saw the frames; with 2
# queue pairs (queues=2), pair 1 enabled in OVS and frames on pair 0 cross OVS; with root
# and ip(8): two network namespaces with `xvl net tap` front-ends, kernel ping
# between them through OVS; OVS gone: the link goes down; the server exits
# cleanly.  A perf run is printed as a note.
set -u
. "$(dirname "$0")/lib.sh"

R=$E2E_ROOT
VSWD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
if [ ! -x "$VSWD" ] || ! command -v ovsdb-server >/dev/null || ! command -v ovs-vsctl >/dev/null; then
	echo "1..0 # SKIP needs Debian's openvswitch-switch-dpdk ($VSWD; scripts/deps.sh installs it)"
	exit 0
fi
SRV=${XVL_SERVER_BIN:-$R/build-asan/src/cli/xvl}
[ -x "$SRV" ] || SRV=$XVL
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
note "server: $SRV"

# OVS's files stay in $T: its run, log, db and config directories.
export OVS_RUNDIR=$T OVS_LOGDIR=$T OVS_DBDIR=$T OVS_SYSCONFDIR=$T
V=(ovs-vsctl --db="unix:$T/db.sock" --timeout=10)
NSA=xvl-ovsa-$$
NSB=xvl-ovsb-$$
ovs_down() {
	[ -S "$T/vsw.ctl" ] && ovs-appctl -t "$T/vsw.ctl" exit >/dev/null 2>&1
	[ -S "$T/ovsdb.ctl" ] && ovs-appctl -t "$T/ovsdb.ctl" exit >/dev/null 2>&1
}
cleanup() {
	ovs_down
	for n in "$NSA" "$NSB"; do ip netns del "$n" 2>/dev/null; done
	e2e_cleanup
	rm -rf "/var/run/dpdk/xvl-ovs-$$" # DPDK's runtime files (after OVS has gone)
}
trap cleanup EXIT

ovsdb-tool create "$T/conf.db" /usr/share/openvswitch/vswitch.ovsschema >"$T/ovsdb-tool.log" 2>&1
bg "$T/ovsdb.out" ovsdb-server "$T/conf.db" --remote="punix:$T/db.sock" --unixctl="$T/ovsdb.ctl" \
	--no-chdir --log-file="$T/ovsdb.log"
DBP=$BG_PID
if ! wait_sock "$T/db.sock" "$DBP"; then
	fail "ovsdb-server starts on a private database"
	tail -5 "$T/ovsdb.out" "$T/ovsdb.log" | sed 's/^/#   /'
	finish
fi
ok "ovsdb-server starts on a private database"
"${V[@]}" --no-wait init
"${V[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
	"other_config:dpdk-extra=--no-huge -m 1024 --legacy-mem --no-pci --file-prefix=xvl-ovs-$$" \
	other_config:per-port-memory=true other_config:dpdk-lcore-mask=0x1 \
	other_config:pmd-cpu-mask=0x2
bg "$T/vsw.out" taskset -c 0,1 "$VSWD" "unix:$T/db.sock" --unixctl="$T/vsw.ctl" --no-chdir \
	--log-file="$T/vsw.log"
VSP=$BG_PID
for _ in $(seq 150); do
	[ "$("${V[@]}" get Open_vSwitch . dpdk_initialized 2>/dev/null)" = true ] && break
	alive "$VSP" || break
	sleep 0.1
done
if [ "$("${V[@]}" get Open_vSwitch . dpdk_initialized 2>/dev/null)" = true ]; then
	ok "ovs-vswitchd-dpdk runs with DPDK initialised (--no-huge, PMD on CPU 1)"
else
	fail "ovs-vswitchd-dpdk runs with DPDK initialised"
	tail -n 8 "$T/vsw.out" "$T/vsw.log" 2>/dev/null | sed 's/^/#   /'
	finish
fi
if "${V[@]}" add-br br0 -- set bridge br0 datapath_type=netdev &&
	"${V[@]}" add-port br0 p0 -- set Interface p0 type=dpdkvhostuserclient \
		"options:vhost-server-path=$T/p0.sock" &&
	"${V[@]}" add-port br0 p1 -- set Interface p1 type=dpdkvhostuserclient \
		"options:vhost-server-path=$T/p1.sock"; then
	ok "OVS bridge br0 (netdev datapath) with dpdkvhostuserclient ports p0, p1"
else
	fail "OVS bridge br0 with dpdkvhostuserclient ports p0, p1"
	finish
fi

bg "$T/srv.log" "$SRV" server -l "$T/s.sock" \
	-d "name=oa,type=net,backend=vhost-user,path=$T/p0.sock,listen=on,queues=2" \
	-d "name=ob,type=net,backend=vhost-user,path=$T/p1.sock,listen=on,queues=2"
SP=$BG_PID
wait_sock "$T/s.sock" "$SP"
for _ in $(seq 100); do
	[ "$(grep -c 'vhost-user backend .*p[01].sock: features' "$T/srv.log")" -ge 2 ] && break
	sleep 0.1
done
if [ "$(grep -c 'vhost-user backend .*p[01].sock: features' "$T/srv.log")" -ge 2 ]; then
	ok "server: OVS connected to both listening sockets and was probed"
else
	fail "server: OVS connected to both listening sockets and was probed"
	tail -n 5 "$T/srv.log" | sed 's/^/#   /'
fi

mode=$(stat -c %a "$T/p0.sock" 2>/dev/null)
if [ "$mode" = 600 ]; then
	ok "server's listening socket is mode 0600 (whoever connects gets the window)"
else
	fail "server's listening socket is mode 0600 (it is ${mode:-missing})"
fi

bg "$T/resp.log" "$XVL" net ping -c "$T/s.sock" -d oa --responder
RESP=$BG_PID
for _ in $(seq 100); do
	grep -q 'device oa: vhost-user backend .* serves' "$T/srv.log" && break
	sleep 0.1
done
sleep 0.5
timeout -k 1 20 "$XVL" net ping -c "$T/s.sock" -d ob --count 10 --interval-ms 100 >"$T/ping.log" 2>&1
got=$(sed -n 's/.* sent, \([0-9]*\) received.*/\1/p' "$T/ping.log")
if [ "${got:-0}" -ge 5 ]; then
	ok "xvl net ping ob -> OVS br0 -> oa answered ($(tail -1 "$T/ping.log"))"
else
	fail "xvl net ping ob -> OVS br0 -> oa answered"
	tail -n 3 "$T/ping.log" "$T/srv.log" | sed 's/^/#   /'
fi
# a measurement, not a check (the PMD thread shares the 2 CPUs with everything)
timeout -k 1 30 "$XVL" net perf -c "$T/s.sock" -d ob --sizes 64,1500 --time 1 >"$T/perf.log" 2>&1
sed 's/^/# perf through OVS: /' "$T/perf.log"
# OVS's own account, while ob is attached (a vhost port without a session has no
# counters): ovs-ofctl reads the datapath now (the Interface statistics lag 5 s)
bg "$T/hold1.log" "$XVL" net ping -c "$T/s.sock" -d ob --count 30 --interval-ms 50
HOLD1=$BG_PID
rxp=
for _ in $(seq 30); do
	sleep 0.1
	rxp=$(ovs-ofctl dump-ports "unix:$T/br0.mgmt" p1 2>/dev/null | grep -o 'rx pkts=[0-9]*' | grep -o '[0-9]*$')
	[ "${rxp:-0}" -ge 10 ] && break
done
ovs-ofctl dump-ports "unix:$T/br0.mgmt" >"$T/ports.log" 2>&1
kill -TERM "$HOLD1" "$RESP" 2>/dev/null
wait "$HOLD1" "$RESP" 2>/dev/null
if [ "${rxp:-0}" -ge 10 ]; then
	ok "OVS: port p1 counted the frames from ob ($rxp received)"
else
	fail "OVS: port p1 counted the frames from ob (${rxp:-none})"
	sed 's/^/#   /' "$T/ports.log" | head -12
fi

# two queue pairs: OVS takes frames on either of ob's pairs (which pair of oa they come
# out of is OVS's choice of transmit queue)
BLD=$(cd "$(dirname "$XVL")/../.." && pwd)
if cc -std=gnu11 -O2 -I"$R/include" "$R/tests/e2e/net_mq_prog.c" "$BLD/src/client/libxvloop.a" \
	"$BLD/src/vhost/libxvl_vhost.a" "$BLD/src/os/libxvl_os.a" "$BLD/src/core/libxvl_core.a" \
	-pthread -o "$T/mq" 2>"$T/cc.log"; then
	timeout -k 1 40 "$T/mq" "$T/s.sock" ob oa 2 100 4000 >"$T/mq.out" 2>"$T/mq.err"
	sed 's/^/# net_mq_prog: /' "$T/mq.out"
	line=$(grep "^pair 0 " "$T/mq.out")
	sent=$(echo "$line" | awk '{print $4}')
	through=$(echo "$line" | awk '{print $6 + $8}')
	if [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "${through:-0}" -ge $((sent / 2)) ]; then
		ok "2 pairs: frames sent on ob's pair 0 cross OVS to oa ($through of $sent)"
	else
		fail "2 pairs: frames sent on ob's pair 0 cross OVS to oa (${line:-no result}; $(head -c 200 "$T/mq.err"))"
	fi
	# Pair 1 is not checked: OVS polls a newly enabled rx queue only after its main
	# thread reconfigured the port, and here that thread stalled for 4-13 s ("Unreasonably
	# long ... poll interval") right after the enable; the bridge's side is checked
	# against testpmd (net_bridge.sh) and by OVS's own log of the enable.
	note "2 pairs: pair 1 through OVS: $(grep '^pair 1 ' "$T/mq.out")"
	if grep -q "p1.sock) set queue enable: 1 to qp idx: 3" "$T/vsw.log"; then
		ok "2 pairs: OVS's vhost library saw ob's pair 1 enabled (SET_VRING_ENABLE after VQ_PAIRS_SET)"
	else
		fail "2 pairs: OVS's vhost library saw ob's pair 1 enabled"
	fi
	if grep -q '^info ob max_pairs 2 pairs 2 ctrl 1 ' "$T/mq.out"; then
		ok "2 pairs: the bridged device offers OVS's 2 queue pairs and a control queue"
	else
		fail "2 pairs: the bridged device offers OVS's 2 queue pairs and a control queue"
	fi
else
	fail "build tests/e2e/net_mq_prog.c"
fi

# kernel stacks: two network namespaces, each with a tap front-end on one device
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v ping >/dev/null &&
	[ -c /dev/net/tun ] && ip netns add "$NSA" && ip netns add "$NSB"; then
	bg "$T/ta.log" ip netns exec "$NSA" "$XVL" net tap -c "$T/s.sock" -d oa --ifname xo0
	bg "$T/tb.log" ip netns exec "$NSB" "$XVL" net tap -c "$T/s.sock" -d ob --ifname xo0
	for _ in $(seq 100); do
		ip netns exec "$NSA" ip link show xo0 >/dev/null 2>&1 &&
			ip netns exec "$NSB" ip link show xo0 >/dev/null 2>&1 && break
		sleep 0.1
	done
	ip netns exec "$NSA" ip addr add 10.97.0.1/24 dev xo0 2>/dev/null
	ip netns exec "$NSB" ip addr add 10.97.0.2/24 dev xo0 2>/dev/null
	if ip netns exec "$NSA" ping -c 5 -i 0.2 -W 2 10.97.0.2 >"$T/kping.log" 2>&1; then
		ok "kernel ping between two netns: tap -> oa -> OVS -> ob -> tap ($(grep -o '[0-9]* received' "$T/kping.log"))"
	else
		# the sessions start as the front-ends attach: one more try after they are up
		sleep 1
		if ip netns exec "$NSA" ping -c 5 -i 0.2 -W 2 10.97.0.2 >"$T/kping.log" 2>&1; then
			ok "kernel ping between two netns: tap -> oa -> OVS -> ob -> tap ($(grep -o '[0-9]* received' "$T/kping.log"))"
		else
			fail "kernel ping between two netns through OVS"
			tail -n 3 "$T/kping.log" "$T/ta.log" "$T/tb.log" | sed 's/^/#   /'
		fi
	fi
	for p in "${E2E_PIDS[@]: -2}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 0.5
else
	skip "kernel ping through OVS: needs root, ip, ping and /dev/net/tun"
fi

# OVS goes away under an attached device: its link goes down
bg "$T/hold.log" "$XVL" net ping -c "$T/s.sock" -d ob --count 50 --interval-ms 100
HOLD=$BG_PID
# (its session must be up first: a backend lost while a session starts is a retry, not a link
# change; under load the start takes seconds)
for _ in $(seq 200); do
	[ "$(grep -c 'device ob: vhost-user backend .* serves' "$T/srv.log")" -ge 3 ] && break
	sleep 0.1
done
ovs_down
for _ in $(seq 50); do grep -q 'device ob: link down' "$T/srv.log" && break; sleep 0.1; done
if grep -q 'device ob: link down' "$T/srv.log"; then
	ok "OVS gone: the link of the attached device goes down (EVENT CONFIG)"
else
	fail "OVS gone: the link of the attached device goes down"
	tail -n 4 "$T/srv.log" | sed 's/^/#   /'
fi
kill -TERM "$HOLD" 2>/dev/null
wait "$HOLD" 2>/dev/null

rc=0
stop_server "$SP" || rc=$?
if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/srv.log"; then
	ok "server exits cleanly, no sanitizer report"
else
	fail "server exit status $rc or sanitizer report"
	grep -E -A8 'ERROR: |runtime error:' "$T/srv.log" | head -20 | sed 's/^/#   /'
fi
[ -e "$T/p0.sock" ] && fail "server removed its listening sockets" || ok "server removed its listening sockets"
finish
