#!/usr/bin/env bash
# The partitioner (xvl run/status/stop), end to end:
#   - a config with two driver compartments and one device compartment serving both
#   - /proc of each compartment: namespaces differ from ours, seccomp on, CPUs pinned,
#     only the fds it was given (+ what it made itself), no other compartment's window
#   - kill -9 of the device side under load: restarted on the same socket, counted,
#     a new client works; a driver side that dies has its window released
#   - xvl stop leaves no process, socket file, state dir or cgroup
#   - bad configs: one line FILE:LINE: KEY: ..., nothing left half-started
# TAP on stdout.  Needs root (or user namespaces) for the compartments.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
if ! unshare --user --map-root-user --pid --fork --mount --net true 2>/dev/null &&
	! unshare --pid --fork --mount --net true 2>/dev/null; then
	echo "1..0 # SKIP cannot create namespaces here"
	exit 0
fi

SD=$T/state
NAME=pt$$
# stop the instance if the script dies half-way
part_cleanup() { [ -S "$SD/ctl.sock" ] && "$XVL" stop --state-dir "$SD" >/dev/null 2>&1; e2e_cleanup; }
trap part_cleanup EXIT

truncate -s 32M "$T/disk.img"
cat >"$T/two.cfg" <<EOF
name = "$NAME";
state_dir = "$SD";
pool = 2;
windows = (
  { name = "wa"; size = "8M"; },
  { name = "wb"; size = "8M"; backing = "memfd"; }
);
devices = (
  { name = "d0"; type = "blk"; backend = "file"; path = "$T/disk.img"; queues = 2; },
  { name = "r0"; type = "blk"; backend = "ram"; size = "16M"; }
);
compartments = (
  { name = "dev"; role = "device"; devices = ["d0", "r0"]; cpus = [0]; memory = "256M"; },
  { name = "a"; role = "driver"; window = "wa"; connect = "dev"; cpus = [0]; memory = "128M";
    program = ["xvl", "blk", "verify", "--connect", "{link}", "--device", "d0", "--time", "60",
               "--ops", "100000000", "--max", "64K"]; },
  { name = "b"; role = "driver"; window = "wb"; connect = "dev"; memory = "128M";
    program = ["xvl", "blk", "verify", "--connect", "{link}", "--device", "r0", "--time", "60",
               "--ops", "100000000", "--max", "64K"]; }
);
EOF

check "config with two drivers and one device compartment is accepted (--check)" \
	"$XVL" run --check "$T/two.cfg"
check "xvl run --detach brings it up" "$XVL" run --detach "$T/two.cfg"

