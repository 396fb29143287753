#!/usr/bin/env bash
# The vhost-user-net bridge's frontend work (src/server/bridge_net.c) against
# an unmodified dpdk-testpmd: two net_vhost ports with 2 queues each, io
# forward (queue p of one port to queue p of the other).  Two bridged devices
# (queues=2; one with mtu=9000) are opened with 2 queue pairs by
# tests/e2e/net_mq_prog.c, which sets a MAC address and promiscuous mode
# through the control queue (served by the server: the backend never sees it)
# and sends 200 frames on each pair; every frame must arrive on the same pair
# of the other device.  Then tests/hostile/net_attack.c (case bctrl) sends bad
# control commands to a bridged device (answered VIRTIO_NET_ERR), good ones,
# 600 in a row, and a chain without an ack byte (that device breaks, the
# other answers on).  testpmd's own vhost log must show: pair 1 handed over
# disabled and enabled by the driver's VQ_PAIRS_SET, NET_SET_MTU, and no ring 4
# (the control queue) ever set up in the backend.  TAP.
set -u
. "$(dirname "$0")/lib.sh"

R=$E2E_ROOT
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v dpdk-testpmd >/dev/null || { echo "1..0 # SKIP no dpdk-testpmd (package dpdk)"; exit 0; }
SRV=${XVL_SERVER_BIN:-$R/build-asan/src/cli/xvl}
[ -x "$SRV" ] || SRV=$XVL
BLD=$(cd "$(dirname "$XVL")/../.." && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

build_prog() {
	cc -std=gnu11 -O2 -Wall -Wextra "$@" -I"$R/include" "$R/tests/e2e/net_mq_prog.c" \
		"$BLD/src/client/libxvloop.a" "$BLD/src/vhost/libxvl_vhost.a" "$BLD/src/os/libxvl_os.a" \
		"$BLD/src/core/libxvl_core.a" -pthread -o "$T/mq" 2>>"$T/cc.log"
}
if build_prog || build_prog -fsanitize=address,undefined; then
	ok "build tests/e2e/net_mq_prog.c"
else
	fail "build tests/e2e/net_mq_prog.c"
	sed 's/^/#   /' "$T/cc.log" | head -20
	finish
fi
note "server: $SRV"
F=(-std=gnu11 -g -O2 -Wall -Wextra -Wno-unused-function -D_GNU_SOURCE -I"$R/include"
	-I"$R/src/core" -I"$R/src/os" -I"$R/tests/hostile")
if "${CC:-gcc}" "${F[@]}" "$R"/src/core/window.c "$R"/src/core/virtq.c "$R"/src/core/proto.c \
	"$R"/src/core/net.c "$R"/src/os/os_misc.c "$R"/src/os/os_window.c "$R"/src/os/os_sock.c \
	"$R/tests/hostile/net_attack.c" -o "$T/attack" 2>"$T/cca.log"; then
	ok "build tests/hostile/net_attack.c"
else
	fail "build tests/hostile/net_attack.c"
	grep error "$T/cca.log" | head -5 | sed 's/^/#   /'
fi

trap 'e2e_cleanup; rm -rf "/var/run/dpdk/xvl-netbr-$$"' EXIT # and DPDK's runtime files
mkfifo "$T/tp.in"
dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix "xvl-netbr-$$" \
	--log-level=lib.vhost.config:debug \
	--vdev "net_vhost0,iface=$T/vh0.sock,queues=2" --vdev "net_vhost1,iface=$T/vh1.sock,queues=2" \
	-- --forward-mode=io --auto-start --stats-period 0 --nb-cores=1 --rxq=2 --txq=2 \
	<"$T/tp.in" >"$T/tp.log" 2>&1 &
TP=$!
E2E_PIDS+=("$TP")
exec 7>"$T/tp.in" # testpmd exits at the end of its stdin
for _ in $(seq 100); do [ -S "$T/vh1.sock" ] && break; sleep 0.1; done
[ -S "$T/vh1.sock" ] || { fail "testpmd started"; tail -5 "$T/tp.log" | sed 's/^/#   /'; finish; }

bg "$T/srv.log" "$SRV" server -l "$T/s.sock" \
	-d "name=va,type=net,backend=vhost-user,path=$T/vh0.sock,queues=2" \
	-d "name=vb,type=net,backend=vhost-user,path=$T/vh1.sock,queues=2,mtu=9000"
SP=$BG_PID
if ! wait_sock "$T/s.sock" "$SP"; then
	fail "server started"
	tail -5 "$T/srv.log" | sed 's/^/#   /'
	finish
fi

timeout -k 1 40 "$T/mq" "$T/s.sock" vb va 2 200 >"$T/mq.out" 2>"$T/mq.err"
rc=$?
sed 's/^/# net_mq_prog: /' "$T/mq.out"
[ $rc -eq 0 ] || { fail "net_mq_prog exit status $rc"; sed 's/^/#   /' "$T/mq.err"; }

if grep -q '^info vb max_pairs 2 pairs 2 ctrl 1 mtu 9000 ' "$T/mq.out" &&
	grep -q '^info va max_pairs 2 pairs 2 ctrl 1 mtu 1500 ' "$T/mq.out"; then
	ok "bridged devices offer 2 queue pairs, a control queue, and the MTU (9000 from mtu=, 1500 default)"
else
	fail "bridged devices offer 2 queue pairs, a control queue, and the MTU"
fi
if grep -q '^ctrl va set_mac 0 mac_now 02:78:76:6c:00:01 promisc 0$' "$T/mq.out"; then
	ok "control queue: MAC ADDR_SET changes the config space's MAC, RX PROMISC answered OK"
else
	fail "control queue: MAC ADDR_SET and RX PROMISC ($(grep '^ctrl' "$T/mq.out"))"
fi
for p in 0 1; do
	line=$(grep "^pair $p " "$T/mq.out")
	sent=$(echo "$line" | awk '{print $4}')
	got=$(echo "$line" | awk '{print $6}')
	else=$(echo "$line" | awk '{print $8}')
	if [ -n "$sent" ] && [ "$sent" -gt 0 ] && [ "${got:-0}" -ge $((sent / 2)) ] && [ "${else:-1}" -eq 0 ]; then
		ok "pair $p: vb -> testpmd queue $p -> va pair $p ($got of $sent, none on another pair)"
	else
		fail "pair $p: vb -> testpmd queue $p -> va pair $p (${line:-no result})"
	fi
done

# a hostile driver on the server's control queue of bridged devices (va = 0, vb = 1)
if [ -x "$T/attack" ]; then
	timeout -k 1 60 "$T/attack" "$T/s.sock" bctrl >"$T/a.out" 2>"$T/a.err"
	arc=$?
	while read -r verdict rest; do
		case $verdict in
		PASS) ok "$rest" ;;
		FAIL) fail "$rest" ;;
		esac
	done <"$T/a.out"
	[ $arc -eq 0 ] || fail "net_attack bctrl: exit status $arc ($(head -c 200 "$T/a.err"))"
	if alive "$SP"; then ok "server alive after the hostile control commands"; else fail "server alive after the hostile control commands"; fi
