#!/bin/bash
# SPDX-License-Identifier: MIT
#
# End-to-end: xvloop clients served by unmodified vhost-user-blk backends.
#   cross-compartment: client -> xvl server -> backend (direct and relayed notifications)
#   direct:            client -> backend (vhost-user:PATH)
# Backends: qemu-storage-daemon (file node with aio=io_uring, null-co; 1 and 4
# queues) and DPDK's vhost_blk example, built here from the dpdk-doc sources.
# Data written through xvloop is compared byte for byte with the backing file.
# Also: the backend's /proc/PID/maps holds the window and nothing else of the
# client; broken backends are refused while other devices are served; kill -9
# of the backend mid-workload, with and without a restart.
#
# usage: vhost_bridge.sh [XVL [XVL_E2E [BUILD_DIR]]]      prints TAP
set -u

XVL=${1:-build/src/cli/xvl}
E2E=${2:-build/tests/e2e/xvl_e2e}
BDIR=$(cd "${3:-build/tests/e2e}" && pwd)
QSD=${QSD:-/usr/bin/qemu-storage-daemon}
DPDK_SRC=/usr/share/dpdk/examples/vhost_blk
MB=$((1 << 20))
SIZE=$((64 * MB))

T=$(mktemp -d /tmp/xvl-vhost-e2e.XXXXXX)
PIDS=()
n=0
fails=0

