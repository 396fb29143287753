#!/usr/bin/env bash
# Net devices in `xvl run` configs, end to end:
#   - bad net configs refused by --check with FILE:LINE: KEY: (unknown backend, duplicate
#     MAC, a net device attached twice, a block device as a net interface, ...)
#   - one device compartment serving two ports of its built-in switch, two driver
#     compartments each with a tap front-end (xvl net tap) in its own network namespace
#     and an address from the config: the kernel's ping between the two namespaces, and
#     iperf3 TCP to an iperf3 server that is the program of compartment b (its seccomp
#     allow-list plus the config's syscalls)
#   - kill -9 of the device compartment during a ping stream: restarted by the
#     partitioner, the front-ends reconnect (link down and up), the pings resume, no crash
#   - kill -9 of a tap front-end: started again, its interface and address come back
#   - xvl stop: no front-end, no compartment network namespace, no state dir left
#   - backend tap: a tap in the device compartment's namespace, pinged from a driver compartment
# TAP on stdout.  Needs root (the front-ends enter the compartments' namespaces), ip,
# ping and nsenter; iperf3 where installed (scripts/deps.sh).
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null || ! command -v ping >/dev/null ||
	! command -v nsenter >/dev/null; then
	echo "1..0 # SKIP needs root, ip, ping and nsenter"
	exit 0
fi

SD=$T/state
NAME=pn$$
part_cleanup() { [ -S "$SD/ctl.sock" ] && "$XVL" stop --state-dir "$SD" >/dev/null 2>&1; e2e_cleanup; }
trap part_cleanup EXIT

# ---------------------------------------------------------------- bad configs
# bad_cfg WHAT PATTERN: the config on stdin is refused by --check with a FILE:LINE: message.
bad_cfg() {
	local what=$1 pat=$2 out rc
	cat >"$T/bad.cfg"
	out=$("$XVL" run --check "$T/bad.cfg" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] && echo "$out" | grep -qE "^$T/bad.cfg:[0-9]+: .*$pat"; then
		ok "--check refuses $what: ${out#"$T"/}"
	else
		fail "--check refuses $what (exit $rc): $out"
	fi
}
HEAD='name = "bad"; pool = 0;'
DEV='{ name = "dev"; role = "device"; devices = ["pa", "pb"]; }'
bad_cfg "an unknown net backend" "backend 'bridge' for a net device \(expected switch, tap or vhost-user\)" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "bridge"; } );
compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; } );
EOF
bad_cfg "a duplicate MAC" "MAC 52:54:00:0a:00:01 is already device 'pa''s MAC" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "switch"; mac = "52:54:00:0a:00:01"; },
            { name = "pb"; type = "net"; backend = "switch"; mac = "52:54:00:0a:00:01"; } );
compartments = ( $DEV );
EOF
bad_cfg "a net device attached to two compartments" "net device 'pa' is already attached to compartment 'a'" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "switch"; }, { name = "pb"; type = "net"; backend = "switch"; } );
compartments = ( $DEV,
  { name = "a"; role = "driver"; program = ["sleep", "1"]; net = ( { device = "pa"; } ); },
  { name = "b"; role = "driver"; program = ["sleep", "1"]; net = ( { device = "pa"; } ); } );
EOF
bad_cfg "a block device as a net interface" "'r0' is a block device; 'net' takes type = \"net\" devices" <<EOF
$HEAD
devices = ( { name = "r0"; backend = "ram"; size = "1M"; } );
compartments = ( { name = "dev"; role = "device"; devices = ["r0"]; },
  { name = "a"; role = "driver"; program = ["sleep", "1"]; net = ( { device = "r0"; } ); } );
EOF
bad_cfg "'net' on a device compartment" "'net' belongs to a driver compartment" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "switch"; } );
compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; net = ( { device = "pa"; } ); } );
EOF
bad_cfg "a network address as a host address" "'10.1.0.0/24' is not a host address" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "switch"; } );
compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; },
  { name = "a"; role = "driver"; program = ["sleep", "1"]; net = ( { device = "pa"; address = "10.1.0.0/24"; } ); } );
