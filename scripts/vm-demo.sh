#!/usr/bin/env bash
# scripts/vm-demo.sh [--direct] [--accel tcg|kvm|auto] [--xvl PATH] [--ko PATH] [--keep DIR]
#                                                              (`make vm-demo`)
# A driver compartment that is a Linux VM: Debian's unmodified cloud kernel
# (scripts/guest/kernel.sh) under QEMU (TCG by default, one vCPU) with
# xvl_virtio.ko, whose disk is served by a plain `xvl server` in a device
# compartment.  Both are started by the partitioner (`xvl run`, a
# type = "vm" compartment; the window is an ivshmem-plain BAR, both sides
# poll).  --direct: no partitioner; xvl server runs on the host as QEMU's
# ivshmem server (ivshmem-doorbell, MSI-X vectors both ways).  Either way the
# device side sees the window and nothing of the guest's RAM.  In the guest:
# /dev/vda appears, mkfs.ext4, mount, files written and checksummed, unmount,
# fsck -fn clean, the checksums verified after a fresh mount, then
# `fio --verify=crc32c` on the raw device.  Prints one line per step and
# exits 0 when every step passed and the guest's console shows no
# BUG|Oops|WARNING|soft lockup.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
xvl=$root/build/src/cli/xvl ko=$root/kernel/xvl_virtio.ko keep="" direct=0 accel=tcg
while [ $# -gt 0 ]; do
	case $1 in
	--direct) direct=1; shift ;;
	--accel) accel=$2; shift 2 ;;
	--xvl) xvl=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	*) echo "vm-demo.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
G=$root/scripts/guest
say() { echo "vm-demo: $*"; }
die() { echo "vm-demo: FAILED: $*" >&2; exit 1; }

[ -x "$xvl" ] || die "no xvl binary at $xvl (make build)"
[ -f "$ko" ] || die "no module at $ko (make module)"
command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (scripts/deps.sh)"
for b in fio mke2fs e2fsck; do command -v $b >/dev/null || die "no $b on the host (scripts/deps.sh)"; done