fi

stop_checked() {
	local rc=0
	stop_server "$1" || rc=$?
	if [ $rc -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$2"; then
		ok "server exits cleanly, no sanitizer report"
	else
		fail "server exit status $rc or sanitizer report"
		grep -E -A8 'ERROR: |runtime error:' "$2" | head -20 | sed 's/^/#   /'
	fi
}
stop_checked "$SP" "$T/srv.log"
kill -INT "$TP" 2>/dev/null
exec 7>&-
wait "$TP" 2>/dev/null

# testpmd's own account (DPDK vhost library, debug log of lib.vhost.config)
en=$(grep -E 'vh1.sock\) set queue enable: [01] to qp idx: 2' "$T/tp.log" | head -2 |
	sed 's/.*enable: \([01]\).*/\1/' | tr -d '\n')
if [ "$en" = 01 ]; then
	ok "testpmd: vb's pair 1 was handed over disabled, then enabled (VQ_PAIRS_SET)"
else
	fail "testpmd: vb's pair 1 was handed over disabled, then enabled (saw '$en')"
fi
if grep -q 'vh1.sock) read message VHOST_USER_NET_SET_MTU' "$T/tp.log"; then
	ok "testpmd: vb's backend was told the MTU (NET_SET_MTU)"
else
	fail "testpmd: vb's backend was told the MTU (NET_SET_MTU)"
fi
if grep -q 'vring .* idx:4' "$T/tp.log" || grep -q 'qp idx: 4' "$T/tp.log"; then
	fail "testpmd: the control queue (ring 4) stayed with the server"
else
	ok "testpmd: the control queue (ring 4) stayed with the server"
fi
finish
