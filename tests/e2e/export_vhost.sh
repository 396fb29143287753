#!/bin/bash
# SPDX-License-Identifier: MIT
#
# End-to-end: `xvl export vhost-user-blk` serves an xvloop device to VMMs.
#   - hostile frontend (vhost_frontend.py): bad memory tables, rings outside
#     memory, descriptors outside the regions, broken framing: errors or
#     IOERR, the export keeps serving, another device of the same server is
#     used meanwhile and verifies
#   - a non-existent device is refused with a clear message
#   - the xvl server killed -9 and restarted under the export (--reconnect-ms)
#     while a frontend verifies: no error, no mismatch
#   - multi-queue: the project's own vhost-user frontend (xvl blk verify
#     -c vhost-user:SOCK -Q 4) through the export into a 4-queue ram device
#   - a TCG guest started by QEMU directly (vhost-user-blk-pci, 2 queues,
#     reconnect=1): 4 writers put a 2 MiB random file into 16 slots of
#     /dev/vda while the export is killed with -9 (the server held on
#     SIGSTOP first, so requests are surely in flight) and restarted; QEMU
#     reconnects, the export resubmits from the inflight area, the guest
#     reads every slot back and compares, the host compares the file backend
#   - a TCG guest started by libvirt (<disk type='vhostuser'>, memfd shared
#     memory, QEMU as libvirt-qemu): writes and verifies, host compares
# Guests: Debian's cloud kernel (scripts/guest/kernel.sh) and a busybox initramfs.
#
# usage: tests/e2e/export_vhost.sh      prints TAP
. "$(dirname "$0")/lib.sh"

ROOT=$E2E_ROOT
G=$ROOT/scripts/guest
MB=$((1 << 20))
chmod 755 "$T" # QEMU under libvirt runs as libvirt-qemu: kernel, initrd and socket live here

# ------------------------------------------------------------ host-only checks