st() { "$XVL" status --state-dir "$SD" --json; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
pid_of() { st | jq_ "[c['pid'] for c in d['compartments'] if c['name']=='$1'][0]"; }
sleep 0.5
DEV=$(pid_of dev)
A=$(pid_of a)
B=$(pid_of b)
note "compartments: dev=$DEV a=$A b=$B"
if [ "${DEV:-0}" -gt 0 ] && [ "${A:-0}" -gt 0 ] && [ "${B:-0}" -gt 0 ] && alive "$DEV" && alive "$A" && alive "$B"; then
	ok "xvl status --json shows three running compartments"
else
	fail "xvl status --json shows three running compartments"
	st | head -40 | sed 's/^/#   /'
fi
"$XVL" status --state-dir "$SD" >"$T/status.txt" 2>&1
grep -q "device running" "$T/status.txt" && ok "xvl status (text)" || fail "xvl status (text)"
nthr=$(ls "/proc/$DEV/task" 2>/dev/null | wc -l)
check "dev: cpus = [0] gives its server a worker thread under seccomp (--cpus auto; $nthr threads)" \
	test "$nthr" -ge 2
io_requests() { st | jq_ "sum((x['io'] or {}).get('requests', 0) for x in d['devices'])"; }
r1=$(io_requests)
sleep 0.3
r2=$(io_requests)
check "xvl status: the devices' I/O counters come from their server and move ($r1 -> $r2 requests)" \
	test "${r2:-0}" -gt "${r1:-0}"

# ---------------------------------------------------------------- /proc inspection
ns_differ() {
	local p=$1 n
	for n in pid mnt ipc uts net; do
		[ "$(readlink "/proc/$p/ns/$n")" != "$(readlink "/proc/self/ns/$n")" ] || return 1
	done
}
for c in dev a b; do
	p=$(pid_of $c)
	check "$c: pid, mnt, ipc, uts and net namespaces differ from the host's" ns_differ "$p"
done
if st | jq_ "d['isolation']['user_namespace']" | grep -q True; then
	check "dev: user namespace differs too" \
		test "$(readlink /proc/$DEV/ns/user)" != "$(readlink /proc/self/ns/user)"
else
	skip "user namespace (not allowed on this host)"
fi
for c in dev a b; do
	p=$(pid_of $c)
	check "$c: seccomp filter on, no_new_privs" \
		grep -qE '^Seccomp:[[:space:]]+2' "/proc/$p/status"
done
expect_eq "0" "$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$DEV/status)" "dev: pinned to CPU 0"

# fds: 0 /dev/null, 1+2 one pipe (the log), 3 its own window (drivers); beyond that only
# what the program made itself (sockets, eventfds, epoll, io_uring, its files), never a
# pipe, another window, the partitioner's control socket or a file it did not open.
CTL_INO=$(awk -v s="$SD/ctl.sock" '$8 == s {print $7}' /proc/net/unix | head -1)
fd_ok() {
	local p=$1 own=$2 allowed=$3 fd t bad=0 pipe1
	pipe1=$(readlink "/proc/$p/fd/1")
	[ "$(readlink "/proc/$p/fd/0")" = /dev/null ] || { echo "fd 0: $(readlink /proc/$p/fd/0)"; bad=1; }
	[ "$(readlink "/proc/$p/fd/2")" = "$pipe1" ] && [[ $pipe1 == pipe:* ]] || { echo "fd 1/2 not the log pipe"; bad=1; }
	if [ -n "$own" ]; then
		[ "$(readlink "/proc/$p/fd/3")" = "/memfd:xvl:$own (deleted)" ] ||
			[ "$(readlink "/proc/$p/fd/3")" = "/memfd:xvl:$own" ] || { echo "fd 3: $(readlink /proc/$p/fd/3)"; bad=1; }
	fi
	for fd in /proc/$p/fd/*; do
		n=${fd##*/}
		[ "$n" -le 3 ] && continue
		t=$(readlink "$fd") || continue
		case $t in
		socket:\[$CTL_INO\]) echo "fd $n: the partitioner's control socket"; bad=1 ;;
		socket:* | anon_inode:*) ;;
		/memfd:xvloop-window*) ;; # a window the program created itself (client library)
		/memfd:xvl:$own*) ;;
		$allowed) ;;
		*) echo "fd $n: $t"; bad=1 ;;
		esac
	done
	return $bad
}
check "a: fds are /dev/null, the log pipe, window wa, and what it made itself" fd_ok "$A" wa "/nothing"
check "b: fds are /dev/null, the log pipe, window wb, and what it made itself" fd_ok "$B" wb "/nothing"
check "dev: fds are /dev/null, the log pipe, its disk, and what it made itself" fd_ok "$DEV" "" "$T/disk.img"

# maps: no window of another compartment; the device side maps only the clients' windows
maps_ok() {
	local p=$1 other=$2
	! grep -q "memfd:xvl:$other" "/proc/$p/maps" && ! grep -q "$SD/ctl.sock" "/proc/$p/maps"
}
check "a: maps no window of b" maps_ok "$A" wb
check "b: maps no window of a" maps_ok "$B" wa
check "dev: maps only window memfds and the program's own files" \
	bash -c "! awk '\$6 != \"\" && \$6 !~ /^\\[/ && \$6 !~ /memfd:xvl/ && \$6 !~ /^anon_inode:/ && \$6 !~ /^\\/(usr|lib|lib64)\\// && \$6 !~ /xvl\$/ {print; bad=1} END {exit !bad}' /proc/$DEV/maps"
check "dev: sees its own PID namespace (/proc inside has it as 1)" \
	test "$(sed -n 's/^NSpid:[[:space:]]*[0-9]*[[:space:]]*//p' /proc/$DEV/status)" = 1

