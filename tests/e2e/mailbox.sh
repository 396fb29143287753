#!/bin/bash
# SPDX-License-Identifier: MIT
# The mailbox link (issue 10, docs/PROTOCOL.md section 7): client and server
# share nothing but the window (and, with doorbells, eventfd vectors).
#   1. xvl blk verify, 512 B - 1 MiB, 4 queues, over a window file, polling
#   2. the same with eventfd doorbells: xvl server as ivshmem server, the
#      client an ivshmem peer (as QEMU would be)
#   3. kill -9 of the server, restarted on the kept window, under
#      write+verify: nothing lost, failed or completed twice
#   4. a hostile driver writing garbage into the mailbox: its link is closed
#      with a message naming it, while a socket client of the same server
#      runs verify undisturbed, and a good client on that window works after
#   5. QEMU's ivshmem-doorbell (no guest: -S) connects to the ivshmem server
#      and gets the window (BAR2 of its size), while a host peer runs verify
#   6. a peer ringing every vector as fast as it can does not starve a socket
#      client of the same server
#   (4b) a hostile device side answering with a malformed slot: the client
#      fails with a message naming the mailbox, within its timeout
#   7. xvl run with link = "window": the partitioner hands the memfd window to
#      both compartments; it restarts the device side after kill -9
#   8. the vhost-user bridge (qemu-storage-daemon) behind the mailbox link, and
#      fio's verify=crc32c through the engine over it; 8b. the same bridge behind a
#      polling link (no doorbells): the server kicks qsd; cmp against qsd's image
#   9. a driver killed -9 mid-I/O, polling and with doorbells: the next driver on the
#      same window is served
# Prints TAP; about 20 s.
. "$(dirname "$0")/lib.sh"
R=$E2E_ROOT

verify_ok() { grep -q "0 mismatches, 0 failed requests, 0 completed twice" "$1" && grep -q "verify: OK" "$1"; }
wait_log() { # wait_log FILE REGEX: up to 5 s
	for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}

# ---------------------------------------------------------------- 1. polling
bg "$T/s1.log" "$XVL" server --link window --window "$T/w1" -d name=d0,backend=ram,size=64M,queues=4
S1=$BG_PID
"$XVL" blk verify --connect "window:$T/w1" --window-size 64M --queues 4 --qd 8 --min 512 --max 1M \
	--size 32M --ops 3000 >"$T/v1.out" 2>&1
if verify_ok "$T/v1.out"; then
	ok "verify over the mailbox, polling, 4 queues, 512 B-1 MiB: $(grep -o 'random *[0-9]* requests' "$T/v1.out" | tr -s ' ')"
else
	fail "verify over the mailbox, polling"; sed 's/^/#   /' "$T/v1.out" "$T/s1.log" | tail -15
fi
# The next driver grows the window file: the server must map it again at its new size.
"$XVL" blk verify --connect "window:$T/w1" --window-size 96M --size 8M --ops 300 >"$T/v1b.out" 2>&1
if verify_ok "$T/v1b.out"; then ok "a second client that grows the window file is served (remapped)"
else fail "second client with a bigger window"; sed 's/^/#   /' "$T/v1b.out" "$T/s1.log" | tail -10; fi
stop_server "$S1"

# ---------------------------------------------------------------- 2. eventfd doorbells
bg "$T/s2.log" "$XVL" server --link window --window "ivshmem:$T/iv.sock,size=64M,vectors=8" \
	-d name=d0,backend=ram,size=64M,queues=4
S2=$BG_PID
wait_sock "$T/iv.sock" "$S2"
"$XVL" blk verify --connect "ivshmem:$T/iv.sock" --queues 4 --qd 8 --min 512 --max 1M \
	--size 32M --ops 3000 >"$T/v2.out" 2>&1
if verify_ok "$T/v2.out" && grep -q "ivshmem: peer 1 connected" "$T/s2.log"; then
	ok "verify over the mailbox, eventfd doorbells from the ivshmem server, 4 queues"
