#!/usr/bin/env bash
# scripts/guest/kernel.sh [--headers] [ARCH]
#
# Debian's unmodified cloud kernel for a TCG guest, without installing it on
# the host: `apt-get download` of the image package the metapackage
# linux-image-cloud-ARCH currently depends on (the archive drops old ABI
# versions, so the version is resolved every time, never pinned), unpacked
# with `dpkg -x` into <repo>/.guest/ARCH/.  ARCH: amd64 (default) or arm64
# (adds the dpkg architecture and updates the package lists if needed; a
# foreign architecture's busybox-static is fetched too).
#
# --headers also installs linux-headers-VERSION-cloud-ARCH on the host (for
# building modules against the guest kernel; it does not touch the host's own
# kernel) and prints the build directory as KBUILD=... .
#
# Idempotent.  Progress on stderr; on stdout, shell assignments:
#   GUEST_VMLINUZ=...  GUEST_MODULES=...  GUEST_KVER=...  [KBUILD=...]
set -euo pipefail

headers=0
[ "${1:-}" = --headers ] && { headers=1; shift; }
arch=${1:-amd64}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=$root/.guest/$arch
log() { echo "guest-kernel: $*" >&2; }

mkdir -p "$dest"
exec 9<"$dest"
flock 9

if [ "$arch" != "$(dpkg --print-architecture)" ] &&
	! dpkg --print-foreign-architectures | grep -qx "$arch"; then
	log "adding dpkg architecture $arch"
	dpkg --add-architecture "$arch"
	apt-get update -q >&2
fi
meta=linux-image-cloud-$arch
pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
if [ -z "$pkg" ]; then
	log "apt-cache does not know $meta; running apt-get update"
	apt-get update -q >&2
	pkg=$(apt-cache depends "$meta" | awk '/Depends: linux-image-/ { print $2; exit }')
fi
[ -n "$pkg" ] || { log "cannot resolve $meta to a kernel package"; exit 1; }
pkg=${pkg%%:*}
kver=${pkg#linux-image-}

if [ ! -f "$dest/$kver.stamp" ]; then
	log "fetching $pkg"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download -q "$pkg:$arch" >&2)
	rm -rf "$dest/root"
	dpkg -x "$tmp"/*.deb "$dest/root"
	touch "$dest/$kver.stamp"
fi

# A foreign architecture's guest also needs its busybox (the host's is amd64).
if [ "$arch" != "$(dpkg --print-architecture)" ] && [ ! -x "$dest/busybox" ]; then
	log "fetching busybox-static:$arch"
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download -q "busybox-static:$arch" >&2)
	dpkg -x "$tmp"/busybox-static_*.deb "$tmp/x"
	cp "$tmp/x/bin/busybox" "$dest/busybox"
	rm -rf "$tmp"
fi

if [ $headers -eq 1 ]; then
	hpkg=linux-headers-$kver
	if ! dpkg-query -W -f='${db:Status-Status}' "$hpkg" 2>/dev/null | grep -qx installed; then
		log "installing $hpkg"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 \
			"$hpkg" >&2
	fi
fi

echo "GUEST_VMLINUZ=$dest/root/boot/vmlinuz-$kver"
echo "GUEST_MODULES=$dest/root/lib/modules/$kver"
echo "GUEST_KVER=$kver"
[ $headers -eq 1 ] && echo "KBUILD=/usr/src/linux-headers-$kver"
exit 0
