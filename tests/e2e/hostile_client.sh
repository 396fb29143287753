#!/usr/bin/env bash
# Hostile servers against the driver side and its recovery path (issue 9,
# items 1-6, 8, 9).  TAP on stdout.
#
# tests/hostile/hostile_device.c (a fake server) plays each case against
# tests/hostile/client_recovery.c (the public API), both built with
# ASan/UBSan: DEV_INFO with 32 queues, size_max values whose split
# overflows the chain, completions held over two restarts of a 4-entry
# queue, restarts that fail half-way (refused SET_FEATURES, refused
# DRIVER_OK + EVENT BROKEN), ATTACH answered -EBUSY after a reconnect,
# backend writes that land after EVENT BROKEN (link kept) or after the link
# closed, and a listener of another uid at the socket path (on connect, and
# on reconnect).  Each request must be reported exactly once, no slot may
# stay busy, no byte may change in a buffer the client gave back, and the
# window must never reach an impostor.
#
# Then the fio engine with thread=1 (two job threads sharing one
# connection, XVL_RECONNECT_MS) through a kill -9 and restart of a real
# xvl server, with fio's verify.
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
"$CC" "${F[@]}" "${CORE[@]}" "$R/tests/hostile/hostile_device.c" -o "$T/hostile_device" 2>"$T/cc.log" &
P1=$!
"$CC" "${F[@]}" "${CORE[@]}" "$R"/src/vhost/*.c "$R"/src/client/*.c \
	"$R/tests/hostile/client_recovery.c" -lpthread -o "$T/client_recovery" 2>"$T/cc2.log"
r2=$?
wait "$P1"
r1=$?
if [ "$r1" -ne 0 ] || [ "$r2" -ne 0 ]; then
	fail "build the hostile peers with $CC -fsanitize=address,undefined"
	cat "$T/cc.log" "$T/cc2.log" | grep -E 'error|undefined' | head -20 | sed 's/^/#   /'
	finish
fi
ok "build hostile_device and client_recovery (ASan/UBSan)"

chmod 711 "$T" && mkdir -p "$T/imp" && chmod 1777 "$T/imp" # the impostor (uid 65534) listens here

# run_case CASE [DEVICE_CASE]: fake server + client; both must end well.
run_case() {
	local c=$1 dc=${2:-$1} sock=$T/imp/d.sock
	rm -f "$sock"
	"$T/hostile_device" "$sock" "$dc" >"$T/dev.out" 2>&1 &
	local dp=$!
	E2E_PIDS+=("$dp")
	wait_sock "$sock" "$dp"
	if timeout -k 2 20 "$T/client_recovery" "$sock" "$c" >"$T/c.out" 2>"$T/c.err" &&
		! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$T/c.err"; then
		ok "$c: $(paste -sd";" "$T/c.out" | cut -c1-240)"
	else
		fail "$c"
		sed 's/^/#   /' "$T/c.out" "$T/c.err" | grep -v '^#   *$' | head -n 25
		sed 's/^/#   device: /' "$T/dev.out" | tail -n 5
	fi
	kill "$dp" 2>/dev/null
	wait "$dp" 2>/dev/null
}

for c in queues_32 size_max_odd size_max_small held_overflow restart_broken restart_refuse \
	attach_busy die_in_restart fewer_queues stale_write stale_violation stale_drop impostor; do
	run_case "$c"
done
XVL_SERVER_UID=65534 run_case impostor_allowed impostor

# An impostor takes over the socket path while the client reconnects.
sock=$T/imp/r.sock
rm -f "$sock"
"$T/hostile_device" "$sock" link_drop >"$T/dev1.out" 2>&1 &
dp=$!
E2E_PIDS+=("$dp")
wait_sock "$sock" "$dp"
timeout -k 2 20 "$T/client_recovery" "$sock" reconnect_impostor >"$T/c.out" 2>"$T/c.err" &
cp=$!
wait "$dp"
rm -f "$sock"
"$T/hostile_device" "$sock" impostor >"$T/dev2.out" 2>&1 &
ip=$!
E2E_PIDS+=("$ip")
if wait "$cp" && ! grep -q 'window received' "$T/dev2.out"; then
	ok "reconnect_impostor: $(paste -sd";" "$T/c.out" | cut -c1-200); impostor: $(tail -n 1 "$T/dev2.out")"
else
	fail "reconnect_impostor: the client went on with a peer of another uid"
	sed 's/^/#   /' "$T/c.out" "$T/c.err" "$T/dev2.out" | head -n 25
fi
kill "$ip" 2>/dev/null
wait "$ip" 2>/dev/null

# ---------------------------------------------------------------- fio, thread=1, server restarts
# Two job threads share one connection (one queue each) while the server is
# killed -9 and started again twice: whichever thread notices sets every
# queue up again while the other is quiesced (item 8).  fio's verify=crc32c
# then reads every block back.
ENGINE=${XVL_BUILD:-$R/build}/src/fio/xvloop-fio.so
truncate -s 32M "$T/fio.img"
# srv: a real xvl server with a file-backed device of 2 queues; sets FSP.
srv() {
	"$XVL" server --listen "$T/f.sock" --dev "name=f0,backend=file,path=$T/fio.img,queues=2" \
		>>"$T/fsrv.log" 2>&1 &
	FSP=$!
	E2E_PIDS+=("$FSP")
	wait_sock "$T/f.sock" "$FSP"
}
if [ -f "$ENGINE" ] && [ -x "$XVL" ] && command -v fio >/dev/null; then
	# fio_restarts NAME [fio options...]: 2 job threads, the server killed -9 twice
	fio_restarts() {
		local name=$1
		shift
		rm -f "$T/f.sock"
		srv
		XVL_RECONNECT_MS=8000 timeout 60 fio --name=restart --ioengine=external:"$ENGINE" \
			--uri="xvl:$T/f.sock" --device=f0 --thread=1 --numjobs=2 --offset_increment=16M \
			--rw=randwrite --bs=4k --size=16M --iodepth=8 --rate_iops=1000 --verify=crc32c \
			--do_verify=1 --verify_fatal=1 --verify_state_save=0 --group_reporting "$@" \
			>"$T/fio.log" 2>&1 &
		local fp=$! kills=0 wait_s
		for wait_s in 1.5 1; do
			sleep "$wait_s"
			kill -0 "$fp" 2>/dev/null || break
			kill -KILL "$FSP"
			wait "$FSP" 2>/dev/null
			kills=$((kills + 1))
			rm -f "$T/f.sock"
			sleep 0.2
			srv
		done
		if wait "$fp" && grep -q "err= 0" "$T/fio.log" && ! grep -q "verify:" "$T/fio.log" &&
			[ "$kills" -eq 2 ]; then
			ok "fio thread=1, 2 jobs sharing a connection ($name), server killed -9 and restarted $kills times: verified, $(grep -o 'WRITE: bw=[^,]*' "$T/fio.log")"
		else
			fail "fio thread=1 ($name) through $kills server restarts"
			grep -v '^ *$' "$T/fio.log" | tail -n 15 | sed 's/^/#   /'
		fi
		kill "$FSP" 2>/dev/null
		wait "$FSP" 2>/dev/null
	}
	fio_restarts "zero copy, sleeping on events"
	fio_restarts "copying buffers, poll=1" --zerocopy=0 --poll=1
else
	skip "fio through server restarts: no fio, $XVL or $ENGINE"
fi

# ---------------------------------------------------------------- TSan through restarts
# tests/hostile/tsan_queues.c (one client, a thread per queue, pattern written
# and read back) under ThreadSanitizer with XVL_RECONNECT_MS while the server
# is killed -9 and restarted: the recovery path's locking, race-checked.
if [ -x "$XVL" ] && "$CC" -std=gnu11 -g -O1 -Wno-tsan -fsanitize=thread -D_GNU_SOURCE -I"$R/include" \
	-I"$R/src/core" -I"$R/src/os" -I"$R/src/vhost" -I"$R/src/client" "${CORE[@]}" "$R"/src/vhost/*.c \
	"$R"/src/client/*.c "$R/tests/hostile/tsan_queues.c" -lpthread -o "$T/tsan_queues" 2>"$T/cc3.log"; then
	rm -f "$T/f.sock"
	srv
	XVL_RECONNECT_MS=8000 TSAN_OPTIONS=halt_on_error=1:exitcode=66 timeout -k 2 60 \
		"$T/tsan_queues" "$T/f.sock" 0 2 6000 >"$T/tsan.out" 2>&1 &
	TP=$!
	kills=0
	for wait_s in 1 0.7 0.7; do
		sleep "$wait_s"
		kill -0 "$TP" 2>/dev/null || break
		kill -KILL "$FSP"
		wait "$FSP" 2>/dev/null
		kills=$((kills + 1))
		rm -f "$T/f.sock"
		sleep 0.2
		srv
	done
	wait "$TP"
	rc=$?
	if [ "$rc" -eq 0 ] && [ "$kills" -eq 3 ] && ! grep -q 'WARNING: ThreadSanitizer' "$T/tsan.out"; then
		ok "TSan through $kills server kills: $(tail -n 1 "$T/tsan.out"), no data race"
	else
		fail "TSan through $kills server kills (exit $rc)"
		head -40 "$T/tsan.out" | sed 's/^/#   /'
	fi
	kill "$FSP" 2>/dev/null
else
	skip "TSan build of tests/hostile/tsan_queues.c ($(head -c 200 "$T/cc3.log" 2>/dev/null))"
fi

finish