else
	fail "verify over the mailbox, eventfd doorbells"; sed 's/^/#   /' "$T/v2.out" "$T/s2.log" | tail -15
fi

# Too few vectors for every queue its own: refused with a message, not shared.
bg "$T/s2b.log" "$XVL" server --link window --window "ivshmem:$T/iv2b.sock,size=16M,vectors=3" \
	-d name=d0,backend=ram,size=8M,queues=4 -d name=d1,backend=ram,size=8M
S2B=$BG_PID
wait_sock "$T/iv2b.sock" "$S2B"
"$XVL" blk verify --connect "ivshmem:$T/iv2b.sock" --queues 4 --size 4M --ops 100 >"$T/v2b.out" 2>&1; r1=$?
"$XVL" blk verify --connect "ivshmem:$T/iv2b.sock" --device d1 --size 4M --ops 100 >"$T/v2c.out" 2>&1; r2=$?
if [ "$r1" -ne 0 ] && grep -q "no doorbell vector left for queue 2" "$T/v2b.out" && [ "$r2" -eq 0 ] && verify_ok "$T/v2c.out"; then
	ok "3 vectors: 4 queues refused ('no doorbell vector left for queue 2'), device 1's one queue served"
else
	fail "vector assignment with too few vectors (exit $r1, $r2)"; cat "$T/v2b.out" "$T/v2c.out" | tail -6 | sed 's/^/#   /'
fi
stop_server "$S2B"

# ---------------------------------------------------------------- 5. QEMU as an ivshmem peer
if command -v qemu-system-x86_64 >/dev/null; then
	mkfifo "$T/mon"
	exec 3<>"$T/mon" # open both ends first: opening a fifo for reading alone would block
	# Not through bg(): a background command's stdin is /dev/null unless redirected on it.
	qemu-system-x86_64 -S -nographic -nodefaults -machine q35,accel=tcg -m 64 \
		-monitor stdio -chardev socket,path="$T/iv.sock",id=iv0 \
		-device ivshmem-doorbell,chardev=iv0,vectors=8 <"$T/mon" >"$T/qemu.log" 2>&1 &
	Q=$!
	E2E_PIDS+=("$Q")
	wait_log "$T/s2.log" "ivshmem: peer 2 connected"
	echo "info pci" >&3
	"$XVL" blk verify --connect "ivshmem:$T/iv.sock" --queues 2 --size 8M --ops 500 >"$T/v5.out" 2>&1
	wait_log "$T/qemu.log" "BAR2"
	echo quit >&3
	exec 3>&-
	for _ in $(seq 1 50); do alive "$Q" || break; sleep 0.1; done
	if grep -q "ivshmem: peer 2 connected" "$T/s2.log" && grep -A4 "1af4:1110" "$T/qemu.log" | grep -q "BAR2: .*\[0x03fffffe\]"; then
		ok "QEMU ivshmem-doorbell connected to xvloop's ivshmem server and maps the 64 MiB window as BAR2"
	else
		fail "QEMU ivshmem-doorbell and the ivshmem server"; sed 's/^/#   /' "$T/qemu.log" "$T/s2.log" | tail -20
	fi
	if verify_ok "$T/v5.out" && grep -q "ivshmem: peer 3 connected" "$T/s2.log"; then
		ok "a host peer's doorbells reach the server while QEMU is connected (verify OK)"
	else
		fail "host peer verify beside QEMU"; sed 's/^/#   /' "$T/v5.out" | tail -10
	fi
else
	skip "QEMU ivshmem-doorbell (no qemu-system-x86_64)"
	skip "host peer beside QEMU"
fi
stop_server "$S2"

# ---------------------------------------------------------------- 3. kill -9 and restart
truncate -s 32M "$T/disk.img"
start_dev() { bg "$T/s3.log" "$XVL" server --link window --window "$T/w3" \
	-d "name=d0,backend=file,path=$T/disk.img,queues=2"; S3=$BG_PID; }
