#!/usr/bin/env bash
# xvl_virtio.ko with Debian's stock virtio_net: TCG guests (Debian's
# unmodified cloud kernel, scripts/guest/) get eth0 from a net device that
# `xvl server` on the host serves with the tap backend; the tap lives in a
# network namespace of the host with an address the guest talks to:
#   - MSI-X (ivshmem-doorbell, 4 vectors), a 2-pair device, MTU 9000: the
#     vectors are too few for 5 queues, so MQ is not offered and the
#     driver's control queue (2) is mapped to the device's (4); eth0 has the
#     server's MAC and MTU and one queue pair; ping, ping -s 8000 and a
#     fragmented ping -s 20000; 8 MiB host -> guest over HTTP (GSO frames
#     into mergeable rx buffers) and 4 MiB guest -> host (TSO), both
#     checksummed at the other end; iperf3 both ways when the host has it
#     (figures only, never asserted);
#   - ivshmem-plain (both sides poll), the 2-pair device with MQ in a 2-vCPU
#     guest (VQ_PAIRS_SET 2 answered on the control queue from notify): eth0
#     uses two queue pairs; a ping stream through a kill -9 and
#     restart of the server: the carrier goes down and up, pings resume;
#     then the server killed for good: the tx queue stalls, the link goes
#     down, virtio_net and the module unload;
#   - every guest's kernel log is checked for BUG|Oops|WARNING|soft lockup.
# Needs root (network namespaces, tap).  TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
[ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] || { echo "1..0 # SKIP needs root and /dev/net/tun"; exit 0; }
G=$E2E_ROOT/scripts/guest
KB=$("$G/kernel.sh" --headers 2>"$T/kernel.log" | sed -n 's/^KBUILD=//p')
[ -n "$KB" ] && [ -d "$KB" ] || { echo "1..0 # SKIP no guest kernel headers ($(tail -1 "$T/kernel.log"))"; exit 0; }
NS=xvlkn$$
ip netns add "$NS" || { echo "1..0 # SKIP cannot create a network namespace"; exit 0; }
trap 'ip netns del "$NS" 2>/dev/null; e2e_cleanup' EXIT
nsx() { ip netns exec "$NS" "$@"; }

# ------------------------------------------------------------ build, W=1
mkdir -p "$T/src/src"
cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
(cd "$T/src/kernel" && find . -name '*.o' -o -name '*.ko' -o -name '*.cmd' | xargs rm -f; rm -rf core)
if make -C "$KB" M="$T/src/kernel" W=1 -j2 modules >"$T/build.log" 2>&1 && [ -f "$T/src/kernel/xvl_virtio.ko" ] &&
	! grep -E 'warning:|error:' "$T/build.log" >/dev/null; then
	ok "xvl_virtio.ko builds with W=1 without warnings"
else
	fail "xvl_virtio.ko builds with W=1 without warnings"
	grep -E 'warning:|error:' "$T/build.log" | head -n 10 | sed 's/^/#   /'
	finish
fi
KO=$T/src/kernel/xvl_virtio.ko
BAD='BUG|Oops|WARNING|soft lockup|KASAN|hung_task|general protection|still mapped at removal|NETDEV WATCHDOG'

