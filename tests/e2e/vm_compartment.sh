#!/usr/bin/env bash
# VM compartments in the partitioner (type = "vm", docs/PARTITIONER.md):
#   - a config with a device compartment (xvl server, file backend) and a VM
#     driver compartment (Debian's cloud kernel + xvl_virtio.ko, TCG, 1 vCPU)
#     passes --check; bad VM configs give one FILE:LINE: KEY: line;
#   - xvl run --detach: the guest finds /dev/vda on the window the
#     partitioner made, writes 4 MiB (O_DIRECT) and reads it back equal; the
#     host's disk image holds the same bytes;
#   - xvl status --json shows the VM (type, accel, vCPUs, memory, running);
#   - the device compartment killed with SIGKILL under guest writes: the
#     partitioner restarts it on the same window, the guest's module resumes,
#     no write fails, the readback is equal;
#   - the guest powers off: the VM compartment is reported exited with status 0;
#   - xvl stop leaves no QEMU, no process, no state dir;
#   - a second instance whose QEMU is killed with SIGKILL: the VM is reported
#     killed by SIGKILL, its window released, the device side untouched;
#   - the guest's console has no BUG|Oops|WARNING|soft lockup.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { echo "1..0 # SKIP no qemu-system-x86_64"; exit 0; }
if ! unshare --user --map-root-user --pid --fork --mount --net true 2>/dev/null &&
	! unshare --pid --fork --mount --net true 2>/dev/null; then
	echo "1..0 # SKIP cannot create namespaces here"
	exit 0
fi
G=$E2E_ROOT/scripts/guest
eval "$("$G/kernel.sh" 2>"$T/kernel.log")" || { echo "1..0 # SKIP no guest kernel ($(tail -1 "$T/kernel.log"))"; exit 0; }

# The module: kernel/xvl_virtio.ko when it is newer than its sources, else a private build.
KO=$E2E_ROOT/kernel/xvl_virtio.ko
if [ ! -f "$KO" ] || [ -n "$(find "$E2E_ROOT/kernel" "$E2E_ROOT/src/core" -name '*.[ch]' -newer "$KO" | head -n 1)" ]; then
	KB=$("$G/kernel.sh" --headers 2>>"$T/kernel.log" | sed -n 's/^KBUILD=//p')
	[ -n "$KB" ] || { echo "1..0 # SKIP no guest kernel headers"; exit 0; }
	mkdir -p "$T/src/src"
	cp -r "$E2E_ROOT/kernel" "$T/src/kernel"
	cp -r "$E2E_ROOT/src/core" "$T/src/src/core"
	(cd "$T/src/kernel" && find . \( -name '*.o' -o -name '*.ko' -o -name '*.cmd' \) -delete; rm -rf core)
	make -C "$KB" M="$T/src/kernel" -j2 modules >"$T/build.log" 2>&1 || { fail "build xvl_virtio.ko"; finish; }
	KO=$T/src/kernel/xvl_virtio.ko
fi

SD=$T/state
NAME=vmc$$
CON=$T/console.log
part_cleanup() { [ -S "$SD/ctl.sock" ] && "$XVL" stop --state-dir "$SD" >/dev/null 2>&1; e2e_cleanup; }
trap part_cleanup EXIT

cat >"$T/guest.sh" <<'EOF'
#!/bin/sh
echo
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || { echo "GUEST: no /dev/vda"; dmesg | tail; exit 1; }
echo "GUEST: vda $(cat /sys/block/vda/size) sectors"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/vda bs=65536 oflag=direct 2>/dev/null || { echo "GUEST: write failed"; exit 1; }
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=65536 count=64 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs"; exit 1; }
echo "GUEST: verified $(sha256sum /tmp/pat | cut -d' ' -f1)"
# the host kills the device compartment while these writes run
echo "GUEST: writing"
t0=$(date +%s) r=0
while [ $(( $(date +%s) - t0 )) -lt 6 ]; do
	dd if=/tmp/pat of=/dev/vda bs=65536 oflag=direct conv=notrunc 2>/dev/null ||
		{ echo "GUEST: write failed during the restart"; exit 1; }
	r=$((r+1))
