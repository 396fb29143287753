#!/usr/bin/env bash
# QEMU guests as compartments, user space (issue 10, item 5): xvl in a TCG
# guest (Debian's cloud kernel, busybox initramfs, one vCPU) over the
# mailbox link in an ivshmem window, the guest mapping the BAR
# (/sys/bus/pci/devices/BDF/resource2) and polling:
#   1. host-served: `xvl server` on the host is QEMU's ivshmem server
#      (ivshmem-doorbell); the guest's `xvl blk verify` uses its device;
#   2. guest-served: `xvl server` in the guest on an ivshmem-plain window
#      (a host shm file); the host's `xvl blk verify` uses its device;
#   3. two guests sharing one window: the server in one, the client in the
#      other; the host only provides the file.
# Every guest console is checked for BUG/Oops/WARNING/soft lockup.  TAP.
set -u
. "$(dirname "$0")/lib.sh"
R=$E2E_ROOT
G=$R/scripts/guest
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }

# the ivshmem device's BAR2, found by vendor/device id
cat >"$T/find.sh" <<'GUEST'
bar=""
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && bar=$d/resource2
done
[ -n "$bar" ] || { echo "guest: no ivshmem device"; exit 1; }
echo 1 >"${bar%/resource2}/enable" 2>/dev/null
GUEST
initrd() { # NAME SCRIPT-BODY
	{ echo '#!/bin/sh'; cat "$T/find.sh"; echo "$2"; } >"$T/$1.sh"
	chmod +x "$T/$1.sh"
	"$G/initramfs.sh" "$T/$1.gz" --bin "$XVL" --run "$T/$1.sh" >"$T/$1.initrd.log" 2>&1
}
clean_console() { # FILE WHAT
	if grep -qE 'BUG|Oops|WARNING|soft lockup' "$1"; then
		fail "$2: guest kernel log has BUG/Oops/WARNING"
		grep -E 'BUG|Oops|WARNING|soft lockup' "$1" | head -3 | sed 's/^/#   /'
	else
		ok "$2: guest kernel log clean"
	fi
}
verified() { grep -q 'verified .* 0 mismatches, 0 failed requests, 0 completed twice' "$1"; }
wait_for() { # FILE PATTERN SECONDS
	local i
	for i in $(seq $(($3 * 10))); do
		[ -f "$1" ] && tr -d "\r" <"$1" | grep -q "$2" && return 0
		sleep 0.1
	done
	return 1
}
VERIFY="--poll --qd 4 --min 512 --max 256K --ops 1000"

# ---------------------------------------------------------------- 1. host-served
"$XVL" server --link window --window "ivshmem:$T/ivsh.sock,size=64M,vectors=4" \
	-d name=h0,backend=ram,size=32M >"$T/srv1.log" 2>&1 &
E2E_PIDS+=($!)
wait_for "$T/srv1.log" serving 5 || { fail "host server (ivshmem server) did not start"; finish; }
initrd g1 "xvl blk verify --connect window:\$bar $VERIFY"
"$G/run.sh" --timeout 120 --log "$T/g1.log" "$T/g1.gz" \
	-chardev socket,path="$T/ivsh.sock",id=ivsh -device ivshmem-doorbell,chardev=ivsh,vectors=4
rc=$?
tr -d '\r' <"$T/g1.log" >"$T/g1.txt"
if [ $rc -eq 0 ] && verified "$T/g1.txt"; then
	ok "host-served device verified from inside a TCG guest ($(grep -m1 '^  random' "$T/g1.txt" | sed 's/  */ /g'))"
else
	fail "host-served device from a guest (exit $rc)"
	tail -n 15 "$T/g1.txt" | sed 's/^/#   /'
	tail -n 5 "$T/srv1.log" | sed 's/^/#   /'
fi
grep -q 'device side ready' "$T/srv1.log" && ok "the host server found the guest's mailbox in the ivshmem window" ||
	fail "host server never saw the guest's mailbox"
clean_console "$T/g1.txt" "host-served"

# ---------------------------------------------------------------- 2. guest-served
W=/dev/shm/xvl-e2e-gm-$$
truncate -s 64M "$W"
trap 'rm -f "$W" "$W.2"; e2e_cleanup' EXIT
initrd g2 "xvl server --link window --window \$bar -d name=g0,backend=ram,size=32M"
"$G/run.sh" --timeout 120 --log "$T/g2.log" "$T/g2.gz" \
	-object memory-backend-file,id=w,share=on,mem-path="$W",size=64M -device ivshmem-plain,memdev=w &
QP=$!
E2E_PIDS+=($QP)
if wait_for "$T/g2.log" 'serving' 60; then
	if "$XVL" blk verify --connect "window:$W" $VERIFY >"$T/v2.log" 2>&1 && verified "$T/v2.log"; then
		ok "guest-served device verified from the host ($(grep -m1 '^  random' "$T/v2.log" | sed 's/  */ /g'))"
	else
		fail "guest-served device from the host"
		tail -n 8 "$T/v2.log" | sed 's/^/#   /'
	fi
else
	fail "the guest's server did not start"
fi
pkill -TERM -P "$QP" 2>/dev/null; kill "$QP" 2>/dev/null; wait "$QP" 2>/dev/null
tr -d '\r' <"$T/g2.log" >"$T/g2.txt"
clean_console "$T/g2.txt" "guest-served"

# ---------------------------------------------------------------- 3. two guests, one window
truncate -s 0 "$W"; truncate -s 64M "$W"
initrd g3s "xvl server --link window --window \$bar -d name=s0,backend=ram,size=32M"
initrd g3c "xvl blk verify --connect window:\$bar $VERIFY"
IV="-object memory-backend-file,id=w,share=on,mem-path=$W,size=64M -device ivshmem-plain,memdev=w"
"$G/run.sh" --timeout 150 --log "$T/g3s.log" "$T/g3s.gz" $IV &
SP=$!
E2E_PIDS+=($SP)
if wait_for "$T/g3s.log" 'serving' 60; then
	"$G/run.sh" --timeout 120 --log "$T/g3c.log" "$T/g3c.gz" $IV
	rc=$?
	tr -d '\r' <"$T/g3c.log" >"$T/g3c.txt"
	if [ $rc -eq 0 ] && verified "$T/g3c.txt"; then
		ok "two guests sharing only one window: device served in one, verified in the other ($(grep -m1 '^  random' "$T/g3c.txt" | sed 's/  */ /g'))"
	else
		fail "two guests, one window (exit $rc)"
		tail -n 10 "$T/g3c.txt" | sed 's/^/#   /'
	fi
	clean_console "$T/g3c.txt" "two guests, client"
else
	fail "the serving guest did not start"
fi
pkill -TERM -P "$SP" 2>/dev/null; kill "$SP" 2>/dev/null; wait "$SP" 2>/dev/null
tr -d '\r' <"$T/g3s.log" >"$T/g3s.txt"
clean_console "$T/g3s.txt" "two guests, server"
finish
