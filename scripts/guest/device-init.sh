#!/bin/sh
# The init script of a device-compartment VM (docs/PARTITIONER.md, "Device
# VMs"): run as /guest.sh by the /init of scripts/guest/initramfs.sh, after
# virtio_pci and virtio_blk are loaded.  It finds the ivshmem device
# (1af4:1110), turns on its memory decoding, collects the devices the
# partitioner put on the kernel command line (one xvl.dev=SPEC each; a file
# device's path is one of this guest's own disks, /dev/vda...), waits for
# those disks, and runs `xvl server --link window` on BAR2 (the window; the
# server maps resource2 from sysfs).  With xvl.doorbell=peer=N (a window with
# vectors: ivshmem-doorbell) the device is bound to vfio-pci and the server
# runs on it (--window vfio:BDF,peer=N): it rings peer N, the driver, through
# BAR0 and takes its own MSI-X vectors (the partitioner gives the VM an
# emulated intel-iommu and intel_iommu=on); without vfio-pci or an IOMMU it
# rings through the sysfs BAR0 and polls.  xvl.irqstat=S prints the vfio-msix
# lines of /proc/interrupts every S seconds.  When the server exits, so does this
# script, and the guest powers off: the partitioner sees QEMU exit and
# starts the device VM again on the same window.
bar=""
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && bar=$d/resource2
done
[ -n "$bar" ] || { echo "XVL-DEVICE: no ivshmem device (1af4:1110)"; exit 1; }
# no firmware on aarch64 virt: memory decoding is off until enabled
echo 1 >"${bar%/resource2}/enable" 2>/dev/null
name=device db="" qsds="" irqstat=""
set --
for t in $(cat /proc/cmdline); do
	case $t in
	xvl.dev=*) set -- "$@" --dev "${t#xvl.dev=}" ;;
	xvl.qsd=*) qsds="$qsds ${t#xvl.qsd=}" ;;
	xvl.name=*) name=${t#xvl.name=} ;;
	xvl.doorbell=*) db=${t#xvl.doorbell=} ;;
	xvl.irqstat=*) irqstat=${t#xvl.irqstat=} ;;
	esac
done
[ $# -gt 0 ] || { echo "XVL-DEVICE: no xvl.dev= on the kernel command line"; exit 1; }
for a in "$@"; do
	case $a in
	*path=/dev/*)
		p=${a##*path=}
		p=${p%%,*}
		i=0
		while [ ! -b "$p" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
		[ -b "$p" ] || { echo "XVL-DEVICE: disk $p did not appear"; exit 1; }
		;;
	esac
done
# qsd devices (xvl.qsd=NAME,SOURCE,WRITABLE,QUEUES, from the partitioner's vm.c):
# Debian's qemu-storage-daemon in this guest on its disk SOURCE (/dev/vdX) or
# null-co (null:SIZE), exporting vhost-user-blk on /run/NAME.qsd.sock, which
# the server's --dev for NAME bridges to
qsd_start() {
	qn=${1%%,*} r=${1#*,}
	qs=${r%%,*} r=${r#*,}
	qw=${r%%,*} qq=${r#*,}
	case $qs in
	null:*) blk="driver=null-co,node-name=n0,read-zeroes=on,size=${qs#null:}" ;;
	*)
		i=0
		while [ ! -b "$qs" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
		[ -b "$qs" ] || { echo "XVL-DEVICE: disk $qs of qsd device $qn did not appear"; return 1; }
		blk="driver=host_device,node-name=n0,filename=$qs"
		;;
	esac
	sock=/run/$qn.qsd.sock
	rm -f "$sock"
	qemu-storage-daemon --blockdev "$blk" --export \
		"type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=$sock,writable=$qw,num-queues=$qq" \
		</dev/null >"/run/$qn.qsd.log" 2>&1 &
	i=0
	while [ ! -S "$sock" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
	[ -S "$sock" ] || { echo "XVL-DEVICE: qemu-storage-daemon of $qn did not listen on $sock:"; cat "/run/$qn.qsd.log"; return 1; }
	echo "XVL-DEVICE: qemu-storage-daemon pid $! serves $qs on $sock"
}
for q in $qsds; do
	command -v qemu-storage-daemon >/dev/null ||
		{ echo "XVL-DEVICE: qsd device but no qemu-storage-daemon here (device-initrd.sh --qsd)"; exit 1; }
	qsd_start "$q" || exit 1
done
# ivshmem-doorbell (xvl.doorbell=peer=N): on vfio-pci, MSI-X both ways; else ring the
# driver through the sysfs BAR0 and poll
win=$bar
# A vhost-user backend here (qsd) maps the window from the fd the server passes; on vfio
# that would be the VFIO device, which qemu-storage-daemon cannot map: such a device VM
# keeps the sysfs BAR and polls its own side.
if [ -n "$db" ]; then
	pdev=${bar%/resource2}
	if [ -z "$qsds" ] && [ -d /sys/bus/pci/drivers/vfio-pci ] && [ -n "$(ls /sys/kernel/iommu_groups 2>/dev/null)" ] &&
		echo vfio-pci >"$pdev/driver_override" && echo "${pdev##*/}" >/sys/bus/pci/drivers_probe &&
		[ -e "$pdev/driver" ]; then
		win="vfio:${pdev##*/},$db"
	else
		echo "XVL-DEVICE: no vfio-pci, no IOMMU or a vhost-user backend: this side polls"
		set -- --doorbell "ivshmem:$pdev,$db" "$@"
	fi
fi
[ -n "$irqstat" ] && while sleep "$irqstat"; do grep vfio-msix /proc/interrupts | sed 's/^/XVL-IRQ: /'; done &
echo "XVL-DEVICE: serving on $win: $*"
xvl server --link window --window "$win" --name "$name" "$@"
st=$?
echo "XVL-DEVICE: xvl server exited with status $st"
exit $st