# serving SOCK: the server answers (its socket file appears at bind, before listen)
serving() {
	for _ in $(seq 100); do
		"$XVL" blk info -c "xvl:$1" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

head -c $((2 * MB)) /dev/urandom >"$T/data.bin"
truncate -s $((128 * MB)) "$T/disk.img"
start_server "$T/srv.log" "$T/srv.sock" -d name=disk0,backend=file,path="$T/disk.img",queues=2 \
	-d name=ram4,backend=ram,size=64M,queues=4 -d name=other,backend=ram,size=32M || {
	fail "xvl server starts"
	finish
}
SRV=$SRV_PID
serving "$T/srv.sock" || fail "xvl server answers"

if "$XVL" export vhost-user-blk -c "xvl:$T/srv.sock" -d nosuch -s "$T/x.sock" >"$T/nosuch.log" 2>&1; then
	fail "export of a missing device refused"
else
	grep -q "no device called nosuch" "$T/nosuch.log" && ok "export of a missing device refused: $(cat "$T/nosuch.log")" ||
		fail "export of a missing device: unclear message: $(cat "$T/nosuch.log")"
fi

bg "$T/exp-ram4.log" "$XVL" export vhost-user-blk -c "xvl:$T/srv.sock" -d ram4 -s "$T/ram4.sock"
EXP4=$BG_PID
wait_sock "$T/ram4.sock" "$EXP4" || fail "export of ram4 listens"
# another device of the same server, used all through the hostile part
bg "$T/other.log" "$XVL" blk verify -c "xvl:$T/srv.sock" -d other --ops 1000000 --qd 4 --time 4
OTHER=$BG_PID
python3 "$ROOT/tests/e2e/vhost_frontend.py" "$T/ram4.sock" >"$T/hostile.log" 2>&1
hrc=$?
while read -r verdict what; do
	[ "$verdict" = PASS ] && ok "hostile frontend: $what"
	[ "$verdict" = FAIL ] && fail "hostile frontend: $what"
done <"$T/hostile.log"
[ $hrc -eq 0 ] || { fail "vhost_frontend.py exited $hrc"; sed 's/^/#   /' "$T/hostile.log" | grep -v PASS | tail -5; }
alive "$EXP4" && ok "export alive after the hostile frontend" || fail "export died: $(tail -3 "$T/exp-ram4.log")"
wait "$OTHER" && ok "another device of the server verified meanwhile" ||
	fail "another device failed meanwhile: $(tail -3 "$T/other.log")"
check "multi-queue: 4 vrings through the export verify (xvl blk verify -Q 4 --qd 8)" \
	"$XVL" blk verify -c "vhost-user:$T/ram4.sock" -Q 4 --qd 8 --ops 3000 --min 512 --max 256K --size 16M
grep -E '^\s+(fill|random|verify) ' "$T/last.log" | sed 's/^/# /'
info=$("$XVL" blk info -c "vhost-user:$T/ram4.sock" -Q 4 2>&1)
echo "$info" | grep -q "queues       4 x" && ok "GET_QUEUE_NUM and config: 4 queues offered" ||
	fail "4 queues offered: $info"
stop_server "$EXP4"
expect_eq 0 $? "export stops cleanly on SIGTERM"
[ -e "$T/ram4.sock" ] && fail "export removes its socket" || ok "export removes its socket"

# the xvloop server killed -9 and restarted under the export (--reconnect-ms):
# the frontend sees a delay, every byte still verifies
truncate -s 32M "$T/srv2.img"
start_server "$T/srv2.log" "$T/srv2.sock" -d name=d2,backend=file,path="$T/srv2.img"
SRV2=$SRV_PID
serving "$T/srv2.sock" || fail "second xvl server answers"
bg "$T/exp-srv2.log" "$XVL" export vhost-user-blk -c "xvl:$T/srv2.sock" -d d2 -s "$T/srv2.vhost" --reconnect-ms 5000
EXPS2=$BG_PID
wait_sock "$T/srv2.vhost" "$EXPS2" || fail "export for the restart test listens: $(tail -2 "$T/exp-srv2.log")"
bg "$T/srv2-verify.log" timeout 20 "$XVL" blk verify -c "vhost-user:$T/srv2.vhost" --qd 4 --ops 100000000 --time 3 --size 16M
VER2=$BG_PID
sleep 1
{ kill -9 "$SRV2"; wait "$SRV2"; } 2>/dev/null
start_server "$T/srv2b.log" "$T/srv2.sock" -d name=d2,backend=file,path="$T/srv2.img"
SRV2=$SRV_PID
if wait "$VER2"; then
	ok "xvl server killed -9 and restarted under the export: the frontend's verify passes ($(grep -o 'verified.*' "$T/srv2-verify.log"))"
else
	fail "server restart under the export: $(tail -3 "$T/srv2-verify.log")"
fi
grep -q "attached device d2" "$T/srv2b.log" && ok "the export reattached to the restarted server" ||
	fail "the export did not reattach: $(tail -2 "$T/srv2b.log")"
stop_server "$EXPS2"

# a device that stops answering while the frontend leaves: the export waits
# --drain-ms for what is in flight, then exits 1 saying so (a restarted export
# would resubmit from the inflight area); it never unmaps guest RAM under a copy
bg "$T/exp-drain.log" "$XVL" export vhost-user-blk -c "xvl:$T/srv2.sock" -d d2 -s "$T/drain.vhost" --drain-ms 500
EXPD=$BG_PID
wait_sock "$T/drain.vhost" "$EXPD" || fail "export for the drain test listens: $(tail -2 "$T/exp-drain.log")"
bg "$T/drain-verify.log" "$XVL" blk verify -c "vhost-user:$T/drain.vhost" --qd 4 --ops 100000000 --time 10 --size 16M
VERD=$BG_PID
sleep 0.5
kill -STOP "$SRV2"
sleep 0.2
{ kill -9 "$VERD"; wait "$VERD"; } 2>/dev/null
for _ in $(seq 50); do alive "$EXPD" || break; sleep 0.1; done
kill -CONT "$SRV2"
if alive "$EXPD"; then
	fail "export with a stuck device did not give up after --drain-ms"
else
	wait "$EXPD"
	drc=$?
	[ $drc = 1 ] && grep -q "did not complete" "$T/exp-drain.log" &&
		ok "stuck device: the export gave up after --drain-ms ($(grep -o 'queue 0: the device.*' "$T/exp-drain.log"))" ||
		fail "stuck device: exit $drc, $(tail -2 "$T/exp-drain.log")"
fi
stop_server "$SRV2"

# ------------------------------------------------------------ guests

if ! command -v qemu-system-x86_64 >/dev/null; then
	skip "guests: qemu-system-x86_64 missing (scripts/deps.sh: qemu-system-x86)"
	finish
fi
if ! eval "$("$G/kernel.sh" 2>"$T/kernel.log")"; then
	skip "guests: no guest kernel ($(tail -1 "$T/kernel.log"))"
	finish
fi

cat >"$T/writer.sh" <<'EOF'
#!/bin/sh
# 4 writers x 4 rounds: writer w, round r puts /data.bin into slot w*4+r-1 (2 MiB each),
# in blocks of 16k, 64k, 256k and 2M (larger than the client's max transfer: split in parts)
echo "vda: $(cat /sys/block/vda/size) sectors"
echo GUEST-WRITING
for w in 0 1 2 3; do
	( for r in 1 2 3 4; do
		bs=$(( 16 << (2 * w) ))
		dd if=/data.bin of=/dev/vda bs=${bs}k seek=$(( (w * 4 + r - 1) * 2048 / bs )) oflag=direct 2>/dev/null || exit 1
	done ) &
done
fail=0
for j in $(jobs -p); do wait $j || fail=1; done
[ $fail = 0 ] || { echo "GUEST: a writer failed"; exit 1; }
echo GUEST-WRITTEN
for s in $(seq 0 15); do
	dd if=/dev/vda of=/tmp/back bs=2M skip=$s count=1 iflag=direct 2>/dev/null || exit 2
	cmp /data.bin /tmp/back || { echo "GUEST: slot $s differs"; exit 3; }
done
echo GUEST-VERIFY-OK
EOF
"$G/initramfs.sh" "$T/writer.gz" --module virtio_pci --module virtio_blk --run "$T/writer.sh" \
	--file "$T/data.bin:/data.bin" 2>"$T/initramfs.log" || { fail "initramfs"; finish; }

# host_slots N: the first N 2 MiB slots of the backing file each hold data.bin
host_slots() {
	for s in $(seq 0 $(($1 - 1))); do
		cmp -n $((2 * MB)) -i "0:$((s * 2 * MB))" "$T/data.bin" "$T/disk.img" || return 1
	done
}

EXPARGS=(export vhost-user-blk -c "xvl:$T/srv.sock" -d disk0 -s "$T/vh.sock" --socket-mode 0666)
bg "$T/exp1.log" "$XVL" "${EXPARGS[@]}"
EXP=$BG_PID
wait_sock "$T/vh.sock" "$EXP" || fail "export of disk0 listens"
t0=$(date +%s.%N)
XVL_GUEST_MEM=512M "$G/run.sh" --timeout 60 --log "$T/guest1.log" "$T/writer.gz" \
	-object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem \
	-chardev socket,id=c0,path="$T/vh.sock",reconnect=1 \
	-device vhost-user-blk-pci,chardev=c0,num-queues=2 &
GUEST=$!
E2E_PIDS+=("$GUEST")
for _ in $(seq 400); do
	grep -q GUEST-WRITING "$T/guest1.log" 2>/dev/null && break
	sleep 0.05
done
sleep 0.15
kill -STOP "$SRV" # requests the export submitted now stay in flight
# guest RAM (QEMU's memfd "memory-backend-memfd") is mapped by the export, never by the device side
ram_exp=$(grep -c 'memfd:memory-backend-memfd ' "/proc/$EXP/maps" 2>/dev/null)
ram_srv=$(grep -c 'memfd:memory-backend-memfd ' "/proc/$SRV/maps" 2>/dev/null)
sleep 0.3
{ kill -9 "$EXP"; wait "$EXP"; } 2>/dev/null
kill -CONT "$SRV"
sleep 0.2
bg "$T/exp2.log" "$XVL" "${EXPARGS[@]}"
EXP=$BG_PID
wait "$GUEST"
grc=$?
t1=$(date +%s.%N)
expect_eq 0 "$grc" "QEMU guest: 4 writers through the export, export killed -9 and restarted, guest verified 16 slots"
[ "$grc" = 0 ] || tr -d '\r' <"$T/guest1.log" | grep -aE "GUEST|error|vda" | tail -5 | sed 's/^/#   /'
note "QEMU guest run took $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
[ "${ram_exp:-0}" -gt 0 ] && [ "${ram_srv:-1}" = 0 ] &&
	ok "guest RAM mapped by the export ($ram_exp mappings), not by the xvl server" ||
	fail "guest RAM mappings: export ${ram_exp:-?}, server ${ram_srv:-?}"
grep -q "inflight area for" "$T/exp1.log" && ok "QEMU negotiated INFLIGHT_SHMFD (GET_INFLIGHT_FD)" ||
	fail "no inflight area: $(tail -3 "$T/exp1.log")"
grep -q "inflight area from the frontend" "$T/exp2.log" && ok "restarted export got the inflight area back" ||
	fail "restarted export got no inflight area: $(tail -3 "$T/exp2.log")"
r=$(sed -n 's/.*resubmitting \([0-9]*\) request.*/\1/p' "$T/exp2.log" | head -1)
[ -n "$r" ] && [ "$r" -gt 0 ] && ok "restarted export resubmitted $r request(s) left in flight" ||
	fail "nothing resubmitted after the restart: $(tail -3 "$T/exp2.log")"
check "host: the backing file holds the guest's 16 slots" host_slots 16
sp=$(sed -n 's/.*frontend done: [0-9]* requests, \([0-9]*\) split.*/\1/p' "$T/exp2.log" | head -1)
[ "${sp:-0}" -gt 0 ] && ok "requests larger than the client's max transfer were split ($sp)" ||
	fail "no request was split: $(grep 'frontend done' "$T/exp2.log")"

# ------------------------------------------------------------ libvirt

libvirt_test() {
	local why=""
	command -v libvirtd >/dev/null && command -v virsh >/dev/null && command -v virtlogd >/dev/null ||
		why="libvirtd/virsh not installed (scripts/deps.sh: libvirt-daemon-system libvirt-clients)"
	id libvirt-qemu >/dev/null 2>&1 || why=${why:-"no libvirt-qemu user"}
	if [ -n "$why" ]; then
		skip "libvirt guest: $why"
		return
	fi
	local V=(virsh -q -c qemu:///system) started=()
	if ! "${V[@]}" version >/dev/null 2>&1; then
		# no systemd here: start the daemons by hand, stop them at the end
		virtlogd -d -p "$T/virtlogd.pid" && started+=("$T/virtlogd.pid")
		libvirtd -d -p "$T/libvirtd.pid" && started+=("$T/libvirtd.pid")
		for _ in $(seq 100); do
			"${V[@]}" version >/dev/null 2>&1 && break
			sleep 0.1
		done
	fi
	if ! "${V[@]}" version >"$T/virsh.log" 2>&1; then
		skip "libvirt guest: libvirtd does not answer ($(tail -1 "$T/virsh.log"))"
		return
	fi
	cat >"$T/simple.sh" <<'EOF'
#!/bin/sh
dd if=/data.bin of=/dev/vda bs=64k seek=16 oflag=direct 2>/dev/null || exit 1
dd if=/dev/vda of=/tmp/back bs=64k skip=16 count=32 iflag=direct 2>/dev/null || exit 2
cmp /data.bin /tmp/back || exit 3
echo GUEST-VERIFY-OK
EOF
	"$G/initramfs.sh" "$T/simple.gz" --module virtio_pci --module virtio_blk --run "$T/simple.sh" \
		--file "$T/data.bin:/data.bin" 2>>"$T/initramfs.log"
	cp "$GUEST_VMLINUZ" "$T/vmlinuz"
	chmod 644 "$T/vmlinuz" "$T/simple.gz"
	dd if=/dev/zero of="$T/disk.img" bs=1M count=8 conv=notrunc status=none
	local name=xvl-e2e-vhost-$$
	cat >"$T/dom.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$T/vmlinuz</kernel>
    <initrd>$T/simple.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw' queues='1'/>
      <source type='unix' path='$T/vh.sock'><reconnect enabled='yes' timeout='1'/></source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'><source path='$T/console.log'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
	local st=""
	if "${V[@]}" define "$T/dom.xml" >"$T/virsh.log" 2>&1 && "${V[@]}" start "$name" >>"$T/virsh.log" 2>&1; then
		local user
		user=$(ps -o user= -p "$(cat "/run/libvirt/qemu/$name.pid" 2>/dev/null)" 2>/dev/null)
		for _ in $(seq 120); do
			st=$("${V[@]}" domstate "$name" 2>&1)
			[ "$st" = "shut off" ] && break
			sleep 0.5
		done
		[ "$st" = "shut off" ] || "${V[@]}" destroy "$name" >/dev/null 2>&1
		note "libvirt's QEMU ran as: $user"
		if tr -d '\r' <"$T/console.log" | grep -q "^XVL-GUEST-EXIT 0$"; then
			ok "libvirt guest (<disk type='vhostuser'>): wrote and verified 2 MiB on /dev/vda"
		else
			fail "libvirt guest: $(tr -d '\r' <"$T/console.log" | grep -a GUEST | tail -2) state '$st'"
		fi
		check "host: the backing file holds what the libvirt guest wrote" \
			cmp -n $((2 * MB)) -i 0:$((1 * MB)) "$T/data.bin" "$T/disk.img"
	else
		fail "virsh define/start: $(tail -3 "$T/virsh.log")"
	fi
	"${V[@]}" undefine "$name" >/dev/null 2>&1
	local p
	for p in "${started[@]}"; do
		kill "$(cat "$p")" 2>/dev/null
	done
}
libvirt_test
alive "$EXP" && ok "restarted export served the libvirt guest too (frontends one after another)" ||
	fail "export gone: $(tail -3 "$T/exp2.log")"
stop_server "$EXP"
expect_eq 0 $? "restarted export stops cleanly on SIGTERM"
stop_server "$SRV"
# sanitizer builds (XVL_BIN=build-asan/...): any report in an export's log is a failure
if grep -lE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$T"/exp*.log >"$T/san.txt"; then
	fail "sanitizer reports in $(cat "$T/san.txt" | xargs -n1 basename | tr '\n' ' ')"
	grep -hE "ERROR|runtime error" "$T"/exp*.log | head -5 | sed 's/^/#   /'
else
	ok "no sanitizer report in the exports' logs"
fi
finish
