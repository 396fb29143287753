#!/usr/bin/env bash
# scripts/guest/two-vm.sh [options]
#
# The papers' two-compartment setup as two Linux images started from one
# `xvl run` config (issue 12; docs/PARTITIONER.md "Device VMs"): a device VM
# and a driver VM, TCG, 1 vCPU each, Debian's unmodified cloud kernel,
# sharing nothing but one ivshmem-plain window the partitioner made (no
# doorbells yet: both sides poll).
#
#   device VM  role = "device", type = "vm": a static xvl
#              (scripts/guest/device-initrd.sh) runs `xvl server --link
#              window` on its BAR2 serving d0 (backend file) from its own
#              /dev/vda, QEMU's virtio-blk on --disk
#   driver VM  type = "vm": xvl_virtio.ko + the stock virtio_blk: d0 is its
#              /dev/vda; runs --run SCRIPT as its /guest.sh
#
#   --disk IMG       image served by the device VM (required)
#   --ko KO          xvl_virtio.ko built for the guest kernel (required)
#   --run SCRIPT     the driver VM's script (required); its exit status is ours
#   --bin PATH       more host programs for the driver VM (repeatable)
#   --xvl BIN        the xvl that runs the partitioner (default build/src/cli/xvl)
#   --device-xvl BIN the xvl shipped in the device VM (default: device-initrd.sh's,
#                    the static build)
#   --dir DIR        work directory: config (two-vm.cfg), initramfs images,
#                    consoles (device.log, driver.log), state; default a new
#                    one under /tmp
#   --timeout S      the whole run's timeout (default 180)
#   --vectors N      doorbells: the window gets vectors = N (ivshmem-doorbell, the
#                    partitioner the ivshmem server; default 0, ivshmem-plain)
#   --print-config   write the config and the images, print the config, do not run
#
# The partitioner supervises both: a device VM that dies is booted again on
# the same window and the driver's module resumes; the instance stops when
# the driver VM powers off (exit_with_drivers).  Exit status: the driver
# VM's script's ("XVL-GUEST-EXIT N" on its console); 124 on timeout.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
disk="" ko="" run="" xvl=$root/build/src/cli/xvl dxvl=() dir="" timeout=180 bins=() print=0 vectors=0
while [ $# -gt 0 ]; do
	case $1 in
	--disk) disk=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--run) run=$2; shift 2 ;;
	--bin) bins+=(--bin "$2"); shift 2 ;;
	--xvl) xvl=$2; shift 2 ;;
	--device-xvl) dxvl=(--xvl "$2"); shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--vectors) vectors=$2; shift 2 ;;
	--print-config) print=1; shift ;;
	*) echo "two-vm.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ -n "$disk" ] && [ -n "$ko" ] && [ -n "$run" ] || { echo "usage: two-vm.sh --disk IMG --ko KO --run SCRIPT [...]" >&2; exit 2; }
[ -n "$dir" ] || dir=$(mktemp -d /tmp/xvl-two-vm.XXXXXX)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
disk=$(cd "$(dirname "$disk")" && pwd)/$(basename "$disk")

"$here/device-initrd.sh" "$dir/device.gz" ${dxvl[@]+"${dxvl[@]}"} >"$dir/device.mk.log" 2>&1 ||
	{ echo "two-vm.sh: device initramfs: $(tail -1 "$dir/device.mk.log")" >&2; exit 1; }
"$here/initramfs.sh" "$dir/driver.gz" --module virtio_ring --module virtio --module virtio_blk \
	--ko "$ko" ${bins[@]+"${bins[@]}"} --run "$run" >"$dir/driver.mk.log" 2>&1 ||
	{ echo "two-vm.sh: driver initramfs: $(tail -1 "$dir/driver.mk.log")" >&2; exit 1; }
eval "$("$here/kernel.sh" amd64)" || exit 1
: >"$dir/device.log"
: >"$dir/driver.log"
cat >"$dir/two-vm.cfg" <<EOF
# Two Linux images sharing one ivshmem window (scripts/guest/two-vm.sh).
name = "two-vm-$$";
state_dir = "$dir/state";
exit_with_drivers = true;
windows = ( { name = "w"; size = "64M";$([ "$vectors" = 0 ] || echo " vectors = $vectors;") } );   # a power of two: an ivshmem BAR
devices = ( { name = "d0"; backend = "file"; path = "$disk"; } );
compartments = (
  { name = "devvm"; role = "device"; type = "vm"; devices = ["d0"];
    kernel = "$GUEST_VMLINUZ"; initrd = "$dir/device.gz";
    memory = "256M"; console = "$dir/device.log"; append = "loglevel=4"; },
  { name = "drv"; type = "vm"; window = "w"; connect = "devvm";
    kernel = "$GUEST_VMLINUZ"; initrd = "$dir/driver.gz";
    memory = "${XVL_GUEST_MEM:-512M}"; console = "$dir/driver.log"; append = "loglevel=4 ${XVL_GUEST_APPEND:-}"; }
);
EOF
if [ $print = 1 ]; then
	cat "$dir/two-vm.cfg"
	exit 0
fi
timeout -k 5 "$timeout" "$xvl" run "$dir/two-vm.cfg" >"$dir/supervisor.log" 2>&1
rc=$?
[ $rc -eq 124 ] && { echo "two-vm.sh: timed out after $timeout s (logs in $dir)" >&2; exit 124; }
st=$(tr -d '\r' <"$dir/driver.log" | sed -n 's/^XVL-GUEST-EXIT \([0-9]*\)$/\1/p' | tail -n 1)
[ -n "$st" ] && exit "$st"
echo "two-vm.sh: the driver VM stopped without saying (xvl run exit $rc; logs in $dir)" >&2
exit 125
