#!/usr/bin/env bash
# NBD export: nbdkit with the xvloop plugin (src/nbdkit), end to end.
#   One xvl server with a file-backed and a RAM device; nbdkit serves each on
#   a Unix socket; then every NBD client Debian has:
#   - nbdinfo: size and can_* flags agree with the device's features
#   - qemu-img convert of a random image (NBD_BIG_MB, default 1024 MiB) to
#     the device and back, cmp with the source and with the backing file
#   - nbdcopy to and from it, cmp
#   - fio's nbd engine: random writes with verification at QD16, and read
#     IOPS at QD1 / QD16 (printed as notes)
#   - tests/e2e/nbd_probe.c (libnbd): reads and writes beyond the end,
#     unaligned writes and zeroes, FUA, fast zero, trim, flush, 32 MiB reads,
#     each checked in the backing file
#   A server killed (kill -9) and restarted during an nbdcopy, with
#   XVL_RECONNECT_MS: the copy completes and cmp holds.
#   Bad input: a device that does not exist, a server that is not there, an
#   unknown parameter: nbdkit refuses to start with a message naming it;
#   garbage on the NBD socket leaves the export serving.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

PLUGIN=${XVL_NBDKIT_PLUGIN:-${XVL_BUILD:-$E2E_ROOT/build}/src/nbdkit/nbdkit-xvloop-plugin.so}
[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v nbdkit >/dev/null || { echo "1..0 # SKIP nbdkit is not installed (scripts/deps.sh installs it)"; exit 0; }
[ -f "$PLUGIN" ] || { echo "1..0 # SKIP no plugin at $PLUGIN (needs nbdkit-plugin-dev at configure time)"; exit 0; }
BIG_MB=${NBD_BIG_MB:-1024}

got=$(nbdkit --dump-plugin "$PLUGIN" 2>&1 | grep -E '^(name|thread_model|api_version)=' | tr '\n' ' ')
expect_eq "name=xvloop api_version=2 thread_model=parallel " "$got" \
	"the plugin: name xvloop (nbdkit xvloop ... once installed in nbdkit's plugindir), API 2, parallel"

MB=1048576
truncate -s $((BIG_MB * MB)) "$T/f0.img"
S=$T/s.sock
start_server "$T/server.log" "$S" -d name=f0,backend=file,path="$T/f0.img",queues=2 \
	-d name=r0,backend=ram,size=64M,queues=2 ||
	{ fail "server starts"; sed 's/^/#   /' "$T/server.log"; finish; }
ok "xvl server: f0 (file, $BIG_MB MiB, 2 queues), r0 (ram, 64 MiB, 2 queues)"

# nbd_start NAME ARGS...: nbdkit on $T/NAME.nbd; sets NBD_PID
nbd_start() {
	local name=$1
	shift
	bg "$T/$name.nbdkit.log" nbdkit -f -U "$T/$name.nbd" "$PLUGIN" "$@"
	NBD_PID=$BG_PID
	wait_sock "$T/$name.nbd" "$NBD_PID"
}
uri() { echo "nbd+unix:///?socket=$T/$1.nbd"; }

# what the device offers, asked before nbdkit holds it (one client may attach a device)
for d in f0 r0; do
	"$XVL" blk info -c "$S" -d "$d" --json >"$T/$d.blk.json"
done
for d in f0 r0; do
	if nbd_start "$d" uri="xvl:$S" device="$d"; then
		ok "nbdkit xvloop uri=xvl:... device=$d serves"
		[ "$d" = f0 ] && F0_NBD=$NBD_PID
	else
		fail "nbdkit xvloop device=$d serves"
		sed 's/^/#   /' "$T/$d.nbdkit.log"
		finish
	fi
done

# ---------------------------------------------------------------- nbdinfo
for d in f0 r0; do
	nbdinfo --json "$(uri "$d")" >"$T/$d.info.json" 2>"$T/err"
	got=$(python3 - "$T/$d.info.json" "$T/$d.blk.json" <<'EOF'
import json, sys
n = json.load(open(sys.argv[1]))["exports"][0]
b = json.load(open(sys.argv[2]))
f = b["features"]
want = {"export-size": b["capacity"], "is_read_only": b["read_only"],
        "can_trim": "DISCARD" in f, "can_fast_zero": "WRITE_ZEROES" in f,
        "can_flush": True, "can_fua": True, "can_zero": True, "can_multi_conn": True}
bad = [f"{k}={n.get(k)} (want {v})" for k, v in want.items() if n.get(k) != v]
print("; ".join(bad) if bad else "ok")
EOF
)
	expect_eq ok "$got" "nbdinfo $d: size and can_* agree with the device's features"
done

# ---------------------------------------------------------------- qemu-img convert
head -c $((BIG_MB * MB)) /dev/urandom >"$T/big.raw"
t0=$(date +%s.%N)
check "qemu-img convert of $BIG_MB MiB to f0 through NBD" \
	qemu-img convert -n -f raw -O raw -W "$T/big.raw" "$(uri f0)"
t1=$(date +%s.%N)
check "f0's backing file equals the source" cmp "$T/big.raw" "$T/f0.img"
t2=$(date +%s.%N)
check "qemu-img convert of f0 back to a file" \
	qemu-img convert -f raw -O raw "$(uri f0)" "$T/back.raw"
t3=$(date +%s.%N)
check "what came back equals the source" cmp "$T/big.raw" "$T/back.raw"
note "qemu-img convert $BIG_MB MiB: in $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s, out $(awk "BEGIN{printf \"%.2f\", $t3 - $t2}") s"
rm -f "$T/back.raw"

head -c $((48 * MB)) /dev/urandom >"$T/r.raw"
check "qemu-img convert of 48 MiB to r0 (ram)" \
	qemu-img convert -n -f raw -O raw "$T/r.raw" "$(uri r0)"
check "and back, cmp" bash -c "qemu-img convert -f raw -O raw '$(uri r0)' '$T/r.back' &&
	cmp '$T/r.raw' <(head -c $((48 * MB)) '$T/r.back')"
check "qemu-img info sees a 64 MiB raw image" \
	bash -c "qemu-img info -f raw '$(uri r0)' | grep -q '64 MiB'"

# ---------------------------------------------------------------- nbdcopy
head -c $((32 * MB)) /dev/urandom >"$T/c.raw"
truncate -s $((64 * MB)) "$T/c.raw"
t0=$(date +%s.%N)
check "nbdcopy 64 MiB file -> r0" nbdcopy "$T/c.raw" "$(uri r0)"
check "nbdcopy r0 -> file, cmp" bash -c "nbdcopy '$(uri r0)' '$T/c.back' && cmp '$T/c.raw' '$T/c.back'"
t1=$(date +%s.%N)
note "nbdcopy 64 MiB in and out: $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"
check "nbdcopy r0 -> f0 (NBD to NBD), cmp" \
	bash -c "nbdcopy '$(uri r0)' '$(uri f0)' && cmp '$T/c.raw' <(head -c $((64 * MB)) '$T/f0.img')"

# ---------------------------------------------------------------- fio nbd engine
if fio --enghelp 2>/dev/null | grep -qw nbd; then
	check "fio nbd engine: 4k-64k random writes, verified (crc32c), QD16 on f0" \
		fio --name=v --ioengine=nbd --uri="$(uri f0)" --rw=randwrite --bsrange=4k-64k \
		--iodepth=16 --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0
	for qd in 1 16; do
		fio --name=r --ioengine=nbd --uri="$(uri r0)" --rw=randread --bs=4k --iodepth=$qd \
			--size=64M --runtime=2 --time_based --output-format=json >"$T/fio$qd.json" 2>"$T/err"
		iops=$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print(int(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))' "$T/fio$qd.json" 2>/dev/null)
		if [ -n "$iops" ] && [ "$iops" -gt 0 ]; then
			ok "fio nbd engine 4k randread QD$qd on r0: $iops IOPS"
		else
			fail "fio nbd engine 4k randread QD$qd on r0"
			sed 's/^/#   /' "$T/err" | head -5
		fi
	done
else
	skip "fio has no nbd engine here"
fi

# ---------------------------------------------------------------- libnbd probe
if gcc -std=gnu11 -O1 -Wall -Wextra -Werror "$E2E_ROOT/tests/e2e/nbd_probe.c" -o "$T/nbd_probe" \
	-lnbd >"$T/cc.log" 2>&1; then
	"$T/nbd_probe" "$(uri f0)" "$T/f0.img" >"$T/probe.out" 2>&1
	prc=$?
	while read -r v rest; do
		case $v in
		PASS) ok "libnbd on f0: $rest" ;;
		FAIL) fail "libnbd on f0: $rest" ;;
		*) note "nbd_probe: $v $rest" ;;
		esac
	done <"$T/probe.out"
	[ $prc -le 1 ] || fail "nbd_probe exit status $prc"
