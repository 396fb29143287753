#!/usr/bin/env bash
# Two Linux images sharing only one ivshmem window (issue 12 item 1, through
# scripts/guest/two-vm.sh): the device VM runs `xvl server` in its user
# space serving its /dev/vda (QEMU virtio-blk on a host image) with the file
# backend; the driver VM runs Debian's kernel + xvl_virtio.ko and sees it as
# /dev/vda.  In the driver VM: a pattern written in mixed O_DIRECT sizes
# reads back equal; on the host, after the driver's fsync (a FLUSH that
# becomes an fsync of the device VM's /dev/vda), the image holds it (the data
# went driver VM -> window -> device VM's xvl server -> its virtio-blk ->
# QEMU -> file).  (qemu-storage-daemon inside the device VM, --qsd-disk,
# does not work on this doorbell-less window: see two-vm.sh.)
# TAP.
set -u
. "$(dirname "$0")/lib.sh"
G=$E2E_ROOT/scripts/guest
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
command -v qemu-storage-daemon >/dev/null || { echo "1..0 # SKIP no qemu-storage-daemon"; exit 0; }
KB=$("$G/kernel.sh" --headers 2>"$T/kernel.log" | sed -n 's/^KBUILD=//p')
[ -n "$KB" ] && [ -d "$KB" ] || { echo "1..0 # SKIP no guest kernel headers"; exit 0; }

mkdir -p "$T/src/src"
cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
(cd "$T/src/kernel" && find . -name '*.o' -o -name '*.ko' -o -name '*.cmd' | xargs rm -f; rm -rf core)
make -C "$KB" M="$T/src/kernel" -j2 modules >"$T/build.log" 2>&1 && [ -f "$T/src/kernel/xvl_virtio.ko" ] ||
	{ fail "xvl_virtio.ko builds"; tail -n 10 "$T/build.log" | sed 's/^/#   /'; finish; }

cat >"$T/driver.sh" <<'GUEST'
#!/bin/sh
trap 'dmesg | grep -E "xvl|BUG|Oops|WARNING" | sed "s/^/DMESG: /"' EXIT
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no vda"; exit 1; }
echo "GUEST: vda $(cat /sys/block/vda/size) sectors after $i polls"
dd if=/dev/urandom of=/tmp/pat bs=1M count=2 2>/dev/null
for d in vda; do
	dd if=/tmp/pat of=/dev/$d bs=512 count=1024 oflag=direct conv=notrunc 2>/dev/null &&
	dd if=/tmp/pat of=/dev/$d bs=65536 count=8 skip=8 seek=8 oflag=direct conv=notrunc 2>/dev/null &&
	dd if=/tmp/pat of=/dev/$d bs=1048576 count=1 skip=1 seek=1 oflag=direct conv=notrunc,fsync 2>/dev/null ||
		{ echo "GUEST: write to $d failed"; exit 1; }
	dd if=/dev/$d of=/tmp/back bs=131072 count=16 iflag=direct 2>/dev/null || { echo "GUEST: read $d failed"; exit 1; }
	cmp /tmp/pat /tmp/back && echo "GUEST: $d readback equal" || exit 1
done
echo "GUEST-SHA $(sha256sum /tmp/pat | cut -d' ' -f1)"
rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
exit 0
GUEST
chmod +x "$T/driver.sh"
dd if=/dev/urandom of="$T/a.img" bs=1M count=16 2>/dev/null
"$G/two-vm.sh" --disk "$T/a.img" --ko "$T/src/kernel/xvl_virtio.ko" \
	--run "$T/driver.sh" --xvl "$XVL" --dir "$T/vms" --timeout 150 2>"$T/two-vm.err"
rc=$?
if [ $rc = 0 ] && grep -aq "GUEST: vda readback equal" "$T/vms/driver.log"; then
	ok "two VMs on one window: the driver VM's /dev/vda, served by xvl server in the device VM, verified"
else
	fail "two VMs on one window: driver VM verifies vda and vdb (exit $rc)"
	cat "$T/two-vm.err" | sed 's/^/#   /'
	tr -d '\r' <"$T/vms/driver.log" 2>/dev/null | grep -av '^\s*$' | tail -n 20 | sed 's/^/#   drv: /'
	tr -d '\r' <"$T/vms/device.log" 2>/dev/null | grep -av '^\s*$' | tail -n 10 | sed 's/^/#   dev: /'
fi
sha=$(tr -d '\r' <"$T/vms/driver.log" 2>/dev/null | sed -n 's/^GUEST-SHA //p')
expect_eq "$sha" "$(head -c 2097152 "$T/a.img" | sha256sum | cut -d' ' -f1)" "the file backend's image on the host holds the pattern"
grep -aq "GUEST: unloaded" "$T/vms/driver.log" && ok "driver VM: virtio_blk and xvl_virtio unload" ||
	fail "driver VM: virtio_blk and xvl_virtio unload"
if grep -aE 'BUG|Oops|WARNING|soft lockup' "$T/vms/driver.log" "$T/vms/device.log" >/dev/null; then
	fail "both guests' kernel logs clean"
else
	ok "both guests' kernel logs clean"
fi
finish
