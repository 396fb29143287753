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

# A foreign architecture's headers: linux-headers-KVER:ARCH cannot be
# installed beside the host's (it depends on linux-kbuild-6.1:ARCH and
# gcc-12:ARCH, which would replace the host's amd64 ones), so it is unpacked
# into .guest/ARCH/headers with its scripts/ and tools/ pointed at the host's
# own linux-kbuild of the same version; the common headers (Architecture:
# all, every arch/*/include) are the host's installed ones.  Build with
# make -C KBUILD ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- (KBUILD_ARGS).
kbuild=/usr/src/linux-headers-$kver kbuild_args=""
if [ $headers -eq 1 ] && [ "$arch" != "$(dpkg --print-architecture)" ]; then
	common=linux-headers-${kver%-cloud-$arch}-common
	kb=linux-kbuild-$(echo "$kver" | cut -d. -f1,2)
	for p in "$common" "$kb" "gcc-12-$(echo "$arch" | sed 's/arm64/aarch64/')-linux-gnu"; do
		dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed && continue
		log "installing $p"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$p" >&2
	done
	kbuild=$dest/headers/usr/src/linux-headers-$kver
	if [ ! -f "$dest/headers.$kver.stamp" ]; then
		log "fetching linux-headers-$kver:$arch (unpacked, not installed)"
		tmp=$(mktemp -d)
		(cd "$tmp" && apt-get download -q "linux-headers-$kver:$arch" >&2)
		rm -rf "$dest/headers"
		dpkg -x "$tmp"/linux-headers-*.deb "$dest/headers"
		rm -rf "$tmp"
		for l in scripts tools; do
			rm -f "$kbuild/$l"
			ln -s "/usr/lib/$kb/$l" "$kbuild/$l"
		done
		touch "$dest/headers.$kver.stamp"
	fi
	case $arch in
	arm64) kbuild_args="ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-" ;;
	*) kbuild_args="ARCH=$arch" ;;
	esac
	headers=2
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
[ $headers -ge 1 ] && echo "KBUILD=$kbuild"
[ $headers -eq 2 ] && echo "KBUILD_ARGS=\"$kbuild_args\""
exit 0
