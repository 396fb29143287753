#!/usr/bin/env bash
# A device VM serving backend = "qsd" devices (issue 12 item 1; docs/PARTITIONER.md
# "Device VMs"): Debian's qemu-storage-daemon runs INSIDE the device VM, for q0 on the
# guest's own virtio-blk disk (/dev/vda, QEMU's on the host image), for q1 on null-co,
# each exporting vhost-user-blk on a socket in the guest; the guest's `xvl server --link
# window` bridges both, the window being the ivshmem BAR2 (sysfs resource2) that each
# daemon maps from the fd the server passes in SET_MEM_TABLE.  The driver VM
# (xvl_virtio.ko, polling: ivshmem-plain) writes and reads back a pattern on q0 and
# reads zeros from q1; the host image holds the pattern; the device VM's console shows
# the server kicking both daemons for the polling driver; the host runs no qsd.  Run
# with ivshmem-plain and with ivshmem-doorbell (vectors = 4: the device VM's server
# rings the driver VM's MSI-X for qsd's completions, counted).  Also:
# a vhost-user device (a host socket) for a device VM is refused in one line.  TAP.
set -u
. "$(dirname "$0")/lib.sh"
G=$E2E_ROOT/scripts/guest
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
command -v qemu-storage-daemon >/dev/null || { echo "1..0 # SKIP no qemu-storage-daemon"; exit 0; }
if ! unshare --user --map-root-user --pid --fork --mount --net true 2>/dev/null &&
	! unshare --pid --fork --mount --net true 2>/dev/null; then
	echo "1..0 # SKIP cannot create namespaces here"
	exit 0
fi
eval "$("$G/kernel.sh" 2>"$T/kernel.log")" || { echo "1..0 # SKIP no guest kernel ($(tail -1 "$T/kernel.log"))"; exit 0; }

KO=$E2E_ROOT/kernel/xvl_virtio.ko
if [ ! -f "$KO" ] || [ -n "$(find "$E2E_ROOT/kernel" "$E2E_ROOT/src/core" -name '*.[ch]' -newer "$KO" | head -n 1)" ]; then
	KB=$("$G/kernel.sh" --headers 2>>"$T/kernel.log" | sed -n 's/^KBUILD=//p')
	[ -n "$KB" ] || { echo "1..0 # SKIP no guest kernel headers"; exit 0; }
	mkdir -p "$T/src/src"
	cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
	cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
	(cd "$T/src/kernel" && find . \( -name '*.o' -o -name '*.ko' -o -name '*.cmd' \) -delete; rm -rf core)
	make -C "$KB" M="$T/src/kernel" -j2 modules >"$T/build.log" 2>&1 || { fail "build xvl_virtio.ko"; finish; }
	KO=$T/src/kernel/xvl_virtio.ko
fi
DXVL=$E2E_ROOT/build-static/src/cli/xvl
[ -x "$DXVL" ] && [ ! "$DXVL" -ot "$XVL" ] || DXVL=$XVL
"$G/device-initrd.sh" "$T/dev.gz" --xvl "$DXVL" --qsd >"$T/dev-initrd.log" 2>&1 ||
	{ fail "device VM initramfs with qemu-storage-daemon"; sed 's/^/#   /' "$T/dev-initrd.log"; finish; }
note "device VM initramfs with qemu-storage-daemon: $(stat -c %s "$T/dev.gz") bytes"

SD=$T/state
DCON=$T/dev.console DRV=$T/drv.console
part_cleanup() { [ -S "$SD/ctl.sock" ] && "$XVL" stop --state-dir "$SD" >/dev/null 2>&1; e2e_cleanup; }
trap part_cleanup EXIT

cat >"$T/driver.sh" <<'GUEST'
#!/bin/sh
echo
# q0 (the image, 8 MiB) and q1 (null-co, 32 MiB): told apart by their size
i=0
while ! { [ -b /dev/vda ] && [ -b /dev/vdb ]; } && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vdb ] || { echo "GUEST: no /dev/vda and /dev/vdb"; dmesg | tail; exit 1; }
q0="" q1=""
for d in vda vdb; do
	case $(cat /sys/block/$d/size) in
	16384) q0=/dev/$d ;;
	65536) q1=/dev/$d ;;
	esac
done
[ -n "$q0" ] && [ -n "$q1" ] || { echo "GUEST: sizes $(cat /sys/block/vd[ab]/size)"; exit 1; }
echo "GUEST: q0 is $q0, q1 is $q1 after $i polls"
dd if=$q1 of=/tmp/z bs=65536 count=16 iflag=direct 2>/dev/null &&
	[ "$(od -An -v -tx1 /tmp/z | tr -d ' \n' | tr -d 0)" = "" ] && echo "GUEST: q1 reads 1 MiB of zeros"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=$q0 bs=4096 count=256 oflag=direct conv=notrunc 2>/dev/null &&