EOF
bad_cfg "one address on two compartments" "the address is also a's xvl0" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "switch"; }, { name = "pb"; type = "net"; backend = "switch"; } );
compartments = ( $DEV,
  { name = "a"; role = "driver"; program = ["sleep", "1"]; net = ( { device = "pa"; address = "10.1.0.1"; } ); },
  { name = "b"; role = "driver"; program = ["sleep", "1"]; net = ( { device = "pb"; address = "10.1.0.1/24"; } ); } );
EOF
bad_cfg "a tap backend without ifname" "backend tap needs 'ifname'" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "tap"; } );
compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; } );
EOF
bad_cfg "a switch key on a vhost-user net device" "'switch' applies to backend switch only" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "vhost-user"; socket = "/nonexistent"; switch = "s"; } );
compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; } );
EOF
bad_cfg "an mtu out of range" "'mtu' must be 68..9000" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "switch"; mtu = 10000; } );
compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; } );
EOF

bad_cfg "a vhost-user net backend whose socket does not answer" "vhost-user-net backend socket '$T/none.sock' does not answer" <<EOF
$HEAD
devices = ( { name = "pa"; type = "net"; backend = "vhost-user"; socket = "$T/none.sock"; } );
compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; } );
EOF
# not root: the front-ends could not enter the compartments' namespaces
if command -v setpriv >/dev/null; then
	NR=$(mktemp /tmp/xvl-pn-nonroot.XXXXXX.cfg)
	printf '%s\n' "$HEAD" 'devices = ( { name = "pa"; type = "net"; backend = "switch"; } );' \
		'compartments = ( { name = "dev"; role = "device"; devices = ["pa"]; },' \
		'  { name = "a"; role = "driver"; program = ["sleep", "1"]; net = ( { device = "pa"; } ); } );' >"$NR"
	chmod 644 "$NR"
	out=$(cd / && setpriv --reuid=65534 --regid=65534 --clear-groups "$XVL" run --check "$NR" 2>&1)
	rc=$?
	rm -f "$NR"
	[ "$rc" -ne 0 ] && echo "$out" | grep -q "compartments.a.net: the tap front-ends enter the compartment's network namespace: xvl run must run as root" &&
		ok "--check as a non-root user refuses 'net': ${out#/tmp/}" || fail "--check as non-root (exit $rc): $out"
else
	skip "setpriv not installed"
fi

# ---------------------------------------------------------------- a switch and two drivers
HAVE_IPERF=0
command -v iperf3 >/dev/null && HAVE_IPERF=1
BPROG='"sleep", "infinity"'
[ $HAVE_IPERF -eq 1 ] && BPROG='"iperf3", "-s", "-p", "5299"'
cat >"$T/net.cfg" <<EOF
name = "$NAME";
state_dir = "$SD";
pool = 2;
restart_ms = 2000;
devices = (
  { name = "pa"; type = "net"; backend = "switch"; switch = "sw0"; mac = "52:54:00:0b:00:01"; },
  { name = "pb"; type = "net"; backend = "switch"; switch = "sw0"; mac = "52:54:00:0b:00:02"; }
);
compartments = (
  { name = "dev"; role = "device"; devices = ["pa", "pb"]; memory = "256M"; },
  { name = "a"; role = "driver"; program = ["sleep", "infinity"];
    net = ( { device = "pa"; ifname = "eth0"; address = "10.78.0.1/24"; } ); },
  # iperf3 (unmodified) as the compartment's program: the driver profile with net interfaces
  # allows IP sockets; iperf3 also wants these two
  { name = "b"; role = "driver"; program = [$BPROG]; syscalls = ["getrusage", "unlink"];
    net = ( { device = "pb"; ifname = "eth0"; address = "10.78.0.2/24"; } ); }
);
EOF
check "the config with a switch and two drivers is accepted (--check)" "$XVL" run --check "$T/net.cfg"
# the supervisor in the foreground (in the background of this script): its log, with every
# compartment's and front-end's output, stays in $T/sup.log for the sanitizer check at the end
bg "$T/sup.log" "$XVL" run "$T/net.cfg"
SUP=$BG_PID
for _ in $(seq 1 200); do
	grep -q "instance $NAME up" "$T/sup.log" && break
	alive "$SUP" || break
	sleep 0.05
done
if ! grep -q "instance $NAME up" "$T/sup.log"; then
	fail "xvl run: the instance comes up"
	sed 's/^/#   /' "$T/sup.log" | tail -20
	finish
