#!/usr/bin/env bash
# The ABI of libxvloop.so.0, as built ($XVL_BUILD, default build/):
#   - its soname is libxvloop.so.0
#   - `nm -D --defined-only` shows exactly the symbols of the version script
#     src/client/libxvloop.map (the one list), each bound to its node
#     (sym@@XVL_0.1): nothing internal (xvl_err, xvl_win_*, ...) leaks
#   - the version script and include/xvloop/xvl.h agree: every function the
#     header declares is exported and every exported symbol is declared
#     (gcc -aux-info lists the header's declarations)
#   - debian/libxvloop0.symbols (dpkg-gensymbols' input) lists the same set
#   - the library needs nothing but libc, and leaves no symbol undefined
#     that libc does not define
#   - every initializer of xvl.h's *_opts structs in the tree starts with its _INIT macro
#   - abidiff (libabigail) against the 0.1 ABI finds only compatible changes
# The installed library and a program built against it: tests/e2e/install.sh.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

B=${XVL_BUILD:-$E2E_ROOT/build}
LIB=$B/src/client/libxvloop.so.0
MAP=$E2E_ROOT/src/client/libxvloop.map
[ -e "$LIB" ] || { echo "1..0 # SKIP no $LIB (build first)"; exit 0; }

soname=$(readelf -d "$LIB" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
expect_eq libxvloop.so.0 "$soname" "soname"

# sym@@NODE for every symbol of every node of the version script.
map_versioned() {
	sed -e 's,/\*.*\*/,,' -e '/^[[:space:]]*\*/d' -e '/^\/\*/d' "$MAP" | awk '
		/^[A-Za-z_][A-Za-z0-9_.]*[[:space:]]*\{/ { node = $1; sub(/\{.*/, "", node); next }
		/^[[:space:]]*xvl_[a-z0-9_]*;/ { s = $1; sub(/;.*/, "", s); print s "@@" node }' | sort
}
want=$(map_versioned)
nsyms=$(echo "$want" | grep -c .)
[ "$nsyms" -gt 0 ] && ok "version script lists $nsyms symbols" || fail "version script lists no symbols"

got=$(nm -D --defined-only "$LIB" | awk '$2 != "A" { print $3 }' | sort)
if [ "$want" = "$got" ]; then
	ok "nm -D --defined-only: exactly the version script's symbols, each at its node"
else
	fail "nm -D --defined-only differs from the version script (< script, > library)"
	diff <(echo "$want") <(echo "$got") | grep '^[<>]' | sed 's/^/#   /'
fi

printf '#include <xvloop/xvl.h>\n#include <xvloop/xvl_net.h>\n' >"$T/h.c"
if cc -std=gnu11 -I"$E2E_ROOT/include" -fsyntax-only -aux-info "$T/aux.txt" "$T/h.c" 2>"$T/cc.log"; then
	declared=$(grep -E 'xvloop/xvl(_net)?\.h:' "$T/aux.txt" | sed -n 's/.*[ *]\(xvl_[a-z0-9_]*\) (.*/\1/p' | sort)
	exported=$(echo "$want" | sed 's/@@.*//' | sort)
	if [ "$declared" = "$exported" ]; then
		ok "xvl.h and xvl_net.h declare exactly the exported functions ($(echo "$declared" | grep -c .))"
	else
		fail "xvl.h and the version script differ (< declared, > exported)"
		diff <(echo "$declared") <(echo "$exported") | grep '^[<>]' | sed 's/^/#   /'
	fi
else
	fail "xvl.h compiles on its own"
	sed 's/^/#   /' "$T/cc.log"
fi

SYMS=$E2E_ROOT/debian/libxvloop0.symbols
if [ -f "$SYMS" ]; then
	deb=$(sed -n 's/^ \(xvl_[a-z0-9_]*\)@\([A-Z0-9_.]*\) .*/\1@@\2/p' "$SYMS" | sort)
	expect_eq "$want" "$deb" "debian/libxvloop0.symbols lists the version script's symbols"
else
	fail "debian/libxvloop0.symbols exists"
fi

needed=$(readelf -d "$LIB" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
if [[ $needed == *libasan* || $needed == *libubsan* ]]; then
	skip "needs only libc: a sanitizer build ($needed)"
	skip "every undefined symbol is versioned glibc's: a sanitizer build"
else
	expect_eq "libc.so.6 " "$needed" "needs only libc"
	undef=$(nm -D --undefined-only "$LIB" | awk '$1 != "w" && $2 !~ /@GLIBC_/ { print $2 }' | tr '\n' ' ')
	expect_eq "" "$undef" "every undefined symbol is versioned glibc's"
fi

# Every options struct initialized in the tree sets its size (a caller that
# does not is refused at run time with -EINVAL: catch it here, by file:line).
pub=$(sed -n 's/^struct \(xvl_[a-z_]*_opts\) {.*/\1/p' "$E2E_ROOT"/include/xvloop/xvl*.h | paste -sd'|')
bare=$(cd "$E2E_ROOT" && grep -rnE --include='*.c' --include='*.h' \
	"struct ($pub) [a-z_0-9]+ = \\{" src tests bench 2>/dev/null | grep -v '_OPTS_INIT' |
	grep -v 'tests/e2e/abi_prog.c')
expect_eq "" "$bare" "every initializer of the public options structs ($pub) starts with its _INIT macro"

# ---------------------------------------------------------------- abidiff
# Against the ABI of the last release (tests/e2e/abi/libxvloop.so.0.abi,
# abidw of libxvloop.so.0 at 0.1.0): only compatible changes are allowed,
# i.e. new functions, and an *_opts struct grown at its end.  Anything else
# (a symbol removed, a field moved, a type changed, a struct the library
# fills grown) fails: that is a new soname.  abidiff's report is read
# line by line and every line must be one of the known compatible kinds.
BASE=$E2E_ROOT/tests/e2e/abi/libxvloop.so.0.abi
if ! command -v abidiff >/dev/null; then
	fail "abidiff is installed (abigail-tools, scripts/deps.sh)"
elif ! readelf -S "$LIB" | grep -q '\.debug_info'; then
	skip "abidiff against the 0.1 ABI: the build has no debug info"
else
	abidiff --hd2 "$E2E_ROOT/include/xvloop" "$BASE" "$LIB" >"$T/abidiff.txt" 2>&1
	rc=$?
	bad=$(python3 - "$T/abidiff.txt" <<'PY'
import re, sys
ok_lines = [
    r"Functions changes summary: .*", r"Variables changes summary: .*",
    r"Function symbols changes summary: .*", r"Variable symbols changes summary: .*",
    r"\d+ functions? with some indirect sub-type changes?:", r"\d+ Added functions?:",
    r"\d+ Added function symbols? not referenced by debug info:",
    r"\[A\] .*", r"\[C\] 'function .*'( at \S+)? has some indirect sub-type changes:",
    r"parameter \d+ of type '.*' has sub-type changes:",
    r"in (pointed to|unqualified underlying|referenced) type '[^']*'( at \S+)?:?",
]
ctx, size, bad = None, None, []
for line in open(sys.argv[1]):
    s = line.strip()
    if not s:
        continue
    m = re.match(r"in (?:pointed to|unqualified underlying|referenced) type '(?:const )?(?:struct )?(\w+)'", s)
    if m:
        ctx = m.group(1)
    if any(re.fullmatch(p, s) for p in ok_lines):
        continue
    grows = ctx is not None and ctx.endswith("_opts")
    m = re.fullmatch(r"type size changed from (\d+) to (\d+) \(in bits\)", s)
    if m and grows and int(m.group(2)) > int(m.group(1)):
        size = int(m.group(1))
        continue
    if grows and re.fullmatch(r"\d+ data member insertions?:", s):
        continue
    m = re.match(r"'.*', at offset (\d+) \(in bits\)", s)
    if m and grows and size is not None and int(m.group(1)) >= size:
        continue
    bad.append(s)
print("\n".join(bad))
PY
)
	if [ $((rc & 3)) -ne 0 ]; then
		fail "abidiff runs (exit $rc)"
		head -5 "$T/abidiff.txt" | sed 's/^/#   /'
	elif [ $((rc & 8)) -eq 0 ] && [ -z "$bad" ]; then
		ok "abidiff against the 0.1 ABI: no incompatible change (exit $rc)"
	else
		fail "abidiff against the 0.1 ABI: incompatible changes (exit $rc)"
		echo "$bad" | head -20 | sed 's/^/#   /'
	fi
fi
finish
