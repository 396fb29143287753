#!/usr/bin/env bash
# Two TCG guests sharing one ivshmem-doorbell window, interrupt-driven both
# ways (issue 10, item 5, with doorbells): the host's `xvl server --window
# ivshmem:SOCK,relay` is only the ivshmem server (no devices); guest A
# (peer 1) serves a RAM disk with `xvl server --window vfio:BDF,peer=2`,
# guest B (peer 2) verifies it with `xvl blk verify --connect
# vfio:BDF,peer=1`.  QEMU routes each guest's BAR0 doorbell writes to the
# other's MSI-X vectors; nothing polls (server --poll-max-us 0, client
# without --poll) and both guests' vfio-msix counts must rise.  TAP.
# KEEP_T=DIR keeps the consoles and logs there.
set -u
. "$(dirname "$0")/lib.sh"
R=$E2E_ROOT
G=$R/scripts/guest
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }

bind='for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && bdf=${d##*/}
done
echo vfio-pci >/sys/bus/pci/devices/$bdf/driver_override
echo $bdf >/sys/bus/pci/drivers_probe'
initrd() { # NAME SCRIPT-BODY
	printf '#!/bin/sh\n%s\n%s\n' "$bind" "$2" >"$T/$1.sh"
	chmod +x "$T/$1.sh"
	"$G/initramfs.sh" "$T/$1.gz" --module vfio-pci --module vfio_iommu_type1 --bin "$XVL" \
		--run "$T/$1.sh" >"$T/$1.initrd.log" 2>&1
}
wait_for() { # FILE PATTERN SECONDS
	local i
	for i in $(seq $(($3 * 10))); do
		[ -f "$1" ] && tr -d "\r" <"$1" | grep -q "$2" && return 0
		sleep 0.1
	done
	return 1
}
irqs() { sed -n "s/.*IRQ: *[0-9]*: *\([0-9]*\) .*vfio-msix\[$2\].*/\1/p" "$1" | head -n 1; }
clean_console() { # FILE WHAT
	if grep -qE 'BUG|Oops|WARNING|soft lockup' "$1"; then
		fail "$2: guest kernel log has BUG/Oops/WARNING"
		grep -E 'BUG|Oops|WARNING|soft lockup' "$1" | head -3 | sed 's/^/#   /'
	else
		ok "$2: guest kernel log clean"
	fi
}

"$XVL" server --link window --window "ivshmem:$T/ivsh.sock,size=64M,vectors=4,relay" >"$T/relay.log" 2>&1 &
E2E_PIDS+=($!)
wait_for "$T/relay.log" serving 5 || { fail "the relay (ivshmem server) did not start"; finish; }
QDEV=(-device intel-iommu,intremap=on -chardev "socket,path=$T/ivsh.sock,id=ivsh"
      -device ivshmem-doorbell,chardev=ivsh,vectors=4)

# A: the device side; prints its MSI-X counts once the client has gone.
initrd ga 'xvl server --link window --window vfio:$bdf,peer=2 --poll-max-us 0 -d name=g0,backend=ram,size=32M >/tmp/s.log 2>&1 &
p=$!
while kill -0 $p 2>/dev/null && ! grep -q serving /tmp/s.log; do sleep 0.2; done
echo "GUEST-A-SERVING"
while kill -0 $p 2>/dev/null && ! grep -q "client .* disconnected" /tmp/s.log; do sleep 0.3; done
grep vfio-msix /proc/interrupts | sed "s/^/IRQ: /"
kill $p; wait $p
cat /tmp/s.log
exit 0'
# B: the driver side, sampling its MSI-X counts while the verification runs.
initrd gb 'xvl blk verify --connect vfio:$bdf,peer=1 --qd 4 --min 512 --max 1M --ops 20000 --time 2 >/tmp/v.log 2>&1 &
p=$!
while kill -0 $p 2>/dev/null; do
	grep vfio-msix /proc/interrupts >/tmp/irq.now && cp /tmp/irq.now /tmp/irq.last
	sleep 0.2
done
wait $p
rc=$?
cat /tmp/v.log
sed "s/^/IRQ: /" /tmp/irq.last 2>/dev/null
exit $rc'
XVL_GUEST_APPEND="intel_iommu=on" "$G/run.sh" --timeout 170 --log "$T/ga.log" "$T/ga.gz" "${QDEV[@]}" &
AP=$!
E2E_PIDS+=($AP)
if wait_for "$T/ga.log" GUEST-A-SERVING 90 && grep -q "ivshmem: peer 1 connected" "$T/relay.log"; then
	XVL_GUEST_APPEND="intel_iommu=on" "$G/run.sh" --timeout 150 --log "$T/gb.log" "$T/gb.gz" "${QDEV[@]}"
	rc=$?
	tr -d '\r' <"$T/gb.log" >"$T/gb.txt"
	if [ $rc -eq 0 ] && grep -q 'verified .* 0 mismatches, 0 failed requests, 0 completed twice' "$T/gb.txt"; then
		ok "two guests, doorbells both ways over vfio: device served in one, verified in the other ($(grep -m1 '^  random' "$T/gb.txt" | sed 's/  */ /g'))"
	else
		fail "two guests over vfio doorbells (exit $rc)"
		tail -n 10 "$T/gb.txt" | sed 's/^/#   /'
	fi
	b0=$(irqs "$T/gb.txt" 0) b1=$(irqs "$T/gb.txt" 1)
	[ "${b0:-0}" -gt 0 ] && [ "${b1:-0}" -gt 0 ] &&
		ok "the driver guest was rung by the device guest: MSI-X vector 0: $b0, vector 1: $b1" ||
		fail "driver guest: no MSI-X counted (vector 0: ${b0:-none}, vector 1: ${b1:-none})"
	clean_console "$T/gb.txt" "driver guest"
else
	fail "the serving guest did not start (or was not peer 1)"
	tail -n 5 "$T/ga.log" "$T/relay.log" | sed 's/^/#   /'
fi
wait "$AP"
tr -d '\r' <"$T/ga.log" >"$T/ga.txt"
a0=$(irqs "$T/ga.txt" 0) a1=$(irqs "$T/ga.txt" 1)
[ "${a0:-0}" -gt 0 ] && [ "${a1:-0}" -gt 0 ] &&
	ok "the device guest was rung by the driver guest: MSI-X vector 0: $a0, vector 1: $a1" ||
	{ fail "device guest: no MSI-X counted (vector 0: ${a0:-none}, vector 1: ${a1:-none})"; grep 'xvl server' "$T/ga.txt" | tail -4 | sed 's/^/#   /'; }
clean_console "$T/ga.txt" "device guest"
[ -n "${KEEP_T:-}" ] && cp -r "$T" "$KEEP_T"
finish
