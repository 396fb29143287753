#!/usr/bin/env bash
# The whole user-space stack on ARMv8 (issue 12, item 2): xvl cross-built
# for aarch64 (statically: `make build-aarch64-static`), booted in a TCG
# `qemu-system-aarch64 -M virt -cpu cortex-a57` guest with Debian's
# unmodified cloud-arm64 kernel and a busybox initramfs.  Inside the guest:
# the server with a RAM disk (2 queues) and with an io_uring file backend,
# each verified by `xvl blk verify`, then the partitioner's `xvl run
# --default` (namespaces, seccomp, a device and a driver compartment).
# One vCPU; the guest's own exit status and output are checked.  TAP.
set -u
. "$(dirname "$0")/lib.sh"
R=$E2E_ROOT
BIN=$R/build-aarch64-static/src/cli/xvl

if ! command -v qemu-system-aarch64 >/dev/null; then
	echo "1..0 # SKIP qemu-system-aarch64 not installed (scripts/deps.sh installs qemu-system-arm)"
	exit 0
fi
if [ ! -x "$BIN" ] && ! make -s -C "$R" build-aarch64-static >"$T/build.log" 2>&1; then
	fail "make build-aarch64-static"
	tail -n 20 "$T/build.log" | sed 's/^/#   /'
	finish
fi
if file "$BIN" | grep -q 'ARM aarch64.*statically linked'; then
	ok "xvl cross-built for aarch64, statically linked"
else
	fail "xvl for aarch64: $(file -b "$BIN")"
	finish
fi

cat >"$T/guest.sh" <<'GUEST'
#!/bin/sh
echo "guest: $(uname -m) $(uname -r)"
fail=0
xvl server --listen /tmp/r.sock --dev name=r0,backend=ram,size=64M,queues=2 >/tmp/r.log 2>&1 &
sleep 1
xvl blk verify --connect /tmp/r.sock --queues 2 --qd 8 --min 512 --max 1M --ops 1500 &&
	echo "guest: ram verify ok" || { fail=1; cat /tmp/r.log; }
kill %1
dd if=/dev/zero of=/tmp/disk.img bs=1M count=0 seek=32 2>/dev/null
xvl server --listen /tmp/f.sock --dev name=f0,backend=file,path=/tmp/disk.img >/tmp/f.log 2>&1 &
sleep 1
xvl blk verify --connect /tmp/f.sock --qd 4 --min 512 --max 256K --ops 500 &&
	echo "guest: file verify ok" || { fail=1; cat /tmp/f.log; }
kill %2
xvl run --default && echo "guest: xvl run ok" || fail=1
exit $fail
GUEST
chmod +x "$T/guest.sh"
if ! "$R/scripts/guest/initramfs.sh" "$T/initrd" --arch arm64 --bin "$BIN:/bin/xvl" \
	--run "$T/guest.sh" >"$T/initrd.log" 2>&1; then
	fail "arm64 guest initramfs"
	tail -n 20 "$T/initrd.log" | sed 's/^/#   /'
	finish
fi
s0=$(date +%s)
"$R/scripts/guest/run.sh" --arch arm64 --timeout 150 --log "$T/console.log" "$T/initrd"
rc=$?
note "guest ran $(($(date +%s) - s0)) s, exit status $rc"
expect_eq 0 "$rc" "aarch64 guest: every workload passed"
log=$(tr -d '\r' <"$T/console.log")
grep -q '^guest: aarch64 ' <<<"$log" && ok "the guest is aarch64 ($(grep -m1 '^guest: aarch64' <<<"$log" | cut -d' ' -f3))" ||
	fail "guest did not report aarch64"
for w in "ram verify" "file verify" "xvl run"; do
	grep -q "^guest: $w ok" <<<"$log" && ok "in the aarch64 guest: $w" || fail "in the aarch64 guest: $w"
done
grep -q 'verified .* 0 mismatches, 0 failed requests, 0 completed twice' <<<"$log" &&
	ok "verification counts: no mismatch, no failure, nothing twice" || fail "verification counts"
if grep -qE 'BUG|Oops|WARNING|soft lockup|KASAN' <<<"$log"; then
	fail "guest kernel log has BUG/Oops/WARNING"
	grep -E 'BUG|Oops|WARNING|soft lockup' <<<"$log" | head -5 | sed 's/^/#   /'
else
	ok "guest kernel log has no BUG/Oops/WARNING/soft lockup"
fi
[ "$rc" -eq 0 ] || tail -n 40 "$T/console.log" | sed 's/^/#   /'
finish
