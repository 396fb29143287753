#!/usr/bin/env bash
# scripts/guest/run.sh [--arch ARCH] [--timeout S] [--log FILE] INITRD [QEMU ARGS...]
#
# Boot Debian's cloud kernel (scripts/guest/kernel.sh) with INITRD (made by
# scripts/guest/initramfs.sh) under TCG with one vCPU and 512 MiB, console
# on stdout (or FILE), extra QEMU arguments appended.  Exit status: the one
# /guest.sh returned inside the guest ("XVL-GUEST-EXIT N" on the console);
# 124 when the guest did not finish within the timeout (default 120 s),
# 125 when it stopped without saying.  XVL_GUEST_APPEND adds kernel
# parameters; XVL_GUEST_MEM sets the memory (default 512M).
set -uo pipefail

arch=amd64 timeout=120 log=""
while [ $# -gt 0 ]; do
	case $1 in
	--arch) arch=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	*) break ;;
	esac
done
initrd=${1:?usage: run.sh [--arch A] [--timeout S] [--log F] INITRD [QEMU ARGS...]}
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$("$here/kernel.sh" "$arch")" || exit 1
mem=${XVL_GUEST_MEM:-512M}
case $arch in
amd64) qemu=(qemu-system-x86_64 -M q35 -cpu max) con=ttyS0 ;;
arm64) qemu=(qemu-system-aarch64 -M virt -cpu cortex-a57) con=ttyAMA0 ;;
*) echo "run.sh: unknown arch $arch" >&2; exit 2 ;;
esac
[ -n "$log" ] || log=/dev/stdout
timeout -k 5 "$timeout" "${qemu[@]}" -accel tcg -smp 1 -m "$mem" -nographic -nodefaults \
	-no-reboot -serial stdio -kernel "$GUEST_VMLINUZ" -initrd "$initrd" \
	-append "console=$con panic=-1 loglevel=4 ${XVL_GUEST_APPEND:-}" "$@" </dev/null >"$log" 2>&1
rc=$?
[ $rc -eq 124 ] && exit 124
st=$(tr -d '\r' <"$log" 2>/dev/null | sed -n 's/^XVL-GUEST-EXIT \([0-9]*\)$/\1/p' | tail -n 1)
[ -n "$st" ] && exit "$st"
[ "$log" = /dev/stdout ] && exit 125
exit 125
