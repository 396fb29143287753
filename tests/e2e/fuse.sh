#!/usr/bin/env bash
# FUSE export: xvl blk mount (src/fuse), end to end, no kernel loop device.
#   One xvl server, a file-backed (f0) and a RAM (r0) device, mounted with
#   `xvl blk mount --foreground`: one regular file per device.  Checked:
#   dd in and out + cmp with the backing file, qemu-img info, mmap read and
#   write (python3 mmap, msync), fsync, sub-sector writes (read-modify-write,
#   the bytes around them unchanged), writes at or past the end refused
#   with EFBIG and nothing written, a write across the end cut there, truncate refused, no file creation, a
#   device that does not exist, a mount point that is not a directory, and
#   a clean unmount (the command exits 0, nothing left in /proc/mounts).
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
[ -c /dev/fuse ] || { echo "1..0 # SKIP no /dev/fuse here"; exit 0; }
command -v fusermount3 >/dev/null || { echo "1..0 # SKIP no fusermount3 (Debian fuse3)"; exit 0; }

M=$T/mnt
mkdir -p "$M"
fuse_cleanup() { mountpoint -q "$M" 2>/dev/null && fusermount3 -u "$M"; e2e_cleanup; }
trap fuse_cleanup EXIT

MB=1048576
head -c $((64 * MB)) /dev/urandom >"$T/f0.img"
S=$T/s.sock
start_server "$T/server.log" "$S" -d name=f0,backend=file,path="$T/f0.img",queues=2 \
	-d name=r0,backend=ram,size=16M ||
	{ fail "server starts"; sed 's/^/#   /' "$T/server.log"; finish; }
ok "xvl server: f0 (file, 64 MiB of random bytes), r0 (ram, 16 MiB)"

# mount_fg LOG ARGS...: xvl blk mount --foreground ARGS $M; waits until mounted; sets MNT_PID
mount_fg() {
	local log=$1
	shift
	bg "$log" "$XVL" blk mount --foreground -c "$S" "$@" "$M"
	MNT_PID=$BG_PID
	for _ in $(seq 1 100); do
		mountpoint -q "$M" && return 0
		alive "$MNT_PID" || return 1
		sleep 0.05
	done
	return 1
}
# unmount_clean DESCRIPTION: fusermount3 -u, the mount command exits 0, nothing left
unmount_clean() {
	fusermount3 -u "$M" 2>"$T/err"
	local rc=1
	# its FUSE threads and the device's DETACH finish first; a loaded machine can take seconds
	for _ in $(seq 1 400); do alive "$MNT_PID" || break; sleep 0.05; done
	local still=""
	if ! alive "$MNT_PID"; then wait "$MNT_PID"; rc=$?; else still=", still running after 20 s"; fi
	if [ $rc -eq 0 ] && ! grep -q " $M " /proc/mounts; then
		ok "$1: unmounted, xvl blk mount exited 0, nothing in /proc/mounts"
	else
		fail "$1: unmount (mount command status $rc$still)"
		sed 's/^/#   /' "$T/err" "$T/mount.log" | tail -12
		[ -n "$still" ] && kill -9 "$MNT_PID" 2>/dev/null
	fi
}

if mount_fg "$T/mount.log"; then ok "xvl blk mount (all devices) is up"; else fail "xvl blk mount is up"; sed 's/^/#   /' "$T/mount.log"; finish; fi
expect_eq "xvloop:all fuse.xvloop" "$(awk -v m="$M" '$2 == m {print $1, $3}' /proc/mounts)" \
	"/proc/mounts: a FUSE file system (no loop device, no block device behind it)"
expect_eq "f0 r0" "$(ls "$M" | tr '\n' ' ' | sed 's/ $//')" "one file per device"
expect_eq "67108864 16777216" "$(stat -c %s "$M/f0" "$M/r0" | tr '\n' ' ' | sed 's/ $//')" \
	"file sizes are the devices' capacities"
expect_eq "regular file" "$(stat -c %F "$M/f0")" "f0 is a regular file"

