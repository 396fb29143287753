#!/usr/bin/env bash
# Install the Debian 12 packages xvloop needs to build, test and benchmark.
# Idempotent: asks dpkg what is already installed and runs apt only for what
# is missing (apt-get update only then, too).  Needs root when it installs.
set -euo pipefail

PKGS=(
	meson ninja-build pkg-config gcc clang
	liburing-dev libjson-c-dev libseccomp-dev libconfig-dev libfuse3-dev fuse3 libnbd-dev
	qemu-system-common qemu-utils fio
	nbdkit nbdkit-plugin-dev libnbd-bin podman runc
	dpdk dpdk-dev libdpdk-dev dpdk-doc openvswitch-switch-dpdk
	gnuplot-nox libclang-rt-14-dev
	gcc-aarch64-linux-gnu gcc-riscv64-linux-gnu
	libc6-dev-arm64-cross libc6-dev-riscv64-cross qemu-user
	valgrind dpkg-dev
	iperf3 iproute2 iputils-ping
	qemu-system-x86 busybox-static cpio qemu-system-arm
	e2fsprogs
	debhelper dh-dkms lintian fakeroot build-essential man-db groff-base abigail-tools
	libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
)
# The target's libraries for the aarch64 cross build of the whole stack (the
# static xvl the arm64 guest test runs): multiarch -dev packages.
FOREIGN_ARCH=arm64
FOREIGN=(liburing-dev:arm64 libjson-c-dev:arm64 libconfig-dev:arm64 libseccomp-dev:arm64 libfuse3-dev:arm64)

missing=()
for p in "${PKGS[@]}" "${FOREIGN[@]}"; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	# two lines (one per architecture) when a multiarch package has both
	case $st in installed*) ;; *) missing+=("$p") ;; esac
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all $((${#PKGS[@]} + ${#FOREIGN[@]})) packages present"
	exit 0
fi

echo "deps: installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo -E)
	else
		echo "deps: need root to install packages" >&2
		exit 1
	fi
else
	SUDO=()
fi
export DEBIAN_FRONTEND=noninteractive
dpkg --print-foreign-architectures | grep -qx "$FOREIGN_ARCH" ||
	"${SUDO[@]}" dpkg --add-architecture "$FOREIGN_ARCH"
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q -o DPkg::Lock::Timeout=600 \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${missing[@]}"
echo "deps: installed ${#missing[@]} package(s)"
