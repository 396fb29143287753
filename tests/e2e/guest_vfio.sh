#!/usr/bin/env bash
# A QEMU guest's user space on the ivshmem doorbell, both directions
# interrupt-driven (issue 10, item 2): `xvl server` on the host is QEMU's
# ivshmem server with eventfd vectors; in a TCG guest (q35, emulated
# intel-iommu with interrupt remapping, intel_iommu=on, Debian's vfio,
# vfio_iommu_type1 and vfio-pci modules) the ivshmem-doorbell device is
# bound to vfio-pci and `xvl blk verify --connect vfio:BDF` rings the host
# through BAR0 and waits on MSI-X eventfds.  The host server runs with
# --poll-max-us 0 and the client without --poll, and the guest's
# /proc/interrupts must show the vfio-msix vectors firing: the I/O was
# carried by doorbells, not by polling.  A second guest without an IOMMU
# checks that the error names the missing step.  And the reverse: the
# server in the guest on vfio (--window vfio:BDF), the client on the host
# being the ivshmem server itself (--connect ivshmem-server:SOCK).  TAP.
set -u
. "$(dirname "$0")/lib.sh"
R=$E2E_ROOT
G=$R/scripts/guest
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }

# the ivshmem device's address, found by vendor/device id
cat >"$T/find.sh" <<'GUEST'
bdf=""
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && bdf=${d##*/}
done
[ -n "$bdf" ] || { echo "guest: no ivshmem device"; exit 1; }
GUEST
initrd() { # NAME SCRIPT-BODY
	{ echo '#!/bin/sh'; cat "$T/find.sh"; echo "$2"; } >"$T/$1.sh"
	chmod +x "$T/$1.sh"
	"$G/initramfs.sh" "$T/$1.gz" --module vfio-pci --module vfio_iommu_type1 --bin "$XVL" \
		--run "$T/$1.sh" >"$T/$1.initrd.log" 2>&1
}
clean_console() { # FILE WHAT
	if grep -qE 'BUG|Oops|WARNING|soft lockup' "$1"; then
		fail "$2: guest kernel log has BUG/Oops/WARNING"
		grep -E 'BUG|Oops|WARNING|soft lockup' "$1" | head -3 | sed 's/^/#   /'
	else
		ok "$2: guest kernel log clean"
	fi
}
wait_for() { # FILE PATTERN SECONDS
	local i
	for i in $(seq $(($3 * 10))); do
		[ -f "$1" ] && tr -d "\r" <"$1" | grep -q "$2" && return 0
		sleep 0.1
	done
	return 1
}
IOMMU=(-device intel-iommu,intremap=on)
ivsh() { echo "-chardev socket,path=$T/ivsh.sock,id=ivsh -device ivshmem-doorbell,chardev=ivsh,vectors=$1"; }

# On the host, before any guest: the URIs' errors say what to do.
out=$("$XVL" blk info --connect "ivshmem-server:$T/none.sock,vectors=2,wait=1" 2>&1)
case $out in
*"no peer connected within 1 s"*"-device ivshmem-doorbell,chardev=ID,vectors=2"*)
	ok "ivshmem-server: without a peer the error shows the QEMU options" ;;
*) fail "ivshmem-server without a peer: $out" ;;
esac
out=$("$XVL" blk info --connect "vfio:00:01.0,vectors=2" 2>&1)
case $out in
*"unknown option 'vectors=2' (only peer=N)"*) ok "vfio: an unknown option is refused" ;;
*) fail "vfio: unknown option: $out" ;;
esac

"$XVL" server --link window --window "ivshmem:$T/ivsh.sock,size=64M,vectors=4" --poll-max-us 0 \
	-d name=h0,backend=ram,size=32M >"$T/srv.log" 2>&1 &
E2E_PIDS+=($!)
wait_for "$T/srv.log" serving 5 || { fail "host server (ivshmem server) did not start"; finish; }

# ---------------------------------------------------------------- 1. doorbells over vfio
# Before binding: the error names driver_override.  Then verify 512 B..1 MiB while
# keeping the last /proc/interrupts sample that still shows the vfio vectors (the
# random phase runs 2 s, so there are samples from the middle of it)
# (they go away when the client closes the device).
initrd g1 '
xvl blk info --connect vfio:$bdf 2>&1 | sed "s/^/UNBOUND: /"
echo vfio-pci >/sys/bus/pci/devices/$bdf/driver_override
echo $bdf >/sys/bus/pci/drivers_probe
xvl blk verify --connect vfio:$bdf --qd 4 --min 512 --max 1M --ops 20000 --time 2 >/tmp/v.log 2>&1 &
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
XVL_GUEST_APPEND="intel_iommu=on" "$G/run.sh" --timeout 150 --log "$T/g1.log" "$T/g1.gz" \
	"${IOMMU[@]}" $(ivsh 4)
rc=$?
tr -d '\r' <"$T/g1.log" >"$T/g1.txt"
if grep -q 'UNBOUND: .*not vfio-pci.*driver_override' "$T/g1.txt"; then
	ok "device not bound to vfio-pci: the error says how to bind it"
else
	fail "unbound device: no error naming driver_override"
	grep -E 'UNBOUND|XVL-GUEST' "$T/g1.txt" | head -3 | sed 's/^/#   /'
