#!/usr/bin/env bash
# scripts/guest/initramfs.sh OUT [options]
#
# A busybox initramfs (cpio, gzip) for a TCG test guest running Debian's
# cloud kernel (scripts/guest/kernel.sh).  Its /init mounts proc, sys, dev,
# tmp, loads the named modules with their dependencies (in order; a module's
# parameters from NAME.param=value on the kernel command line), runs
# /guest.sh with its output on the console, prints "XVL-GUEST-EXIT <status>"
# and powers the guest off.
#
#   --arch ARCH        kernel of .guest/ARCH (default amd64)
#   --module NAME      load this module of the guest kernel (repeatable; its
#                      dependencies first, read from each .ko's .modinfo)
#   --ko PATH          load this out-of-tree module after the others (repeatable)
#   --bin PATH[:DST]   copy a host program and the shared libraries ldd names
#                      (default DST: /bin/NAME); for the host's architecture only
#   --file SRC:DST     copy a file (or directory, recursively)
#   --run SCRIPT       the script run as /guest.sh (default: a shell prompt)
#
# Needs busybox-static (scripts/deps.sh).  Idempotent only in the sense that
# OUT is rebuilt every time (a few hundred ms).
set -euo pipefail

out=${1:?usage: initramfs.sh OUT [options]}
shift
arch=amd64 mods=() kos=() bins=() files=() run=""
while [ $# -gt 0 ]; do
	case $1 in
	--arch) arch=$2; shift 2 ;;
	--module) mods+=("$2"); shift 2 ;;
	--ko) kos+=("$2"); shift 2 ;;
	--bin) bins+=("$2"); shift 2 ;;
	--file) files+=("$2"); shift 2 ;;
	--run) run=$2; shift 2 ;;
	*) echo "initramfs.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$("$here/kernel.sh" "$arch")"
# The host's busybox-static for amd64; kernel.sh fetched a foreign one.
bb=/bin/busybox
[ "$arch" = "$(dpkg --print-architecture)" ] || bb=$(dirname "$GUEST_MODULES")/../../../busybox
[ -x "$bb" ] || { echo "initramfs.sh: no static busybox for $arch at $bb" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r=$tmp/root
mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,mnt,lib/modules,usr/bin,usr/sbin,var/tmp}
cp "$bb" "$r/bin/busybox"
for a in sh mount umount mkdir cat echo ls sleep insmod rmmod lsmod poweroff dmesg grep sed awk \
	dd cmp md5sum sha256sum head tail wc mknod ln rm cp mv sync tr cut seq kill ps ip ifconfig \
	hexdump od find stat test [ printf sort uniq timeout date true false uname free df setsid \
	losetup chmod chown readlink basename dirname xargs env ping ping6 arping nc usleep wget httpd; do
	ln -sf busybox "$r/bin/$a"
done

# module NAME -> path of its .ko, and its dependencies (from .modinfo)
# (find succeeds when it finds nothing: try the dashed name on empty output)
ko_path() {
	local p
	p=$(find "$GUEST_MODULES/kernel" -name "$1.ko" -print -quit 2>/dev/null)
	[ -n "$p" ] || p=$(find "$GUEST_MODULES/kernel" -name "${1//_/-}.ko" -print -quit 2>/dev/null)
	echo "$p"
}
# (objcopy writes a temporary file next to its output and renames it: never
# give it /dev/stdout, which as root it would replace with a regular file)
# (the host's objcopy does not read a foreign architecture's .ko: kmod's modinfo does)
ko_deps() {
	if objcopy -O binary --only-section=.modinfo "$1" "$tmp/modinfo" 2>/dev/null; then
		tr '\0' '\n' <"$tmp/modinfo" | sed -n 's/^depends=//p' | tr ',' ' '
	else
		modinfo -F depends "$1" 2>/dev/null | tr ',' ' '
	fi
}
order=()
declare -A seen=()
add_mod() {
	local m=${1//-/_} p d
	[ -n "${seen[$m]:-}" ] && return 0
	seen[$m]=1
	p=$(ko_path "$m")
	[ -n "$p" ] || { grep -q "/$m.ko" "$GUEST_MODULES/modules.builtin" 2>/dev/null && return 0
			 echo "initramfs.sh: no module $m in $GUEST_KVER" >&2; exit 1; }
	for d in $(ko_deps "$p"); do add_mod "$d"; done
	order+=("$p")
}
for m in "${mods[@]}"; do add_mod "$m"; done
: >"$r/etc/modules"
for p in "${order[@]}" "${kos[@]}"; do
	cp "$p" "$r/lib/modules/"
	echo "/lib/modules/$(basename "$p")" >>"$r/etc/modules"
done

copy_bin() {
	local src=${1%%:*} dst=${1#*:} l
	[ "$dst" = "$1" ] && dst=/bin/$(basename "$src")
	mkdir -p "$r$(dirname "$dst")"
	cp -L "$src" "$r$dst"
	for l in $(ldd "$src" 2>/dev/null | awk '/=>/ { print $3 } /^\t\// { print $1 }'); do
		[ -f "$l" ] || continue
		mkdir -p "$r$(dirname "$l")"
		cp -Ln "$l" "$r$l"
	done
}
for b in "${bins[@]}"; do copy_bin "$b"; done
for f in "${files[@]}"; do
	mkdir -p "$r$(dirname "${f#*:}")"
	cp -rL "${f%%:*}" "$r${f#*:}"
done
if [ -n "$run" ]; then cp "$run" "$r/guest.sh"; else printf '#!/bin/sh\nexec sh\n' >"$r/guest.sh"; fi
chmod +x "$r/guest.sh"

cat >"$r/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
# NAME.param=value on the kernel command line is a parameter of module NAME, as
# modprobe would apply it (busybox insmod does not read /proc/cmdline)
while read -r m; do
	n=$(basename "$m" .ko | tr - _)
	args=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^$n\.//p" | tr '\n' ' ')
	insmod "$m" $args || echo "init: insmod $m $args failed"
done </etc/modules
/guest.sh
echo "XVL-GUEST-EXIT $?"
sync
poweroff -f
INIT
chmod +x "$r/init"
(cd "$r" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
