#!/usr/bin/env bash
# xvl_virtio.ko, xvloop's kernel transport, in TCG guests running Debian's
# unmodified cloud kernel (scripts/guest/), against a plain `xvl server` on
# the host serving over the mailbox link in the window:
#   - the module builds against the guest kernel's headers with W=1 and no
#     warnings (a private copy of kernel/ and src/core/, so it really builds);
#   - ivshmem-plain without any server: the module loads, probes the BAR,
#     waits for the device side, and unloads cleanly;
#   - ivshmem-plain (a shm file, both sides poll) and ivshmem-doorbell
#     (xvl server as QEMU's ivshmem server, MSI-X vectors): the stock
#     virtio_blk binds, /dev/vda appears, a 4 MiB pattern written with
#     mixed request sizes (512 B .. 1 MiB, O_DIRECT) reads back equal in the
#     guest, and the host's disk image holds the same bytes; virtio_blk and
#     the module unload with the device gone;
#   - a device side with only the mailbox vector under a guest with 8: the
#     queues fall back to polling, /dev/vda verified;
#   - the device side killed with SIGKILL under a guest write workload and
#     started again: the requests it held are submitted again, no write fails,
#     the data are equal; killed for good: writes fail within seconds;
#   - a hostile device (tests/hostile/hostile_device.c --window) attacking the
#     guest's used ring and link, case after case: the queue is killed and
#     its I/O fails (or lengths are clamped), the module always unloads;
#   - every guest's kernel log is checked for BUG|Oops|WARNING|soft lockup|KASAN.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
G=$E2E_ROOT/scripts/guest
KB=$("$G/kernel.sh" --headers 2>"$T/kernel.log" | sed -n 's/^KBUILD=//p')
[ -n "$KB" ] && [ -d "$KB" ] || { echo "1..0 # SKIP no guest kernel headers ($(tail -1 "$T/kernel.log"))"; exit 0; }

# ------------------------------------------------------------ build, W=1
mkdir -p "$T/src/src"
cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
(cd "$T/src/kernel" && find . -name '*.o' -o -name '*.ko' -o -name '*.cmd' | xargs rm -f; rm -rf core)
if make -C "$KB" M="$T/src/kernel" W=1 -j2 modules >"$T/build.log" 2>&1 && [ -f "$T/src/kernel/xvl_virtio.ko" ]; then
	if grep -E 'warning:|error:' "$T/build.log" >/dev/null; then
		fail "xvl_virtio.ko builds with W=1 without warnings"
		grep -E 'warning:|error:' "$T/build.log" | head -n 10 | sed 's/^/#   /'
	else
		ok "xvl_virtio.ko builds with W=1 without warnings ($(grep -c ' CC ' "$T/build.log") files)"
	fi
else
	fail "xvl_virtio.ko builds"
	tail -n 15 "$T/build.log" | sed 's/^/#   /'
	finish
fi
KO=$T/src/kernel/xvl_virtio.ko

# ------------------------------------------------------------ guests
# kernel trouble, and the module's own report of window memory not given back
BAD='BUG|Oops|WARNING|soft lockup|KASAN|hung_task|general protection|still mapped at removal'

# guest NAME SCRIPT [QEMU ARGS]: build an initramfs with the module and run it; sets GRC.
guest() {
	local name=$1 script=$2
	shift 2
	"$G/initramfs.sh" "$T/$name.img" --module virtio_ring --module virtio --module virtio_blk \
		--ko "$KO" --run "$script" >"$T/$name.mk.log" 2>&1 || { GRC=99; return; }
	"$G/run.sh" --timeout 90 --log "$T/$name.log" "$T/$name.img" "$@"
	GRC=$?
}

# clean_log NAME DESCRIPTION: the guest's console has none of $BAD.
clean_log() {
	if grep -aE "$BAD" "$T/$1.log" >/dev/null; then
		fail "$2"
		grep -aE -B2 -A12 "$BAD" "$T/$1.log" | head -n 30 | sed 's/^/#   /'
	else
		ok "$2"
	fi
}