done
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/vda of=/tmp/back bs=65536 count=64 iflag=direct 2>/dev/null || { echo "GUEST: read failed"; exit 1; }
cmp /tmp/pat /tmp/back || { echo "GUEST: readback differs after the restart"; exit 1; }
echo "GUEST: $r rounds written across the restart, readback equal"
dmesg | grep -E "link:|again" | sed 's/^/DMESG: /'
dmesg | grep -qE "set up again after a restart|requests resubmitted" && echo "GUEST: the module resumed on the restarted device side"
rmmod virtio_blk && rmmod xvl_virtio && echo "GUEST: unloaded"
exit 0
EOF
chmod +x "$T/guest.sh"
"$G/initramfs.sh" "$T/guest.img" --module virtio_ring --module virtio --module virtio_blk --ko "$KO" \
	--run "$T/guest.sh" >"$T/initramfs.log" 2>&1 || { fail "initramfs"; finish; }

truncate -s 64M "$T/disk.img"
cat >"$T/vm.cfg" <<EOF
name = "$NAME";
state_dir = "$SD";
windows = ( { name = "w"; size = "64M"; } );
devices = ( { name = "d0"; backend = "file"; path = "$T/disk.img"; } );
compartments = (
  { name = "dev"; role = "device"; devices = ["d0"]; },
  { name = "guest"; type = "vm"; window = "w"; connect = "dev"; kernel = "$GUEST_VMLINUZ";
    initrd = "$T/guest.img"; memory = "512M"; vcpus = 1; console = "$CON"; append = "loglevel=4"; }
);
EOF
check "a config with a device compartment and a VM compartment passes --check" "$XVL" run "$T/vm.cfg" --check

# bad VM configs: one FILE:LINE: KEY: line each
bad_cfg() {
	sed "$1" "$T/vm.cfg" >"$T/bad.cfg"
	local out
	out=$("$XVL" run "$T/bad.cfg" --check 2>&1)
	if [ $? -ne 0 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "^$T/bad.cfg:[0-9]*: .*$2"; then
		ok "bad VM config refused in one line: $2"
	else
		fail "bad VM config refused in one line: $2 (got: $out)"
	fi
}
bad_cfg 's/vcpus = 1;/vcpus = 1; program = ["true"];/' "give kernel, initrd"
bad_cfg 's/size = "64M"/size = "48M"/' "power of two"
bad_cfg 's/accel/x/; s/vcpus = 1;/vcpus = 1; accel = "xen";/' "expected auto, kvm or tcg"
bad_cfg 's/role = "device"; devices/type = "vm"; role = "device"; devices/' "missing 'kernel'"
bad_cfg "s|kernel = \"[^\"]*\"|kernel = \"$T/nope\"|" "cannot read"

t0=$(date +%s.%N)
check "xvl run --detach starts the device and VM compartments" "$XVL" run "$T/vm.cfg" --detach --quiet
wait_console() {
	for _ in $(seq 1 "$2"); do
		grep -aq "$1" "$CON" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
if wait_console "GUEST: verified" 400; then
	ok "the guest verified /dev/vda on the partitioner's window ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after xvl run)"
else
	fail "the guest verified /dev/vda on the partitioner's window"
	tr -d '\r' <"$CON" | tail -n 20 | sed 's/^/#   /'
fi
gsha=$(tr -d '\r' <"$CON" | sed -n 's/^.*GUEST: verified //p')
expect_eq "$gsha" "$(head -c 4194304 "$T/disk.img" | sha256sum | cut -d' ' -f1)" \
	"the host's disk image holds what the guest wrote"

J=$("$XVL" status --state-dir "$SD" --json 2>&1)
jq_() { echo "$J" | python3 -c "import json,sys; d=json.load(sys.stdin); c={k['name']: k for k in d['compartments']}; print($1)" 2>&1; }
expect_eq "vm running tcg 1 536870912" "$(jq_ "c['guest']['type'], c['guest']['state'], c['guest']['vm']['accel'], c['guest']['vm']['vcpus'], c['guest']['vm']['memory']")" \
	"xvl status --json: the VM compartment (type, state, accel, vCPUs, memory)"
QPID=$(jq_ "c['guest']['pid']")
DPID=$(jq_ "c['dev']['pid']")
grep -q qemu-system "/proc/$QPID/cmdline" 2>/dev/null && tr '\0' ' ' <"/proc/$QPID/cmdline" | grep -q "ivshmem-plain" &&
	ok "the VM compartment is QEMU with the window as ivshmem-plain (pid $QPID)" ||
	fail "the VM compartment is QEMU with the window as ivshmem-plain (pid $QPID)"
[ "$(readlink "/proc/$QPID/ns/net")" != "$(readlink /proc/self/ns/net)" ] && grep -q '^Seccomp:.*2' "/proc/$QPID/status" &&
	ok "QEMU runs in its own namespaces under its own seccomp sandbox" ||
	fail "QEMU runs in its own namespaces under its own seccomp sandbox"
# the device side maps the window and nothing of the guest's RAM (no memfd but the window)
nw=$(grep -c 'memfd:xvl:w' "/proc/$DPID/maps" 2>/dev/null)
other=$(grep 'memfd:' "/proc/$DPID/maps" 2>/dev/null | grep -vc 'memfd:xvl:w')
[ "${nw:-0}" -ge 1 ] && [ "$other" = 0 ] && ok "the device compartment maps the window and no other shared memory" ||
	fail "the device compartment maps the window and no other shared memory (window maps ${nw:-0}, others $other)"

if wait_console "GUEST: writing" 100; then
	sleep 1.5
	kill -KILL "$DPID"
fi
if wait_console "across the restart, readback equal" 300; then
	ok "device compartment kill -9 under guest writes: restarted, no write failed, readback equal"
else
	fail "device compartment kill -9 under guest writes: restarted, no write failed, readback equal"
	tr -d '\r' <"$CON" | grep -a GUEST | tail -n 5 | sed 's/^/#   /'
fi
if wait_console "GUEST: the module resumed" 50; then ok "the guest's module resumed on the restarted device side"; else
	fail "the guest's module resumed on the restarted device side"
	tr -d '\r' <"$CON" | grep -a "DMESG" | tail -n 8 | sed 's/^/#   /'
fi
note "$(tr -d '\r' <"$CON" | sed -n 's/^.*GUEST: \(.*rounds.*\)/\1/p')"

st=""
for _ in $(seq 1 150); do
	J=$("$XVL" status --state-dir "$SD" --json 2>&1)
	st=$(jq_ "c['guest']['state'], c['guest']['last_exit'], c['dev']['restarts']")
	case $st in exited*) break ;; esac
	sleep 0.1
done
case $st in
"exited exited with status 0 1") ok "the guest powered off: VM compartment exited 0, the device side restarted once ($st)" ;;
*) fail "the guest powered off: VM compartment exited 0, the device side restarted once (got '$st')" ;;
esac
grep -aq "GUEST: unloaded" "$CON" && tr -d '\r' <"$CON" | grep -aqx "XVL-GUEST-EXIT 0" &&
	ok "virtio_blk and xvl_virtio unloaded in the guest, its script exited 0" ||
	fail "virtio_blk and xvl_virtio unloaded in the guest, its script exited 0"