cleanup() {
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$T"
	rm -rf "/var/run/dpdk/xvle2e$$" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $* # SKIP"; }
show() { sed 's/^/#   /' "$1" | tail -n "${2:-15}"; }

# check DESCRIPTION COMMAND...: ok when COMMAND succeeds; its output is shown otherwise.
check() {
	local desc=$1
	shift
	if "$@" >"$T/out" 2>&1; then
		ok "$desc"
	else
		nok "$desc"
		show "$T/out"
	fi
}

wait_sock() {
	for _ in $(seq 100); do
		[ -S "$1" ] && return 0
		sleep 0.05
	done
	echo "# $1 did not appear"
	return 1
}

# start_qsd NAME IMAGE|null QUEUES: backend socket $T/NAME.sock, pid in QSD_PID
start_qsd() {
	local node
	if [ "$2" = null ]; then
		node="driver=null-co,node-name=n0,size=$SIZE,read-zeroes=on"
	else
		node="driver=file,node-name=n0,filename=$2,aio=io_uring"
	fi
	rm -f "$T/$1.sock"
	"$QSD" --blockdev "$node" \
		--export "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=$T/$1.sock,writable=on,num-queues=$3" \
		>>"$T/$1.log" 2>&1 &
	QSD_PID=$!
	PIDS+=("$QSD_PID")
	wait_sock "$T/$1.sock"
}

# start_server NAME DEVSPEC...: link socket $T/NAME.sock, log $T/NAME.log, pid in SRV_PID
start_server() {
	local name=$1 args=()
	shift
	for d in "$@"; do args+=(--dev "$d"); done
	"$XVL" server --listen "$T/$name.sock" "${args[@]}" >"$T/$name.log" 2>&1 &
	SRV_PID=$!
	PIDS+=("$SRV_PID")
	wait_sock "$T/$name.sock"
}

vdev() { echo "name=$1,backend=vhost-user,path=$T/$2.sock${3:+,$3}"; }

# write_cmp URI DEV IMAGE: write a random 4 MiB file at 1 MiB through xvloop, compare the image.
write_cmp() {
	local uri=$1 dev=$2 img=$3
	head -c $((4 * MB)) /dev/urandom >"$T/pat"
	"$XVL" blk write -c "$uri" ${dev:+-d "$dev"} --offset $MB --input "$T/pat" || return 1
	cmp "$T/pat" <(tail -c +$((MB + 1)) "$img" | head -c $((4 * MB)))
}

# churn_cmp URI DEV IMAGE: random writes on every queue; the image must equal what completed.
churn_cmp() {
	XVL_E2E_DEVICE=$2 "$E2E" churn "$1" $((16 * MB)) 3000 8 "$RANDOM" "$T/expect" || return 1
	cmp "$T/expect" <(head -c $((16 * MB)) "$3")
}

# info_queues URI DEV N: the device offers N queues (opened with as many as possible).
info_queues() {
	"$XVL" blk info -c "$1" -d "$2" -Q 16 >"$T/info" 2>&1 || { cat "$T/info"; return 1; }
	cat "$T/info"
	grep -q "^queues *$3 x" "$T/info" && grep -q "capacity *$SIZE bytes" "$T/info"
}

# ------------------------------------------------------------ qemu-storage-daemon
for i in 1 4; do truncate -s $SIZE "$T/disk$i.img"; done
start_qsd qa "$T/disk1.img" 1; QA=$QSD_PID
start_qsd qb "$T/disk4.img" 4
start_qsd qn null 4
start_server s "$(vdev a qa)" "$(vdev b qb)" "$(vdev n qn)"; SRV=$SRV_PID

check "qsd file, 1 queue: the client sees 1 queue and the backend's capacity" \
	info_queues "$T/s.sock" a 1
check "qsd file, 4 queues: the client sees 4 queues" info_queues "$T/s.sock" b 4
check "qsd null-co, 4 queues: the client sees 4 queues" info_queues "$T/s.sock" n 4
check "cross, direct notifications, 1 queue: written file matches the backing file" \
	write_cmp "$T/s.sock" a "$T/disk1.img"
check "cross, direct notifications, 4 queues: random writes match the backing file" \
	churn_cmp "xvl:$T/s.sock" b "$T/disk4.img"
check "cross: xvl blk verify on 4 queues of qsd" \
	"$XVL" blk verify -c "$T/s.sock" -d b -Q 4 --size 8M --ops 2000 --qd 8
null_rw() {
	"$XVL" blk write -c "$T/s.sock" -d n --offset 0 --length 1M --seed 7 &&
		"$XVL" blk read -c "$T/s.sock" -d n --offset 0 --length 1M --output "$T/nr" &&
		cmp "$T/nr" <(head -c $MB /dev/zero)
}
check "cross, qsd null-co: writes complete, reads return zeroes" null_rw

# Isolation: the backend (and the server) map the window and nothing else of the client.
check "isolation, cross: qsd and the server map only the window of the client's memory" \
	"$E2E" maps "$T/s.sock" "$QA" "$SRV"
kill "$SRV"

start_server r "$(vdev a qa relay=on)" "$(vdev b qb relay=on)"
check "cross, relayed notifications, 1 queue: written file matches the backing file" \
	write_cmp "$T/r.sock" a "$T/disk1.img"
check "cross, relayed notifications, 4 queues: random writes match the backing file" \
	churn_cmp "xvl:$T/r.sock" b "$T/disk4.img"
relay_used() { grep -q "notifications relayed" "$T/r.log"; }
check "relay mode was in use" relay_used
kill "$SRV_PID"

check "direct, 1 queue: written file matches the backing file" \
	write_cmp "vhost-user:$T/qa.sock" "" "$T/disk1.img"
check "direct, 4 queues: random writes match the backing file" \
	churn_cmp "vhost-user:$T/qb.sock" "" "$T/disk4.img"
check "isolation, direct: qsd maps only the window of the client's memory" \
	"$E2E" maps "vhost-user:$T/qa.sock" "$QA"

# ------------------------------------------------------------ bad backends
modes="noversion malformed oversized zeroq hangup"
specs=("$(vdev a qa)")
for m in $modes; do
	"$E2E" fake "$T/f-$m.sock" "$m" >"$T/f-$m.log" 2>&1 &
	PIDS+=($!)
	wait_sock "$T/f-$m.sock"
	specs+=("$(vdev "$m" "f-$m")")
done
specs+=("name=notvhost,backend=vhost-user,path=$T/s2.sock") # another server's link: not vhost-user
start_server s2 "$(vdev x qn)"
start_server bad "${specs[@]}"
declare -A step=([noversion]="GET_FEATURES: features 0x.* lack VIRTIO_F_VERSION_1"
	[malformed]="GET_FEATURES: reply carries request id 99"
	[oversized]="GET_FEATURES: reply payload of 4096 bytes"
	[zeroq]="GET_QUEUE_NUM: backend offers 0 queues"
	[hangup]="GET_PROTOCOL_FEATURES: connection closed"
	[notvhost]="$T/s2.sock: ")
for m in $modes notvhost; do
	refused() {
		grep -q "device $m: vhost-user backend .*${step[$m]}" "$T/bad.log" || return 1
		! "$XVL" blk info -c "$T/bad.sock" -d "$m"
	}
	check "bad backend ($m): refused, the error names the backend and the step" refused
done
check "bad backends: the server keeps serving its good device" \
	write_cmp "$T/bad.sock" a "$T/disk1.img"
kill "$SRV_PID"
grep "vhost-user backend" "$T/bad.log" | sed 's/^/#   /' | head -8

# ------------------------------------------------------------ backend loss
truncate -s $SIZE "$T/disk2.img"
start_qsd qd "$T/disk2.img" 2; QD=$QSD_PID
start_server l "$(vdev d qd reconnect-ms=10000)" "$(vdev a qa)"
loss_restart() {
	: >"$T/churn"
	# enough requests that the kill lands mid-workload even when the path is fast
	XVL_E2E_DEADLINE=40 "$E2E" churn "$T/l.sock" $((16 * MB)) 60000 8 42 "$T/expect" >"$T/churn" 2>&1 &
	local cp=$!
	PIDS+=("$cp")
	for _ in $(seq 200); do
		grep -q "^progress 400$" "$T/churn" && break
		sleep 0.05
	done
	kill -0 "$cp" 2>/dev/null || { echo "# the workload ended before qsd was killed"; return 1; }
	kill -9 "$QD"
	sleep 0.3
	start_qsd qd "$T/disk2.img" 2
	wait "$cp"
	local rc=$?
	cat "$T/churn"
	[ $rc -eq 0 ] && grep -q "is back" "$T/l.log" && cmp "$T/expect" <(head -c $((16 * MB)) "$T/disk2.img")
}
check "kill -9 qsd mid-workload, restart: every completed write intact, none failed or done twice" \
	loss_restart
grep -h "^churn:\|went away\|is back" "$T/churn" "$T/l.log" | sed 's/^/#   /'
QD=$QSD_PID
kill "$SRV_PID"

start_server l2 "$(vdev d qd reconnect-ms=1000)" "$(vdev a qa)"
loss_timeout() {
	: >"$T/churn" # the last run's progress lines must not trigger the kill early
	XVL_E2E_DEADLINE=40 "$E2E" churn "$T/l2.sock" $((16 * MB)) 100000 8 43 "$T/expect" allow-fail >"$T/churn" 2>&1 &
	local cp=$!
	PIDS+=("$cp")
	for _ in $(seq 200); do
		grep -q "^progress" "$T/churn" && break
		sleep 0.05
	done
	kill -9 "$QD"
	wait "$cp"
	local rc=$?
	cat "$T/churn"
	[ $rc -eq 0 ] && grep -q "duplicates 0 in-flight 0" "$T/churn" &&
		grep -Eq "churn: .* failed [1-9]" "$T/churn" &&
		grep -q "did not come back within 1000 ms" "$T/l2.log"
}
check "kill -9 qsd for good: pending requests fail after reconnect-ms, none done twice" \
	loss_timeout
grep -h "^churn:\|went away\|come back" "$T/churn" "$T/l2.log" | sed 's/^/#   /'
check "after losing one backend the server keeps serving its other device" \
	write_cmp "$T/l2.sock" a "$T/disk1.img"
kill "$SRV_PID"

# ------------------------------------------------------------ DPDK vhost_blk
if [ -d "$DPDK_SRC" ] && pkg-config --exists libdpdk; then
	D=$T/dpdk
	mkdir -p "$D"
	dpdk_build() {
		cc -O2 -DALLOW_EXPERIMENTAL_API $(pkg-config --cflags libdpdk) \
			"$DPDK_SRC"/blk.c "$DPDK_SRC"/vhost_blk.c "$DPDK_SRC"/vhost_blk_compat.c \
			-o "$BDIR/vhost-blk" $(pkg-config --libs libdpdk) -pthread
	}
	check "DPDK vhost_blk example builds against libdpdk" dpdk_build
	# It listens on ./vhost.socket and serves a 128 MiB RAM disk (4 KiB blocks) on one queue.
	(cd "$D" && exec "$BDIR/vhost-blk" --no-huge -m 1024 --no-pci --file-prefix="xvle2e$$" \
		>"$D/log" 2>&1) &
	DP=$!
	PIDS+=("$DP")
	for _ in $(seq 3); do wait_sock "$D/vhost.socket" >/dev/null && break; done
	[ -S "$D/vhost.socket" ] || show "$D/log"
	start_server dp "name=m,backend=vhost-user,path=$D/vhost.socket"
	dp_info() {
		"$XVL" blk info -c "$1" >"$T/info" 2>&1 || { cat "$T/info"; return 1; }
		cat "$T/info"
		grep -q "capacity *134217728 bytes" "$T/info" && grep -q VERSION_1 "$T/info"
	}
	check "DPDK, cross: the client sees the RAM disk (128 MiB)" dp_info "$T/dp.sock"
	check "DPDK, direct: the client sees the RAM disk (128 MiB)" dp_info "vhost-user:$D/vhost.socket"
	check "DPDK, cross: reads complete" \
		"$XVL" blk read -c "$T/dp.sock" --offset 0 --length 1M --output "$T/dr"
	check "isolation, cross: DPDK's vhost_blk maps only the window of the client's memory" \
		"$E2E" maps "$T/dp.sock" "$DP"
	dp_write() {
		head -c $((1 * MB)) /dev/urandom >"$T/pat"
		"$XVL" blk write -c "$1" --offset $MB --input "$T/pat" || return 1
		"$XVL" blk read -c "$1" --offset $MB --length 1M --output "$T/back" || return 1
		cmp "$T/pat" "$T/back"
	}
	# The example reports used.len = data bytes for writes too (virtio 2.7.8 wants
	# the bytes the device wrote); the driver clamps that, so writes must work.
	for uri in "$T/dp.sock" "vhost-user:$D/vhost.socket"; do
		check "DPDK ($uri): written data reads back intact" dp_write "$uri"
	done
	kill "$SRV_PID"
else
	skip "DPDK vhost_blk: dpdk-doc sources or libdpdk-dev not installed"
fi

echo "1..$n"
[ $fails -eq 0 ]
