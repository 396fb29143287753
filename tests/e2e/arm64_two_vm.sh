#!/usr/bin/env bash
# Two ARMv8 Linux images from one `xvl run` config (issue 12 item 2;
# docs/PARTITIONER.md "Device VMs", key arch), sharing nothing but one
# ivshmem-plain window, both qemu-system-aarch64 -machine virt -cpu
# cortex-a57 on TCG with Debian's cloud-arm64 kernel:
#   devvm  role = "device", arch = "aarch64": a static aarch64 xvl
#          (make build-aarch64-static; scripts/guest/device-initrd.sh --arch
#          arm64) running `xvl server --link window` on its BAR2, serving d0
#          from its own disk /dev/vda (QEMU's virtio-blk-pci on the host image);
#   drv    arch = "aarch64": xvl_virtio.ko cross-built against the arm64
#          headers (as tests/e2e/arm64_kmod.sh); d0 is its /dev/vda.
# Checked: --check; bad arch, kvm for a foreign arch and vectors refused in
# one FILE:LINE: line each; both QEMUs are qemu-system-aarch64 -machine virt
# with ivshmem-plain; a pattern written in the driver VM in mixed O_DIRECT
# sizes reads back equal there and is in the host image; xvl stop leaves no
# QEMU and no state dir; both consoles clean.  TAP.
set -u
. "$(dirname "$0")/lib.sh"
G=$E2E_ROOT/scripts/guest
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-aarch64 >/dev/null || { echo "1..0 # SKIP no qemu-system-aarch64"; exit 0; }
command -v aarch64-linux-gnu-gcc-12 >/dev/null || { echo "1..0 # SKIP no aarch64-linux-gnu-gcc-12"; exit 0; }
if ! unshare --user --map-root-user --pid --fork --mount --net true 2>/dev/null &&
	! unshare --pid --fork --mount --net true 2>/dev/null; then
	echo "1..0 # SKIP cannot create namespaces here"
	exit 0
fi
KV=$("$G/kernel.sh" --headers arm64 2>"$T/kernel.log") || { echo "1..0 # SKIP no arm64 guest kernel ($(tail -1 "$T/kernel.log"))"; exit 0; }
eval "$KV"
[ -d "${KBUILD:-}" ] || { echo "1..0 # SKIP no arm64 kernel headers"; exit 0; }

# the driver VM's module, cross-built for arm64
mkdir -p "$T/src/src"
cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
(cd "$T/src/kernel" && find . \( -name '*.o' -o -name '*.ko' -o -name '*.cmd' \) -delete; rm -rf core)
# shellcheck disable=SC2086
make -C "$KBUILD" M="$T/src/kernel" $KBUILD_ARGS -j2 modules >"$T/build.log" 2>&1 &&
	file "$T/src/kernel/xvl_virtio.ko" | grep -q 'ARM aarch64' ||
	{ fail "xvl_virtio.ko cross-builds for arm64"; tail -n 10 "$T/build.log" | sed 's/^/#   /'; finish; }
# the device VM's xvl: static, aarch64
DXVL=$E2E_ROOT/build-aarch64-static/src/cli/xvl
if [ ! -x "$DXVL" ] || [ "$DXVL" -ot "$XVL" ]; then
	make -s -C "$E2E_ROOT" build-aarch64-static >"$T/a64.log" 2>&1 ||
		{ fail "make build-aarch64-static"; tail -n 10 "$T/a64.log" | sed 's/^/#   /'; finish; }
fi
"$G/device-initrd.sh" "$T/dev.gz" --arch arm64 --xvl "$DXVL" >"$T/dev-initrd.log" 2>&1 ||
	{ fail "arm64 device VM initramfs"; tail -n 5 "$T/dev-initrd.log" | sed 's/^/#   /'; finish; }
