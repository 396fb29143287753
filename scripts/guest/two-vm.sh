#!/usr/bin/env bash
# scripts/guest/two-vm.sh [options]
#
# The papers' two-compartment setup as two Linux images (issue 12 item 1,
# until the partitioner's `type = "vm"` compartments can start both from one
# `xvl run` config): a device VM and a driver VM, TCG, 1 vCPU each, Debian's
# unmodified cloud kernel, sharing nothing but one ivshmem-plain window (a
# shm file; no doorbells, both sides poll).
#
#   device VM  `xvl server --link window --window <its BAR2>` serving
#              d0  backend=file on its /dev/vda (QEMU virtio-blk on --disk)
#              q0  backend=vhost-user -> qemu-storage-daemon running inside
#                  the same guest, exporting its /dev/vdb (--qsd-disk)
#   driver VM  xvl_virtio.ko + the stock virtio_blk: d0 is its /dev/vda, q0
#              its /dev/vdb; runs --run SCRIPT as its /guest.sh
#
#   --disk IMG       image served by the file backend (required)
#   --qsd-disk IMG   image served by qemu-storage-daemon in the device VM.
#                    Does not work yet: the window has no doorbells, the
#                    driver's module polls the rings, and the xvl server
#                    refuses poll mode for a vhost-user backend (qsd waits
#                    for kicks; the server has no poll-to-kick relay), so
#                    that device's queue stays unopened and its I/O times out
#   --ko KO          xvl_virtio.ko built for the guest kernel (required)
#   --run SCRIPT     the driver VM's script (required); its exit status is ours
#   --bin PATH       more host programs for the driver VM (repeatable)
#   --xvl BIN        the xvl binary for the device VM (default build/src/cli/xvl)
#   --dir DIR        work directory: window, initramfs images, logs
#                    (device.log, driver.log); default a new one under /tmp
#   --timeout S      driver VM's timeout (default 180)
#
# Exit status: the driver VM's (scripts/guest/run.sh); the device VM is
# stopped when the driver VM ends.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
disk="" qdisk="" ko="" run="" xvl=$root/build/src/cli/xvl dir="" timeout=180 bins=()
while [ $# -gt 0 ]; do
	case $1 in
	--disk) disk=$2; shift 2 ;;
	--qsd-disk) qdisk=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--run) run=$2; shift 2 ;;
	--bin) bins+=(--bin "$2"); shift 2 ;;
	--xvl) xvl=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	*) echo "two-vm.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ -n "$disk" ] && [ -n "$ko" ] && [ -n "$run" ] || { echo "usage: two-vm.sh --disk IMG --ko KO --run SCRIPT [...]" >&2; exit 2; }
[ -n "$dir" ] || dir=$(mktemp -d /tmp/xvl-two-vm.XXXXXX)
mkdir -p "$dir"

cat >"$dir/device.sh" <<DEV
#!/bin/sh
bar=""
for d in /sys/bus/pci/devices/*; do
	[ "\$(cat "\$d/vendor")" = 0x1af4 ] && [ "\$(cat "\$d/device")" = 0x1110 ] && bar=\$d/resource2
done
[ -n "\$bar" ] || { echo "DEVICE: no ivshmem device"; exit 1; }
# no firmware on aarch64 virt: memory decoding off until enabled
echo 1 >"\${bar%/resource2}/enable" 2>/dev/null
i=0; while [ ! -b /dev/vda ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i+1)); done
set -- -d name=d0,backend=file,path=/dev/vda
if [ -n "$qdisk" ]; then
	while [ ! -b /dev/vdb ] && [ \$i -lt 200 ]; do sleep 0.1; i=\$((i+1)); done
	qemu-storage-daemon --blockdev driver=host_device,node-name=n0,filename=/dev/vdb \\
		--export type=vhost-user-blk,id=vu0,node-name=n0,addr.type=unix,addr.path=/tmp/qsd.sock,writable=on \\
		>/tmp/qsd.log 2>&1 &
	i=0; while [ ! -S /tmp/qsd.sock ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i+1)); done
	[ -S /tmp/qsd.sock ] || { echo "DEVICE: qemu-storage-daemon did not start"; cat /tmp/qsd.log; exit 1; }
	set -- "\$@" -d name=q0,backend=vhost-user,path=/tmp/qsd.sock
fi
echo "DEVICE: serving on \$bar: \$*"
exec xvl server --link window --window \$bar "\$@"
DEV
chmod +x "$dir/device.sh"
dbins=(--bin "$xvl:/bin/xvl")
[ -n "$qdisk" ] && dbins+=(--bin "$(command -v qemu-storage-daemon)")
"$here/initramfs.sh" "$dir/device.gz" --module virtio_ring --module virtio --module virtio_pci \
	--module virtio_blk "${dbins[@]}" --run "$dir/device.sh" >"$dir/device.mk.log" 2>&1 ||
	{ echo "two-vm.sh: device initramfs: $(tail -1 "$dir/device.mk.log")" >&2; exit 1; }
"$here/initramfs.sh" "$dir/driver.gz" --module virtio_ring --module virtio --module virtio_blk \
	--ko "$ko" "${bins[@]}" --run "$run" >"$dir/driver.mk.log" 2>&1 ||
	{ echo "two-vm.sh: driver initramfs: $(tail -1 "$dir/driver.mk.log")" >&2; exit 1; }

truncate -s 64M "$dir/window"
win=(-object memory-backend-file,id=w,share=on,mem-path="$dir/window",size=64M -device ivshmem-plain,memdev=w)
drives=(-drive file="$disk",if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0)
[ -n "$qdisk" ] && drives+=(-drive file="$qdisk",if=none,id=d1,format=raw -device virtio-blk-pci,drive=d1)
setsid "$here/run.sh" --timeout $((timeout + 120)) --log "$dir/device.log" "$dir/device.gz" "${win[@]}" "${drives[@]}" &
dev=$!
stop_device() {
	# run.sh, timeout(1) and QEMU: the session setsid made
	pkill -TERM -s "$dev" 2>/dev/null
	wait "$dev" 2>/dev/null
}
trap stop_device EXIT
for _ in $(seq 1 900); do
	[ -f "$dir/device.log" ] && tr -d "\r" <"$dir/device.log" | grep -q "DEVICE: serving" && break
	kill -0 "$dev" 2>/dev/null || break
	sleep 0.1
done
if ! tr -d '\r' <"$dir/device.log" 2>/dev/null | grep -q 'DEVICE: serving'; then
	echo "two-vm.sh: the device VM did not start serving:" >&2
	tr -d '\r' <"$dir/device.log" | tail -n 15 >&2
	exit 1
fi
"$here/run.sh" --timeout "$timeout" --log "$dir/driver.log" "$dir/driver.gz" "${win[@]}"
