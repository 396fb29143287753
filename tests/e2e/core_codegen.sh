#!/usr/bin/env bash
# The virtqueue hot paths on weakly ordered CPUs (issue 15, item 3): the
# aarch64 and riscv64 builds of src/core/virtq.c are disassembled and, per
# exported function, the barriers and atomics counted.  A virtqueue needs no
# read-modify-write atomics at all (no AMO, LR/SC or LSE instruction); a
# full fence only where a store must be ordered before a later load (the
# event-index and flag handshakes); the spin-loop predicates no barrier.
# Static counts of instructions in each function's body, TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"
R=$E2E_ROOT

# function: most full fences allowed (static count)
declare -A FULL=(
	[xvl_vq_drv_add]=0 [xvl_vq_dev_push]=0
	[xvl_vq_drv_has_used]=0 [xvl_vq_dev_has_avail]=0
	[xvl_vq_drv_get_used]=1 [xvl_vq_dev_pop]=1
	[xvl_vq_drv_kick_prepare]=1 [xvl_vq_dev_notify_prepare]=1
	[xvl_vq_drv_enable_cb]=1 [xvl_vq_dev_enable_notify]=1
	[xvl_vq_drv_disable_cb]=0 [xvl_vq_dev_disable_notify]=0
)
# function: any ordering at all (acquire/release fence or instruction) allowed?
declare -A ORDERED=([xvl_vq_drv_has_used]=0 [xvl_vq_dev_has_avail]=0)

# insns OBJDUMP OBJ FUNCTION: the instructions of FUNCTION and of every
# function of the object it calls (static helpers the compiler kept out of
# line), with relocations; FUNC symbols' address ranges, so that local labels
# in the disassembly do not cut a function short.
insns() {
	local od=$1 obj=$2 todo=("$3") seen=" " f v sz callees
	while [ ${#todo[@]} -gt 0 ]; do
		f=${todo[0]}
		todo=("${todo[@]:1}")
		case $seen in *" $f "*) continue ;; esac
		seen+="$f "
		read -r v sz < <(readelf -sW "$obj" | awk -v f="$f" '$4 == "FUNC" && $8 == f { print $2, $3; exit }')
		[ -n "${v:-}" ] || continue
		local out
		out=$("$od" -dr --no-show-raw-insn --start-address=$((16#$v)) \
			--stop-address=$((16#$v + sz)) "$obj" | sed -n '/>:$/,$p' | tail -n +2)
		printf '%s\n' "$out"
		callees=$(grep -oE 'R_(RISCV_CALL(_PLT)?|AARCH64_(CALL|JUMP)26)[[:space:]]+[A-Za-z_][A-Za-z0-9_]*' <<<"$out" |
			awk '{ print $2 }' | sort -u)
		for c in $callees; do
			readelf -sW "$obj" | awk -v f="$c" '$4 == "FUNC" && $8 == f && $7 != "UND" { found = 1 } END { exit !found }' &&
				todo+=("$c")
		done
		v=""
	done
}

check_arch() { # arch objdump build-dir full-re order-re rmw-re
	local arch=$1 od=$2 dir=$3 full_re=$4 order_re=$5 rmw_re=$6 obj f b n_full n_ord n_rmw
	obj=$(find "$R/$dir/src/core" -name 'virtq.c.o' 2>/dev/null | head -n 1)
	if [ -z "$obj" ] || ! command -v "$od" >/dev/null; then
		skip "$arch: no $dir build or no $od (make $dir)"
		return
	fi
	n_rmw=$("$od" -d --no-show-raw-insn "$obj" | grep -cE "$rmw_re")
	if [ "$n_rmw" -eq 0 ]; then
		ok "$arch: no read-modify-write atomic anywhere in virtq.c"
	else
		fail "$arch: $n_rmw read-modify-write atomic(s) in virtq.c"
		"$od" -d --no-show-raw-insn "$obj" | grep -E "$rmw_re" | head -n 5 | sed 's/^/#   /'
	fi
	for f in $(printf '%s\n' "${!FULL[@]}" | sort); do
		b=$(insns "$od" "$obj" "$f")
		if [ -z "$b" ]; then
			fail "$arch: $f not found in $obj"
			continue
		fi
		n_full=$(grep -cE "$full_re" <<<"$b")
		n_ord=$(grep -cE "$order_re" <<<"$b")
		n_rmw=$(grep -cE "$rmw_re" <<<"$b")
		if [ "$n_rmw" -ne 0 ]; then
			fail "$arch: $f has $n_rmw read-modify-write atomic(s)"
		elif [ "$n_full" -gt "${FULL[$f]}" ]; then
			fail "$arch: $f has $n_full full fence(s), at most ${FULL[$f]} expected"
		elif [ "${ORDERED[$f]:-1}" = 0 ] && [ "$n_ord" -ne 0 ]; then
			fail "$arch: $f is a spin predicate but orders memory ($n_ord)"
		else
			ok "$arch: $f: $n_full full fence(s), $n_ord ordered access(es), no RMW atomic"
		fi
	done
}

# riscv64: full = fence rw,rw (objdump prints iorw,iorw as a bare "fence"); acquire/release = fence r,rw / rw,w
# or .aq/.rl forms; RMW = amo*, lr.*, sc.*
check_arch riscv64 riscv64-linux-gnu-objdump build-riscv64 \
	'fence([[:space:]]+(io)?rw,(io)?rw)?$' 'fence|\.aq|\.rl' '[[:space:]](amo[a-z]+|lr|sc)\.[wd]'
# aarch64: full = dmb ish; acquire/release = ldar/stlr/ldapr or dmb ishld;
# RMW = exclusives (ldxr/stxr and acquire/release forms) or LSE atomics
check_arch aarch64 aarch64-linux-gnu-objdump build-aarch64 \
	'dmb[[:space:]]+ish$' 'dmb|ldar|stlr|ldapr' \
	'[[:space:]](ld[a]?xr|st[l]?xr|cas|swp|ldadd|ldclr|ldset|ldeor)[a-z]*[[:space:]]'
finish
