#!/usr/bin/env bash
# scripts/guest/device-initrd.sh OUT [--arch amd64|arm64] [--xvl BIN] [--qsd] [--bin PATH[:DST]]...
#
# The initramfs of a device-compartment VM (type = "vm", role = "device";
# docs/PARTITIONER.md): busybox, Debian's virtio_pci, virtio_blk and vfio-pci
# (MSI-X in user space for a window with vectors), a
# statically linked xvl as /bin/xvl and scripts/guest/device-init.sh as the
# script its /init runs (xvl server on the ivshmem BAR, devices from the
# kernel command line the partitioner writes).
#
#   --arch A    the guest's architecture: amd64 (default; config arch =
#               "x86_64") or arm64 (arch = "aarch64": busybox, kernel and
#               modules of .guest/arm64, the xvl of build-aarch64-static)
#   --xvl BIN   the xvl to ship (default build-static/src/cli/xvl, made with
#               `make build-static` when missing, or for arm64
#               build-aarch64-static/src/cli/xvl, `make build-aarch64-static`;
#               a dynamically linked one works too for amd64: initramfs.sh
#               copies the libraries ldd names)
#   --qsd       ship Debian's qemu-storage-daemon with its libraries (for
#               backend = "qsd" devices; device-init.sh starts it)
#   --bin P     more host programs for the guest (repeatable)
#
# The guest kernel is .guest/ARCH (scripts/guest/kernel.sh); its path is
# printed as KERNEL=... for the config's 'kernel'.
set -euo pipefail
out=${1:?usage: device-initrd.sh OUT [--xvl BIN] [--bin PATH]...}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
xvl="" bins=() arch=amd64
while [ $# -gt 0 ]; do
	case $1 in
	--arch) arch=$2; shift 2 ;;
	--xvl) xvl=$2; shift 2 ;;
	--bin) bins+=(--bin "$2"); shift 2 ;;
	--qsd)
		q=$(command -v qemu-storage-daemon) ||
			{ echo "device-initrd.sh: no qemu-storage-daemon (Debian package qemu-system-common)" >&2; exit 1; }
		bins+=(--bin "$q:/usr/bin/qemu-storage-daemon"); shift ;;
	*) echo "device-initrd.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ "$arch" = amd64 ] || [ ${#bins[@]} = 0 ] ||
	{ echo "device-initrd.sh: --qsd and --bin copy host (amd64) programs: not for an $arch guest" >&2; exit 1; }
case $arch in
amd64) static=build-static want='x86-64' ;;
arm64) static=build-aarch64-static want='ARM aarch64' ;;
*) echo "device-initrd.sh: unknown arch $arch (amd64 or arm64)" >&2; exit 2 ;;
esac
if [ -z "$xvl" ]; then
	xvl=$root/$static/src/cli/xvl
	[ -x "$xvl" ] || make -s -C "$root" "$static" >&2
fi
[ -x "$xvl" ] || { echo "device-initrd.sh: no xvl binary at $xvl" >&2; exit 1; }
file -L "$xvl" | grep -q "$want" ||
	{ echo "device-initrd.sh: $xvl is not an $arch program: $(file -bL "$xvl" | cut -d, -f1-2)" >&2; exit 1; }
[ "$arch" = "$(dpkg --print-architecture)" ] || file -L "$xvl" | grep -q 'statically linked' ||
	{ echo "device-initrd.sh: $xvl must be linked statically for a foreign guest (make $static)" >&2; exit 1; }
"$here/initramfs.sh" "$out" --arch "$arch" --module virtio_ring --module virtio --module virtio_pci \
	--module virtio_blk --module vfio-pci --module vfio_iommu_type1 --bin "$xvl:/bin/xvl" ${bins[@]+"${bins[@]}"} --run "$here/device-init.sh"
eval "$("$here/kernel.sh" "$arch")"
echo "KERNEL=$GUEST_VMLINUZ"