start_dev
bg "$T/v3.out" "$XVL" blk verify --connect "window:$T/w3" --window-size 32M --reconnect-ms 10000 \
	--queues 2 --qd 16 --min 512 --max 256K --ops 1000000000 --time 5 --seed 11
C3=$BG_PID
sleep 0.5
kills=0
for _ in 1 2 3 4 5 6; do
	sleep "0.$((RANDOM % 300 + 100))"
	alive "$C3" || break
	kill -9 "$S3"; wait "$S3" 2>/dev/null
	start_dev
	kills=$((kills + 1))
done
wait "$C3"; rc=$?
if [ "$rc" -eq 0 ] && verify_ok "$T/v3.out" && [ "$kills" -ge 5 ]; then
	ok "kill -9 of the server x$kills under write+verify, window kept: $(grep -o 'server reconnections [0-9]*, device restarts [0-9]*' "$T/v3.out"), 0 mismatches, 0 failed, 0 twice"
else
	fail "kill -9 of the server under write+verify (exit $rc, $kills kills)"; sed 's/^/#   /' "$T/v3.out" | tail -10
fi
stop_server "$S3"

# ---------------------------------------------------------------- 4. hostile driver
BM=$T/badmbox
if gcc -std=gnu11 -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$R/src/core" -I"$R/src/os" "$R/tests/e2e/badmbox.c" \
	"$R"/src/core/{mailbox,proto,window}.c "$R"/src/os/{os_misc,os_sock,os_window,window_path,doorbell,ivshmem,vfio}.c \
	-o "$BM" >"$T/cc.log" 2>&1; then
	bg "$T/s4.log" "$XVL" server --listen "$T/s4.sock" --link window --window "$T/w4" \
		-d name=d0,backend=ram,size=32M,queues=2 -d name=d1,backend=ram,size=32M
	S4=$BG_PID
	wait_sock "$T/s4.sock" "$S4"
	bg "$T/v4.out" "$XVL" blk verify --connect "$T/s4.sock" --device d1 --time 3 --ops 1000000000 --size 8M
	C4=$BG_PID
	for sc in garbage ahead reply junk; do
		out=$("$BM" "$T/w4" "$sc" 2>&1)
		if [[ $out == PASS* ]] && grep -q "client badmbox-$sc: malformed mailbox traffic" "$T/s4.log"; then
			ok "hostile mailbox driver ($sc): link closed, server says: $(grep "badmbox-$sc: malformed" "$T/s4.log" | sed 's/.*malformed/malformed/' | head -1)"
		else
			fail "hostile mailbox driver ($sc): $out"; tail -5 "$T/s4.log" | sed 's/^/#   /'
		fi
	done
	wait "$C4"; rc=$?
	if [ "$rc" -eq 0 ] && verify_ok "$T/v4.out"; then
		ok "a socket client of the same server verified undisturbed meanwhile"
	else
		fail "socket client beside the hostile mailbox driver (exit $rc)"; tail -5 "$T/v4.out" | sed 's/^/#   /'
	fi
	"$XVL" blk verify --connect "window:$T/w4" --window-size 4M --device d0 --size 4M --ops 300 >"$T/v4b.out" 2>&1
	if verify_ok "$T/v4b.out"; then ok "a good client on the same window works after the hostile ones"
	else fail "good client after the hostile ones"; tail -5 "$T/v4b.out" | sed 's/^/#   /'; fi
	alive "$S4" && ok "server still up" || fail "server died"
	stop_server "$S4"

	# A hostile device side: the driver refuses its malformed reply with a message, promptly.
	bg "$T/bd.out" "$BM" --device "$T/w8"
	BD=$BG_PID
	t0=$(date +%s%N)
	"$XVL" blk info --connect "window:$T/w8" --window-size 4M >"$T/bd.cli" 2>&1; crc=$?
	t1=$(date +%s%N)
	wait "$BD"
	if [ "$crc" -ne 0 ] && grep -q "PASS" "$T/bd.out" && grep -q "mailbox" "$T/bd.cli" &&
		[ $(( (t1 - t0) / 1000000 )) -lt 4000 ]; then
		ok "hostile mailbox device (reply slot of 9999 bytes): the client says '$(head -c 160 "$T/bd.cli")' in $(( (t1 - t0) / 1000000 )) ms"
	else
		fail "hostile mailbox device (client exit $crc)"; cat "$T/bd.out" "$T/bd.cli" | sed 's/^/#   /' | tail -6
	fi

	# A doorbell storm from a peer must not starve the server's other clients.
	bg "$T/s6.log" "$XVL" server --listen "$T/s6.sock" --link window --window "ivshmem:$T/iv6.sock,size=16M,vectors=4" \
		-d name=d0,backend=ram,size=16M -d name=d1,backend=ram,size=16M
	S6=$BG_PID
	wait_sock "$T/s6.sock" "$S6" && wait_sock "$T/iv6.sock" "$S6"
	"$XVL" blk verify --connect "$T/s6.sock" --device d1 --time 2 --ops 1000000000 --size 8M >"$T/v6a.out" 2>&1
	bg "$T/storm.out" "$BM" --storm "$T/iv6.sock" 3
	ST=$BG_PID
	sleep 0.3
	"$XVL" blk verify --connect "$T/s6.sock" --device d1 --time 2 --ops 1000000000 --size 8M >"$T/v6b.out" 2>&1
	wait "$ST"
	quiet=$(grep -o 'random *[0-9]* requests' "$T/v6a.out" | grep -o '[0-9]*' | head -1)
	storm=$(grep -o 'random *[0-9]* requests' "$T/v6b.out" | grep -o '[0-9]*' | head -1)
	if verify_ok "$T/v6b.out" && grep -q PASS "$T/storm.out" && [ "${storm:-0}" -gt $(( ${quiet:-0} / 10 )) ]; then
		ok "doorbell storm ($(grep -o '[0-9]* rings in [0-9]* s' "$T/storm.out")) on the ivshmem vectors: a socket client kept ${storm} of ${quiet} random requests in 2 s"
	else
		fail "doorbell storm starved a socket client (${storm:-?} vs ${quiet:-?} requests)"; cat "$T/storm.out" "$T/v6b.out" | sed 's/^/#   /' | tail -8
	fi
	stop_server "$S6"
