#!/usr/bin/env bash
# Containers through CDI: `xvl cdi` writes a spec, Debian's podman reads it.
#   An xvl server with a RAM and a file device; `xvl cdi` writes the spec into
#   /var/run/cdi (podman 4.3 reads only /etc/cdi and /var/run/cdi; the file
#   has a name of its own and is removed at the end).  An image is built from
#   a root filesystem made here (the xvl binary and the libraries ldd names,
#   `podman import`; no registry).  Then, confined as a driver compartment —
#     podman run --rm --network none --device xvloop.io/blk=NAME --user 65534
#       --cap-drop all --read-only --security-opt no-new-privileges IMAGE ...
#   — the container verifies one device and reads bytes the host wrote to the
#   other; it sees the socket's directory read-only and nothing else of the
#   host; without --device it has no server at all.
#   podman runs with a private containers.conf (CONTAINERS_CONF: runtime runc,
#   cgroup_manager cgroupfs, events_logger file, lock_type file, ulimits) and
#   private --root/--runroot/--tmpdir; what podman still creates outside them
#   (/var/lib/containers/cache, /run/containers/networks) is removed if it was
#   not there before, and the test checks nothing else appeared.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v podman >/dev/null || { echo "1..0 # SKIP podman is not installed (scripts/deps.sh installs podman and runc)"; exit 0; }
command -v runc >/dev/null || { echo "1..0 # SKIP runc is not installed (scripts/deps.sh installs it)"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (CDI specs live in /var/run/cdi)"; exit 0; }

PD=$T/podman
mkdir -p "$PD/root" "$PD/runroot" "$PD/tmp"
cat >"$PD/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
[network]
network_config_dir = "@PD@/networks"
EOF
sed -i "s|@PD@|$PD|" "$PD/containers.conf"
export CONTAINERS_CONF=$PD/containers.conf
T0=$(date +%s)
POD=(podman --root "$PD/root" --runroot "$PD/runroot" --tmpdir "$PD/tmp" --storage-driver vfs)

# what exists before, so that only what this test creates is removed
had_varlib=0; [ -e /var/lib/containers ] && had_varlib=1
had_cache=0; [ -e /var/lib/containers/cache ] && had_cache=1
had_shm=0; [ -e /dev/shm/libpod_lock ] && had_shm=1
had_cdidir=0; [ -d /var/run/cdi ] && had_cdidir=1
had_runc=0; [ -e /run/containers ] && had_runc=1
had_runnet=0; [ -e /run/containers/networks ] && had_runnet=1
SPEC=/var/run/cdi/xvloop-e2e-$$.json
IMG=localhost/xvloop-e2e:$$
cdi_cleanup() {
	"${POD[@]}" rmi -f "$IMG" >/dev/null 2>&1
	rm -f "$SPEC"
	[ $had_cdidir = 1 ] || rmdir /var/run/cdi 2>/dev/null
	[ $had_cache = 1 ] || rm -rf /var/lib/containers/cache
	[ $had_varlib = 1 ] || rmdir /var/lib/containers 2>/dev/null
	[ $had_shm = 1 ] || rm -f /dev/shm/libpod_lock
	[ $had_runnet = 1 ] || rm -rf /run/containers/networks
	[ $had_runc = 1 ] || rmdir /run/containers 2>/dev/null
	e2e_cleanup
}
trap cdi_cleanup EXIT

if ! "${POD[@]}" info >"$T/info.log" 2>&1; then
	echo "1..0 # SKIP podman cannot run here: $(grep -m1 -i error "$T/info.log" | head -c 200)"
	exit 0
fi

# ---------------------------------------------------------------- server and spec
A=cdie$$a
B=cdie$$b
mkdir -m 0755 "$T/run"
chmod 0755 "$T"
truncate -s 16M "$T/b.img"
S=$T/run/xvl.sock
start_server "$T/server.log" "$S" -d name=$A,backend=ram,size=32M -d name=$B,backend=file,path="$T/b.img" ||
	{ fail "server starts"; sed 's/^/#   /' "$T/server.log"; finish; }
chmod 0666 "$S" # the container runs as uid 65534; connecting needs write permission on the socket
ok "xvl server: $A (ram), $B (file)"

mkdir -p /var/run/cdi
check "xvl cdi -c $S -o $SPEC" "$XVL" cdi -c "$S" -o "$SPEC"
got=$(python3 - "$SPEC" "$T/run" "$A" "$B" <<'EOF'
import json, os, sys
s = json.load(open(sys.argv[1]))
bad = []
def want(c, what):
    if not c: bad.append(what)
want(s.get("cdiVersion") == "0.5.0", "cdiVersion 0.5.0")
want(s.get("kind") == "xvloop.io/blk", "kind xvloop.io/blk")
want([d["name"] for d in s["devices"]] == sys.argv[3:5], "one device per block device, by name")
for d in s["devices"]:
    want(d["containerEdits"]["env"] == ["XVL_DEVICE=" + d["name"]], "XVL_DEVICE per device")
m = s["containerEdits"]["mounts"]
want(len(m) == 1 and m[0]["hostPath"] == sys.argv[2], "the socket's directory is mounted (not the socket)")
want("ro" in m[0]["options"], "read-only mount")
want(s["containerEdits"]["env"] == ["XVL_LINK=xvl:" + m[0]["containerPath"] + "/xvl.sock", "XVL_SERVER_UID=%d" % os.getuid()], "XVL_LINK, XVL_SERVER_UID")
print("; ".join(bad) if bad else "ok")
EOF
)
expect_eq ok "$got" "the spec: version, kind, a device per block device, the directory mount, XVL_LINK/XVL_DEVICE"

# ---------------------------------------------------------------- image
R=$T/rootfs
mkdir -p "$R/usr/bin" "$R/etc" "$R/tmp"
cp "$XVL" "$R/usr/bin/xvl"
for l in $(ldd "$XVL" | grep -o '/[^ ]*'); do
	mkdir -p "$R$(dirname "$l")"
	cp -L "$l" "$R$l"
done
echo "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin" >"$R/etc/passwd"
check "podman import of a root filesystem with xvl and its $(ldd "$XVL" | grep -c '/') libraries" \
	bash -c "tar -C '$R' -c . | $(printf '%q ' "${POD[@]}") import - '$IMG'"

CONF=(--rm --network none --user 65534 --cap-drop all --read-only --security-opt no-new-privileges)
# in_container LOG ARGS...: podman run, confined, ARGS after the image
run_c() {
	local log=$1
	shift
	timeout -k 5 60 "${POD[@]}" run "${CONF[@]}" "$@" >"$log" 2>&1
}

# ---------------------------------------------------------------- the container as a driver
if run_c "$T/verify.log" --device "xvloop.io/blk=$A" "$IMG" /usr/bin/xvl blk verify --ops 2000 --max 64K &&
	grep -q "verify: $A via xvl" "$T/verify.log" && grep -q '^verify: OK' "$T/verify.log"; then
	ok "podman run --device xvloop.io/blk=$A ... xvl blk verify: OK (no --connect: XVL_LINK/XVL_DEVICE from the spec)"
	grep -E '^  (fill|random|verify)' "$T/verify.log" | sed 's/^ */# /'
else
	fail "podman run --device xvloop.io/blk=$A ... xvl blk verify"
	tail -n 8 "$T/verify.log" | sed 's/^/#   /'
fi

head -c 1M /dev/urandom >"$T/host.bin"
"$XVL" blk write -c "$S" -d "$B" --offset 1M --input "$T/host.bin" >/dev/null 2>&1
if run_c "$T/read.bin" --device "xvloop.io/blk=$B" "$IMG" /usr/bin/xvl blk read --offset 1M --length 1M &&
	cmp -s "$T/read.bin" "$T/host.bin"; then
	ok "the container reads from $B exactly what the host wrote (1 MiB, cmp)"
else
	fail "the container reads from $B what the host wrote"
	head -c 300 "$T/read.bin" | sed 's/^/#   /'
fi

# ---------------------------------------------------------------- confinement
if run_c "$T/uid.log" --device "xvloop.io/blk=$B" "$IMG" /usr/bin/xvl blk info --json &&
	grep -q "\"name\":\"$B\"" <(tr -d ' \n' <"$T/uid.log"); then
	ok "as uid 65534 with no capabilities, the device is usable (blk info)"
else
	fail "blk info in the container"
	tail -n 5 "$T/uid.log" | sed 's/^/#   /'
fi
run_c "$T/nodev.log" "$IMG" /usr/bin/xvl blk info
rc=$?
if [ $rc -eq 2 ] && grep -q 'XVL_LINK' "$T/nodev.log"; then
	ok "without --device the container has no server to talk to (exit 2: $(head -n1 "$T/nodev.log" | head -c 100))"
else
	fail "without --device (exit $rc)"
	sed 's/^/#   /' "$T/nodev.log" | head -3
fi
run_c "$T/ro.log" --device "xvloop.io/blk=$A" "$IMG" /usr/bin/xvl server -l /run/xvloop/evil.sock -d name=x,backend=ram,size=1M
rc=$?
if [ $rc -ne 0 ] && [ ! -e "$T/run/evil.sock" ]; then
	ok "the socket directory is read-only in the container (a second server cannot listen there: exit $rc)"
else
	fail "the socket directory is read-only in the container (exit $rc)"
fi
run_c "$T/host.log" --device "xvloop.io/blk=$B" "$IMG" /usr/bin/xvl blk write --offset 0 --input "$T/b.img"
rc=$?
if [ $rc -ne 0 ] && grep -q 'No such file' "$T/host.log"; then
	ok "the host's files are not visible in the container ($T/b.img: No such file)"
else
	fail "the host's files are not visible in the container (exit $rc)"
	sed 's/^/#   /' "$T/host.log" | head -3
fi
if alive "$SRV_PID"; then ok "xvl server still up"; else fail "xvl server still up"; fi
stop_server "$SRV_PID"
expect_eq 0 $? "server stops cleanly"

# ---------------------------------------------------------------- cleanup is checked too
cdi_cleanup_check() {
	"${POD[@]}" rmi -f "$IMG" >/dev/null 2>&1
	rm -f "$SPEC"
	local left=""
	[ $had_cache = 1 ] || { rm -rf /var/lib/containers/cache; [ -e /var/lib/containers/cache ] && left="$left cache"; }
	[ $had_varlib = 1 ] || { rmdir /var/lib/containers 2>/dev/null; [ -e /var/lib/containers ] && left="$left /var/lib/containers"; }
	[ $had_shm = 1 ] || { [ -e /dev/shm/libpod_lock ] && left="$left /dev/shm/libpod_lock"; }
	[ $had_runnet = 1 ] || { rm -rf /run/containers/networks; [ -e /run/containers/networks ] && left="$left /run/containers/networks"; }
	[ $had_runc = 1 ] || { rmdir /run/containers 2>/dev/null; [ -e /run/containers ] && left="$left /run/containers"; }
	for d in /run/libpod /etc/containers/networks; do
		[ -e "$d" ] && [ "$(stat -c %Y "$d")" -ge "$T0" ] && left="$left $d"
	done
	[ -e "$SPEC" ] && left="$left $SPEC"
	if [ -z "$left" ]; then ok "nothing of podman's left outside the test's directory"; else fail "left behind:$left"; fi
}
cdi_cleanup_check
finish