# ---------------------------------------------------------------- supervision
kill -9 "$DEV"
NEW=0
for _ in $(seq 1 40); do
	sleep 0.05
	NEW=$(pid_of dev)
	[ "${NEW:-0}" -gt 0 ] && [ "$NEW" != "$DEV" ] && break
done
RESTARTS=$(st | jq_ "[c['restarts'] for c in d['compartments'] if c['name']=='dev'][0]")
REASON=$(st | jq_ "[c['last_exit'] for c in d['compartments'] if c['name']=='dev'][0]")
RUS=$(st | jq_ "[c['last_restart_us'] for c in d['compartments'] if c['name']=='dev'][0]")
if [ "${NEW:-0}" -gt 0 ] && [ "$NEW" != "$DEV" ] && alive "$NEW"; then
	ok "kill -9 of the device side under load: restarted as pid $NEW in $RUS us"
else
	fail "kill -9 of the device side: not restarted (pid ${NEW:-?})"
fi
expect_eq 1 "$RESTARTS" "the restart is counted in xvl status"
case $REASON in *"signal 9"*) ok "the reason is logged: $REASON" ;; *) fail "reason: '$REASON'" ;; esac
check "restart bounded: under 200 ms" test "${RUS:-999999}" -lt 200000
sleep 0.5
# The drivers reconnect (XVL_RECONNECT_MS), attach their devices again and
# resubmit what was in flight: they neither exit nor lose data.
for c in a b; do
	p=$(pid_of $c)
	check "driver $c kept running across the restart (it reconnected)" test "${p:-0}" -gt 0
done
busy_now() {
	! "$XVL" blk info --connect "$SD/dev.sock" --device r0 >"$T/busy" 2>&1 &&
		grep -q "busy" "$T/busy"
}
check "the restarted device side answers on the same socket; r0 is held by its reconnected driver" \
	busy_now
# a driver side that dies has its window released
A=$(pid_of a)
[ "${A:-0}" -gt 0 ] && kill -9 "$A"
for _ in $(seq 1 40); do
	[ "$(st | jq_ "[w['state'] for w in d['windows'] if w['name']=='wa'][0]")" = released ] && break
	sleep 0.05
done
expect_eq released "$(st | jq_ "[w['state'] for w in d['windows'] if w['name']=='wa'][0]")" \
	"a driver side that died has its window released"

# ---------------------------------------------------------------- stop
ALL=$(for p in $DEV $NEW $(pid_of b); do [ "$p" -gt 0 ] && echo "$p"; done)
check "xvl stop" "$XVL" stop --state-dir "$SD"
left=""
for p in $ALL; do alive "$p" && left+=" $p"; done
expect_eq "" "$left" "xvl stop: no compartment process left"
check "xvl stop: no state dir, socket file or control socket left" test ! -e "$SD"
check "xvl stop: no cgroup left" \
	bash -c "! find /sys/fs/cgroup -maxdepth 6 -name 'xvl.$NAME.*' 2>/dev/null | grep -q ."
check "xvl status afterwards says nothing runs" bash -c "! '$XVL' status --state-dir '$SD' 2>/dev/null"

# ---------------------------------------------------------------- bad configs
# bad FILE KEY-PATTERN LINE DESCRIPTION; the config is $T/bad.cfg written just before
bad() {
	local line=$1 key=$2 d=$3 out rc
	out=$("$XVL" run "$T/bad.cfg" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] &&
		[[ $out == "$T/bad.cfg:$line: "*"$key"* ]] && [ ! -e "$SD" ] &&
		! find /sys/fs/cgroup -maxdepth 6 -name "xvl.$NAME.*" 2>/dev/null | grep -q .; then
		ok "bad config, $d: $out"
	else
		fail "bad config, $d (exit $rc): '$out'"
	fi
}
head_cfg() {
	printf 'name = "%s";\nstate_dir = "%s";\n' "$NAME" "$SD"
}
{ head_cfg; cat <<'EOF'
windows = ( { name = "w"; size = "8M"; colour = "red"; } );
devices = ( { name = "r"; backend = "ram"; size = "8M"; } );
compartments = ( { name = "d"; role = "device"; devices = ["r"]; } );
EOF
} >"$T/bad.cfg"
bad 3 "windows.w: unknown key 'colour'" "unknown key"