fi
ok "xvl run: the compartments and their tap front-ends are up"

st() { "$XVL" status --state-dir "$SD" --json; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
pid_of() { st | jq_ "[c['pid'] for c in d['compartments'] if c['name']=='$1'][0]"; }
tap_of() { st | jq_ "[c['net'][0]['tap_pid'] for c in d['compartments'] if c['name']=='$1'][0]"; }
DEV=$(pid_of dev) A=$(pid_of a) B=$(pid_of b)
TA=$(tap_of a) TB=$(tap_of b)
in_a() { nsenter -t "$A" -n "$@"; }
in_b() { nsenter -t "$B" -n "$@"; }
NSA=$(readlink "/proc/$A/ns/net") NSB=$(readlink "/proc/$B/ns/net")
if [ "$NSA" != "$(readlink /proc/self/ns/net)" ] && [ "$NSA" != "$NSB" ] &&
	[ "$(readlink "/proc/$TA/ns/net")" = "$NSA" ] && [ "$(readlink "/proc/$TB/ns/net")" = "$NSB" ]; then
	ok "each tap front-end runs in its driver compartment's own network namespace ($NSA, $NSB)"
else
	fail "front-ends' namespaces: a=$NSA b=$NSB tap a=$(readlink "/proc/$TA/ns/net") tap b=$(readlink "/proc/$TB/ns/net")"
fi
ia=$(in_a ip -o -4 addr show eth0 2>&1) la=$(in_a ip -o link show eth0 2>&1)
if echo "$ia" | grep -q 'inet 10.78.0.1/24' && echo "$la" | grep -q '52:54:00:0b:00:01' &&
	echo "$la" | grep -q '[<,]UP[,>]'; then
	ok "a's eth0 is up with the config's address and the device's MAC"
else
	fail "a's eth0: $ia / $la"
fi
st | jq_ "[x for x in d['devices'] if x['name']=='pb'][0]" | grep -q "'type': 'net'.*'backend': 'switch'.*'driver': 'b'" &&
	ok "xvl status --json: pb is a net device on the switch, attached to b" || fail "status of pb: $(st | jq_ "d['devices']")"
check "kernel ping a -> b through the tap front-ends and the switch" in_a ping -c 3 -i 0.2 -W 2 10.78.0.2
check "kernel ping b -> a, 4000-byte (fragmented) packets" in_b ping -c 2 -i 0.2 -W 2 -s 4000 10.78.0.1
if [ $HAVE_IPERF -eq 1 ]; then
	if in_a timeout 20 iperf3 -c 10.78.0.2 -p 5299 -t 2 -J >"$T/iperf.json" 2>&1; then
		gbps=$(python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 1e9))' "$T/iperf.json")
		ok "iperf3 TCP from a to the iperf3 server that is compartment b's program: $gbps Gbit/s"
	else
		fail "iperf3 a -> b"
		tail -5 "$T/iperf.json" | sed 's/^/#   /'
	fi
else
	skip "iperf3 not installed (scripts/deps.sh)"
fi

# ---------------------------------------------------------------- device side kill -9
bg "$T/ping.log" timeout 30 nsenter -t "$A" -n ping -c 40 -i 0.1 -W 1 10.78.0.2
PING=$BG_PID
sleep 1
kill -KILL "$DEV"
wait "$PING"
prc=$?
got=$(sed -n 's/^40 packets transmitted, \([0-9]*\) received.*/\1/p' "$T/ping.log")
if [ "${got:-0}" -ge 25 ] && grep -qE 'icmp_seq=(39|40) ' "$T/ping.log"; then
	ok "device compartment kill -9 during a ping stream: $got of 40 answered, the stream resumed"
else
	fail "kill -9 during a ping stream (ping exit $prc, ${got:-0} answered)"
	tail -4 "$T/ping.log" | sed 's/^/#   /'
fi
DEV2=$(pid_of dev)
restarts=$(st | jq_ "[c['restarts'] for c in d['compartments'] if c['name']=='dev'][0]")
[ "$DEV2" != "$DEV" ] && [ "$restarts" = 1 ] && ok "the partitioner restarted the device compartment (pid $DEV -> $DEV2, 1 restart)" ||
	fail "device restart: pid $DEV -> $DEV2, restarts $restarts"
