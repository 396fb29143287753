#!/usr/bin/env bash
# scripts/guest/device-initrd.sh OUT [--xvl BIN] [--qsd] [--bin PATH[:DST]]...
#
# The initramfs of a device-compartment VM (type = "vm", role = "device";
# docs/PARTITIONER.md): busybox, Debian's virtio_pci, virtio_blk and vfio-pci
# (MSI-X in user space for a window with vectors), a
# statically linked xvl as /bin/xvl and scripts/guest/device-init.sh as the
# script its /init runs (xvl server on the ivshmem BAR, devices from the
# kernel command line the partitioner writes).
#
#   --xvl BIN   the xvl to ship (default build-static/src/cli/xvl, made with
#               `make build-static` when missing; a dynamically linked one
#               works too: initramfs.sh copies the libraries ldd names)
#   --qsd       ship Debian's qemu-storage-daemon with its libraries (for
#               backend = "qsd" devices; device-init.sh starts it)
#   --bin P     more host programs for the guest (repeatable)
#
# The guest kernel is .guest/amd64 (scripts/guest/kernel.sh); its path is
# printed as KERNEL=... for the config's 'kernel'.
set -euo pipefail
out=${1:?usage: device-initrd.sh OUT [--xvl BIN] [--bin PATH]...}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
xvl="" bins=()
while [ $# -gt 0 ]; do
	case $1 in
	--xvl) xvl=$2; shift 2 ;;
	--bin) bins+=(--bin "$2"); shift 2 ;;
	--qsd)
		q=$(command -v qemu-storage-daemon) ||
			{ echo "device-initrd.sh: no qemu-storage-daemon (Debian package qemu-system-common)" >&2; exit 1; }
		bins+=(--bin "$q:/usr/bin/qemu-storage-daemon"); shift ;;
	*) echo "device-initrd.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
if [ -z "$xvl" ]; then
	xvl=$root/build-static/src/cli/xvl
	[ -x "$xvl" ] || make -s -C "$root" build-static >&2
fi
[ -x "$xvl" ] || { echo "device-initrd.sh: no xvl binary at $xvl" >&2; exit 1; }
"$here/initramfs.sh" "$out" --module virtio_ring --module virtio --module virtio_pci \
	--module virtio_blk --module vfio-pci --module vfio_iommu_type1 --bin "$xvl:/bin/xvl" ${bins[@]+"${bins[@]}"} --run "$here/device-init.sh"
eval "$("$here/kernel.sh" amd64)"
echo "KERNEL=$GUEST_VMLINUZ"
