#!/usr/bin/env bash
# Two Linux images from one `xvl run` config (issue 12 item 1;
# docs/PARTITIONER.md "Device VMs"), sharing nothing but one ivshmem window:
#   devvm  role = "device", type = "vm": Debian's cloud kernel, a static xvl
#          (scripts/guest/device-initrd.sh) running `xvl server --link
#          window` on its BAR2, serving d0 (backend file) from its own disk
#          /dev/vda, which is QEMU's virtio-blk on the host image;
#   drv    type = "vm": Debian's cloud kernel + xvl_virtio.ko; d0 is its
#          /dev/vda (stock virtio_blk).
# Checked: --check, three bad configs (one FILE:LINE: KEY: line each);
# xvl status --json shows both VMs; a pattern written in the driver VM in
# mixed O_DIRECT sizes reads back equal there and is in the host image
# (driver VM -> window -> device VM's xvl server -> its virtio-blk -> QEMU
# -> file), once on ivshmem-plain (both poll) and once with vectors = 4
# (MSI-X both ways: the device VM's server on vfio-pci, interrupts counted
# in both guests); the device VM's QEMU killed with SIGKILL under the driver's
# writes: the partitioner starts it again on the same window, the driver's
# module resumes (requests held and submitted again), no write fails, the
# readback is equal; xvl stop leaves no QEMU and no state dir; consoles
# clean.  TAP.
set -u
. "$(dirname "$0")/lib.sh"
G=$E2E_ROOT/scripts/guest
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
if ! unshare --user --map-root-user --pid --fork --mount --net true 2>/dev/null &&
	! unshare --pid --fork --mount --net true 2>/dev/null; then
	echo "1..0 # SKIP cannot create namespaces here"
	exit 0
fi
eval "$("$G/kernel.sh" 2>"$T/kernel.log")" || { echo "1..0 # SKIP no guest kernel ($(tail -1 "$T/kernel.log"))"; exit 0; }

# The module: kernel/xvl_virtio.ko when it is newer than its sources, else a private build.
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
# The device VM's xvl: the static build when there is one (make build-static), else this one
# with its libraries.
DXVL=$E2E_ROOT/build-static/src/cli/xvl
[ -x "$DXVL" ] && [ ! "$DXVL" -ot "$XVL" ] || DXVL=$XVL
"$G/device-initrd.sh" "$T/dev.gz" --xvl "$DXVL" >"$T/dev-initrd.log" 2>&1 || { fail "device VM initramfs"; finish; }
note "device VM's xvl: $DXVL ($(file -b "$DXVL" | grep -o 'statically linked\|dynamically linked'))"

SD=$T/state
DCON=$T/dev.console DRV=$T/drv.console
part_cleanup() { [ -S "$SD/ctl.sock" ] && "$XVL" stop --state-dir "$SD" >/dev/null 2>&1; e2e_cleanup; }
trap part_cleanup EXIT

