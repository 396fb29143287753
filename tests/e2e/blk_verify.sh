#!/usr/bin/env bash
# End-to-end data integrity: one `xvl server` process with file (buffered and
# O_DIRECT), RAM and null devices; clients are separate `xvl blk` processes.
#   - random-offset verification, 512 B .. 1 MiB requests, zero-copy and
#     --copy buffers, 1 and 4 queues, notifications and polling
#   - several clients on several devices at once
#   - a client killed with SIGKILL mid-I/O while another keeps verifying;
#     the killed client's device is attached again by a new client
#   - no fds or window mappings left in the server once clients are gone
#   - `blk write --input` / `blk read` round trip, and after the server stops
#     the disk image holds exactly those bytes at that offset (cmp)
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }

S=$T/s.sock
truncate -s 64M "$T/disk.img"   # buffered file backend, 4 queues
truncate -s 32M "$T/direct.img" # O_DIRECT file backend, 4 queues
truncate -s 16M "$T/plain.img"  # file backend for the write/read/cmp round trip

start_server "$T/server.log" "$S" \
	--dev name=f0,backend=file,path="$T/disk.img",queues=4 \
	--dev name=fd,backend=file,path="$T/direct.img",queues=4,direct=on \
	--dev name=r0,backend=ram,size=64M,queues=4 \
	--dev name=n0,backend=null,size=1G \
	--dev name=p0,backend=file,path="$T/plain.img"
if [ $? -ne 0 ]; then
	fail "server starts with file, direct file, ram and null devices"
	sed 's/^/#   /' "$T/server.log"
	finish
fi
ok "server starts with file, direct file, ram and null devices"
SRV=$SRV_PID
sleep 0.1
BASE=$(res_of "$SRV")
note "server baseline: $BASE"

V=(verify --connect "$S" --min 512 --max 1M)

# ---------------------------------------------------------------- null smoke
out=$("$XVL" blk info -c "$S" -d n0 --json 2>&1)
if echo "$out" | grep -q '"capacity":1073741824'; then
	ok "null: info reports the 1 GiB capacity"
else
	fail "null: info reports the 1 GiB capacity"; echo "$out" | sed 's/^/#   /'
fi
check "null: 1 MiB write at 512 MiB accepted" "$XVL" blk write -c "$S" -d n0 --offset 512M --length 1M --seed 5
"$XVL" blk read -c "$S" -d n0 --offset 512M --length 1M --output "$T/null.out" 2>"$T/err" &&
	cmp -s -n 1048576 "$T/null.out" /dev/zero && [ "$(stat -c %s "$T/null.out")" = 1048576 ]
[ $? -eq 0 ] && ok "null: read returns 1 MiB of zeroes" || { fail "null: read returns 1 MiB of zeroes"; sed 's/^/#   /' "$T/err"; }

# ---------------------------------------------------------------- single clients
check "file: 1 queue, zero-copy, 512 B..1 MiB random verify" \
	"$XVL" blk "${V[@]}" -d f0 --seed 11 --ops 400
check "file: 4 queues, zero-copy, random verify" \
	"$XVL" blk "${V[@]}" -d f0 -Q 4 --seed 12 --ops 400 --no-fill
check "file: 1 queue, --copy buffers, random verify" \
	"$XVL" blk "${V[@]}" -d f0 --copy --seed 13 --ops 300 --no-fill
check "file: 4 queues, --copy buffers, qd 16, random verify" \
	"$XVL" blk "${V[@]}" -d f0 -Q 4 --qd 16 --copy --seed 14 --ops 300 --no-fill
check "O_DIRECT file: 1 queue, zero-copy, random verify" \
	"$XVL" blk "${V[@]}" -d fd --seed 21 --ops 200
check "O_DIRECT file: 4 queues, --copy buffers, random verify" \
	"$XVL" blk "${V[@]}" -d fd -Q 4 --copy --seed 22 --ops 200 --no-fill
