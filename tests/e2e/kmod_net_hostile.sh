#!/usr/bin/env bash
# xvl_virtio.ko with Debian's stock virtio_net against a hostile net device:
# tests/hostile/net_hostile_device.c --window speaks the mailbox in an
# ivshmem-plain window and mirrors every frame the guest sends back on its
# receive queue, misbehaving as each case says (one case per load of the
# module, all in one TCG guest): num_buffers 0 / 300 / lying, used lengths
# beyond the buffer or under the header, a GSO type not negotiated, a
# receive flood, a used id never submitted, link flaps, EVENT RESTART, a
# control queue never answered, 50 queue pairs on 3 queues.  Each case: the
# guest neither oopses nor hangs, virtio_net drops and counts what is bad,
# the module unloads; the kernel log is checked for BUG|Oops|WARNING.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
G=$E2E_ROOT/scripts/guest
R=$E2E_ROOT
KB=$("$G/kernel.sh" --headers 2>"$T/kernel.log" | sed -n 's/^KBUILD=//p')
[ -n "$KB" ] && [ -d "$KB" ] || { echo "1..0 # SKIP no guest kernel headers ($(tail -1 "$T/kernel.log"))"; exit 0; }

mkdir -p "$T/src/src"
cp -r "$R/kernel" "$T/src/kernel"
cp -r "$R/src/core" "$T/src/src/core"
(cd "$T/src/kernel" && find . -name '*.o' -o -name '*.ko' -o -name '*.cmd' | xargs rm -f; rm -rf core)
make -C "$KB" M="$T/src/kernel" W=1 -j2 modules >"$T/build.log" 2>&1 &
P1=$!
${CC:-gcc} -std=gnu11 -g -O1 -Wall -Wextra -D_GNU_SOURCE -I"$R/include" -I"$R/src/core" \
	-I"$R/src/os" -I"$R/tests/hostile" "$R"/src/core/{window,virtq,proto,mailbox,net}.c "$R"/src/os/*.c \
	"$R/tests/hostile/net_hostile_device.c" -o "$T/nhd" 2>"$T/cc.log"
r2=$?
wait "$P1"
r1=$?
if [ "$r1" -ne 0 ] || [ "$r2" -ne 0 ] || [ ! -f "$T/src/kernel/xvl_virtio.ko" ]; then
	fail "build xvl_virtio.ko and the hostile net device"
	cat "$T/build.log" "$T/cc.log" | grep -E 'error|warning' | head -n 10 | sed 's/^/#   /'
	finish
fi
ok "build xvl_virtio.ko (W=1) and tests/hostile/net_hostile_device.c"

CASES=${KMOD_NET_CASES:-good nb_zero nb_big nb_lie len_big len_short flood used_id link_flap restart ctrl_silent pairs_big}
cat >"$T/hostile.sh" <<EOF
#!/bin/sh
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
n=/sys/class/net/eth0
rmmod xvl_virtio
for c in $CASES; do
	dmesg -c >/dev/null
	insmod /lib/modules/xvl_virtio.ko io_timeout_ms=2000 link_timeout_ms=1000 reconnect_ms=2000 ||
		{ echo "CASE \$c insmod-failed"; continue; }
	i=0
	while [ ! -e \$n ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i+1)); done
	if [ ! -e \$n ]; then
		sleep 1
		rmmod xvl_virtio; u=\$?
		echo "CASE \$c eth0=0 rmmod=\$u"
		dmesg | grep -E "BUG|Oops|WARNING|soft lockup|KASAN|still mapped" && echo "CASE-DIRTY \$c"
		continue
	fi
	echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad
	t0=\$(date +%s)
	ip link set eth0 up
	t1=\$(date +%s)
	i=0
	while ! grep -q "eth0\$" /proc/net/if_inet6 && [ \$i -lt 30 ]; do sleep 0.1; i=\$((i+1)); done
	# every frame sent comes back: here ICMPv6 echo requests to all nodes (no neighbour lookup)
	ping6 -c 6 -i 0.2 -W 1 -I eth0 ff02::1 >/dev/null 2>&1
	sleep 0.5
	s=\$n/statistics
	k=0; dmesg | grep -q "its requests fail from now on" && k=1
	a=0; dmesg | grep -q "device set up again" && a=1
	echo "CASE \$c eth0=1 up=\$((t1 - t0)) rx=\$(cat \$s/rx_packets) len=\$(cat \$s/rx_length_errors) frame=\$(cat \$s/rx_frame_errors) carrier=\$(cat \$n/carrier) changes=\$(cat \$n/carrier_changes) killed=\$k again=\$a"
	ip link set eth0 down
	rmmod xvl_virtio; u=\$?
	echo "CASE-RMMOD \$c \$u"
	dmesg | grep -E "BUG|Oops|WARNING|soft lockup|KASAN|still mapped" && echo "CASE-DIRTY \$c"
done
exit 0
EOF
chmod +x "$T/hostile.sh"
truncate -s 64M "$T/win"
# the first case is taken by the module load in the guest's init
bg "$T/nhd.log" "$T/nhd" --window "$T/win" good $CASES
"$G/initramfs.sh" "$T/g.img" --module virtio_ring --module virtio --module virtio_net \
	--ko "$T/src/kernel/xvl_virtio.ko" --run "$T/hostile.sh" >"$T/mk.log" 2>&1
"$G/run.sh" --timeout 240 --log "$T/g.log" "$T/g.img" \
	-object memory-backend-file,id=w,share=on,mem-path="$T/win",size=64M -device ivshmem-plain,memdev=w
GRC=$?
if [ "$GRC" = 0 ]; then ok "the guest ran every case to its end"; else
	fail "the guest ran every case to its end (guest $GRC)"
	tr -d '\r' <"$T/g.log" | grep -av '^\s*$' | grep -av '^DMESG: \[ *[0-3]\.' | tail -n 30 | sed 's/^/#   /'
	tail -n 5 "$T/nhd.log" | sed 's/^/#   dev: /'
fi

# (KMOD_NET_CASES runs only some cases; the checks of the others then fail)
# field CASE NAME: the value of NAME= on the case's line (the last run of the case)
cases() { tr -d '\r' <"$T/g.log" | grep -ao "CASE[-A-Z]* .*"; }
field() { cases | grep -a "^CASE $1 " | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
cases | grep -a "^CASE " | sed 's/^/# /'
# want CASE DESCRIPTION TEST...: TEST is a shell condition over the case's fields
want() {
	local c=$1 d=$2 cond=$3 eth0 rx len frame carrier changes killed again up
	eth0=$(field "$c" eth0) rx=$(field "$c" rx) len=$(field "$c" len) frame=$(field "$c" frame)
	carrier=$(field "$c" carrier) changes=$(field "$c" changes) killed=$(field "$c" killed)
	again=$(field "$c" again) up=$(field "$c" up)
	if [ -n "$eth0" ] && eval "$cond" 2>/dev/null; then ok "hostile net device, $c: $d"; else
		fail "hostile net device, $c: $d ($(cases | grep -a "^CASE $c " | tail -n 1))"
	fi
}
want good "frames mirrored and received, nothing dropped, carrier up" \
	'[ "$rx" -ge 3 ] && [ "$len" = 0 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want nb_zero "num_buffers 0: frames dropped and counted, the device runs on" \
	'[ "$len" -ge 1 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want nb_big "num_buffers 300: frames dropped and counted, the device runs on" \
	'[ "$len" -ge 1 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want nb_lie "num_buffers 3 in one buffer: the device runs on" \
	'[ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want len_big "used length beyond the buffer: clamped, the device runs on" \
	'[ "$rx" -ge 1 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want len_short "used length 4: frames dropped and counted" \
	'[ "$len" -ge 1 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want flood "a receive flood: taken, the guest runs on" \
	'[ "$rx" -ge 100 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want used_id "a used id never submitted: the rx queue is killed, carrier down" \
	'[ "$killed" = 1 ] && [ "$carrier" = 0 ]'
want link_flap "EVENT CONFIG link down, up: the carrier follows" \
	'[ "$changes" -ge 3 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want restart "EVENT RESTART: set up again, carrier up" \
	'[ "$again" = 1 ] && [ "$carrier" = 1 ] && [ "$killed" = 0 ]'
want ctrl_silent "a control queue never answered: ip link up returns within 3 s, that queue killed" \
	'[ "$up" -le 3 ] && [ "$killed" = 1 ]'
want pairs_big "50 queue pairs on 3 queues: virtio_net's probe fails, no eth0" '[ "$eth0" = 0 ]'
bad_rm=$(cases | grep -a "^CASE-RMMOD " | grep -av " 0$" | wc -l)
expect_eq 0 "$bad_rm" "the module unloaded after every case"
dirty=$(cases | grep -a "^CASE-DIRTY " | wc -l)
expect_eq 0 "$dirty" "no case left BUG|Oops|WARNING|soft lockup|KASAN in the kernel log"
if grep -aE 'BUG|Oops|WARNING|soft lockup|KASAN|NETDEV WATCHDOG' "$T/g.log" >/dev/null; then
	fail "guest kernel log clean"
	grep -aE -B2 -A12 'BUG|Oops|WARNING|soft lockup|KASAN|NETDEV WATCHDOG' "$T/g.log" | head -n 30 | sed 's/^/#   /'
else
	ok "guest kernel log clean"
fi
finish