cat >"$T/driver.sh" <<'GUEST'
#!/bin/sh
echo
# the device VM boots beside us and is killed and booted again: hold requests long enough
echo 60000 >/sys/module/xvl_virtio/parameters/reconnect_ms
echo 60000 >/sys/module/xvl_virtio/parameters/io_timeout_ms
i=0
while [ ! -b /dev/vda ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no /dev/vda"; dmesg | tail; exit 1; }
echo "GUEST: vda $(cat /sys/block/vda/size) sectors after $i polls"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/vda bs=512 count=1024 oflag=direct conv=notrunc 2>/dev/null &&
dd if=/tmp/pat of=/dev/vda bs=65536 count=24 skip=8 seek=8 oflag=direct conv=notrunc 2>/dev/null &&
dd if=/tmp/pat of=/dev/vda bs=1048576 count=2 skip=2 seek=2 oflag=direct conv=notrunc,fsync 2>/dev/null ||
	{ echo "GUEST: write failed"; exit 1; }
dd if=/dev/vda of=/tmp/back bs=131072 count=32 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs"; exit 1; }
echo "GUEST: verified $(sha256sum /tmp/pat | cut -d' ' -f1)"
# the host kills the device VM while these writes run; write on until the module has
# set the device up again on the restarted one (and a little after), at most 90 s
echo "GUEST: writing"
t0=$(date +%s) r=0 after=0
while [ $(( $(date +%s) - t0 )) -lt 90 ] && [ $after -lt 3 ]; do
	dd if=/tmp/pat of=/dev/vda bs=65536 oflag=direct conv=notrunc 2>/dev/null ||
		{ echo "GUEST: write failed during the restart"; exit 1; }
	r=$((r+1))
	dmesg | grep -qE "set up again after a restart|requests resubmitted|submitted again" && after=$((after+1))
done
dd if=/dev/vda of=/tmp/back bs=65536 count=64 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs after the restart"; exit 1; }
echo "GUEST: $r rounds written across the restart in $(( $(date +%s) - t0 )) s, readback equal"
dmesg | grep -E "xvl" | tail -n 6 | sed 's/^/DMESG: /'
[ $after -gt 0 ] && echo "GUEST: the module resumed on the restarted device VM"
echo "GUEST-MSIX $(grep xvl_virtio /proc/interrupts | head -n 1 | awk '{ print $2 }')"
echo "GUEST-MSIX-Q $(grep xvl_virtio /proc/interrupts | tail -n +2 | awk '{ n += $2 } END { print n + 0 }')"
dmesg | grep -q "polling the rings" && echo "GUEST: the module polls"
rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
exit 0
GUEST
chmod +x "$T/driver.sh"
"$G/initramfs.sh" "$T/drv.gz" --module virtio_ring --module virtio --module virtio_blk --ko "$KO" \
	--run "$T/driver.sh" >"$T/initramfs.log" 2>&1 || { fail "driver VM initramfs"; finish; }

dd if=/dev/urandom of="$T/a.img" bs=1M count=16 2>/dev/null
cat >"$T/two.cfg" <<EOF
name = "twovm$$";
state_dir = "$SD";
windows = ( { name = "w"; size = "64M"; } );
devices = ( { name = "d0"; backend = "file"; path = "$T/a.img"; } );
compartments = (
  { name = "devvm"; role = "device"; type = "vm"; devices = ["d0"];
    kernel = "$GUEST_VMLINUZ"; initrd = "$T/dev.gz"; memory = "256M"; console = "$DCON"; append = "loglevel=4"; },
  { name = "drv"; type = "vm"; window = "w"; connect = "devvm";
    kernel = "$GUEST_VMLINUZ"; initrd = "$T/drv.gz"; memory = "512M"; console = "$DRV"; append = "loglevel=4"; }
);
EOF
check "a config with a device VM and a driver VM passes --check" "$XVL" run "$T/two.cfg" --check

bad_cfg() {
	sed "$1" "$T/two.cfg" >"$T/bad.cfg"
	local out
	out=$("$XVL" run "$T/bad.cfg" --check 2>&1)
	if [ $? -ne 0 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "^$T/bad.cfg:[0-9]*: .*$2"; then
		ok "bad two-VM config refused in one line: $2"
	else
		fail "bad two-VM config refused in one line: $2 (got: $out)"
	fi
}
# a process driver on its socket cannot reach a device VM; a device VM nobody connects to
bad_cfg 's|{ name = "drv"; type = "vm";|{ name = "drv"; role = "driver"; program = ["true"]; memory = "1M";|; s|kernel = "[^"]*"; initrd = "[^"]*drv.gz"; memory = "512M"; console = "[^"]*"; append = "loglevel=4"; }|}|' "has no socket"
bad_cfg 's|connect = "devvm";|connect = "devvm"; link = "socket";|' "link = .window"
bad_cfg 's|window = "w"; connect = "devvm";|window = "w"; connect = "devvm"; link = "window";|; s|devices = \["d0"\];|devices = ["d0"]; link = "window";|' "belongs to the driver"

# One run of CFG: label L, QEMU's ivshmem device DEVARG, transport words TRANSPORT in status.
phase() {
	local L=$1 CFG=$2 DEVARG=$3 TRANSPORT=$4
	: >"$DCON"
	: >"$DRV"
	t0=$(date +%s.%N)
	check "$L: xvl run --detach starts the device VM and the driver VM" "$XVL" run "$CFG" --detach
	wait_in() {
		for _ in $(seq 1 "$3"); do
			grep -aq "$2" "$1" 2>/dev/null && return 0
			sleep 0.1
		done
		return 1
	}
	secs() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
	wait_in "$DCON" "XVL-DEVICE: serving" 900 && ok "$L: the device VM serves the window ($(secs) s after xvl run)" ||
		{ fail "$L: the device VM serves the window"; tr -d '\r' <"$DCON" | tail -n 15 | sed 's/^/#   /'; }
	if wait_in "$DRV" "GUEST: verified" 1200; then
		ok "$L: the driver VM verified /dev/vda served by the device VM ($(secs) s after xvl run)"
	else
		fail "$L: the driver VM verified /dev/vda served by the device VM"
		tr -d '\r' <"$DRV" | tail -n 20 | sed 's/^/#   drv: /'
		tr -d '\r' <"$DCON" | tail -n 10 | sed 's/^/#   dev: /'
	fi
	gsha=$(tr -d '\r' <"$DRV" | sed -n 's/^.*GUEST: verified //p')
	expect_eq "$gsha" "$(head -c 4194304 "$T/a.img" | sha256sum | cut -d' ' -f1)" \
		"$L: the host image holds what the driver VM wrote (through the device VM's own disk)"

	J=$("$XVL" status --state-dir "$SD" --json 2>&1)
	J0=$J
	jq_() { echo "$J" | python3 -c "import json,sys; d=json.load(sys.stdin); c={k['name']: k for k in d['compartments']}; print($1)" 2>&1; }
	expect_eq "device vm running driver vm running" \
		"$(jq_ "c['devvm']['role'], c['devvm']['type'], c['devvm']['state'], c['drv']['role'], c['drv']['type'], c['drv']['state']")" \
		"$L: xvl status --json: both VMs (role, type, state)"
	"$XVL" status --state-dir "$SD" >"$T/status.txt" 2>&1
	[ "$(grep -c "vm: tcg" "$T/status.txt")" = 2 ] && ok "$L: xvl status: both VMs shown" ||
		{ fail "$L: xvl status: both VMs shown"; sed 's/^/#   /' "$T/status.txt"; }
	DQ=$(jq_ "c['devvm']['pid']")
	tr '\0' ' ' <"/proc/$DQ/cmdline" 2>/dev/null | grep -q "$DEVARG.*file=$T/a.img,if=virtio.*" &&
		tr '\0' ' ' <"/proc/$DQ/cmdline" | grep -q "xvl.dev=name=d0,backend=file,path=/dev/vda" &&
		ok "$L: the device VM is QEMU with the window as $DEVARG, the image as its disk, d0 on its command line" ||
		fail "$L: the device VM's QEMU command line (pid $DQ): $(tr '\0' ' ' <"/proc/$DQ/cmdline" 2>/dev/null | cut -c1-300)"

	if wait_in "$DRV" "GUEST: writing" 100; then
		sleep 1
		kill -KILL "$DQ"
	fi
	if wait_in "$DRV" "across the restart.*readback equal" 1200; then
		ok "$L: device VM QEMU kill -9 under the driver's writes: restarted, no write failed, readback equal"
	else
		fail "$L: device VM QEMU kill -9 under the driver's writes: restarted, no write failed, readback equal"
		tr -d '\r' <"$DRV" | grep -a "GUEST\|DMESG" | tail -n 8 | sed 's/^/#   /'
	fi
	wait_in "$DRV" "GUEST: the module resumed" 50 && ok "$L: the driver VM's module resumed on the restarted device VM" ||
		{ fail "$L: the driver VM's module resumed on the restarted device VM"; tr -d '\r' <"$DRV" | grep -a DMESG | sed 's/^/#   /'; }
	note "$(tr -d '\r' <"$DRV" | sed -n 's/^.*GUEST: \(.*rounds.*\)/\1/p')"
	tr -d '\r' <"$DRV" | grep -a "DMESG" | sed 's/^DMESG: /# drv dmesg: /'
	[ "$(grep -ac "XVL-DEVICE: serving" "$DCON")" = 2 ] && grep -q "device side devvm restarted (#1)" "$SD/supervisor.log" &&
		ok "$L: the partitioner booted the device VM again (its console holds both boots)" ||
		{ fail "$L: the partitioner booted the device VM again (its console holds both boots)"; grep devvm "$SD/supervisor.log" | sed 's/^/#   /'; }
	grep -h "devvm" "$SD/supervisor.log" | grep -v "^\[" | sed 's/^/# /'

	st=""
	for _ in $(seq 1 300); do
		J=$("$XVL" status --state-dir "$SD" --json 2>&1)
		st=$(jq_ "c['drv']['state'], c['drv']['last_exit'], c['devvm']['state'], c['devvm']['restarts'], c['devvm']['pid'] != $DQ")
		case $st in exited*) break ;; esac
		sleep 0.1
	done
	expect_eq "exited exited with status 0 running 1 True" "$st" \
		"$L: the driver VM powered off with status 0; the device VM restarted once, a new QEMU, still running"
	tr -d '\r' <"$DRV" | grep -aqx "XVL-GUEST-EXIT 0" && grep -aq "GUEST: unloaded" "$DRV" &&
		ok "$L: driver VM: virtio_blk and xvl_virtio unloaded, its script exited 0" ||
		fail "$L: driver VM: virtio_blk and xvl_virtio unloaded, its script exited 0"

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
	expect_eq "$TRANSPORT" "$(echo "$J0" | python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join(c['vm']['transport'].split()[0] for c in d['compartments']))" 2>&1)" \
		"$L: xvl status --json: both VMs' transport"
	cat "$DRV" >>"$T/drv.all"
	cat "$DCON" >>"$T/dev.all"
}

