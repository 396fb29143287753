#!/usr/bin/env bash
# tests/e2e/fio_engine.sh: fio through the xvloop ioengine, with fio's own
# verify=crc32c (written blocks read back and checked), against
#   - an xvl server (cross-compartment) with ram and file backends, and a
#     device bridged to qemu-storage-daemon;
#   - qemu-storage-daemon's vhost-user-blk export directly (direct mode);
# at several block sizes, zero-copy and copying buffers, event, spin and poll
# completion, and two job threads on two queues.  TAP on stdout.
set -uo pipefail

root=${XVL_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${XVL_BUILD:-$root/build}
xvl=${XVL_BIN:-$build/src/cli/xvl}
engine=$build/src/fio/xvloop-fio.so

if [ ! -f "$engine" ] || [ ! -x "$xvl" ]; then
	echo "1..0 # SKIP $engine or $xvl not built (make builds them)"
	exit 0
fi
for t in fio qemu-storage-daemon; do
	command -v $t >/dev/null || { echo "1..0 # SKIP $t not installed"; exit 0; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xvl-fio-e2e.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)) failed=$((failed + 1))
	echo "not ok $n - $1"
	[ -f "$2" ] && sed 's/^/#   /' "$2" | grep -v '^#   *$' | tail -25
}

wait_sock() { # path pid
	for _ in $(seq 100); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

cd "$tmp" || exit 1 # fio may leave state files in its working directory
truncate -s 64M "$tmp/xvl.img"
truncate -s 64M "$tmp/qsd.img"

qemu-storage-daemon \
	--blockdev driver=file,node-name=f0,filename="$tmp/qsd.img" \
	--export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path="$tmp/qsd.sock",writable=on,num-queues=2 \
	>"$tmp/qsd.log" 2>&1 &
pids+=($!)
wait_sock "$tmp/qsd.sock" $! || { echo "1..1"; not_ok "qemu-storage-daemon starts" "$tmp/qsd.log"; exit 1; }

"$xvl" server --listen "$tmp/xvl.sock" \
	--dev name=r0,backend=ram,size=64M,queues=2 \
	--dev name=f0,backend=file,path="$tmp/xvl.img",queues=2 \
	--dev name=q0,backend=vhost-user,path="$tmp/qsd.sock" \
	>"$tmp/server.log" 2>&1 &
pids+=($!)
wait_sock "$tmp/xvl.sock" $! || { echo "1..1"; not_ok "xvl server starts" "$tmp/server.log"; exit 1; }

# vfio NAME URI [fio options...]: random writes then verify=crc32c read-back.
vfio() {
	local name=$1 uri=$2
	shift 2
	local log="$tmp/fio.$((n + 1)).log"
	if timeout 60 fio --name=e2e --ioengine=external:"$engine" --uri="$uri" \
		--rw=randwrite --size=16M --iodepth=8 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --verify_state_save=0 --group_reporting "$@" >"$log" 2>&1 &&
		grep -q "err= 0" "$log" && ! grep -q "verify:" "$log"; then
		ok "$name"
	else
		not_ok "$name" "$log"
	fi
}

echo "1..13"
x=xvl:$tmp/xvl.sock
v=vhost-user:$tmp/qsd.sock

vfio "cross ram: 4k writes verified (crc32c)" "$x" --device=r0 --bs=4k
vfio "cross ram: 64k, copying buffers (zerocopy=0)" "$x" --device=r0 --bs=64k --zerocopy=0
vfio "cross ram: 4k-128k mixed sizes, poll=1" "$x" --device=r0 --bsrange=4k-128k --poll=1
vfio "cross file: 16k, device by index, spin=1" "$x" --device=1 --bs=16k --spin=1
vfio "cross file: 2 job threads on 2 queues" "$x" --device=f0 --bs=8k --thread=1 --numjobs=2 --offset_increment=16M
vfio "cross file: 2 threads, copying buffers" "$x" --device=f0 --bs=4k --thread=1 --numjobs=2 --offset_increment=16M --zerocopy=0
vfio "direct qsd: 4k writes verified" "$v" --bs=4k
vfio "direct qsd: 128k, copying buffers" "$v" --bs=128k --zerocopy=0
vfio "direct qsd: 2 job threads on 2 queues, spin=1" "$v" --bs=4k --thread=1 --numjobs=2 --offset_increment=16M --spin=1
vfio "direct qsd: poll=1, 4k-64k" "$v" --bsrange=4k-64k --poll=1
vfio "cross -> qsd bridge: 4k writes verified" "$x" --device=q0 --bs=4k
vfio "cross -> qsd bridge: 32k, iodepth 32" "$x" --device=q0 --bs=32k --iodepth=32

# A server that is not there: a clear error, a non-zero exit, no hang.
log="$tmp/fio.nope.log"
if ! timeout 30 fio --name=e2e --ioengine=external:"$engine" --uri="xvl:$tmp/nope.sock" \
	--rw=read --size=1M >"$log" 2>&1 && grep -q "xvloop: connect:.*nope.sock" "$log"; then
	ok "missing server: fio fails with the engine's message"
else
	not_ok "missing server: fio fails with the engine's message" "$log"
fi

[ "$failed" -eq 0 ]