check "ram: 4 queues, polling, zero-copy, random verify" \
	"$XVL" blk "${V[@]}" -d r0 -Q 4 --poll --seed 31 --ops 400
check "ram: 1 queue, polling, --copy buffers, random verify" \
	"$XVL" blk "${V[@]}" -d r0 --poll --copy --seed 32 --ops 300 --no-fill
check "ram: 1 queue, queue size 1024 (largest), qd 64" \
	"$XVL" blk "${V[@]}" -d r0 -S 1024 --qd 64 -W 160M --seed 33 --ops 300 --no-fill
check "ram: queue size 16 with 1 MiB requests (indirect descriptors)" \
	"$XVL" blk "${V[@]}" -d r0 -S 16 --qd 16 --min 256K --seed 34 --ops 100 --no-fill

# ---------------------------------------------------------------- several at once
pids=()
bg "$T/c1.log" "$XVL" blk "${V[@]}" -d f0 -Q 4 --seed 41 --ops 300; pids+=("$BG_PID")
bg "$T/c2.log" "$XVL" blk "${V[@]}" -d fd -Q 2 --copy --seed 42 --ops 150; pids+=("$BG_PID")
bg "$T/c3.log" "$XVL" blk "${V[@]}" -d r0 -Q 4 --seed 43 --ops 300; pids+=("$BG_PID")
bg "$T/c4.log" "$XVL" blk "${V[@]}" -d p0 --copy --seed 44 --ops 200; pids+=("$BG_PID")
i=0
for p in "${pids[@]}"; do
	i=$((i + 1))
	if wait "$p"; then
		ok "concurrent client $i of 4 (devices f0, fd, r0, p0 at once) verified"
	else
		fail "concurrent client $i of 4 (devices f0, fd, r0, p0 at once) verified"
		tail -n 8 "$T/c$i.log" | sed 's/^/#   /'
	fi
done

# A device has one driver at a time: a second client on a busy device is refused.
bg "$T/hold.log" "$XVL" blk verify -c "$S" -d r0 --no-fill --time 3 --ops 100000000 --seed 45
HOLD=$BG_PID
sleep 0.4
"$XVL" blk info -c "$S" -d r0 >"$T/busy.out" 2>"$T/busy.err"
rc=$?
if [ $rc -eq 1 ] && grep -qi 'busy' "$T/busy.err"; then
	ok "second client on an attached device: exit 1, says it is busy"
else
	fail "second client on an attached device: exit 1, says it is busy (exit $rc)"
	sed 's/^/#   /' "$T/busy.err"
fi
kill -TERM "$HOLD" 2>/dev/null; wait "$HOLD" 2>/dev/null

# ---------------------------------------------------------------- client killed mid-I/O
bg "$T/victim.log" "$XVL" blk verify -c "$S" -d f0 -Q 4 --qd 12 --min 512 --max 1M \
	--no-fill --ops 100000000 --time 30 --seed 51
VICTIM=$BG_PID
# a second victim on the O_DIRECT device: slow requests, surely some in flight at the kill
bg "$T/victim2.log" "$XVL" blk verify -c "$S" -d fd -Q 4 --qd 8 --min 64K --max 1M \
	--no-fill --ops 100000000 --time 30 --seed 55
VICTIM2=$BG_PID
bg "$T/survivor.log" "$XVL" blk "${V[@]}" -d r0 -Q 2 --seed 52 --ops 100000000 --time 3
SURV=$BG_PID
# let the victim get going: wait for requests in flight (its window mapped in the server)
for _ in $(seq 1 40); do
	[ "$(memfd_maps "$SRV")" -ge 3 ] && break
	sleep 0.05
done
sleep 0.5
if alive "$VICTIM" && alive "$VICTIM2"; then
	kill -KILL "$VICTIM" "$VICTIM2"
	wait "$VICTIM" "$VICTIM2" 2>/dev/null
	ok "clients on f0 and fd (O_DIRECT) killed with SIGKILL mid-I/O"