else
	fail "badmbox builds"; sed 's/^/#   /' "$T/cc.log" | head
fi
# ---------------------------------------------------------------- 8. bridge and fio over the mailbox
if command -v qemu-storage-daemon >/dev/null; then
	truncate -s 64M "$T/qdisk.img"
	bg "$T/qsd.log" qemu-storage-daemon --blockdev driver=file,node-name=f0,filename="$T/qdisk.img" \
		--export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path="$T/qsd.sock",writable=on,num-queues=2
	QSD=$BG_PID
	wait_sock "$T/qsd.sock" "$QSD"
	bg "$T/s8.log" "$XVL" server --link window --window "ivshmem:$T/iv8.sock,size=64M,vectors=8" \
		-d "name=q0,backend=vhost-user,path=$T/qsd.sock"
	S8=$BG_PID
	wait_sock "$T/iv8.sock" "$S8"
	"$XVL" blk verify --connect "ivshmem:$T/iv8.sock" --queues 2 --size 16M --ops 2000 --max 1M >"$T/v8.out" 2>&1
	if verify_ok "$T/v8.out"; then ok "vhost-user bridge (qemu-storage-daemon) behind the mailbox link, 2 queues, eventfd doorbells"
	else fail "vhost-user bridge behind the mailbox link"; sed 's/^/#   /' "$T/v8.out" "$T/s8.log" | tail -10; fi
	stop_server "$S8"
	# 8b. The driver polls (a window file, no doorbells): the server watches the bridged
	# queues' avail index and kicks qsd itself (bridge_poll.c); before, it refused poll mode.
	bg "$T/s8b.log" "$XVL" server --link window --window "$T/w8b" -d "name=q0,backend=vhost-user,path=$T/qsd.sock"
	S8B=$BG_PID
	"$XVL" blk verify --connect "window:$T/w8b" --window-size 64M --queues 2 --qd 8 --min 512 --max 1M \
		--size 32M --ops 2000 >"$T/v8b.out" 2>&1
	head -c 16M /dev/urandom >"$T/r8b.bin"
	"$XVL" blk write --connect "window:$T/w8b" --window-size 64M --offset 4096 --input "$T/r8b.bin" >"$T/w8b.out" 2>&1 &&
		"$XVL" blk read --connect "window:$T/w8b" --window-size 64M --offset 4096 --length 16M \
			--output "$T/b8b.bin" >"$T/rd8b.out" 2>&1
	stop_server "$S8B"
	kicks=$(sed -n 's/.*avail poller stopped: \([0-9]*\) kick.*/\1/p' "$T/s8b.log" | sort -n | tail -1)
	if verify_ok "$T/v8b.out" && grep -q "notifications polled (the server kicks)" "$T/s8b.log" &&
		[ "${kicks:-0}" -gt 0 ]; then
		ok "vhost-user bridge (qsd) behind a polling mailbox link (no doorbells), 2 queues, 512 B-1 MiB: verify OK, the server kicked qsd ($kicks kicks in one session)"
	else
		fail "bridge behind a polling mailbox link"; sed 's/^/#   /' "$T/v8b.out" "$T/s8b.log" | tail -12
	fi
	if cmp -s "$T/r8b.bin" "$T/b8b.bin" && cmp -s -i 0:4096 -n 16777216 "$T/r8b.bin" "$T/qdisk.img"; then
		ok "16 MiB written through the polling link: qsd's image holds it (cmp) and it reads back the same"
	else
		fail "data through the polling bridge: cmp against qsd's image"; sed 's/^/#   /' "$T/w8b.out" "$T/rd8b.out" | tail -6
	fi