phase plain "$T/two.cfg" ivshmem-plain "ivshmem-plain ivshmem-plain"
# doorbells: the partitioner is the ivshmem server of the window; both VMs take MSI-X: the
# device VM's server on vfio-pci (emulated intel-iommu) rings the driver VM through BAR0 and
# is rung by the driver's module (xvl.irqstat=1: the device VM prints its vfio-msix counts)
sed -e 's/size = "64M"; }/size = "64M"; vectors = 4; }/' \
	-e '/name = "devvm"/,/},/s/append = "loglevel=4"/append = "loglevel=4 xvl.irqstat=1"/' "$T/two.cfg" >"$T/db.cfg"
mv "$T/drv.all" "$T/drv.plain"
mv "$T/dev.all" "$T/dev.plain"
phase doorbell "$T/db.cfg" "intel-iommu,intremap=on.*ivshmem-doorbell" "ivshmem-doorbell ivshmem-doorbell"
msix=$(tr -d '\r' <"$T/drv.all" | sed -n 's/^GUEST-MSIX //p' | tail -n 1)
msixq=$(tr -d '\r' <"$T/drv.all" | sed -n 's/^GUEST-MSIX-Q //p' | tail -n 1)
[ "${msix:-0}" -gt 0 ] 2>/dev/null && [ "${msixq:-0}" -gt 0 ] 2>/dev/null &&
	! grep -aq "GUEST: the module polls" "$T/drv.all" &&
	ok "doorbell: the driver VM took MSI-X rung by the device VM: mailbox ${msix}, queues ${msixq} (no polling)" ||
	fail "doorbell: the driver VM took MSI-X rung by the device VM (mailbox '${msix}', queues '${msixq}', polling: $(grep -ac "module polls" "$T/drv.all"))"
