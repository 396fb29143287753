#!/usr/bin/env bash
# Hostile virtio-net devices against the driver side (issue 13): bad
# num_buffers (0, beyond the ring, a lie), used lengths beyond the buffer or
# shorter than a header, headers with offloads that were not negotiated, a
# flood of receives, a used id the driver never gave, link changes, a
# restart (EVENT RESTART: the device is set up again, frames flow again), and
# config values (MTU, queue pairs, MAC) that must fail the open.
# tests/hostile/net_hostile_device.c (a fake server) plays each case against
# tests/hostile/net_hostile_client.c (the public API), both built with
# ASan/UBSan: each frame is dropped and counted under its reason, or the
# device reported broken; no crash, no sanitizer report.  TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

R=$E2E_ROOT
CC=${CC:-gcc}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
F=(-std=gnu11 -g -O1 -Wall -Wextra -fsanitize=address,undefined -fno-sanitize-recover=undefined
	-D_GNU_SOURCE -I"$R/include" -I"$R/src/core" -I"$R/src/os" -I"$R/src/vhost"
	-I"$R/src/client" -I"$R/tests/hostile")
CORE=("$R"/src/core/window.c "$R"/src/core/virtq.c "$R"/src/core/proto.c "$R"/src/core/mailbox.c "$R"/src/core/net.c "$R"/src/os/*.c)
"$CC" "${F[@]}" "${CORE[@]}" "$R/tests/hostile/net_hostile_device.c" -o "$T/dev" 2>"$T/cc.log" &
P1=$!
"$CC" "${F[@]}" "${CORE[@]}" "$R"/src/vhost/*.c "$R"/src/client/*.c \
	"$R/tests/hostile/net_hostile_client.c" -lpthread -o "$T/client" 2>"$T/cc2.log"
r2=$?
wait "$P1"
r1=$?
if [ "$r1" -ne 0 ] || [ "$r2" -ne 0 ]; then
	fail "build the hostile net peers with $CC -fsanitize=address,undefined"
	cat "$T/cc.log" "$T/cc2.log" | grep -E 'error|undefined' | head -20 | sed 's/^/#   /'
	finish
fi
ok "build net_hostile_device and net_hostile_client (ASan/UBSan)"

for c in good nb_zero nb_big nb_lie len_big len_short bad_hdr flood used_id link_flap restart \
	mtu_small pairs_big mcast_mac; do
	sock=$T/$c.sock
	"$T/dev" "$sock" "$c" >"$T/dev.out" 2>&1 &
	dp=$!
	E2E_PIDS+=("$dp")
	wait_sock "$sock" "$dp"
	if timeout -k 2 20 "$T/client" "$sock" "$c" >"$T/c.out" 2>"$T/c.err" &&
		! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$T/c.err"; then
		ok "$c: $(paste -sd";" "$T/c.out" | cut -c1-200)"
	else
		fail "$c"
		sed 's/^/#   /' "$T/c.out" "$T/c.err" | head -n 25
		sed 's/^/#   device: /' "$T/dev.out" | tail -n 5
	fi
	kill "$dp" 2>/dev/null
	wait "$dp" 2>/dev/null
done
finish
