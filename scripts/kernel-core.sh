#!/usr/bin/env bash
# scripts/kernel-core.sh [OUTDIR]
# The portable core must compile inside a Linux kernel module: build
# src/core/{mailbox,proto,window,virtq}.c with Kbuild against the installed
# kernel headers (/lib/modules/$(uname -r)/build, or KDIR=...) as one module
# that references them, with the kernel's own -Werror-level warnings.  Skips
# (exit 0, says so) when no kernel headers are installed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(realpath -m "${1:-$root/build-kernel-core}")
kdir=${KDIR:-}
if [ -z "$kdir" ]; then
	for d in "/lib/modules/$(uname -r)/build" /lib/modules/*/build; do
		[ -e "$d/Makefile" ] && { kdir=$d; break; }
	done
fi
if [ -z "$kdir" ] || [ ! -e "$kdir/Makefile" ]; then
	echo "kernel-core: no kernel headers (set KDIR), skipped"
	exit 0
fi
rm -rf "$out"; mkdir -p "$out/core"
cp "$root"/src/core/*.[ch] "$out/core/"
cat > "$out/Kbuild" <<'KB'
obj-m := xvl_core_check.o
xvl_core_check-y := main.o core/mailbox.o core/proto.o core/window.o core/virtq.o
ccflags-y := -I$(src)/core -std=gnu11 -Werror
KB
cat > "$out/main.c" <<'C'
// SPDX-License-Identifier: MIT
/* Only here to make the core's objects one module; never loaded. */
#include <linux/module.h>
#include "mailbox.h"
static int __init xvl_core_check_init(void)
{
	return xvl_mbox_size(XVL_MBOX_DEF_SLOTS) ? 0 : -EINVAL;
}
static void __exit xvl_core_check_exit(void) {}
module_init(xvl_core_check_init);
module_exit(xvl_core_check_exit);
MODULE_LICENSE("Dual MIT/GPL");
C
if make -s -C "$kdir" M="$out" modules >"$out/log" 2>&1 && [ -e "$out/xvl_core_check.ko" ]; then
	echo "kernel-core: ok (built as a module against $(basename "$(realpath "$kdir")"))"
else
	cat "$out/log" >&2
	echo "kernel-core: the core does not build as a kernel module" >&2
	exit 1
fi
