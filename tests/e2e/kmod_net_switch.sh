#!/usr/bin/env bash
# xvl_virtio.ko with Debian's stock virtio_net on a port of xvl server's
# built-in switch: the server serves two switch ports, g0 over the mailbox in
# an ivshmem-plain window (both sides poll) to a TCG guest that takes only
# that device (xvl_virtio devices=1), h0 over its socket to `xvl net tap` in
# a network namespace of the host.  The guest pings the host's tap through
# the switch (56 and 1400 bytes) and fetches 8 MiB over HTTP from it (TSO
# frames from the host's stack, delivered by the switch into mergeable rx
# buffers, one used entry at a time): the checksum is equal and virtio_net
# saw no frame with buffers missing.  Needs root.  TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
[ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] || { echo "1..0 # SKIP needs root and /dev/net/tun"; exit 0; }
G=$E2E_ROOT/scripts/guest
KB=$("$G/kernel.sh" --headers 2>"$T/kernel.log" | sed -n 's/^KBUILD=//p')
[ -n "$KB" ] && [ -d "$KB" ] || { echo "1..0 # SKIP no guest kernel headers ($(tail -1 "$T/kernel.log"))"; exit 0; }
NS=xvlks$$
ip netns add "$NS" || { echo "1..0 # SKIP cannot create a network namespace"; exit 0; }
trap 'ip netns del "$NS" 2>/dev/null; e2e_cleanup' EXIT

mkdir -p "$T/src/src"
cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
(cd "$T/src/kernel" && find . -name '*.o' -o -name '*.ko' -o -name '*.cmd' | xargs rm -f; rm -rf core)
if ! make -C "$KB" M="$T/src/kernel" W=1 -j2 modules >"$T/build.log" 2>&1 || [ ! -f "$T/src/kernel/xvl_virtio.ko" ]; then
	fail "xvl_virtio.ko builds"
	tail -n 10 "$T/build.log" | sed 's/^/#   /'
	finish
fi

cat >"$T/guest.sh" <<'EOF'
#!/bin/sh
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
# the init loaded the module with every device: take only the first (g0)
rmmod xvl_virtio
insmod /lib/modules/xvl_virtio.ko devices=1 || exit 1
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -e /sys/class/net/eth0 ] || { echo "GUEST: no eth0"; exit 1; }
echo "GUEST-NETDEVS $(ls /sys/class/net | grep -c '^eth')"
ip link set eth0 up
ip addr add 10.79.0.2/24 dev eth0
echo "GUEST: up"
i=0
while [ ! -e /tmp/go ] && [ $i -lt 300 ]; do
	ping -c 1 -W 1 10.79.0.1 >/dev/null 2>&1 && touch /tmp/go
	i=$((i+1))
done
ping -c 10 -i 0.1 10.79.0.1 >/tmp/p56 2>&1
echo "GUEST-PING56 $(grep -c 'bytes from' /tmp/p56)/10"
ping -c 5 -i 0.2 -s 1400 10.79.0.1 >/tmp/p1400 2>&1
echo "GUEST-PING1400 $(grep -c 'bytes from' /tmp/p1400)/5"
wget -q -O /tmp/rx http://10.79.0.1:8080/pat && echo "GUEST-SHA-RX $(sha256sum </tmp/rx | cut -d' ' -f1)"
echo "GUEST-RXERR $(cat /sys/class/net/eth0/statistics/rx_length_errors)"
ip link set eth0 down
rmmod xvl_virtio || exit 1
echo "GUEST: unloaded"
EOF
chmod +x "$T/guest.sh"

mkdir -p "$T/www"
head -c 8388608 /dev/urandom >"$T/www/pat"
RXSHA=$(sha256sum <"$T/www/pat" | cut -d' ' -f1)
ip netns exec "$NS" ip link set lo up
truncate -s 64M "$T/win"
bg "$T/srv.log" "$XVL" server --link window --window "$T/win" --listen "$T/srv.sock" \
	--dev name=g0,type=net,backend=switch --dev name=h0,type=net,backend=switch
S=$BG_PID
wait_sock "$T/srv.sock" "$S"
"$G/initramfs.sh" "$T/g.img" --module virtio_ring --module virtio --module virtio_net \
	--ko "$T/src/kernel/xvl_virtio.ko" --run "$T/guest.sh" >"$T/mk.log" 2>&1
"$G/run.sh" --timeout 150 --log "$T/g.log" "$T/g.img" \
	-object memory-backend-file,id=w,share=on,mem-path="$T/win",size=64M -device ivshmem-plain,memdev=w &
GPID=$!
# the host's port once the guest holds only g0
for _ in $(seq 1 600); do
	grep -aq "GUEST: up" "$T/g.log" 2>/dev/null && break
	kill -0 "$GPID" 2>/dev/null || break
	sleep 0.1
done
bg "$T/tap.log" ip netns exec "$NS" "$XVL" net tap --connect "$T/srv.sock" --device h0 --ifname xs0
for _ in $(seq 1 100); do
	ip netns exec "$NS" ip link show xs0 >/dev/null 2>&1 && break
	sleep 0.1
done
ip netns exec "$NS" ip addr add 10.79.0.1/24 dev xs0
bg "$T/httpd.log" ip netns exec "$NS" busybox httpd -f -p 8080 -h "$T/www"
wait "$GPID"
GRC=$?
gline() { tr -d '\r' <"$T/g.log" | sed -n "s/.*$1 //p" | tail -n 1; }
if [ "$GRC" = 0 ] && grep -aq "GUEST: unloaded" "$T/g.log"; then
	ok "switch: virtio_net on port g0, traffic passed, the module unloaded"
else
	fail "switch: virtio_net on port g0, traffic passed, the module unloaded (guest $GRC)"
	tr -d '\r' <"$T/g.log" | grep -av '^\s*$' | grep -av '^DMESG: \[ *[0-3]\.' | tail -n 25 | sed 's/^/#   /'
	tail -n 5 "$T/srv.log" "$T/tap.log" | sed 's/^/#   /'
fi
expect_eq 1 "$(gline GUEST-NETDEVS)" "switch: devices=1: the guest took only the first of the server's two devices"
expect_eq 10/10 "$(gline GUEST-PING56)" "switch: 10 pings of 56 bytes to the host's port answered"
expect_eq 5/5 "$(gline GUEST-PING1400)" "switch: 5 pings of 1400 bytes answered"
expect_eq "$RXSHA" "$(gline GUEST-SHA-RX)" "switch: 8 MiB host -> guest over TCP through the switch, checksum equal"
expect_eq 0 "$(gline GUEST-RXERR)" "switch: no frame seen with buffers missing (rx_length_errors 0)"
if grep -aE 'BUG|Oops|WARNING|soft lockup|KASAN|NETDEV WATCHDOG' "$T/g.log" >/dev/null; then
	fail "switch: guest kernel log clean"
	grep -aE -B2 -A12 'BUG|Oops|WARNING|soft lockup|KASAN|NETDEV WATCHDOG' "$T/g.log" | head -n 30 | sed 's/^/#   /'
else
	ok "switch: guest kernel log clean"
fi
finish