else
	skip "vhost-user bridge behind the mailbox link (no qemu-storage-daemon)"
	skip "bridge behind a polling mailbox link (no qemu-storage-daemon)"
fi
FIO_ENGINE=$R/build/src/fio/xvloop-fio.so
if command -v fio >/dev/null && [ -e "$FIO_ENGINE" ]; then
	bg "$T/s9.log" "$XVL" server --link window --window "ivshmem:$T/iv9.sock,size=64M,vectors=8" \
		-d name=r0,backend=ram,size=64M,queues=2
	S9=$BG_PID
	wait_sock "$T/iv9.sock" "$S9"
	if fio --name=v --ioengine=external:"$FIO_ENGINE" --uri="ivshmem:$T/iv9.sock" --rw=randwrite \
		--bs=4k-128k --iodepth=8 --size=32M --verify=crc32c --do_verify=1 --verify_fatal=1 \
		>"$T/fio.out" 2>&1 && grep -q "err= 0" "$T/fio.out"; then
		ok "fio randwrite 4k-128k with verify=crc32c through the engine over the mailbox link"
	else
		fail "fio over the mailbox link"; tail -8 "$T/fio.out" | sed 's/^/#   /'
	fi
	stop_server "$S9"
else
	skip "fio over the mailbox link (no fio or engine)"
fi