{ head_cfg; cat <<'EOF'
windows = ( { name = "w"; size = "8M"; } );
devices = ( { name = "r"; backend = "ram"; size = "8M"; } );
compartments = ( { name = "d"; role = "device"; devices = ["r"]; },
  { name = "app"; role = "driver";
    program = ["xvl", "blk", "info", "--connect", "{link}"]; } );
EOF
} >"$T/bad.cfg"
bad 6 "compartments.app: missing 'window'" "missing field"

{ head_cfg; cat <<'EOF'
devices = ( { name = "r"; backend = "ram"; size = "8M"; } );
compartments = ( { name = "d"; role = "device"; devices = ["r"];
                   cpus = [0, 4095]; } );
EOF
} >"$T/bad.cfg"
bad 5 "compartments.d: CPU 4095 does not exist" "a CPU that does not exist"

{ head_cfg; cat <<'EOF'
windows = ( { name = "w";
              size = "256K"; } );
devices = ( { name = "r"; backend = "ram"; size = "8M"; queues = 4; } );
compartments = ( { name = "d"; role = "device"; devices = ["r"]; },
  { name = "app"; role = "driver"; window = "w"; program = ["true"]; } );
EOF
} >"$T/bad.cfg"
bad 4 "windows.w.size: 262144 bytes is too small" "a window too small for the devices"

{ head_cfg; cat <<EOF
devices = ( { name = "v"; backend = "vhost-user";
              socket = "$T/nobody.sock"; } );
compartments = ( { name = "d"; role = "device"; devices = ["v"]; } );
EOF
} >"$T/bad.cfg"
bad 4 "devices.v: vhost-user backend socket '$T/nobody.sock' does not answer" \
	"a backend socket that does not answer"

{ head_cfg; cat <<'EOF'
windows = ( { name = "w"; size = "8M"; } );
devices = ( { name = "r"; backend = "ram"; size = "8M"; } );
compartments = ( { name = "d"; role = "device"; devices = ["r"]; },
  { name = "a1"; role = "driver"; window = "w"; program = ["true"]; },
  { name = "a2"; role = "driver";
    window = "w"; program = ["true"]; } );
EOF
} >"$T/bad.cfg"
bad 8 "compartments.a2: window 'w' is already claimed by compartment 'a1'" \
	"two compartments claiming one window"

{ head_cfg; cat <<'EOF'
devices = ( { name = "r"; backend = "ram"; size = ; } );
EOF
} >"$T/bad.cfg"
bad 3 "syntax error" "a syntax error"

# A failure after some compartments started: all of it is undone.  The
# driver is an executable script whose interpreter does not exist: --check
# passes it (it is there and executable), execve fails at start, after the
# device compartment is up.
printf '#!/nonexistent/interpreter\n' >"$T/badinterp"
chmod +x "$T/badinterp"
{ head_cfg; cat <<EOF
windows = ( { name = "w"; size = "8M"; } );
devices = ( { name = "r"; backend = "ram"; size = "8M"; } );
compartments = ( { name = "d"; role = "device"; devices = ["r"]; },
  { name = "app"; role = "driver"; window = "w"; program = ["$T/badinterp"]; } );
EOF
} >"$T/bad.cfg"
"$XVL" run --check "$T/bad.cfg" >/dev/null 2>&1 && ok "--check passes a driver whose interpreter is missing" ||
	fail "--check refused the half-way config (the test below would not reach a start)"
out=$("$XVL" run --quiet "$T/bad.cfg" 2>&1)
rc=$?
if [ $rc -ne 0 ] && [[ $out == *"$T/badinterp"* ]] && [ ! -e "$SD" ] &&
	! pgrep -f "$SD/d.sock" >/dev/null; then
	ok "a start that fails half-way undoes everything: $out"
else
	fail "a start that fails half-way (exit $rc): $out; left: $(ls "$SD" 2>&1)"
fi

finish