fi
if [ $rc -eq 0 ] && grep -q 'verified .* 0 mismatches, 0 failed requests, 0 completed twice' "$T/g1.txt" &&
	grep -q 'notifications' "$T/g1.txt"; then
	ok "host-served device verified from a TCG guest over vfio, 512 B..1 MiB ($(grep -m1 '^  random' "$T/g1.txt" | sed 's/  */ /g'))"
else
	fail "host-served device over vfio from a guest (exit $rc)"
	tail -n 15 "$T/g1.txt" | sed 's/^/#   /'
	tail -n 5 "$T/srv.log" | sed 's/^/#   /'
fi
# IRQ: NN:  COUNT  ...  vfio-msix[V](BDF)
irqs() { sed -n "s/.*IRQ: *[0-9]*: *\([0-9]*\) .*vfio-msix\[$2\].*/\1/p" "$1" | head -n 1; }
m0=$(irqs "$T/g1.txt" 0) m1=$(irqs "$T/g1.txt" 1)
if [ "${m0:-0}" -gt 0 ] && [ "${m1:-0}" -gt 0 ]; then
	ok "the host's rings arrived as MSI-X: mailbox vector 0: $m0, queue vector 1: $m1 interrupts"
else
	fail "no MSI-X interrupts counted (vector 0: ${m0:-none}, vector 1: ${m1:-none})"
	grep '^IRQ' "$T/g1.txt" | sed 's/^/#   /'
fi
grep -q 'device side ready' "$T/srv.log" && ok "the host server (no queue polling) served the guest's mailbox" ||
	fail "host server never saw the guest's mailbox"
clean_console "$T/g1.txt" "vfio guest"

# ---------------------------------------------------------------- 2. the reverse
# The device side in the guest (xvl server --window vfio:BDF, no queue polling), the
# driver on the host as the ivshmem server QEMU connects to (ivshmem-server:SOCK).
# The guest prints its MSI-X counts once the host client has gone.
initrd g3 '
echo vfio-pci >/sys/bus/pci/devices/$bdf/driver_override
echo $bdf >/sys/bus/pci/drivers_probe
xvl server --link window --window vfio:$bdf --poll-max-us 0 -d name=g0,backend=ram,size=32M >/tmp/s.log 2>&1 &
p=$!
while kill -0 $p 2>/dev/null && ! grep -q "client .* disconnected" /tmp/s.log; do sleep 0.3; done
grep vfio-msix /proc/interrupts | sed "s/^/IRQ: /"
kill $p
wait $p
cat /tmp/s.log
exit 0'
"$XVL" blk verify --connect "ivshmem-server:$T/rev.sock,vectors=4,wait=90" --qd 4 --min 512 --max 1M \
	--ops 300 >"$T/v3.log" 2>&1 &
VP=$!
E2E_PIDS+=($VP)
for _ in $(seq 50); do [ -S "$T/rev.sock" ] && break; sleep 0.1; done
XVL_GUEST_APPEND="intel_iommu=on" "$G/run.sh" --timeout 150 --log "$T/g3.log" "$T/g3.gz" \
	"${IOMMU[@]}" -chardev socket,path="$T/rev.sock",id=ivsh -device ivshmem-doorbell,chardev=ivsh,vectors=4 &
QP=$!
E2E_PIDS+=($QP)
wait "$VP"
vrc=$?
wait "$QP"
tr -d '\r' <"$T/g3.log" >"$T/g3.txt"
if [ $vrc -eq 0 ] && grep -q 'verified .* 0 mismatches, 0 failed requests, 0 completed twice' "$T/v3.log"; then
	ok "guest-served device (xvl server --window vfio:BDF) verified from the host ($(grep -m1 '^  random' "$T/v3.log" | sed 's/  */ /g'))"
else
	fail "guest-served device over vfio from the host (exit $vrc)"
	tail -n 8 "$T/v3.log" | sed 's/^/#   /'
	grep 'xvl server' "$T/g3.txt" | tail -n 5 | sed 's/^/#   /'
fi
m0=$(irqs "$T/g3.txt" 0) m1=$(irqs "$T/g3.txt" 1)
if [ "${m0:-0}" -gt 0 ] && [ "${m1:-0}" -gt 0 ]; then
	ok "the host client's rings reached the guest's server as MSI-X: vector 0: $m0, vector 1: $m1"
else
	fail "guest server: no MSI-X interrupts counted (vector 0: ${m0:-none}, vector 1: ${m1:-none})"
	grep 'IRQ' "$T/g3.txt" | sed 's/^/#   /'
fi
clean_console "$T/g3.txt" "vfio guest, device side"

# ---------------------------------------------------------------- 3. no IOMMU
initrd g2 '
echo vfio-pci >/sys/bus/pci/devices/$bdf/driver_override
echo $bdf >/sys/bus/pci/drivers_probe 2>/dev/null
xvl blk info --connect vfio:$bdf 2>&1 | sed "s/^/NOIOMMU: /"
exit 0'
"$G/run.sh" --timeout 90 --log "$T/g2.log" "$T/g2.gz" $(ivsh 2)
tr -d '\r' <"$T/g2.log" >"$T/g2.txt"
if grep -q 'NOIOMMU: .*no IOMMU group.*intel_iommu=on' "$T/g2.txt"; then
	ok "guest without an IOMMU: the error says to boot with intel_iommu=on and an emulated IOMMU"
else
	fail "guest without an IOMMU: no error naming the IOMMU"
	grep -E 'NOIOMMU|XVL-GUEST|vfio' "$T/g2.txt" | head -3 | sed 's/^/#   /'
fi
finish