LOG=$T/sup.log
n_relink=$(grep -c 'tap eth0: link was down (the server went away), up again after reconnect #1' "$LOG")
[ "$n_relink" = 2 ] && ok "both tap front-ends saw the link go down and come up again (reconnect #1)" ||
	fail "link down/up seen by $n_relink front-ends: $(grep '\[[ab]\]' "$LOG" | tail -4)"
if alive "$TA" && alive "$TB" && alive "$A" && alive "$B"; then
	ok "no crash: both front-ends and both driver compartments still run"
else
	fail "after the restart: tap a $(alive "$TA" && echo up || echo gone), tap b $(alive "$TB" && echo up || echo gone), a $(alive "$A" && echo up || echo gone), b $(alive "$B" && echo up || echo gone)"
fi

# ---------------------------------------------------------------- tap front-end kill -9
kill -KILL "$TA"
for _ in $(seq 1 50); do
	TA2=$(tap_of a)
	[ "$TA2" != "$TA" ] && [ "$TA2" != 0 ] && break
	sleep 0.1
done
ia=$(in_a ip -o -4 addr show eth0 2>&1)
if [ "$TA2" != "$TA" ] && [ "$TA2" != 0 ] && echo "$ia" | grep -q 'inet 10.78.0.1/24'; then
	ok "a killed tap front-end is started again (pid $TA -> $TA2), eth0 back with its address"
else
	fail "tap front-end restart: pid $TA -> $TA2, $ia"
fi
check "ping a -> b through the new front-end" in_a ping -c 3 -i 0.2 -W 2 10.78.0.2

# ---------------------------------------------------------------- stop
TA=$(tap_of a)
check "xvl stop" "$XVL" stop --state-dir "$SD"
left=""
for pid in "$A" "$B" "$TA" "$TB" "$DEV2"; do alive "$pid" && left="$left $pid"; done
for f in /proc/[0-9]*/ns/net; do
	ns=$(readlink "$f" 2>/dev/null) || continue
	[ "$ns" = "$NSA" ] || [ "$ns" = "$NSB" ] && left="$left netns-of-${f#/proc/}"
done
pgrep -f "net tap --connect xvl:$SD/" >/dev/null && left="$left tap-front-end"
[ -e "$SD" ] && left="$left $SD"
expect_eq "" "$left" "xvl stop leaves no front-end, compartment, network namespace or state dir"
wait "$SUP"
expect_eq 0 "$?" "the supervisor exits 0 after xvl stop"
# With a sanitizer build (XVL_BIN=build-asan/src/cli/xvl): no report from the supervisor or
# the front-ends (not under seccomp).  Inside compartments an ASan build's exit-time leak
# check is a system call the seccomp filter forbids (SIGSYS at exit, with or without net).
reports=$(grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$T/sup.log")
expect_eq 0 "$reports" "no sanitizer report in the instance's log"

# ---------------------------------------------------------------- a tap backend
# The device compartment's net device is a tap in ITS network namespace (its seccomp profile
# then allows the tun ioctls): the driver compartment reaches the device compartment's kernel.
cat >"$T/tap.cfg" <<EOF
name = "${NAME}t"; state_dir = "$SD"; pool = 1;
devices = ( { name = "pt"; type = "net"; backend = "tap"; ifname = "xt0"; } );
compartments = (
  { name = "dev"; role = "device"; devices = ["pt"]; },
  { name = "a"; role = "driver"; program = ["sleep", "infinity"];
    net = ( { device = "pt"; ifname = "eth0"; address = "10.79.0.1/24"; } ); }
);
EOF
if "$XVL" run --detach "$T/tap.cfg" >"$T/run2.log" 2>&1; then
	DEV=$(pid_of dev) A=$(pid_of a)
	nsenter -t "$DEV" -n ip addr add 10.79.0.2/24 dev xt0 && nsenter -t "$DEV" -n ip link set xt0 up
	check "backend tap: ping from the driver compartment to the device compartment's own kernel" \
		in_a ping -c 3 -i 0.2 -W 2 10.79.0.2
	check "xvl stop (tap backend)" "$XVL" stop --state-dir "$SD"
else
	fail "xvl run --detach with a tap backend"
	sed 's/^/#   /' "$T/run2.log"
fi
finish