dd if=/tmp/pat of=$q0 bs=1048576 count=3 skip=1 seek=1 oflag=direct conv=notrunc,fsync 2>/dev/null ||
	{ echo "GUEST: write failed"; exit 1; }
dd if=$q0 of=/tmp/back bs=131072 count=32 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs"; exit 1; }
echo "GUEST: verified $(sha256sum /tmp/pat | cut -d' ' -f1)"
echo "GUEST-MSIX $(grep xvl_virtio /proc/interrupts | head -n 1 | awk '{ print $2 }')"
rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
exit 0
GUEST
chmod +x "$T/driver.sh"
"$G/initramfs.sh" "$T/drv.gz" --module virtio_ring --module virtio --module virtio_blk --ko "$KO" \
	--run "$T/driver.sh" >"$T/initramfs.log" 2>&1 || { fail "driver VM initramfs"; finish; }

dd if=/dev/urandom of="$T/q.img" bs=1M count=8 2>/dev/null
cat >"$T/qsd.cfg" <<EOF
name = "qsdvm$$";
state_dir = "$SD";
windows = ( { name = "w"; size = "64M"; } );
devices = ( { name = "q0"; backend = "qsd"; image = "$T/q.img"; },
            { name = "q1"; backend = "qsd"; size = "32M"; } );