# ---------------------------------------------------------------- dd, cmp, qemu-img
check "dd out the whole file equals the backing file" cmp "$M/f0" "$T/f0.img"
head -c $((4 * MB)) /dev/urandom >"$T/p4"
check "dd in 4 MiB at 3 MiB (conv=notrunc,fsync)" \
	dd if="$T/p4" of="$M/f0" bs=64k seek=48 conv=notrunc,fsync status=none
check "the backing file has them at 3 MiB" \
	cmp "$T/p4" <(dd if="$T/f0.img" bs=64k skip=48 count=64 status=none)
check "and the file as a whole still equals the backing file" cmp "$M/f0" "$T/f0.img"
head -c $((16 * MB)) /dev/urandom >"$T/p16"
check "dd 16 MiB into r0 and back, cmp" bash -c "dd if='$T/p16' of='$M/r0' bs=1M conv=notrunc status=none &&
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; cmp '$T/p16' '$M/r0'"
# 8 writers at once on distinct 2 MiB ranges (odd sizes: partial sectors at both ends), then cmp
head -c $((16 * MB)) /dev/urandom >"$T/par"
python3 - "$M/f0" "$T/par" <<'EOF'
import os, sys, threading
path, src = sys.argv[1], open(sys.argv[2], "rb").read()
def writer(i):
    fd = os.open(path, os.O_WRONLY)
    base = 16 * 1048576 + i * 2 * 1048576 + 7
    chunk = src[i * 2 * 1048576 + 7:(i + 1) * 2 * 1048576 - 5]
    for off in range(0, len(chunk), 65536 - 333):
        os.pwrite(fd, chunk[off:off + 65536 - 333], base + off)
    os.close(fd)
ts = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
EOF
python3 - "$T/f0.img" "$T/par" >"$T/par.out" <<'EOF'
import sys
img, src = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
bad = [i for i in range(8) if img[16 * 1048576 + i * 2 * 1048576 + 7:16 * 1048576 + (i + 1) * 2 * 1048576 - 5]
       != src[i * 2 * 1048576 + 7:(i + 1) * 2 * 1048576 - 5]]
print("ok" if not bad else "ranges differ: %s" % bad)
EOF
expect_eq ok "$(cat "$T/par.out")" "8 threads writing unaligned 64 KiB pieces at once: every range lands in the backing file"
check "and 8 readers at once read the whole file back equal to the backing file" \
	bash -c "for i in 0 1 2 3 4 5 6 7; do cmp '$M/f0' '$T/f0.img' & done; wait_all=0; for j in \$(jobs -p); do wait \$j || wait_all=1; done; exit \$wait_all"
check "qemu-img info on the file: raw, 64 MiB" \
	bash -c "qemu-img info -f raw '$M/f0' | grep -q 'virtual size: 64 MiB'"

# ---------------------------------------------------------------- mmap, fsync, partial sectors, the end
python3 - "$M/f0" "$T/f0.img" >"$T/py.out" 2>&1 <<'EOF'
import errno, mmap, os, sys
path, img = sys.argv[1], sys.argv[2]
def verdict(ok, what): print(("PASS " if ok else "FAIL ") + what)
def image(off, n):
    with open(img, "rb") as f:
        f.seek(off); return f.read(n)
fd = os.open(path, os.O_RDWR)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
verdict(m[5 << 20:(5 << 20) + 65536] == image(5 << 20, 65536), "mmap read equals the backing file")
pat = os.urandom(3 * 4096 + 100)
m[(7 << 20) + 50:(7 << 20) + 50 + len(pat)] = pat
m.flush()
verdict(image((7 << 20) + 50, len(pat)) == pat, "mmap write + msync lands in the backing file")
m.close()
os.fsync(fd)
verdict(True, "fsync returns 0")
before = image(0, 4096)
os.pwrite(fd, b"xyz", 1001)
after = image(0, 4096)
verdict(after == before[:1001] + b"xyz" + before[1004:], "3-byte write at 1001: read-modify-write, neighbours kept")
before = image(8192 - 5, 10)
os.pwrite(fd, b"0123456789", 8192 - 5)
verdict(image(8192 - 5, 10) == b"0123456789", "10-byte write across a sector boundary")
verdict(os.pread(fd, 10, 8192 - 5) == b"0123456789", "and reads back through the file")
tail = image(size - 512, 512)
for off, n, what in ((size, 512, "at the end"), (size + (1 << 30), 4096, "a GiB past the end")):
    try:
        os.pwrite(fd, b"\xee" * n, off)
        verdict(False, f"write {what} is refused (it succeeded)")
    except OSError as e:
        verdict(e.errno == errno.EFBIG, f"write {what} is refused with EFBIG (got {errno.errorcode.get(e.errno)})")