else
	fail "nbd_probe builds against libnbd"
	sed 's/^/#   /' "$T/cc.log" | head
fi

# ---------------------------------------------------------------- bad input
# refuses DESCRIPTION PATTERN ARGS...: nbdkit must exit non-zero, naming PATTERN, no socket left
refuses() {
	local d=$1 pat=$2
	shift 2
	timeout -k 2 10 nbdkit -f -U "$T/bad.nbd" "$PLUGIN" "$@" >"$T/out" 2>"$T/err"
	local rc=$?
	if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -Eq -- "$pat" "$T/err" && [ ! -S "$T/bad.nbd" ]; then
		ok "$d: nbdkit exits $rc: $(grep -E -- "$pat" "$T/err" | head -1 | head -c 160)"
	else
		fail "$d (exit $rc)"
		sed 's/^/#   /' "$T/err" | head -5
	fi
}
refuses "a device that does not exist" "no device called 'nope'" uri="xvl:$S" device=nope
refuses "a server that is not there" "nobody\.sock" uri="xvl:$T/nobody.sock"
refuses "no uri" "uri=" device=f0
refuses "an unknown parameter" "colour" uri="xvl:$S" colour=red
refuses "queues=0" "queues" uri="xvl:$S" queues=0

# nbdkit forking into the background (no -f): the device opened before the fork keeps working;
# the URI given bare (uri= is the plugin's magic key)
check "stop the foreground nbdkit of f0" bash -c "kill $F0_NBD; while kill -0 $F0_NBD 2>/dev/null; do sleep 0.05; done"
if nbdkit -U "$T/d.nbd" -P "$T/d.pid" "$PLUGIN" "xvl:$S" device=f0 2>"$T/err"; then
	for _ in $(seq 1 100); do [ -s "$T/d.pid" ] && [ -S "$T/d.nbd" ] && break; sleep 0.02; done
	E2E_PIDS+=("$(cat "$T/d.pid")")
	check "daemonized nbdkit: nbdcopy f0 -> file equals the backing file" \
		bash -c "nbdcopy 'nbd+unix:///?socket=$T/d.nbd' '$T/d.back' && cmp '$T/d.back' '$T/f0.img'"
	kill "$(cat "$T/d.pid")"
