#!/usr/bin/env bash
# xvl_virtio.ko on ARMv8 (issue 12, item 2): the module cross-built for
# arm64 against Debian's linux-headers-*-cloud-arm64, unpacked rather than
# installed (scripts/guest/kernel.sh --headers arm64: its kbuild tools are
# the host's amd64 linux-kbuild of the same version; ARCH=arm64
# CROSS_COMPILE=aarch64-linux-gnu-), loaded in a TCG `qemu-system-aarch64
# -M virt -cpu cortex-a57` guest running Debian's unmodified cloud-arm64
# kernel, on an ivshmem-plain window served by a plain `xvl server --link
# window` on the host (both sides poll).  The stock virtio_blk binds,
# /dev/vda gets a 4 MiB pattern in mixed O_DIRECT request sizes that reads
# back equal in the guest and is in the host's disk image; the module unloads.
# TAP.
set -u
. "$(dirname "$0")/lib.sh"
G=$E2E_ROOT/scripts/guest

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-aarch64 >/dev/null || { echo "1..0 # SKIP no qemu-system-aarch64"; exit 0; }
command -v aarch64-linux-gnu-gcc-12 >/dev/null || { echo "1..0 # SKIP no aarch64-linux-gnu-gcc-12"; exit 0; }
KV=$("$G/kernel.sh" --headers arm64 2>"$T/kernel.log") || { echo "1..0 # SKIP no arm64 guest kernel ($(tail -1 "$T/kernel.log"))"; exit 0; }
eval "$KV"
[ -d "${KBUILD:-}" ] || { echo "1..0 # SKIP no arm64 kernel headers"; exit 0; }

mkdir -p "$T/src/src"
cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
(cd "$T/src/kernel" && find . -name '*.o' -o -name '*.ko' -o -name '*.cmd' | xargs rm -f; rm -rf core)
# shellcheck disable=SC2086
if make -C "$KBUILD" M="$T/src/kernel" $KBUILD_ARGS W=1 -j2 modules >"$T/build.log" 2>&1 &&
	file "$T/src/kernel/xvl_virtio.ko" | grep -q 'ARM aarch64'; then
	if grep -E 'warning:|error:' "$T/build.log" >/dev/null; then
		fail "xvl_virtio.ko cross-built for arm64 with W=1 without warnings"
		grep -E 'warning:|error:' "$T/build.log" | head -n 10 | sed 's/^/#   /'
	else
		ok "xvl_virtio.ko cross-built for arm64 ($GUEST_KVER) with W=1 without warnings"
	fi
else
	fail "xvl_virtio.ko cross-builds for arm64"
	tail -n 15 "$T/build.log" | sed 's/^/#   /'
	finish
fi

cat >"$T/verify.sh" <<'GUEST'
#!/bin/sh
trap 'dmesg | grep -i -E "xvl|virtio|BUG|Oops|WARNING" | sed "s/^/DMESG: /"' EXIT
echo "GUEST: $(uname -m) $(uname -r)"
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no /dev/vda"; exit 1; }
echo "GUEST: vda $(cat /sys/block/vda/size) sectors"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
K=524288
put() {
	dd if=/tmp/pat of=/dev/vda bs=$3 count=$(($2 / $3)) skip=$(($1 / $3)) seek=$(($1 / $3)) \
		oflag=direct conv=notrunc 2>/dev/null || { echo "GUEST: write at $1 failed"; exit 1; }
}
put 0 $K 512
put $K $K 4096
put $((2 * K)) $((2 * K)) 131072
put $((4 * K)) $((4 * K)) 1048576
sync
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=65536 count=64 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs"; exit 1; }
echo "GUEST: readback equal"
echo "GUEST-SHA $(sha256sum /tmp/pat | cut -d' ' -f1)"
rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
exit 0
GUEST
chmod +x "$T/verify.sh"
if ! "$G/initramfs.sh" "$T/initrd" --arch arm64 --module virtio_ring --module virtio --module virtio_blk \
	--ko "$T/src/kernel/xvl_virtio.ko" --run "$T/verify.sh" >"$T/initrd.log" 2>&1; then
	fail "arm64 initramfs with the module"
	tail -n 5 "$T/initrd.log" | sed 's/^/#   /'
	finish
fi
truncate -s 64M "$T/win" "$T/disk.img"
bg "$T/srv.log" "$XVL" server --link window --window "$T/win" --dev name=d0,backend=file,path="$T/disk.img"
S=$BG_PID
"$G/run.sh" --arch arm64 --timeout 150 --log "$T/guest.log" "$T/initrd" \
	-object memory-backend-file,id=w,share=on,mem-path="$T/win",size=64M -device ivshmem-plain,memdev=w
rc=$?
if [ $rc = 0 ] && grep -aq "GUEST: readback equal" "$T/guest.log" && grep -aq "GUEST: unloaded" "$T/guest.log"; then
	ok "aarch64 guest (cortex-a57, $GUEST_KVER): virtio_blk on xvl_virtio.ko, /dev/vda verified, module unloaded"
else
	fail "aarch64 guest: /dev/vda on xvl_virtio.ko verified (guest $rc)"
	tr -d '\r' <"$T/guest.log" | grep -av '^\s*$' | tail -n 30 | sed 's/^/#   /'
	tail -n 5 "$T/srv.log" | sed 's/^/#   srv: /'
fi
stop_server "$S" >/dev/null 2>&1
expect_eq "$(tr -d '\r' <"$T/guest.log" | sed -n 's/^GUEST-SHA //p')" "$(head -c 4194304 "$T/disk.img" | sha256sum | cut -d' ' -f1)" \
	"aarch64 guest: the host's disk image holds what the guest wrote"
if grep -aE 'BUG|Oops|WARNING|soft lockup|still mapped at removal' "$T/guest.log" >/dev/null; then
	fail "aarch64 guest kernel log clean"
	grep -aE -A8 'BUG|Oops|WARNING' "$T/guest.log" | head -n 20 | sed 's/^/#   /'
else
	ok "aarch64 guest kernel log clean"
fi
finish