# XVL-IRQ:  NN:  COUNT  ...  vfio-msix[V](BDF): the largest count of vector V over both boots
dirq() { tr -d '\r' <"$T/dev.all" | sed -n "s/^XVL-IRQ: *[0-9]*: *\([0-9]*\) .*vfio-msix\[$1\].*/\1/p" | sort -n | tail -n 1; }
d0=$(dirq 0) d1=$(dirq 1)
[ "$(grep -ac "XVL-DEVICE: serving on vfio:" "$T/dev.all")" = 2 ] && [ "${d0:-0}" -gt 0 ] && [ "${d1:-0}" -gt 0 ] &&
	ok "doorbell: the device VM's server on vfio-pci (both boots) took MSI-X rung by the driver VM: mailbox $d0, queue $d1" ||
	{ fail "doorbell: the device VM's server on vfio-pci took MSI-X (vector 0: '${d0}', vector 1: '${d1}')"
	  tr -d '\r' <"$T/dev.all" | grep -a "XVL-\|vfio" | tail -n 8 | sed 's/^/#   /'; }
cat "$T/drv.plain" >>"$T/drv.all"
cat "$T/dev.plain" >>"$T/dev.all"
DRV=$T/drv.all DCON=$T/dev.all
if grep -aE 'BUG|Oops|WARNING|soft lockup' "$DRV" "$DCON" >/dev/null; then
	fail "both guests' consoles free of BUG|Oops|WARNING|soft lockup"
	grep -aE -A8 'BUG|Oops|WARNING|soft lockup' "$DRV" "$DCON" | head -n 20 | sed 's/^/#   /'
else
	ok "both guests' consoles free of BUG|Oops|WARNING|soft lockup"
fi
finish
