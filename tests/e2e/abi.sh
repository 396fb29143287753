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

echo '#include <xvloop/xvl.h>' >"$T/h.c"
if cc -std=gnu11 -I"$E2E_ROOT/include" -fsyntax-only -aux-info "$T/aux.txt" "$T/h.c" 2>"$T/cc.log"; then
	declared=$(grep 'xvloop/xvl\.h:' "$T/aux.txt" | sed -n 's/.*[ *]\(xvl_[a-z0-9_]*\) (.*/\1/p' | sort)
	exported=$(echo "$want" | sed 's/@@.*//' | sort)
	if [ "$declared" = "$exported" ]; then
		ok "xvl.h declares exactly the exported functions ($(echo "$declared" | grep -c .))"
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
finish