show_guest() { tr -d '\r' <"$T/$1.log" | grep -av '^\s*$' | tail -n "${2:-25}" | sed 's/^/#   /'; }

# The guest's half of every scenario: wait for vda, verify, unload.
cat >"$T/verify.sh" <<'EOF'
#!/bin/sh
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no /dev/vda"; dmesg | grep -i xvl; exit 1; }
echo "GUEST: vda $(cat /sys/block/vda/size) sectors after $i polls"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
# put OFF LEN BS: bytes OFF..OFF+LEN of the pattern, written in BS-byte O_DIRECT pieces
put() {
	dd if=/tmp/pat of=/dev/vda bs=$3 count=$(($2 / $3)) skip=$(($1 / $3)) seek=$(($1 / $3)) \
		oflag=direct conv=notrunc 2>/dev/null || { echo "GUEST: write of $2 bytes at $1 in $3-byte pieces failed"; exit 1; }
}
K=524288
put 0 $((2 * K)) 512
put $((2 * K)) $K 4096
put $((3 * K)) $K 131072
put $((4 * K)) $K 2048
put $((5 * K)) $K 65536
put $((6 * K)) $((2 * K)) 1048576
sync
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=32768 count=128 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs"; exit 1; }
echo "GUEST: readback equal"
echo "GUEST-SHA $(sha256sum /tmp/pat | cut -d' ' -f1)"
# "xvltwo" on the kernel command line: the server offers a second device
if grep -q xvltwo /proc/cmdline; then
	i=0
	while [ ! -b /dev/vdb ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
if [ -b /dev/vdb ]; then
	dd if=/tmp/pat of=/dev/vdb bs=65536 count=16 oflag=direct 2>/dev/null &&
	dd if=/dev/vdb of=/tmp/back2 bs=65536 count=16 iflag=direct 2>/dev/null &&
	head -c 1048576 /tmp/pat | cmp - /tmp/back2 && echo "GUEST: vdb equal"
fi
rmmod virtio_blk || exit 1
rmmod xvl_virtio || exit 1
lsmod | grep -q xvl_virtio && exit 1
echo "GUEST: unloaded"
exit 0
EOF

cat >"$T/load.sh" <<'EOF'
#!/bin/sh
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
[ -e /sys/bus/pci/drivers/xvl_virtio/0000:00:01.0 ] || { echo "GUEST: not bound"; exit 1; }
dmesg | grep -q "waiting for the device side" || exit 1
sleep 1
[ -b /dev/vda ] && { echo "GUEST: a disk without a server"; exit 1; }
rmmod xvl_virtio || exit 1
echo "GUEST: unloaded"
exit 0
EOF
chmod +x "$T"/*.sh

# 1. no device side at all
truncate -s 64M "$T/win0"
guest load "$T/load.sh" -object memory-backend-file,id=w,share=on,mem-path="$T/win0",size=64M \
	-device ivshmem-plain,memdev=w
if [ "$GRC" = 0 ]; then ok "ivshmem-plain, no server: module binds, waits, unloads"; else
	fail "ivshmem-plain, no server: module binds, waits, unloads (guest $GRC)"; show_guest load; fi
clean_log load "ivshmem-plain, no server: guest kernel log clean"

# host_sha IMG: sha256 of the first 4 MiB
host_sha() { head -c 4194304 "$1" | sha256sum | cut -d' ' -f1; }
guest_sha() { tr -d '\r' <"$T/$1.log" | sed -n 's/^GUEST-SHA //p'; }

# 2. ivshmem-plain: a shm file, both sides poll
truncate -s 64M "$T/win1" "$T/disk1.img"
bg "$T/srv1.log" "$XVL" server --link window --window "$T/win1" \
	--dev name=d0,backend=file,path="$T/disk1.img" --dev name=r1,backend=ram,size=16M
S1=$BG_PID
XVL_GUEST_APPEND=xvltwo guest plain "$T/verify.sh" -object memory-backend-file,id=w,share=on,mem-path="$T/win1",size=64M \
	-device ivshmem-plain,memdev=w
if [ "$GRC" = 0 ]; then ok "ivshmem-plain + xvl server: /dev/vda verified in the guest, unloaded"; else
	fail "ivshmem-plain + xvl server: /dev/vda verified in the guest, unloaded (guest $GRC)"
	show_guest plain; sed 's/^/#   srv: /' "$T/srv1.log" | tail -n 8; fi
stop_server "$S1" >/dev/null 2>&1
expect_eq "$(guest_sha plain)" "$(host_sha "$T/disk1.img")" "ivshmem-plain: the host's disk image holds what the guest wrote"
grep -aq "GUEST: vdb equal" "$T/plain.log" && ok "ivshmem-plain: a second device of the server is /dev/vdb, verified" ||
	fail "ivshmem-plain: a second device of the server is /dev/vdb, verified"
clean_log plain "ivshmem-plain + xvl server: guest kernel log clean"

# 3. ivshmem-doorbell: xvl server is QEMU's ivshmem server, MSI-X vectors both ways;
#    a 2-queue device in a 2-vCPU guest
truncate -s 64M "$T/disk2.img"
bg "$T/srv2.log" "$XVL" server --link window --window "ivshmem:$T/ivsh.sock,vectors=8" \
	--dev name=d0,backend=file,path="$T/disk2.img",queues=2
S2=$BG_PID
wait_sock "$T/ivsh.sock" "$S2"
guest bell "$T/verify.sh" -chardev socket,path="$T/ivsh.sock",id=ivsh \
	-device ivshmem-doorbell,chardev=ivsh,vectors=8 -smp 2
if [ "$GRC" = 0 ]; then ok "ivshmem-doorbell + xvl server: /dev/vda verified in the guest, unloaded"; else
	fail "ivshmem-doorbell + xvl server: /dev/vda verified in the guest, unloaded (guest $GRC)"
	show_guest bell; sed 's/^/#   srv: /' "$T/srv2.log" | tail -n 8; fi
grep -aq "8 vector(s)" "$T/bell.log" && grep -aq "2/0/0 default/read/poll queues" "$T/bell.log" &&
	ok "ivshmem-doorbell: the module runs on MSI-X vectors, virtio_blk on 2 queues" ||
	fail "ivshmem-doorbell: the module runs on MSI-X vectors, virtio_blk on 2 queues"
stop_server "$S2" >/dev/null 2>&1
expect_eq "$(guest_sha bell)" "$(host_sha "$T/disk2.img")" "ivshmem-doorbell: the host's disk image holds what the guest wrote"
clean_log bell "ivshmem-doorbell + xvl server: guest kernel log clean"

# 3b. ivshmem-doorbell with the queues polled (force_poll): the mailbox vector is still rung
sed '2a rmmod xvl_virtio; insmod /lib/modules/xvl_virtio.ko force_poll=1' "$T/verify.sh" >"$T/pollbell.sh"
chmod +x "$T/pollbell.sh"
rm -f "$T/ivsh.sock"
bg "$T/srv2b.log" "$XVL" server --link window --window "ivshmem:$T/ivsh.sock,vectors=8" \
	--dev name=d0,backend=file,path="$T/disk2.img"
S2=$BG_PID
wait_sock "$T/ivsh.sock" "$S2"
guest pollbell "$T/pollbell.sh" -chardev socket,path="$T/ivsh.sock",id=ivsh \
	-device ivshmem-doorbell,chardev=ivsh,vectors=8
if [ "$GRC" = 0 ] && grep -aq "polling the rings" "$T/pollbell.log"; then
	ok "ivshmem-doorbell, force_poll=1: /dev/vda verified with polled queues"
else
	fail "ivshmem-doorbell, force_poll=1: /dev/vda verified with polled queues (guest $GRC)"
	show_guest pollbell
fi
stop_server "$S2" >/dev/null 2>&1
clean_log pollbell "ivshmem-doorbell, force_poll=1: guest kernel log clean"

# 3d. a device side with only the mailbox vector (vectors=1) under a guest with 8:
#     the queues fall back to polling instead of being refused
rm -f "$T/ivsh.sock"
bg "$T/srv2d.log" "$XVL" server --link window --window "ivshmem:$T/ivsh.sock,vectors=1" \
	--dev name=d0,backend=file,path="$T/disk2.img"
S2=$BG_PID
wait_sock "$T/ivsh.sock" "$S2"
guest fewvec "$T/verify.sh" -chardev socket,path="$T/ivsh.sock",id=ivsh \
	-device ivshmem-doorbell,chardev=ivsh,vectors=8
if [ "$GRC" = 0 ] && grep -aq "8 vector(s)" "$T/fewvec.log" &&
	grep -aq "no doorbell vector for it (8 on this side, 1 on the device side): polled" "$T/fewvec.log"; then
	ok "ivshmem-doorbell, device side with 1 vector: the queues are polled, /dev/vda verified"
else
	fail "ivshmem-doorbell, device side with 1 vector: the queues are polled, /dev/vda verified (guest $GRC)"
	show_guest fewvec
fi
stop_server "$S2" >/dev/null 2>&1
clean_log fewvec "ivshmem-doorbell, device side with 1 vector: guest kernel log clean"

# 3c. the device behind the window is qemu-storage-daemon: the server bridges the guest's
#     rings to it (the window is qsd's only memory), MSI-X doorbells as in 3
if command -v qemu-storage-daemon >/dev/null; then
	truncate -s 64M "$T/disk3.img"
	rm -f "$T/ivsh.sock"
	bg "$T/qsd3.log" qemu-storage-daemon --blockdev driver=file,node-name=f0,filename="$T/disk3.img" \
		--export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path="$T/qsd3.sock",writable=on
	Q3=$BG_PID
	wait_sock "$T/qsd3.sock" "$Q3"
	bg "$T/srv3.log" "$XVL" server --link window --window "ivshmem:$T/ivsh.sock,vectors=8" \
		--dev "name=d0,backend=vhost-user,path=$T/qsd3.sock"
	S3=$BG_PID
	wait_sock "$T/ivsh.sock" "$S3"
	guest qsd "$T/verify.sh" -chardev socket,path="$T/ivsh.sock",id=ivsh \
		-device ivshmem-doorbell,chardev=ivsh,vectors=8
	if [ "$GRC" = 0 ]; then ok "ivshmem-doorbell + xvl server bridged to qemu-storage-daemon: /dev/vda verified in the guest"; else
		fail "ivshmem-doorbell + xvl server bridged to qemu-storage-daemon: /dev/vda verified (guest $GRC)"
		show_guest qsd; sed 's/^/#   srv: /' "$T/srv3.log" | tail -n 8; fi
	stop_server "$S3" >/dev/null 2>&1
	kill "$Q3" 2>/dev/null; wait "$Q3" 2>/dev/null
	expect_eq "$(guest_sha qsd)" "$(host_sha "$T/disk3.img")" "qemu-storage-daemon's image holds what the guest wrote"
	clean_log qsd "bridged to qemu-storage-daemon: guest kernel log clean"
else
	skip "guest on a device bridged to qemu-storage-daemon (not installed)"
fi

# The guest's half of the restart scenarios: write the same 8 MiB pattern over
# and over for 7 s (O_DIRECT, 64 KiB), then read it back; exit 3 when a write fails.
cat >"$T/writer.sh" <<'EOF'
#!/bin/sh
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
P=/sys/module/xvl_virtio/parameters
echo 1000 >$P/link_timeout_ms
echo 3000 >$P/io_timeout_ms
echo 4000 >$P/reconnect_ms
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no /dev/vda"; exit 1; }
dd if=/dev/urandom of=/tmp/pat bs=1M count=8 2>/dev/null
echo "GUEST: writing"
t0=$(date +%s)
r=0
while [ $(( $(date +%s) - t0 )) -lt 7 ]; do
	if ! dd if=/tmp/pat of=/dev/vda bs=65536 oflag=direct conv=notrunc 2>/dev/null; then
		echo "GUEST: write failed after $(( $(date +%s) - t0 )) s"
		rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
		exit 3
	fi
	r=$((r+1))
done
echo "GUEST: $r rounds written"
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=65536 count=128 iflag=direct 2>/dev/null || exit 1
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs"; exit 1; }
echo "GUEST: readback equal"
echo "GUEST-SHA $(sha256sum /tmp/pat | cut -d' ' -f1)"
rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
exit 0
EOF
chmod +x "$T/writer.sh"

# writer_guest NAME WIN [SCRIPT [INITRAMFS ARGS]]: boot a guest running SCRIPT
# (default writer.sh) on window file WIN in the background (GPID); returns
# once it says it is writing.
writer_guest() {
	local name=$1 win=$2 script=${3:-$T/writer.sh}
	shift 2
	[ $# -gt 0 ] && shift
	"$G/initramfs.sh" "$T/$name.img" --module virtio_ring --module virtio --module virtio_blk \
		--ko "$KO" --run "$script" "$@" >"$T/$name.mk.log" 2>&1
	set -- "$name" "$win"
	"$G/run.sh" --timeout 90 --log "$T/$1.log" "$T/$1.img" \
		-object memory-backend-file,id=w,share=on,mem-path="$2",size=64M \
		-device ivshmem-plain,memdev=w &
	GPID=$!
	for _ in $(seq 1 300); do
		grep -aq "GUEST: writing" "$T/$1.log" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# 4. the device side killed with SIGKILL under the write workload, then started again
truncate -s 64M "$T/win3" "$T/disk3.img"
SRV3=(server --link window --window "$T/win3" --dev name=d0,backend=file,path="$T/disk3.img")
bg "$T/srv3.log" "$XVL" "${SRV3[@]}"
S3=$BG_PID
if writer_guest restart "$T/win3"; then
	sleep 1.5
	kill -KILL "$S3"; wait "$S3" 2>/dev/null
	sleep 0.5
	bg "$T/srv3b.log" "$XVL" "${SRV3[@]}"
	S3=$BG_PID
fi
wait "$GPID"
GRC=$?
if [ "$GRC" = 0 ] && grep -aq "submitted again" "$T/restart.log"; then
	ok "server kill -9 and restart under guest writes: requests resubmitted, no write failed, readback equal"
else
	fail "server kill -9 and restart under guest writes: requests resubmitted, no write failed, readback equal (guest $GRC)"
	show_guest restart 40
fi
note "$(tr -d '\r' <"$T/restart.log" | grep -a 'rounds written\|submitted again' | sed 's/^DMESG: //' | tr '\n' ' ')"
stop_server "$S3" >/dev/null 2>&1
expect_eq "$(guest_sha restart)" "$(head -c 8388608 "$T/disk3.img" | sha256sum | cut -d' ' -f1)" \
	"restart: the host's disk image holds the pattern the guest wrote"
grep -aq "GUEST: unloaded" "$T/restart.log" && ok "restart: virtio_blk and the module unload" ||
	fail "restart: virtio_blk and the module unload"
clean_log restart "restart: guest kernel log clean"

# 4b. the same with ext4 mounted on /dev/vda, files written with fsync
cat >"$T/fs.sh" <<'EOF'
#!/bin/sh
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
P=/sys/module/xvl_virtio/parameters
echo 1000 >$P/link_timeout_ms
echo 4000 >$P/reconnect_ms
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no /dev/vda"; exit 1; }
mkfs.ext4 -q -F /dev/vda >/dev/null 2>&1 || { echo "GUEST: mkfs failed"; exit 1; }
mount -t ext4 /dev/vda /mnt || exit 1
echo "GUEST: writing"
t0=$(date +%s)
n=0
while [ $(( $(date +%s) - t0 )) -lt 7 ]; do
	dd if=/dev/urandom of=/mnt/f$n bs=65536 count=4 conv=fsync 2>/dev/null ||
		{ echo "GUEST: file $n failed"; exit 1; }
	sha256sum /mnt/f$n >>/tmp/sums
	n=$((n+1))
done
umount /mnt || { echo "GUEST: umount failed"; exit 1; }
fsck.ext4 -fn /dev/vda >/tmp/fsck 2>&1 || { echo "GUEST: fsck found errors"; cat /tmp/fsck; exit 1; }
echo "GUEST: fsck clean, $n files"
echo 3 >/proc/sys/vm/drop_caches
mount -t ext4 -o ro /dev/vda /mnt || exit 1
sha256sum -c /tmp/sums >/tmp/check 2>&1 || { echo "GUEST: checksums differ"; grep -v OK /tmp/check | head; exit 1; }
echo "GUEST: $n files verified"
umount /mnt
exit 0
EOF
chmod +x "$T/fs.sh"
truncate -s 64M "$T/win6" "$T/disk6.img"
SRV6=(server --link window --window "$T/win6" --dev name=d0,backend=file,path="$T/disk6.img")
bg "$T/srv6.log" "$XVL" "${SRV6[@]}"
S6=$BG_PID
if writer_guest fsrestart "$T/win6" "$T/fs.sh" --bin /usr/sbin/mke2fs:/sbin/mkfs.ext4 \
	--bin /usr/sbin/e2fsck:/sbin/fsck.ext4; then
	sleep 1.5
	kill -KILL "$S6"; wait "$S6" 2>/dev/null
	sleep 0.5
	bg "$T/srv6b.log" "$XVL" "${SRV6[@]}"
	S6=$BG_PID
fi
wait "$GPID"
GRC=$?
if [ "$GRC" = 0 ] && grep -aq "device set up again" "$T/fsrestart.log"; then
	ok "ext4 on /dev/vda across a server kill -9 and restart: fsck clean, every file's checksum equal"
else
	fail "ext4 on /dev/vda across a server kill -9 and restart: fsck clean, every file's checksum equal (guest $GRC)"
	show_guest fsrestart 40
fi
note "$(tr -d '\r' <"$T/fsrestart.log" | grep -a 'files verified\|submitted again' | sed 's/^DMESG: //' | tr '\n' ' ')"
stop_server "$S6" >/dev/null 2>&1
clean_log fsrestart "ext4 restart: guest kernel log clean"

# 5. the device side killed for good: writes fail within a bounded time
truncate -s 64M "$T/win4" "$T/disk4.img"
bg "$T/srv4.log" "$XVL" server --link window --window "$T/win4" \
	--dev name=d0,backend=file,path="$T/disk4.img"
S4=$BG_PID
if writer_guest gone "$T/win4"; then
	sleep 1.5
	kill -KILL "$S4"; wait "$S4" 2>/dev/null
fi
wait "$GPID"
GRC=$?
el=$(tr -d '\r' <"$T/gone.log" | sed -n 's/^GUEST: write failed after \([0-9]*\) s$/\1/p')
if [ "$GRC" = 3 ] && [ -n "$el" ] && [ "$el" -le 9 ] && grep -aq "GUEST: unloaded" "$T/gone.log"; then
	ok "server killed for good: guest writes fail with an I/O error (${el} s into the workload), module unloads"
else
	fail "server killed for good: guest writes fail with an I/O error, module unloads (guest $GRC, ${el:-?} s)"
	show_guest gone 40
fi
clean_log gone "server gone: guest kernel log clean"

# 6. a hostile device (tests/hostile/hostile_device.c speaking the mailbox)
# attacking the guest: one case per load of the module, all in one guest.
CASES="used_id_unsubmitted used_id_oob used_len_big used_idx_jump double_completion bad_status silent
	event_broken held_overflow restart_broken restart_refuse mbox_garbage good"
CASES=$(echo $CASES)
R=$E2E_ROOT
if ! ${CC:-gcc} -std=gnu11 -g -O1 -Wall -Wextra -D_GNU_SOURCE -I"$R/include" -I"$R/src/core" \
	-I"$R/src/os" -I"$R/tests/hostile" "$R"/src/core/{window,virtq,proto,mailbox}.c "$R"/src/os/*.c \
	"$R/tests/hostile/hostile_device.c" -o "$T/hostile_device" 2>"$T/hd.cc.log"; then
	fail "build the hostile device"
	head -n 10 "$T/hd.cc.log" | sed 's/^/#   /'
	finish
fi
cat >"$T/hostile.sh" <<EOF
#!/bin/sh
trap 'dmesg | sed "s/^/DMESG: /"' EXIT
echo
rmmod xvl_virtio
dd if=/dev/urandom of=/tmp/trig bs=512 count=1 2>/dev/null
for c in $CASES; do
	dmesg -c >/dev/null
	insmod /lib/modules/xvl_virtio.ko io_timeout_ms=2000 link_timeout_ms=1000 reconnect_ms=2000 ||
		{ echo "CASE \$c insmod-failed"; continue; }
	i=0
	while [ ! -b /dev/vda ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i+1)); done
	if [ ! -b /dev/vda ]; then echo "CASE \$c no-vda"; rmmod xvl_virtio; continue; fi
	# the hostile device serves honestly until this write (sector 1024), then attacks
	dd if=/tmp/trig of=/dev/vda bs=512 seek=1024 count=1 oflag=direct conv=notrunc 2>/dev/null; t=\$?
	dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=16 iflag=direct 2>/dev/null; r1=\$?
	dd if=/dev/vda of=/dev/null bs=4096 count=1 skip=32 iflag=direct 2>/dev/null; r2=\$?
	k=0; dmesg | grep -q "its requests fail from now on" && k=1
	rmmod xvl_virtio; u=\$?
	echo "CASE \$c trig=\$t r1=\$r1 r2=\$r2 killed=\$k rmmod=\$u"
	dmesg | grep -E "BUG|Oops|WARNING|soft lockup|KASAN" && echo "CASE-DIRTY \$c"
done
exit 0
EOF
chmod +x "$T/hostile.sh"
truncate -s 64M "$T/win5"
# the first case is taken by the module load in the guest's init
bg "$T/hd.log" "$T/hostile_device" --window "$T/win5" good $CASES
guest hostile "$T/hostile.sh" -object memory-backend-file,id=w,share=on,mem-path="$T/win5",size=64M \
	-device ivshmem-plain,memdev=w
case_line() { tr -d '\r' <"$T/hostile.log" | sed -n "s/.*CASE $1 //p"; }
# expect_case CASE R1 R2 KILLED: r = 0 (read worked) or x (read failed)
expect_case() {
	local got want
	got=$(case_line "$1")
	want="trig=0 r1=$2 r2=$3 killed=$4 rmmod=0"
	got=$(echo "$got" | sed 's/r\([12]\)=[1-9][0-9]*/r\1=x/g')
	expect_eq "$want" "$got" "hostile device, $1: $5"
}
expect_case used_id_unsubmitted x x 1 "queue killed, reads fail, module unloads"
expect_case used_id_oob x x 1 "queue killed, reads fail, module unloads"
expect_case used_len_big 0 0 0 "lengths clamped, reads work"
expect_case used_idx_jump x x 1 "queue killed, reads fail, module unloads"
expect_case double_completion x x 1 "queue killed, reads fail, module unloads"
expect_case bad_status x 0 0 "the request with status 7 fails, the next works"
expect_case silent x x 1 "requests fail after io_timeout_ms, module unloads"
expect_case event_broken x x 1 "EVENT BROKEN kills the queue, module unloads"
expect_case held_overflow 0 0 0 "EVENT RESTART twice at DRIVER_OK: set up again, reads work"
expect_case restart_broken x x 1 "EVENT RESTART, then SET_QUEUE refused: queue killed, module unloads"
expect_case restart_refuse x x 1 "EVENT RESTART, then SET_FEATURES refused: queue killed, module unloads"
expect_case mbox_garbage x x 1 "mailbox index a ring ahead, again at every session: link broken, given up after reconnect_ms"
expect_case good 0 0 0 "the well-behaved control works"
grep -aq "CASE-DIRTY" "$T/hostile.log" && fail "hostile device: a case left BUG/WARNING in the log" ||
	ok "hostile device: no case left BUG/WARNING in the log"
clean_log hostile "hostile device: guest kernel log clean"

finish