else
	fail "nbdkit (daemonized) starts"
	sed 's/^/#   /' "$T/err" | head -3
fi

# garbage while another client copies: that client must not notice
for _ in 1 2 3; do
	nbdcopy "$(uri r0)" "$T/c.other" && cmp -s "$T/c.raw" "$T/c.other" || exit 1
done >"$T/other.log" 2>&1 &
OTHER=$!
python3 - "$T/r0.nbd" <<'EOF'
import os, socket, sys
for n in (1, 7, 200, 5000):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    try:
        s.sendall(os.urandom(n))
        s.settimeout(1)
        s.recv(100)
    except OSError:
        pass
    s.close()
EOF
if wait "$OTHER"; then ok "a client copying r0 while garbage arrives on the same socket: 3 copies, all equal"; else fail "a client copying r0 during the garbage"; sed 's/^/#   /' "$T/other.log" | head -3; fi
check "after garbage on r0's NBD socket, r0 still reads back what nbdcopy wrote" \
	bash -c "nbdcopy '$(uri r0)' '$T/c.back2' && cmp '$T/c.raw' '$T/c.back2'"
if alive "$SRV_PID"; then ok "xvl server still up"; else fail "xvl server still up"; fi
stop_server "$SRV_PID"
expect_eq 0 $? "server stops cleanly with nbdkit clients attached"

# ---------------------------------------------------------------- the server killed mid-copy
# XVL_RECONNECT_MS: the plugin's client reconnects to the restarted server and resubmits
# (blksync then uses one queue, under one lock); nbdcopy must not notice, and cmp must hold.
truncate -s $((BIG_MB * MB)) "$T/f1.img"
S3=$T/s3.sock
start_server "$T/server3.log" "$S3" -d name=f1,backend=file,path="$T/f1.img"
K=$SRV_PID
XVL_RECONNECT_MS=5000 nbd_start f1 uri="xvl:$S3" device=f1 || fail "nbdkit with XVL_RECONNECT_MS starts"
nbdcopy "$T/big.raw" "$(uri f1)" >"$T/copy.log" 2>&1 &
CP=$!
sleep 0.3
if alive "$CP"; then
	kill -9 "$K"
	wait "$K" 2>/dev/null
	start_server "$T/server4.log" "$S3" -d name=f1,backend=file,path="$T/f1.img" || fail "server restarts"
	if wait "$CP"; then ok "nbdcopy of $BIG_MB MiB survives kill -9 of the server mid-copy"; else fail "nbdcopy through a server kill"; sed 's/^/#   /' "$T/copy.log" | head -3; fi
	check "and the image equals the source (cmp)" cmp "$T/big.raw" "$T/f1.img"
	if grep -q "attached device f1" "$T/server4.log"; then ok "the plugin reattached to the restarted server"; else fail "the plugin reattached to the restarted server"; fi
else
	wait "$CP"
	skip "the copy finished before the server could be killed (too fast here)"
fi
finish