compartments = (
  { name = "devvm"; role = "device"; type = "vm"; devices = ["q0", "q1"];
    kernel = "$GUEST_VMLINUZ"; initrd = "$T/dev.gz"; memory = "256M"; console = "$DCON"; append = "loglevel=4"; },
  { name = "drv"; type = "vm"; window = "w"; connect = "devvm";
    kernel = "$GUEST_VMLINUZ"; initrd = "$T/drv.gz"; memory = "384M"; console = "$DRV"; append = "loglevel=4"; }
);
EOF
check "a device VM with a qsd device passes --check" "$XVL" run "$T/qsd.cfg" --check
# a vhost-user device is a host socket: a device VM cannot reach it
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); import time; time.sleep(20)' "$T/v.sock" &
VS=$!
for _ in $(seq 1 50); do [ -S "$T/v.sock" ] && break; sleep 0.1; done
sed "s|{ name = \"q0\"; backend = \"qsd\"; image = \"[^\"]*\"; }|{ name = \"q0\"; backend = \"vhost-user\"; socket = \"$T/v.sock\"; }|" "$T/qsd.cfg" >"$T/bad.cfg"
out=$("$XVL" run "$T/bad.cfg" --check 2>&1)
if [ $? -ne 0 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "^$T/bad.cfg:[0-9]*: .*devvm: .*not vhost-user"; then
	ok "a vhost-user device for a device VM refused in one line"
else
	fail "a vhost-user device for a device VM refused in one line (got: $out)"
fi
kill "$VS" 2>/dev/null; wait "$VS" 2>/dev/null

wait_in() {
	for _ in $(seq 1 "$3"); do
		grep -aq "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# One run of CFG (label L): ivshmem-plain or, with vectors, ivshmem-doorbell (the device
# VM's server rings the driver's MSI-X; with qsd devices it stays on the sysfs BAR and polls).
phase() {
	local L=$1 CFG=$2
	: >"$DCON"
	: >"$DRV"
	t0=$(date +%s.%N)
	secs() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
	check "$L: xvl run --detach starts the device VM and the driver VM" "$XVL" run "$CFG" --detach
	grep -q "qemu-storage-daemon pid" "$SD/supervisor.log" 2>/dev/null &&
		fail "$L: no qemu-storage-daemon on the host for a device VM's qsd device" ||
		ok "$L: no qemu-storage-daemon on the host for a device VM's qsd device"
	DQ=$("$XVL" status --state-dir "$SD" --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print([k['pid'] for k in d['compartments'] if k['name']=='devvm'][0])" 2>/dev/null)
	DCMD=$(tr '\0' ' ' <"/proc/$DQ/cmdline" 2>/dev/null)
	echo "$DCMD" | grep -q "file=$T/q.img,if=virtio" && echo "$DCMD" | grep -q "xvl.qsd=q0,/dev/vda,on,1" &&
		echo "$DCMD" | grep -q "xvl.dev=name=q0,backend=vhost-user,path=/run/q0.qsd.sock" &&
		echo "$DCMD" | grep -q "xvl.qsd=q1,null:33554432,on,1" && [ "$(echo "$DCMD" | grep -o -- "-drive" | wc -l)" = 1 ] &&
		ok "$L: the device VM's QEMU: the image as its only disk, xvl.qsd= and a vhost-user xvl.dev= for q0 and q1 (null-co)" ||
		fail "$L: the device VM's QEMU command line (pid $DQ): $(echo "$DCMD" | cut -c1-400)"
	wait_in "$DCON" "XVL-DEVICE: qemu-storage-daemon pid .* serves /dev/vda on /run/q0.qsd.sock" 900 &&
		ok "$L: qemu-storage-daemon runs in the device VM on its /dev/vda ($(secs) s after xvl run)" ||
		{ fail "$L: qemu-storage-daemon runs in the device VM on its /dev/vda"; tr -d '\r' <"$DCON" | tail -n 15 | sed 's/^/#   /'; }
	wait_in "$DCON" "XVL-DEVICE: qemu-storage-daemon pid .* serves null:33554432 on /run/q1.qsd.sock" 100 &&
		ok "$L: a second qemu-storage-daemon in the device VM serves q1 from null-co" ||
		fail "$L: a second qemu-storage-daemon in the device VM serves q1 from null-co"
	if wait_in "$DRV" "GUEST: verified" 1200; then
		ok "$L: the driver VM verified q0 served by qsd in the device VM ($(secs) s after xvl run)"
	else
		fail "$L: the driver VM verified q0 served by qsd in the device VM"
		tr -d '\r' <"$DRV" | tail -n 20 | sed 's/^/#   drv: /'
		tr -d '\r' <"$DCON" | tail -n 20 | sed 's/^/#   dev: /'
	fi
	gsha=$(tr -d '\r' <"$DRV" | sed -n 's/^.*GUEST: verified //p')
	expect_eq "$gsha" "$(head -c 4194304 "$T/q.img" | sha256sum | cut -d' ' -f1)" \
		"$L: the host image holds what the driver VM wrote (window -> server -> qsd -> the guest's virtio-blk -> file)"
	wait_in "$DRV" "GUEST: q1 reads 1 MiB of zeros" 300 && ok "$L: the driver VM reads zeros from q1 (null-co in the device VM)" ||
		fail "$L: the driver VM reads zeros from q1 (null-co in the device VM)"
	[ "$(grep -ac "the server watches their avail index and kicks the backend" "$DCON")" = 2 ] &&
		ok "$L: the device VM's server kicks both daemons for the polling driver" ||
		{ fail "$L: the device VM's server kicks both daemons for the polling driver"; tr -d '\r' <"$DCON" | grep -a "xvl\|XVL" | tail -n 10 | sed 's/^/#   /'; }
	wait_in "$DRV" "XVL-GUEST-EXIT" 300
	tr -d '\r' <"$DRV" | grep -aqx "XVL-GUEST-EXIT 0" && grep -aq "GUEST: unloaded" "$DRV" &&
		ok "$L: driver VM: virtio_blk and xvl_virtio unloaded, its script exited 0" ||
		fail "$L: driver VM: virtio_blk and xvl_virtio unloaded, its script exited 0"
	check "$L: xvl stop" "$XVL" stop --state-dir "$SD"
	left=$(pgrep -f "$T/dev.gz"; pgrep -f "$T/drv.gz")
	[ -z "$left" ] && [ ! -e "$SD" ] && ok "$L: xvl stop: no QEMU left, state dir gone" ||
		fail "$L: xvl stop: no QEMU left, state dir gone (left: $left)"
	if grep -aE 'BUG|Oops|WARNING|soft lockup' "$DRV" "$DCON" >/dev/null; then
		fail "$L: both guests' consoles free of BUG|Oops|WARNING|soft lockup"
		grep -aE -A8 'BUG|Oops|WARNING|soft lockup' "$DRV" "$DCON" | head -n 20 | sed 's/^/#   /'
	else
		ok "$L: both guests' consoles free of BUG|Oops|WARNING|soft lockup"
	fi
	tr -d '\r' <"$DCON" | grep -a "XVL-DEVICE\|polls\|qsd\|vhost" | head -n 12 | sed 's/^/# dev: /'
	cat "$DRV" >>"$T/drv.all"
	cat "$DCON" >>"$T/dev.all"
}
phase plain "$T/qsd.cfg"
sed 's/size = "64M"; }/size = "64M"; vectors = 4; }/' "$T/qsd.cfg" >"$T/db.cfg"
phase doorbell "$T/db.cfg"
msix=$(tr -d '\r' <"$T/drv.all" | sed -n 's/^GUEST-MSIX //p' | tail -n 1)
[ "${msix:-0}" -gt 0 ] 2>/dev/null && ok "doorbell: the driver VM took ${msix} MSI-X interrupts rung by the device VM for qsd's completions" ||
	fail "doorbell: the driver VM took MSI-X interrupts rung by the device VM (got '${msix}')"
finish