else
	fail "clients on f0 and fd (O_DIRECT) killed with SIGKILL mid-I/O (one had already exited)"
	tail -n 5 "$T/victim.log" "$T/victim2.log" | sed 's/^/#   /'
fi
if alive "$SRV"; then ok "server survives the killed client"; else fail "server survives the killed client"; fi
if wait "$SURV"; then
	ok "client on r0 kept verifying OK across the other client's death"
else
	fail "client on r0 kept verifying OK across the other client's death"
	tail -n 8 "$T/survivor.log" | sed 's/^/#   /'
fi
check "new client attaches the killed client's device f0 and verifies (4 queues)" \
	"$XVL" blk "${V[@]}" -d f0 -Q 4 --seed 53 --ops 300
# and the dead client's half-written data did not leave the device broken for O_DIRECT either
check "new client attaches the killed client's O_DIRECT device fd and verifies" \
	"$XVL" blk "${V[@]}" -d fd --seed 54 --ops 100 --no-fill

# ---------------------------------------------------------------- no leaks
if back_to "$SRV" "$BASE"; then
	ok "server back to baseline after all clients left ($BASE)"
else
	fail "server back to baseline after all clients left (baseline $BASE, now $(res_of "$SRV"))"
	ls -l "/proc/$SRV/fd" | sed 's/^/#   /'
	grep memfd "/proc/$SRV/maps" | sed 's/^/#   /'
fi

# ---------------------------------------------------------------- write / read / disk image
# A known 3 MiB + 1 KiB file (not a multiple of 1 MiB: several requests and a tail).
head -c $((3 * 1048576 + 1024)) /dev/urandom >"$T/known.bin"
KSZ=$(stat -c %s "$T/known.bin")
OFF=$((5 * 1048576 + 4096))
# the 4 KiB just before the range, as they are before the write (stdout output)
"$XVL" blk read -c "$S" -d p0 --offset $((OFF - 4096)) --length 4096 >"$T/before0.bin" 2>"$T/err"
expect_eq 4096 "$(stat -c %s "$T/before0.bin")" "blk read to stdout returns --length bytes"
check "blk write --input of a 3 MiB file at offset $OFF" \
	"$XVL" blk write -c "$S" -d p0 --offset "$OFF" --input "$T/known.bin"
check "blk read of that range returns exactly what write put there" bash -c \
	"'$XVL' blk read -c '$S' -d p0 --offset $OFF --length $KSZ --output '$T/back.bin' && cmp '$T/known.bin' '$T/back.bin'"
"$XVL" blk read -c "$S" -d p0 --offset $((OFF - 4096)) --length 4096 >"$T/before1.bin" 2>"$T/err"
if cmp -s "$T/before0.bin" "$T/before1.bin"; then
	ok "the 4 KiB before the written range are unchanged"
else
	fail "the 4 KiB before the written range are unchanged"
	sed 's/^/#   /' "$T/err"
fi

stop_server "$SRV"
rc=$?
expect_eq 0 "$rc" "server stops on SIGTERM with status 0"
if [ -e "$S" ]; then fail "server removed its socket file"; else ok "server removed its socket file"; fi
if cmp -s -i "$OFF:0" -n "$KSZ" "$T/plain.img" "$T/known.bin"; then
	ok "disk image holds the written file at offset $OFF (independent cmp after the server stopped)"
else
	fail "disk image holds the written file at offset $OFF (independent cmp after the server stopped)"
	cmp -i "$OFF:0" -n "$KSZ" "$T/plain.img" "$T/known.bin" 2>&1 | head -3 | sed 's/^/#   /'
fi
expect_eq 16777216 "$(stat -c %s "$T/plain.img")" "disk image size unchanged"
if grep -Eiq 'sanitizer|runtime error|assert' "$T/server.log"; then
	fail "server log has no sanitizer or assertion reports"; grep -Ei 'sanitizer|runtime error|assert' "$T/server.log" | head | sed 's/^/#   /'
else
	ok "server log has no sanitizer or assertion reports"
fi
finish