if [ -n "$keep" ]; then mkdir -p "$keep"; T=$(cd "$keep" && pwd); else T=$(mktemp -d /tmp/xvl-vm-demo.XXXXXX); fi
srv=""
cleanup() {
	if [ -n "$srv" ] && kill -0 "$srv" 2>/dev/null; then
		kill -TERM "$srv"
		wait "$srv" 2>/dev/null || true
	fi
	[ -n "$keep" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }

eval "$("$G/kernel.sh")"
say "guest kernel: Debian's $GUEST_KVER (unmodified), module $(basename "$ko") ($(modinfo -F vermagic "$ko" | cut -d' ' -f1))"
[ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$GUEST_KVER" ] ||
	die "$ko was built for another kernel than $GUEST_KVER (make module)"

# The guest's half: one GUEST: line per step, exit status = first failed step.
cat >"$T/guest.sh" <<'EOF'
#!/bin/sh
echo
step() { echo "GUEST: $*"; }
bad() { echo "GUEST: FAILED: $*"; dmesg | tail -n 20 | sed 's/^/DMESG: /'; exit 1; }
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || bad "no /dev/vda"
pd=$(readlink -f /sys/block/vda/device/..)
step "/dev/vda appeared after $((i / 10)).$((i % 10)) s: $(($(cat /sys/block/vda/size) / 2048)) MiB, driver $(basename "$(readlink /sys/block/vda/device/driver)"), transport $(basename "$(readlink "$pd/driver")") on PCI $(basename "$pd")"
mkfs.ext4 -q -F /dev/vda >/tmp/mkfs 2>&1 || { cat /tmp/mkfs; bad "mkfs.ext4"; }
step "mkfs.ext4 /dev/vda: done"
mount -t ext4 /dev/vda /mnt || bad "mount"
step "mount -t ext4 /dev/vda /mnt: $(grep ' /mnt ' /proc/mounts | cut -d' ' -f3,4)"
n=0
for sz in 4 64 256 1024 4096 16384; do	# KiB
	dd if=/dev/urandom of=/mnt/f$sz bs=1024 count=$sz 2>/dev/null || bad "write /mnt/f$sz"
	n=$((n + sz))
done
mkdir -p /mnt/dir
for j in $(seq 1 50); do echo "file $j" >/mnt/dir/s$j; done
(cd /mnt && find . -type f ! -name lost+found | sort | xargs sha256sum) >/tmp/sums
sync
step "wrote $(wc -l </tmp/sums) files (6 of 4 KiB .. 16 MiB from /dev/urandom, $n KiB; 50 small ones in a directory), sha256 of each recorded"
umount /mnt || bad "umount"
step "umount /mnt: done"
fsck.ext4 -fn /dev/vda >/tmp/fsck 2>&1 || { cat /tmp/fsck; bad "fsck.ext4 -fn found problems"; }
step "fsck.ext4 -fn /dev/vda: clean ($(tail -n 1 /tmp/fsck | sed 's/^[^:]*: //'))"
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 -o ro /dev/vda /mnt || bad "mount ro"
(cd /mnt && sha256sum -c /tmp/sums) >/tmp/check 2>&1 || { grep -v ': OK' /tmp/check | head; bad "checksums"; }
umount /mnt
step "mounted again read-only: all $(grep -c ': OK' /tmp/check) checksums equal"
fio --name=raw --filename=/dev/vda --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
	--bsrange=4k-64k --iodepth=8 --size=48M --verify=crc32c --do_verify=1 --verify_fatal=1 \
	--randrepeat=0 --output-format=terse --terse-version=3 >/tmp/fio 2>/tmp/fio.err ||
	{ cat /tmp/fio.err /tmp/fio; bad "fio"; }
grep -qi "verify" /tmp/fio.err && { cat /tmp/fio.err; bad "fio reported verify errors"; }
# terse v3: field 6 = errors, 49 = write KiB, 5x = ... (see fio's HOWTO)
awk -F';' '{ printf "GUEST: fio --verify=crc32c on /dev/vda: %d KiB written in random 4k-64k pieces at QD8, read back and verified, %d errors\n", $47, $5 }' /tmp/fio
[ "$(cut -d';' -f5 /tmp/fio)" = 0 ] || bad "fio errors"
rmmod virtio_blk && rmmod xvl_virtio || bad "rmmod"
step "virtio_blk and xvl_virtio unloaded"
exit 0
EOF

"$G/initramfs.sh" "$T/guest.img" --module virtio_ring --module virtio --module virtio_blk --ko "$ko" \
	--run "$T/guest.sh" --bin "$(command -v mke2fs):/sbin/mkfs.ext4" \
	--bin "$(command -v e2fsck):/sbin/fsck.ext4" --bin "$(command -v fio):/usr/bin/fio" >"$T/initramfs.log" 2>&1 ||
	{ cat "$T/initramfs.log" >&2; die "initramfs"; }
say "initramfs: busybox, xvl_virtio.ko, mkfs.ext4, fsck.ext4, fio and their libraries ($(($(stat -c %s "$T/guest.img") / 1048576)) MiB)"
truncate -s 128M "$T/disk.img"
rc=0
if [ $direct = 0 ]; then
	# Through the partitioner: a device compartment (xvl server) and a VM compartment.
	cat >"$T/vm.cfg" <<CFG
name = "vm-demo-$$";
state_dir = "$T/state";
exit_with_drivers = true;
windows = ( { name = "w"; size = "64M"; } );
devices = ( { name = "d0"; backend = "file"; path = "$T/disk.img"; } );
compartments = (
  { name = "dev"; role = "device"; devices = ["d0"]; },
  { name = "guest"; type = "vm"; window = "w"; connect = "dev"; kernel = "$GUEST_VMLINUZ";
    initrd = "$T/guest.img"; memory = "768M"; vcpus = 1; accel = "$accel"; console = "$T/console.log";
    append = "loglevel=4"; }
);
CFG
	say "xvl run $T/vm.cfg: device compartment 'dev' (xvl server, d0 = file $T/disk.img, 128 MiB) and"
	say "  VM compartment 'guest' (qemu-system-x86_64 -accel $accel -smp 1 -m 768M, window w as ivshmem-plain, both sides poll)"
	"$xvl" run "$T/vm.cfg" >"$T/run.log" 2>&1 || rc=$?
	sed -n 's/^.*\(compartment [a-z]* .*started\).*/\1/p; s/^.*\(compartment guest (pid [0-9]*) .*\)/\1/p' "$T/run.log" |
		sed 's/^/vm-demo: xvl run: /'
	[ $rc = 0 ] || { tail -n 20 "$T/run.log" >&2; die "xvl run exited with status $rc"; }
	st=$(tr -d '\r' <"$T/console.log" | sed -n 's/^XVL-GUEST-EXIT \([0-9]*\)$/\1/p' | tail -n 1)
	rc=${st:-125}
else
	# Without the partitioner: xvl server as QEMU's ivshmem server (ivshmem-doorbell, MSI-X).
	"$xvl" server --link window --window "ivshmem:$T/ivsh.sock,vectors=8" \
		--dev name=d0,backend=file,path="$T/disk.img" >"$T/server.log" 2>&1 &
	srv=$!
	for _ in $(seq 1 100); do [ -S "$T/ivsh.sock" ] && break; kill -0 $srv 2>/dev/null || break; sleep 0.05; done
	[ -S "$T/ivsh.sock" ] || { cat "$T/server.log" >&2; die "xvl server did not start"; }
	say "host: xvl server pid $srv, device d0 (file $T/disk.img, 128 MiB), window over ivshmem:$T/ivsh.sock, 8 vectors"
	say "booting the VM: qemu-system-x86_64 -accel tcg -smp 1 -m 768M, ivshmem-doorbell on the window"
	XVL_GUEST_MEM=768M "$G/run.sh" --timeout 240 --log "$T/console.log" "$T/guest.img" \
		-chardev socket,path="$T/ivsh.sock",id=ivsh -device ivshmem-doorbell,chardev=ivsh,vectors=8 || rc=$?
fi
tr -d '\r' <"$T/console.log" | sed -n 's/^.*GUEST: /vm-demo: guest: /p'
if grep -aE 'BUG|Oops|WARNING|soft lockup' "$T/console.log" >/dev/null; then
	grep -aE -B2 -A10 'BUG|Oops|WARNING|soft lockup' "$T/console.log" | head -n 30 >&2
	die "the guest's kernel log shows BUG/Oops/WARNING/soft lockup"
fi
[ $rc = 0 ] || { tr -d '\r' <"$T/console.log" | tail -n 30 >&2; die "guest exited with status $rc"; }
say "guest console clean (no BUG|Oops|WARNING|soft lockup)"
if [ -n "$srv" ]; then kill -TERM $srv; wait $srv 2>/dev/null || true; srv=""; fi
[ $direct = 1 ] || [ ! -e "$T/state" ] || die "the partitioner left its state directory $T/state"
say "device side stopped; every step passed in $(elapsed)"