check "xvl stop" "$XVL" stop --state-dir "$SD"
[ ! -e "$SD" ] && ok "xvl stop: the state directory is gone" || fail "xvl stop: the state directory is gone"
left=$(pgrep -f "$T/guest.img" ; pgrep -f "$SD/")
[ -z "$left" ] && ok "xvl stop: no QEMU and no compartment left" || fail "xvl stop: no QEMU and no compartment left ($left)"

# the VM killed with SIGKILL: reported as such, its window released, the device side stays up
mv "$CON" "$T/console1.log"
"$XVL" run "$T/vm.cfg" --detach --quiet >"$T/run2.log" 2>&1 || fail "xvl run --detach, second instance"
if wait_console "GUEST: verified" 400; then
	J=$("$XVL" status --state-dir "$SD" --json 2>&1)
	QPID=$(jq_ "c['guest']['pid']")
	kill -KILL "$QPID"
	st=""
	for _ in $(seq 1 50); do
		J=$("$XVL" status --state-dir "$SD" --json 2>&1)
		st=$(jq_ "c['guest']['state'], c['guest']['last_exit'], d['windows'][0]['state'], c['dev']['state'], c['dev']['restarts']")
		case $st in exited*) break ;; esac
		sleep 0.1
	done
	expect_eq "exited killed by signal 9 (SIGKILL) released running 0" "$st" \
		"QEMU killed with SIGKILL: VM compartment exited with the signal, window released, device side untouched"
else
	fail "second instance: the guest verified /dev/vda"
fi
check "xvl stop (second instance)" "$XVL" stop --state-dir "$SD"
left=$(pgrep -f "$T/guest.img" ; pgrep -f "$SD/")
[ -z "$left" ] && ok "xvl stop: nothing left of the second instance" || fail "xvl stop: nothing left of the second instance ($left)"
cat "$T/console1.log" "$CON" >"$T/consoles.log" 2>/dev/null
CON=$T/consoles.log

if grep -aE 'BUG|Oops|WARNING|soft lockup' "$CON" >/dev/null; then
	fail "the guest's console has no BUG|Oops|WARNING|soft lockup"
	grep -aE -B2 -A10 'BUG|Oops|WARNING|soft lockup' "$CON" | head -n 20 | sed 's/^/#   /'
else
	ok "the guest's console has no BUG|Oops|WARNING|soft lockup"
fi
finish