verdict(image(size - 512, 512) == tail, "the device's last sector is untouched")
n = os.pwrite(fd, b"\xee" * 200, size - 100)
verdict(n == 100, f"a 200-byte write 100 bytes before the end is cut there (returned {n})")
verdict(image(size - 512, 512) == tail[:412] + b"\xee" * 100, "its first 100 bytes landed, the sector's others kept")
verdict(os.pread(fd, 4096, size) == b"", "a read at the end returns nothing")
verdict(len(os.pread(fd, 4096, size - 1000)) == 1000, "a read across the end is short")
try:
    os.ftruncate(fd, 4096)
    verdict(False, "truncate to 4 KiB is refused (it succeeded)")
except OSError as e:
    verdict(e.errno == errno.EPERM, "truncate to 4 KiB is refused with EPERM")
verdict(os.fstat(fd).st_size == size, "the size did not change")
os.close(fd)
try:
    open(os.path.join(os.path.dirname(path), "new"), "w")
    verdict(False, "no file can be created")
except OSError:
    verdict(True, "no file can be created")
EOF
while read -r v rest; do
	case $v in
	PASS) ok "$rest" ;;
	FAIL) fail "$rest" ;;
	*) note "python: $v $rest" ;;
	esac
done <"$T/py.out"
check "after all that, the file still equals the backing file" cmp "$M/f0" "$T/f0.img"
if alive "$SRV_PID"; then ok "xvl server still up"; else fail "xvl server still up"; fi
unmount_clean "all devices"

# ---------------------------------------------------------------- --device, daemon mode
if mount_fg "$T/mount.log" --device r0; then
	expect_eq "r0" "$(ls "$M")" "--device r0: only r0"
	check "r0 kept what dd wrote before the remount" cmp "$T/p16" "$M/r0"
	unmount_clean "--device r0"
else
	fail "xvl blk mount --device r0"
fi
if "$XVL" blk mount -c "$S" -d f0 "$M" 2>"$T/err" && mountpoint -q "$M"; then
	ok "without --foreground the command returns once mounted"
	check "and the background process serves: cmp with the backing file" cmp "$M/f0" "$T/f0.img"
	check "fusermount3 -u" fusermount3 -u "$M"
else
	fail "xvl blk mount in the background"
	sed 's/^/#   /' "$T/err"
fi

# ---------------------------------------------------------------- bad input
# refused DESCRIPTION PATTERN ARGS...: exit non-zero, message names PATTERN, nothing mounted
refused() {
	local d=$1 pat=$2
	shift 2
	timeout -k 2 10 "$XVL" blk mount "$@" >"$T/out" 2>"$T/err"
	local rc=$?
	if [ $rc -ne 0 ] && [ $rc -lt 124 ] && head -n 1 "$T/err" | grep -Eq -- "$pat" && ! mountpoint -q "$M"; then
		ok "$d: exit $rc, \"$(head -n 1 "$T/err" | head -c 150)\""
	else
		fail "$d (exit $rc)"
		sed 's/^/#   /' "$T/err" | head -3
		mountpoint -q "$M" && fusermount3 -u "$M"
	fi
}
refused "a device that does not exist" "nope" -c "$S" -d nope "$M"
refused "a server that is not there" "nobody\.sock" -c "$T/nobody.sock" "$M"
refused "a mount point that is not a directory" "not a directory" -c "$S" "$T/f0.img"
refused "a mount point that does not exist" "nodir" -c "$S" "$T/nodir"
refused "no mount point" "MOUNTPOINT" -c "$S"
stop_server "$SRV_PID"
expect_eq 0 $? "server stops cleanly"
finish