# ---------------------------------------------------------------- 7. the partitioner
truncate -s 32M "$T/disk7.img"
# An ASan build's exit-time leak check makes system calls the compartments' filter kills.
sc=kill
ldd "$XVL" 2>/dev/null | grep -q libasan && { sc=log; note "ASan build: compartments with seccomp = log"; }
cat >"$T/mb.cfg" <<CFG
name = "mbox-e2e-$$";
seccomp = "$sc";
state_dir = "$T/state";
exit_with_drivers = true;
pool = 0;
windows = ( { name = "w0"; size = "16M"; backing = "memfd"; } );
devices = ( { name = "d0"; type = "blk"; backend = "file"; path = "$T/disk7.img"; queues = 2; } );
compartments = (
  { name = "dev"; role = "device"; devices = ["d0"]; memory = "256M"; },
  { name = "app"; role = "driver"; window = "w0"; connect = "dev"; link = "window"; memory = "256M";
    program = ["xvl", "blk", "verify", "--connect", "{link}", "--time", "3", "--ops", "1000000000",
               "--qd", "8", "--queues", "2", "--max", "256K"]; }
);
CFG
bg "$T/run.log" "$XVL" run "$T/mb.cfg"
RUN=$BG_PID
wait_log "$T/run.log" "compartment dev (device) started: pid"
sleep 1
devpid=$(sed -n 's/.*compartment dev (device) started: pid \([0-9]*\).*/\1/p' "$T/run.log" | head -1)
[ -n "$devpid" ] && kill -9 "$devpid"
wait "$RUN"; rc=$?
if [ "$rc" -eq 0 ] && grep -q "\[app\] verify: OK" "$T/run.log" && grep -q "mailbox in window fd 3: device side ready" "$T/run.log" &&
	grep -q "0 mismatches, 0 failed requests, 0 completed twice" "$T/run.log" && grep -q "server reconnections [1-9]" "$T/run.log"; then
	ok "xvl run with link = \"window\": the device side killed and restarted by the partitioner, the driver verified ($(grep -o 'server reconnections [0-9]*, device restarts [0-9]*' "$T/run.log"))"
else
	fail "xvl run with link = \"window\" (exit $rc)"; sed 's/^/#   /' "$T/run.log" | tail -15
fi
# ---------------------------------------------------------------- 9. client killed mid-I/O
# The driver dies with requests in flight (file backend, 2 queues); the window stays (a file,
# or the ivshmem server's memfd).  The server must notice, finish or drop what it held, and
# serve the next driver on the same window as if nothing had happened.
truncate -s 32M "$T/disk9.img"
for mode in polling doorbells; do
	if [ $mode = polling ]; then
		bg "$T/s9.log" "$XVL" server --link window --window "$T/w9" \
			-d "name=d0,backend=file,path=$T/disk9.img,queues=2"
		S9=$BG_PID URI=(--connect "window:$T/w9" --window-size 32M)
	else
		bg "$T/s9.log" "$XVL" server --link window --window "ivshmem:$T/iv9.sock,size=32M,vectors=4" \
			-d "name=d0,backend=file,path=$T/disk9.img,queues=2"
		S9=$BG_PID URI=(--connect "ivshmem:$T/iv9.sock")
		wait_sock "$T/iv9.sock" "$S9"
	fi
	bg "$T/v9a.out" "$XVL" blk verify "${URI[@]}" --queues 2 --qd 16 --min 512 --max 256K \
		--ops 1000000000 --time 30
	C9=$BG_PID
	wait_log "$T/s9.log" "attached device d0"
	sleep 0.5 # well into its I/O (its own output is buffered until it exits)
	attached=$(alive "$C9" && grep -c "attached device d0" "$T/s9.log")
	kill -9 "$C9"; wait "$C9" 2>/dev/null
	"$XVL" blk verify "${URI[@]}" --queues 2 --qd 8 --min 512 --max 1M --size 16M --ops 2000 \
		>"$T/v9b.out" 2>&1
	if [ "${attached:-0}" -ge 1 ] && verify_ok "$T/v9b.out" && alive "$S9"; then
		ok "mailbox ($mode): a driver killed -9 mid-I/O; the next driver on the same window verifies 512 B-1 MiB, the server is up"
	else
		fail "mailbox ($mode): driver killed mid-I/O (attached ${attached:-0})"
		sed 's/^/#   /' "$T/v9a.out" "$T/v9b.out" "$T/s9.log" | tail -15
	fi
	stop_server "$S9"
done
finish