out=$("$G/device-initrd.sh" "$T/x.gz" --arch arm64 --xvl "$XVL" 2>&1)
[ $? -ne 0 ] && echo "$out" | grep -q "is not an arm64 program" && ok "device-initrd.sh --arch arm64 refuses an amd64 xvl" ||
	fail "device-initrd.sh --arch arm64 refuses an amd64 xvl (got: $out)"

SD=$T/state
DCON=$T/dev.console DRV=$T/drv.console
part_cleanup() { [ -S "$SD/ctl.sock" ] && "$XVL" stop --state-dir "$SD" >/dev/null 2>&1; e2e_cleanup; }
trap part_cleanup EXIT

cat >"$T/driver.sh" <<'GUEST'
#!/bin/sh
echo
echo "GUEST: $(uname -m) $(uname -r)"
# the device VM boots beside us (TCG): give it time
echo 120000 >/sys/module/xvl_virtio/parameters/reconnect_ms
echo 120000 >/sys/module/xvl_virtio/parameters/io_timeout_ms
i=0
while [ ! -b /dev/vda ] && [ $i -lt 1800 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no /dev/vda"; dmesg | tail; exit 1; }
echo "GUEST: vda $(cat /sys/block/vda/size) sectors after $i polls"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/vda bs=512 count=1024 oflag=direct conv=notrunc 2>/dev/null &&
dd if=/tmp/pat of=/dev/vda bs=65536 count=24 skip=8 seek=8 oflag=direct conv=notrunc 2>/dev/null &&
dd if=/tmp/pat of=/dev/vda bs=1048576 count=2 skip=2 seek=2 oflag=direct conv=notrunc,fsync 2>/dev/null ||
	{ echo "GUEST: write failed"; exit 1; }
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=131072 count=32 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs"; exit 1; }
echo "GUEST: verified $(sha256sum /tmp/pat | cut -d' ' -f1)"
dmesg | grep -E "xvl" | tail -n 4 | sed 's/^/DMESG: /'
grep xvl_virtio /proc/interrupts | sed 's/^/IRQ: /'
rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
exit 0
GUEST
chmod +x "$T/driver.sh"
"$G/initramfs.sh" "$T/drv.gz" --arch arm64 --module virtio_ring --module virtio --module virtio_blk \
	--ko "$T/src/kernel/xvl_virtio.ko" --run "$T/driver.sh" >"$T/initramfs.log" 2>&1 ||
	{ fail "arm64 driver VM initramfs"; tail -n 5 "$T/initramfs.log" | sed 's/^/#   /'; finish; }

dd if=/dev/urandom of="$T/a.img" bs=1M count=16 2>/dev/null
cat >"$T/two.cfg" <<EOF
name = "a64vm$$";
state_dir = "$SD";
windows = ( { name = "w"; size = "64M"; } );
devices = ( { name = "d0"; backend = "file"; path = "$T/a.img"; } );
compartments = (
  { name = "devvm"; role = "device"; type = "vm"; arch = "aarch64"; devices = ["d0"];
    kernel = "$GUEST_VMLINUZ"; initrd = "$T/dev.gz"; memory = "256M"; console = "$DCON"; append = "loglevel=4"; },
  { name = "drv"; type = "vm"; arch = "aarch64"; window = "w"; connect = "devvm";
    kernel = "$GUEST_VMLINUZ"; initrd = "$T/drv.gz"; memory = "384M"; console = "$DRV"; append = "loglevel=4"; }
);
EOF
check "a config with two aarch64 VMs passes --check" "$XVL" run "$T/two.cfg" --check

bad_cfg() {
	sed "$1" "$T/two.cfg" >"$T/bad.cfg"
	local out
	out=$("$XVL" run "$T/bad.cfg" --check 2>&1)
	if [ $? -ne 0 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "^$T/bad.cfg:[0-9]*: .*$2"; then
		ok "bad aarch64 config refused in one line: $2"
	else
		fail "bad aarch64 config refused in one line: $2 (got: $out)"
	fi
}
bad_cfg '/name = "devvm"/s|arch = "aarch64"|arch = "riscv64"|' "expected x86_64 or aarch64"
bad_cfg '/name = "drv"/s|arch = "aarch64";|arch = "aarch64"; accel = "kvm";|' "runs only the host's architecture"
bad_cfg 's|backend = "file"; path|arch = "aarch64"; backend = "file"; path|' "unknown key 'arch'"

wait_in() {
	for _ in $(seq 1 "$3"); do
		grep -aq "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# One run of CFG: label L, the machine options of the device VM and the driver VM, ivshmem device.
phase() {
	local L=$1 CFG=$2 DMACH=$3 MACH=$4 IVSH=$5
	: >"$DCON"
	: >"$DRV"
	t0=$(date +%s.%N)
	secs() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
	check "$L: xvl run --detach starts both aarch64 VMs" "$XVL" run "$CFG" --detach
	wait_in "$DCON" "XVL-DEVICE: serving" 1200 && ok "$L: the aarch64 device VM serves the window ($(secs) s after xvl run)" ||
		{ fail "$L: the aarch64 device VM serves the window"; tr -d '\r' <"$DCON" | tail -n 15 | sed 's/^/#   /'; }
	J=$("$XVL" status --state-dir "$SD" --json 2>&1)
	jq_() { echo "$J" | python3 -c "import json,sys; d=json.load(sys.stdin); c={k['name']: k for k in d['compartments']}; print($1)" 2>&1; }
	for vm in devvm drv; do
		P=$(jq_ "c['$vm']['pid']")
		m=$MACH
		[ $vm = devvm ] && m=$DMACH
		tr '\0' ' ' <"/proc/$P/cmdline" 2>/dev/null |
			grep -q "^qemu-system-aarch64 -machine $m -cpu cortex-a57 -accel tcg .*console=ttyAMA0.*$IVSH" &&
			ok "$L: $vm is qemu-system-aarch64 -machine $m -cpu cortex-a57 on TCG with the window as $IVSH" ||
			fail "$L: $vm's QEMU command line (pid $P): $(tr '\0' ' ' <"/proc/$P/cmdline" 2>/dev/null | cut -c1-300)"
	done
	if wait_in "$DRV" "GUEST: verified" 1500; then
		ok "$L: the aarch64 driver VM verified /dev/vda served by the aarch64 device VM ($(secs) s after xvl run)"
	else
		fail "$L: the aarch64 driver VM verified /dev/vda served by the aarch64 device VM"
		tr -d '\r' <"$DRV" | tail -n 20 | sed 's/^/#   drv: /'
		tr -d '\r' <"$DCON" | tail -n 10 | sed 's/^/#   dev: /'
	fi
	expect_eq "$(tr -d '\r' <"$DRV" | sed -n 's/^.*GUEST: verified //p')" "$(head -c 4194304 "$T/a.img" | sha256sum | cut -d' ' -f1)" \
		"$L: the host image holds what the driver VM wrote (through the device VM's own disk)"
	tr -d '\r' <"$DRV" | grep -a "GUEST: aarch64\|DMESG" | sed 's/^/# drv: /'
	wait_in "$DRV" "GUEST: unloaded" 300 && ok "$L: driver VM: virtio_blk and xvl_virtio unloaded" ||
		fail "$L: driver VM: virtio_blk and xvl_virtio unloaded"
	# with xvl.irqstat the device VM prints its vfio-msix counts every second: one more line
	# after the driver is done, so the counts include its I/O (a short run may print none)
	if grep -q "xvl.irqstat" "$CFG"; then
		n0=$(grep -ac "XVL-IRQ:" "$DCON")
		for _ in $(seq 100); do [ "$(grep -ac "XVL-IRQ:" "$DCON")" -gt "$n0" ] && break; sleep 0.1; done
	fi
	check "$L: xvl stop" "$XVL" stop --state-dir "$SD"
	left=$(pgrep -f "$T/dev.gz"; pgrep -f "$T/drv.gz")
	[ -z "$left" ] && [ ! -e "$SD" ] && ok "$L: xvl stop: no QEMU left, state dir gone" ||
		fail "$L: xvl stop: no QEMU left, state dir gone (left: $left)"
	cat "$DRV" >>"$T/drv.all"
	cat "$DCON" >>"$T/dev.all"
}

phase plain "$T/two.cfg" virt virt ivshmem-plain
mv "$T/drv.all" "$T/drv.plain"
mv "$T/dev.all" "$T/dev.plain"
# doorbells: both VMs ivshmem-doorbell peers of the partitioner, MSI-X through the GICv3 ITS;
# the device VM's server on vfio-pci behind an emulated SMMUv3 (xvl.irqstat=1: it prints
# its vfio-msix counts)
sed -e 's/size = "64M"; }/size = "64M"; vectors = 4; }/' \
	-e '/name = "devvm"/,/},/s/append = "loglevel=4"/append = "loglevel=4 xvl.irqstat=1"/' "$T/two.cfg" >"$T/db.cfg"
phase doorbell "$T/db.cfg" "virt,gic-version=3,iommu=smmuv3" "virt,gic-version=3" "ivshmem-doorbell,chardev=xvlivsh,vectors=4"
# IRQ:  NN:  COUNT  ITS-MSI N Edge  xvl_virtio: the first is the mailbox's vector
irq() { tr -d '\r' <"$T/drv.all" | grep -a "^IRQ: .*ITS-MSI.*xvl_virtio" | awk '{ print $3 }'; }
msix=$(irq | head -n 1) msixq=$(irq | tail -n +2 | awk '{ n += $1 } END { print n + 0 }')
[ "${msix:-0}" -gt 0 ] 2>/dev/null && [ "${msixq:-0}" -gt 0 ] 2>/dev/null && ! grep -aq "polling the rings" "$T/drv.all" &&
	ok "doorbell: the driver VM took ITS MSI-X rung by the device VM: mailbox ${msix}, queues ${msixq} (no polling)" ||
	{ fail "doorbell: the driver VM took ITS MSI-X rung by the device VM (mailbox '${msix}', queues '${msixq}', polling: $(grep -ac "polling the rings" "$T/drv.all"))"
	  tr -d '\r' <"$T/drv.all" | grep -a "IRQ:\|DMESG" | sed 's/^/#   /'; }
dirq() { tr -d '\r' <"$T/dev.all" | sed -n "s/^XVL-IRQ: *[0-9]*: *\([0-9]*\) .*vfio-msix\[$1\].*/\1/p" | sort -n | tail -n 1; }
d0=$(dirq 0) d1=$(dirq 1)
grep -aq "XVL-DEVICE: serving on vfio:" "$T/dev.all" && [ "${d0:-0}" -gt 0 ] && [ "${d1:-0}" -gt 0 ] &&
	ok "doorbell: the device VM's server on vfio-pci (SMMUv3) took MSI-X rung by the driver VM: mailbox $d0, queue $d1" ||
	{ fail "doorbell: the device VM's server on vfio-pci took MSI-X (vector 0: '${d0}', vector 1: '${d1}')"
	  tr -d '\r' <"$T/dev.all" | grep -a "XVL-\|vfio" | tail -n 8 | sed 's/^/#   /'; }
cat "$T/drv.plain" >>"$T/drv.all"
cat "$T/dev.plain" >>"$T/dev.all"
DRV=$T/drv.all DCON=$T/dev.all
if grep -aE 'BUG|Oops|WARNING|soft lockup|still mapped at removal' "$DRV" "$DCON" >/dev/null; then
	fail "both aarch64 guests' consoles free of BUG|Oops|WARNING|soft lockup"
	grep -aE -A8 'BUG|Oops|WARNING|soft lockup' "$DRV" "$DCON" | head -n 20 | sed 's/^/#   /'
else
	ok "both aarch64 guests' consoles free of BUG|Oops|WARNING|soft lockup"
fi
finish
