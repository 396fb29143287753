#!/usr/bin/env bash
# scripts/freestanding.sh [OUTDIR]
# The portable core (src/core/*.c) must build for a bare-metal compartment:
# compile it -ffreestanding -nostdlib for the host and for each cross target
# we have a compiler for, link the objects into one relocatable object, and
# check with nm that it needs nothing from outside but memcpy/memset/memmove/
# memcmp (which any freestanding environment must provide for gcc anyway).
# FREESTANDING_ALLOW='regex' allows more (e.g. '__clzdi2|__ctzdi2' when the
# bare-metal link is known to include libgcc).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${1:-build-freestanding}
mkdir -p "$out"

allowed="^(memcpy|memset|memmove|memcmp${FREESTANDING_ALLOW:+|$FREESTANDING_ALLOW})\$"
srcs=(src/core/*.c)
if [ ! -e "${srcs[0]}" ]; then
	echo "freestanding: no src/core/*.c" >&2
	exit 1
fi
CFLAGS=(-std=gnu11 -O2 -g0 -ffreestanding -nostdlib -fno-stack-protector
	-fno-asynchronous-unwind-tables -Wall -Wextra -Wno-unused-parameter
	-D_GNU_SOURCE -Isrc/core)

rc=0
for cc in gcc aarch64-linux-gnu-gcc riscv64-linux-gnu-gcc; do
	command -v "$cc" >/dev/null 2>&1 || { echo "freestanding: $cc not found, skipped"; continue; }
	tgt=$("$cc" -dumpmachine)
	d="$out/$tgt"
	rm -rf "$d"; mkdir -p "$d"
	objs=()
	for s in "${srcs[@]}"; do
		o="$d/$(basename "${s%.c}").o"
		"$cc" "${CFLAGS[@]}" -c "$s" -o "$o" || { echo "freestanding: $tgt: $s does not compile" >&2; rc=1; continue 2; }
		objs+=("$o")
	done
	# One relocatable object: references between core files resolve here.
	"$cc" -nostdlib -r -o "$d/core.o" "${objs[@]}"
	undef=$(nm -u "$d/core.o" | awk '{ print $NF }' | sort -u)
	bad=$(printf '%s\n' "$undef" | grep -v -E "$allowed" | grep -v '^$' || true)
	if [ -n "$bad" ]; then
		echo "freestanding: $tgt: core needs symbols a bare-metal compartment does not have:" >&2
		printf '  %s\n' $bad >&2
		for o in "${objs[@]}"; do
			for sym in $bad; do
				nm -u "$o" | awk '{ print $NF }' | grep -qx "$sym" && echo "    $sym <- $(basename "$o")" >&2
			done
		done
		echo "  (helpers like __clzdi2 come from libgcc: use a portable fallback in the core," >&2
		echo "   or allow them with FREESTANDING_ALLOW if the target links -lgcc)" >&2
		rc=1
	else
		echo "freestanding: $tgt: ok (${#objs[@]} files; undefined: $(echo $undef))"
	fi
done
exit $rc