# guest NAME SCRIPT [QEMU ARGS]: initramfs with the module and virtio_net, booted in the background
guest_bg() {
	local name=$1 script=$2 extra=()
	shift 2
	[ -x /usr/bin/iperf3 ] && extra=(--bin /usr/bin/iperf3)
	"$G/initramfs.sh" "$T/$name.img" --module virtio_ring --module virtio --module virtio_net \
		--ko "$KO" --run "$script" "${extra[@]}" >"$T/$name.mk.log" 2>&1 || return 1
	"$G/run.sh" --timeout 150 --log "$T/$name.log" "$T/$name.img" "$@" &
	GPID=$!
}
# wait_line NAME TEXT SECONDS: the guest's console shows TEXT
wait_line() {
	for _ in $(seq 1 $(($3 * 10))); do
		grep -aq "$2" "$T/$1.log" 2>/dev/null && return 0
		kill -0 "$GPID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
gline() { tr -d '\r' <"$T/$1.log" | sed -n "s/.*$2 //p" | tail -n 1; }
clean_log() {
	if grep -aE "$BAD" "$T/$1.log" >/dev/null; then
		fail "$2"
		grep -aE -B2 -A12 "$BAD" "$T/$1.log" | head -n 30 | sed 's/^/#   /'
	else
		ok "$2"
	fi
}
# ctrl_ok NAME WHAT: virtio_net reported no failed control command (rx mode, MAC table, pairs)
ctrl_ok() {
	if grep -aE "Fail to set|Failed to (set|.*able|add sgs for command vq)" "$T/$1.log" >/dev/null; then
		fail "$2: every control command acked"
		grep -aE "Fail to set|Failed to (set|.*able|add sgs)" "$T/$1.log" | head -n 5 | sed 's/^/#   /'
	else
		ok "$2: every control command acked"
	fi
}
show_guest() { tr -d '\r' <"$T/$1.log" | grep -av '^\s*$' | grep -av '^DMESG: \[ *[0-3]\.' | tail -n "${2:-25}" | sed 's/^/#   /'; }

# The guest's common part: eth0 from virtio_net, up with the address from the command line.
cat >"$T/common.sh" <<'EOF'
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p"; }
H=$(arg xvlhost) A=$(arg xvladdr)
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -e /sys/class/net/eth0 ] || { echo "GUEST: no eth0"; exit 1; }
n=/sys/class/net/eth0
echo "GUEST-NIC driver=$(basename "$(readlink $n/device/driver)") mac=$(cat $n/address) mtu=$(cat $n/mtu) mq=$(cut -c23 $n/device/features) rxq=$(ls -d $n/queues/rx-* | wc -l)"
ip link set eth0 up
ip addr add "$A/24" dev eth0
i=0
while [ "$(cat $n/carrier 2>/dev/null)" != 1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "GUEST: carrier $(cat $n/carrier)"
# pings COUNT SIZE INTERVAL: "replies/COUNT"
pings() {
	ping -c "$1" -s "$2" -i "$3" "$H" >/tmp/ping.$2 2>&1
	echo "$(grep -c 'bytes from' /tmp/ping.$2)/$1"
}
icmp_echos() { awk '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i; h = 1 } else print $c }' /proc/net/snmp; }
EOF

# ------------------------------------------------------------ 1. MSI-X (4 vectors), 2 pairs offered, MTU 9000
cat >"$T/traffic.sh" <<'EOF'
#!/bin/sh
. /common.sh
echo "GUEST-PING64 $(pings 20 56 0.1)"
sed -n 's/.*time=\([0-9.]*\) ms/RTT \1/p' /tmp/ping.56
echo "GUEST-PING8000 $(pings 5 8000 0.2)"
echo "GUEST-PING20000 $(pings 3 20000 0.3)"
wget -q -O /tmp/rx "http://$H:8080/pat" && echo "GUEST-SHA-RX $(sha256sum </tmp/rx | cut -d' ' -f1)"
rm -f /tmp/rx
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/pat bs=1M count=4 2>/dev/null
echo "GUEST-SHA-TX $(sha256sum </tmp/www/pat | cut -d' ' -f1)"
e0=$(icmp_echos)
httpd -p 8080 -h /tmp/www
echo "GUEST: httpd up"
i=0
while [ "$(icmp_echos)" = "$e0" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
if command -v iperf3 >/dev/null; then
	iperf3 -c "$H" -t 2 -f m 2>&1 | sed -n 's/.* \([0-9.]* Mbits\/sec\).*receiver/IPERF-TX \1/p'
	iperf3 -c "$H" -t 2 -f m -R 2>&1 | sed -n 's/.* \([0-9.]* Mbits\/sec\).*receiver/IPERF-RX \1/p'
fi
s=/sys/class/net/eth0/statistics
echo "GUEST-ERR rx_errors=$(cat $s/rx_errors) rx_length_errors=$(cat $s/rx_length_errors) tx_errors=$(cat $s/tx_errors)"
ip link set eth0 down
rmmod virtio_net || exit 1
rmmod xvl_virtio || exit 1
echo "GUEST: unloaded"
EOF
# mkguest NAME: NAME.run is NAME.sh with common.sh in place of its ". /common.sh" line
mkguest() {
	{ head -n 1 "$T/$1.sh"; cat "$T/common.sh"; tail -n +3 "$T/$1.sh"; } >"$T/$1.run"
	chmod +x "$T/$1.run"
}
mkguest traffic

nsx ip link set lo up
nsx ip tuntap add dev xk0 mode tap vnet_hdr multi_queue
nsx ip addr add 10.77.0.1/24 dev xk0
nsx ip link set xk0 mtu 9000 up
mkdir -p "$T/www"
head -c 8388608 /dev/urandom >"$T/www/pat"
RXSHA=$(sha256sum <"$T/www/pat" | cut -d' ' -f1)
bg "$T/httpd.log" ip netns exec "$NS" busybox httpd -f -p 8080 -h "$T/www"
[ -x /usr/bin/iperf3 ] && bg "$T/iperf.log" ip netns exec "$NS" iperf3 -s -B 10.77.0.1
MAC1=52:54:00:12:34:56
bg "$T/srv1.log" ip netns exec "$NS" "$XVL" server --link window --window "ivshmem:$T/ivsh.sock,vectors=4" \
	--dev "name=n0,type=net,backend=tap,ifname=xk0,mtu=9000,queues=2,mac=$MAC1"
S1=$BG_PID
wait_sock "$T/ivsh.sock" "$S1"
XVL_GUEST_APPEND="xvlhost=10.77.0.1 xvladdr=10.77.0.2" guest_bg bell "$T/traffic.run" \
	-chardev socket,path="$T/ivsh.sock",id=ivsh -device ivshmem-doorbell,chardev=ivsh,vectors=4
TXSHA=""
if wait_line bell "GUEST: httpd up" 100; then
	TXSHA=$(nsx busybox wget -q -O - http://10.77.0.2:8080/pat | sha256sum | cut -d' ' -f1)
	nsx ping -c 1 -W 5 10.77.0.2 >/dev/null
fi
wait "$GPID"
GRC=$?
if [ "$GRC" = 0 ] && grep -aq "GUEST: unloaded" "$T/bell.log"; then
	ok "MSI-X: virtio_net bound, traffic passed, virtio_net and the module unloaded"
else
	fail "MSI-X: virtio_net bound, traffic passed, virtio_net and the module unloaded (guest $GRC)"
	show_guest bell 40
	sed 's/^/#   srv: /' "$T/srv1.log" | tail -n 8
fi
expect_eq "driver=virtio_net mac=$MAC1 mtu=9000 mq=0 rxq=1" "$(gline bell GUEST-NIC)" \
	"MSI-X: eth0 is virtio_net's, with the server's MAC, MTU 9000, MQ not negotiated"
grep -aq "too few for 5 queues: one queue pair, MQ not offered" "$T/bell.log" &&
	ok "MSI-X: 4 vectors for 5 queues: MQ not offered, the control queue mapped to the device's" ||
	fail "MSI-X: 4 vectors for 5 queues: MQ not offered, the control queue mapped to the device's"
expect_eq "GUEST: carrier 1" "$(tr -d '\r' <"$T/bell.log" | grep -a '^GUEST: carrier' | head -n 1)" \
	"MSI-X: the carrier is up (STATUS from the cached config space)"
grep -aq "4 vector(s)" "$T/bell.log" && ok "MSI-X: the module runs on 4 vectors" ||
	fail "MSI-X: the module runs on 4 vectors"
expect_eq 20/20 "$(gline bell GUEST-PING64)" "MSI-X: 20 pings of 56 bytes to the tap's address answered"
expect_eq 5/5 "$(gline bell GUEST-PING8000)" "MSI-X: 5 pings of 8000 bytes (one 8 KiB frame each way) answered"
expect_eq 3/3 "$(gline bell GUEST-PING20000)" "MSI-X: 3 pings of 20000 bytes (fragmented at MTU 9000) answered"
expect_eq "$RXSHA" "$(gline bell GUEST-SHA-RX)" "MSI-X: 8 MiB host -> guest over TCP (GSO into mergeable rx buffers) checksum equal"
expect_eq "$(gline bell GUEST-SHA-TX)" "$TXSHA" "MSI-X: 4 MiB guest -> host over TCP (TSO) checksum equal"
expect_eq "rx_errors=0 rx_length_errors=0 tx_errors=0" "$(gline bell GUEST-ERR)" \
	"MSI-X: no rx/tx errors counted by virtio_net (no frame seen with buffers missing)"
ctrl_ok bell "MSI-X"
clean_log bell "MSI-X: guest kernel log clean"
RTTS=$(tr -d '\r' <"$T/bell.log" | sed -n 's/^RTT //p' | sort -n)
[ -n "$RTTS" ] && note "ping rtt p50 $(echo "$RTTS" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }') ms (min $(echo "$RTTS" | head -n 1), max $(echo "$RTTS" | tail -n 1)) over 20, MSI-X, TCG"
[ -n "$(gline bell IPERF-TX)" ] && note "iperf3 TCP 2 s: guest -> host $(gline bell IPERF-TX), host -> guest $(gline bell IPERF-RX) (TCG)"
stop_server "$S1" >/dev/null 2>&1

# ------------------------------------------------------------ 2. polling; kill -9 and restart, then for good
cat >"$T/restart.sh" <<'EOF'
#!/bin/sh
. /common.sh
# rx queues idle longer than the I/O timeout are not stalled requests
echo 3000 >/sys/module/xvl_virtio/parameters/io_timeout_ms
sleep 4
echo "GUEST-PING-BEFORE $(pings 3 56 0.2)"
# polled rx: whole mergeable frames only (the device publishes a frame's buffers one by one)
wget -q -O /tmp/rx "http://$H:8080/pat" && echo "GUEST-SHA-RX $(sha256sum </tmp/rx | cut -d' ' -f1)"
rm -f /tmp/rx
echo "GUEST-RXERR $(cat $n/statistics/rx_length_errors)"
c0=$(cat $n/carrier_changes)
ping -c 60 -i 0.2 "$H" >/tmp/stream 2>&1 &
P=$!
echo "GUEST: pinging"
wait $P
c1=$(cat $n/carrier_changes)
echo "GUEST-STREAM $(grep -c 'bytes from' /tmp/stream) carrier_changes=$((c1 - c0))"
echo "GUEST-LAST-SEQ $(sed -n 's/.*seq=\([0-9]*\) .*/\1/p' /tmp/stream | tail -n 1)"
echo "GUEST-PING-AFTER $(pings 3 56 0.2)"
# the server is killed for good now: a tx queue that completes nothing is killed, the link goes down
echo "GUEST-CTRLFAIL $(dmesg | grep -cE 'Fail to set|Failed to (set|.*able|add sgs)')"
echo "GUEST: phase2"
ping -i 0.2 "$H" >/dev/null 2>&1 &
P=$!
i=0
while [ "$(cat $n/carrier)" = 1 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
echo "GUEST-DEAD carrier=$(cat $n/carrier)"
kill $P
ip link set eth0 down
rmmod virtio_net || exit 1
rmmod xvl_virtio || exit 1
echo "GUEST: unloaded"
EOF
mkguest restart
nsx ip tuntap add dev xk1 mode tap vnet_hdr multi_queue
nsx ip addr add 10.78.0.1/24 dev xk1
nsx ip link set xk1 up
truncate -s 64M "$T/win2"
SRV2=(server --link window --window "$T/win2" --dev name=n1,type=net,backend=tap,ifname=xk1,queues=2)
bg "$T/srv2.log" ip netns exec "$NS" "$XVL" "${SRV2[@]}"
S2=$BG_PID
XVL_GUEST_APPEND="xvlhost=10.78.0.1 xvladdr=10.78.0.2" guest_bg restart "$T/restart.run" \
	-object memory-backend-file,id=w,share=on,mem-path="$T/win2",size=64M -device ivshmem-plain,memdev=w -smp 2
if wait_line restart "GUEST: pinging" 100; then
	sleep 3
	kill -KILL "$S2"; wait "$S2" 2>/dev/null
	sleep 1
	bg "$T/srv2b.log" ip netns exec "$NS" "$XVL" "${SRV2[@]}"
	S2=$BG_PID
	if wait_line restart "GUEST: phase2" 60; then
		kill -KILL "$S2"; wait "$S2" 2>/dev/null
	fi
fi
wait "$GPID"
GRC=$?
if [ "$GRC" = 0 ] && grep -aq "GUEST: unloaded" "$T/restart.log"; then
	ok "polling: server kill -9 and restart during a ping stream, then killed for good: virtio_net and the module unload"
else
	fail "polling: server kill -9 and restart during a ping stream, then killed for good: virtio_net and the module unload (guest $GRC)"
	show_guest restart 40
	sed 's/^/#   srv: /' "$T/srv2.log" "$T/srv2b.log" 2>/dev/null | tail -n 10
fi
expect_eq "driver=virtio_net mtu=1500 mq=1 rxq=2" "$(gline restart GUEST-NIC | sed 's/ mac=[^ ]*//')" \
	"polling: MQ negotiated, 2 pairs in use on 2 vCPUs (VQ_PAIRS_SET answered from notify), MTU 1500"
expect_eq 3/3 "$(gline restart GUEST-PING-BEFORE)" "polling: pings answered after 4 idle s with io_timeout_ms=3000 (idle rx is no stall)"
expect_eq "$RXSHA" "$(gline restart GUEST-SHA-RX)" "polling: 8 MiB host -> guest over TCP checksum equal"
expect_eq 0 "$(gline restart GUEST-RXERR)" "polling: no frame seen with buffers missing (rx_length_errors 0)"
st=$(gline restart GUEST-STREAM)
got=${st%% *} cc=${st##*carrier_changes=}
last=$(gline restart GUEST-LAST-SEQ)
note "ping stream: ${got:-?} of 60 answered, last answered seq ${last:-?}, carrier changes ${cc:-?}"
[ "${cc:-0}" -ge 2 ] 2>/dev/null && ok "polling: the carrier went down and up again across the restart" ||
	fail "polling: the carrier went down and up again across the restart (carrier changes ${cc:-?})"
[ "${last:-0}" -ge 55 ] 2>/dev/null && [ "${got:-0}" -ge 30 ] 2>/dev/null &&
	ok "polling: the ping stream resumed after the restart (${got} of 60 answered, last seq ${last})" ||
	fail "polling: the ping stream resumed after the restart (${got:-?} of 60 answered, last seq ${last:-?})"
expect_eq 3/3 "$(gline restart GUEST-PING-AFTER)" "polling: pings answered after the restart"
grep -aq "device set up again after a restart" "$T/restart.log" &&
	ok "polling: the module set the net device up again on the new device instance" ||
	fail "polling: the module set the net device up again on the new device instance"
expect_eq "carrier=0" "$(gline restart GUEST-DEAD)" "polling: server gone for good: the stalled tx queue is killed, carrier down"
expect_eq 0 "$(gline restart GUEST-CTRLFAIL)" "polling: every control command acked while the device was there"
clean_log restart "polling, restart: guest kernel log clean"

finish
