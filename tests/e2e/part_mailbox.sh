#!/bin/bash
# SPDX-License-Identifier: MIT
# xvl run with link = "window": the partitioner creates the sealed memfd
# window AND the eventfd doorbell vectors (docs/PROTOCOL.md 7.6), keeps them,
# and hands each compartment its own and its peer's set.
#   1. write+verify through the mailbox with eventfd doorbells while the device
#      compartment is killed with -9 three times (restarted by the partitioner
#      on the same window and vectors): 0 mismatches / failed / completed twice;
#      doorbells, not polling, were used: the server says so for every session
#      and its used-buffer notifications (xvl status --json) are counted
#   2. doorbell = "none": the same link polls (the control for 1: the server's
#      notification counter stays 0)
#   2b. doorbell = "none" with backend = "qsd": the server bridges a polling driver
#      to qemu-storage-daemon (it watches the avail index and kicks qsd)
#   3. a link that would need more vectors than a compartment is handed: a
#      clear error, nothing started
# Prints TAP; about 15 s.
. "$(dirname "$0")/lib.sh"

wait_log() { # wait_log FILE REGEX [tenths]: up to 5 s
	for _ in $(seq 1 "${3:-50}"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
sc=kill
ldd "$XVL" 2>/dev/null | grep -q libasan && { sc=log; note "ASan build: compartments with seccomp = log"; }
truncate -s 32M "$T/disk.img"

# cfg NAME DOORBELL-LINE SECONDS QUEUES
cfg() {
	cat >"$T/$1.cfg" <<CFG
name = "pmb-$1-$$";
seccomp = "$sc";
state_dir = "$T/$1.state";
exit_with_drivers = true;
pool = 1;
windows = ( { name = "w0"; size = "32M"; backing = "memfd"; } );
devices = ( { name = "d0"; type = "blk"; backend = "file"; path = "$T/disk.img"; queues = $4; } );
compartments = (
  { name = "dev"; role = "device"; devices = ["d0"]; memory = "256M"; },
  { name = "app"; role = "driver"; window = "w0"; connect = "dev"; link = "window"; memory = "256M"; $2
    program = ["xvl", "blk", "verify", "--connect", "{link}", "--time", "$3", "--ops", "1000000000",
               "--qd", "8", "--queues", "$4", "--min", "512", "--max", "1M", "--size", "16M"]; }
);
CFG
}
io_counts() { # io_counts STATE_DIR: "REQUESTS NOTIFICATIONS" of devices[0] from one xvl status --json
	"$XVL" status --state-dir "$1" --json 2>/dev/null | python3 -c "
import json, sys
try:
    d = json.load(sys.stdin)['devices'][0]['io']
    print(d['requests'], d['notifications'])
except Exception:
    print('none none')"
}
devpid() { sed -n 's/.*compartment dev (device) \(started\|restarted\).* pid \([0-9]*\).*/\2/p' "$1" | tail -1; }

# ---------------------------------------------------------------- 1. eventfd doorbells, 3 x kill -9
cfg db "" 9 2
bg "$T/db.log" timeout 60 "$XVL" run "$T/db.cfg" # a driver asleep through a restart: a failure, not a hang
RUN=$BG_PID
wait_log "$T/db.log" "new session" 100
kills=0
for k in 1 2 3; do
	sleep 1.2
	p=$(devpid "$T/db.log")
	[ -n "$p" ] && kill -9 "$p" && kills=$((kills + 1))
	wait_log "$T/db.log" "restarted (#$k)" 50
done
# after the last restart: the new server instance's counters
wait_log "$T/db.log" "new session.*" 50
sleep 1.5
read -r reqs notif < <(io_counts "$T/db.state")
vecs=$("$XVL" status --state-dir "$T/db.state" --json 2>/dev/null |
	python3 -c "import json,sys; print(json.load(sys.stdin)['windows'][0]['doorbell_vectors'])" 2>/dev/null)
wait "$RUN"; rc=$?
sessions=$(grep -c "new session, driver [0-9]* doorbell vector(s), device [0-9]*: doorbells" "$T/db.log")
polled=$(grep -c "new session.*: polling" "$T/db.log")
note "kills $kills, sessions with doorbells $sessions, polling $polled, last instance: $reqs requests, $notif notifications"
if [ "$rc" -eq 0 ] && grep -q "\[app\] verify: OK" "$T/db.log" &&
	grep -q "0 mismatches, 0 failed requests, 0 completed twice" "$T/db.log" &&
	grep -q "server reconnections [1-9]" "$T/db.log" && [ "$kills" -eq 3 ] &&
	grep -q "restarted (#3)" "$T/db.log"; then
	ok "xvl run, link = \"window\", eventfd doorbells: device killed -9 x3 and restarted under write+verify 512 B-1 MiB, 0 mismatches/failed/twice ($(grep -o 'server reconnections [0-9]*, device restarts [0-9]*' "$T/db.log"))"
else
	fail "write+verify through device kills with doorbells (exit $rc, kills $kills)"; sed 's/^/#   /' "$T/db.log" | tail -20
fi
if [ "$sessions" -ge 4 ] && [ "$polled" -eq 0 ] && grep -q "driver 3 doorbell vector(s), device 3: doorbells" "$T/db.log" &&
	[ "$vecs" = 3 ]; then
	ok "every session ($sessions over 4 device instances) ran on doorbells: 3 vectors each side (mailbox + 2 queues; xvl status: doorbell_vectors 3), none polled"
else
	fail "sessions on doorbells: $sessions, polling: $polled, status doorbell_vectors '$vecs'"; grep "new session" "$T/db.log" | sed 's/^/#   /'
fi
if [[ "$notif" =~ ^[0-9]+$ ]] && [ "$notif" -gt 0 ] && [[ "$reqs" =~ ^[0-9]+$ ]] && [ "$reqs" -gt 0 ]; then
	ok "the restarted device side rings the driver's call vectors: $notif notifications for $reqs requests (xvl status --json)"
else
	fail "no used-buffer notifications after the restarts (notifications '$notif', requests '$reqs')"
fi

# ---------------------------------------------------------------- 2. doorbell = "none": polling
cfg poll 'doorbell = "none";' 5 2
bg "$T/poll.log" timeout 60 "$XVL" run "$T/poll.cfg"
RUN=$BG_PID
wait_log "$T/poll.log" "new session" 100
sleep 1.5
read -r preqs pnotif < <(io_counts "$T/poll.state")
wait "$RUN"; rc=$?
if [ "$rc" -eq 0 ] && grep -q "\[app\] verify: OK" "$T/poll.log" &&
	grep -q "new session, driver 0 doorbell vector(s), device 0: polling" "$T/poll.log" &&
	[ "$pnotif" = 0 ] && [[ "$preqs" =~ ^[0-9]+$ ]] && [ "$preqs" -gt 0 ]; then
	ok "doorbell = \"none\": the link polls (0 vectors, 0 notifications for $preqs requests), verify OK"
else
	fail "doorbell = \"none\" (exit $rc, notifications '$pnotif', requests '$preqs')"; sed 's/^/#   /' "$T/poll.log" | tail -12
fi

# ---------------------------------------------------------------- 2b. a polling link to qsd
# What a device VM with qsd inside does over ivshmem-plain, here in processes: the server
# bridges to qemu-storage-daemon and kicks it for the polling driver.
if command -v qemu-storage-daemon >/dev/null; then
	truncate -s 32M "$T/q.img"
	sed -e 's|{ name = "d0"; type = "blk"; backend = "file"; path = "[^"]*"; queues = 2; }|{ name = "d0"; backend = "qsd"; image = "'"$T"'/q.img"; queues = 2; }|' \
		-e 's/pmb-poll-/pmb-qsd-/' -e "s|$T/poll.state|$T/qsd.state|" "$T/poll.cfg" >"$T/qsd.cfg"
	timeout 60 "$XVL" run "$T/qsd.cfg" >"$T/qsd.log" 2>&1; rc=$?
	if [ "$rc" -eq 0 ] && grep -q "\[app\] verify: OK" "$T/qsd.log" &&
		grep -q "0 mismatches, 0 failed requests, 0 completed twice" "$T/qsd.log" &&
		grep -q "notifications polled (the server kicks)" "$T/qsd.log"; then
		ok "xvl run, doorbell = \"none\", backend = \"qsd\": the device side kicks qemu-storage-daemon for the polling driver, verify 512 B-1 MiB OK"
	else
		fail "polling link to qsd under xvl run (exit $rc)"; sed 's/^/#   /' "$T/qsd.log" | tail -12
	fi
else
	skip "polling link to qsd under xvl run (no qemu-storage-daemon)"
fi

# ---------------------------------------------------------------- 3. config errors, too many vectors
sed 's/link = "window"; memory/link = "window"; doorbell = "bell"; memory/' "$T/db.cfg" >"$T/bad1.cfg"
"$XVL" run --check "$T/bad1.cfg" >"$T/bad1.out" 2>&1; r1=$?
sed 's/role = "device"; devices/role = "device"; doorbell = "none"; devices/' "$T/db.cfg" >"$T/bad2.cfg"
"$XVL" run --check "$T/bad2.cfg" >"$T/bad2.out" 2>&1; r2=$?
if [ "$r1" -ne 0 ] && grep -q "bad1.cfg:[0-9]*: .*doorbell 'bell' (expected eventfd or none)" "$T/bad1.out" &&
	[ "$r2" -ne 0 ] && grep -q "'doorbell' belongs to a driver compartment with link = \"window\"" "$T/bad2.out"; then
	ok "xvl run --check: doorbell = \"bell\" and a device compartment's doorbell refused with file:line"
else
	fail "doorbell config errors"; cat "$T/bad1.out" "$T/bad2.out" | sed 's/^/#   /'
fi

sed -e 's/queues = 2;/queues = 16;/' "$T/db.cfg" >"$T/big1.cfg"
python3 - "$T/big1.cfg" "$T/big.cfg" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace('devices = ( { name = "d0";', 'devices = ( { name = "d1"; type = "blk"; backend = "ram"; size = "16M"; queues = 16; },\n  { name = "d2"; type = "blk"; backend = "ram"; size = "16M"; queues = 1; },\n  { name = "d0";')
s = s.replace('devices = ["d0"]', 'devices = ["d0", "d1", "d2"]').replace('size = "32M"; backing', 'size = "128M"; backing')
open(sys.argv[2], 'w').write(s)
PY
timeout 20 "$XVL" run "$T/big.cfg" >"$T/big.log" 2>&1; rc=$?
if [ "$rc" -ne 0 ] && grep -q "needs 34 doorbell vectors (1 + one per queue), at most 33" "$T/big.log"; then
	ok "34 vectors needed (1 + 33 queues): refused at start ('$(grep -o 'needs 34 doorbell.*' "$T/big.log" | head -1 | cut -c1-80)...')"
else
	fail "too many vectors (exit $rc)"; sed 's/^/#   /' "$T/big.log" | tail -8
fi
finish
