#!/usr/bin/env bash
# `meson install` into a scratch root, then use only what was installed:
#   - the expected files are there (library + soname link, header, xvloop.pc,
#     xvl, man pages, the fio engine when the build has one)
#   - the installed libxvloop.so.0 exports exactly the version script's list
#   - a program outside the tree (tests/e2e/abi_prog.c) compiles with nothing
#     but `pkg-config --cflags --libs xvloop` (PKG_CONFIG_SYSROOT_DIR into the
#     root), is bound to the XVL_0.1 symbol versions, and runs against an
#     installed `xvl server` (LD_LIBRARY_PATH into the root): I/O, and the
#     option structs' size rules
#   - fio runs with the installed engine (when the build has one)
#   - the installed `xvl demo` runs
# Uses the build directory $XVL_BUILD (default build/), as built.  TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

B=${XVL_BUILD:-$E2E_ROOT/build}
[ -f "$B/build.ninja" ] || { echo "1..0 # SKIP no build directory at $B"; exit 0; }

R=$T/root
if ! DESTDIR='' meson install -C "$B" --no-rebuild --destdir "$R" >"$T/install.log" 2>&1; then
	fail "meson install --destdir"
	tail -n 15 "$T/install.log" | sed 's/^/#   /'
	finish
fi
ok "meson install --destdir into a scratch root"

# Where this build installs (prefix, libdir: from the build's own options).
eval "$(meson introspect --buildoptions "$B" | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print("PREFIX=%s LIBDIR=%s FIO_SRC=%s" % (o["prefix"], o["libdir"], o.get("fio_src", "")))')"
case $LIBDIR in /*) ;; *) LIBDIR=$PREFIX/$LIBDIR ;; esac
L=$R$LIBDIR

missing=""
for f in "$L/libxvloop.so.0" "$L/libxvloop.so" "$L/pkgconfig/xvloop.pc" \
	"$R$PREFIX/include/xvloop/xvl.h" "$R$PREFIX/bin/xvl" \
	"$R$PREFIX/share/man/man1/xvl.1" "$R$PREFIX/share/man/man1/xvl-blk.1" \
	"$R$PREFIX/share/man/man3/libxvloop.3" "$R$PREFIX/share/man/man3/xvl_blk_open.3" \
	"$R$PREFIX/share/man/man5/xvloop-partitioner.5" "$R$PREFIX/share/man/man5/xvloop-window.5"; do
	[ -e "$f" ] || missing+=" ${f#"$R"}"
done
if [ -n "$FIO_SRC" ]; then
	[ -e "$L/fio/xvloop-fio.so" ] || missing+=" $LIBDIR/fio/xvloop-fio.so"
fi
expect_eq "" "$missing" "library, soname link, header, xvloop.pc, xvl, man pages${FIO_SRC:+, fio engine} installed"

soname=$(readelf -d "$L/libxvloop.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
expect_eq libxvloop.so.0 "$soname" "installed library's soname"
want=$(sed -e 's,/\*.*\*/,,' "$E2E_ROOT/src/client/libxvloop.map" |
	sed -n 's/^[[:space:]]*\(xvl_[a-z0-9_]*\);.*/\1/p' | sort)
got=$(nm -D --defined-only "$L/libxvloop.so.0" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort)
expect_eq "$want" "$got" "installed library exports exactly the version script's symbols"

# ---------------------------------------------------------------- a program outside the tree
export PKG_CONFIG_PATH=$L/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R PKG_CONFIG_LIBDIR=$L/pkgconfig
flags=$(pkg-config --cflags --libs xvloop 2>&1)
if [ $? -eq 0 ]; then ok "pkg-config --cflags --libs xvloop: $flags"; else fail "pkg-config: $flags"; fi
mkdir -p "$T/outside" && cp "$E2E_ROOT/tests/e2e/abi_prog.c" "$T/outside/"
# shellcheck disable=SC2086  # the flags are words
check "abi_prog.c compiles and links with only pkg-config's flags (-Wall -Wextra -Werror)" \
	cc -std=c11 -Wall -Wextra -Werror -o "$T/outside/abi_prog" "$T/outside/abi_prog.c" $flags
versions=$(objdump -T "$T/outside/abi_prog" 2>/dev/null | awk '/xvl_/ { v = $(NF-1); gsub(/[()]/, "", v); print v }' | sort -u | tr '\n' ' ')
expect_eq "XVL_0.1 " "$versions" "the program's xvl_* references are bound to version XVL_0.1"
needed=$(readelf -d "$T/outside/abi_prog" | sed -n 's/.*(NEEDED).*\[\(libxvloop[^]]*\)\]/\1/p')
expect_eq libxvloop.so.0 "$needed" "the program needs libxvloop.so.0"

export LD_LIBRARY_PATH=$L
XVL=$R$PREFIX/bin/xvl
truncate -s 16M "$T/disk.img"
# The socket file exists from bind(), a moment before listen(): wait until a
# client is accepted (under load the moment is long enough to be hit).
wait_listening() {
	for _ in $(seq 1 50); do
		"$XVL" blk info -c "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
if start_server "$T/server.log" "$T/s.sock" --dev name=d0,backend=file,path="$T/disk.img" &&
	wait_listening "$T/s.sock"; then
	ok "installed xvl server starts"
	"$T/outside/abi_prog" "$T/s.sock" >"$T/prog.out" 2>&1
	rc=$?
	while read -r verdict what; do
		case $verdict in
		PASS) ok "abi_prog: $what" ;;
		FAIL) fail "abi_prog: $what" ;;
		*) note "abi_prog: $verdict $what" ;;
		esac
	done <"$T/prog.out"
	expect_eq 0 "$rc" "abi_prog exit status"
	[ "$rc" -eq 0 ] || tail -n 10 "$T/server.log" | sed 's/^/#   server: /'
	actual=$(ldd "$T/outside/abi_prog" | awk '/libxvloop/ { print $3 }')
	expect_eq "$L/libxvloop.so.0" "$actual" "abi_prog ran against the installed library"
	if [ -n "$FIO_SRC" ] && command -v fio >/dev/null; then
		(cd "$T" && timeout 60 fio --name=installed --ioengine=external:"$L/fio/xvloop-fio.so" \
			--uri="xvl:$T/s.sock" --rw=randwrite --bs=4k --size=4M --iodepth=4 \
			--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0) >"$T/fio.log" 2>&1
		if [ $? -eq 0 ] && grep -q "err= 0" "$T/fio.log"; then
			ok "fio --ioengine=external:$LIBDIR/fio/xvloop-fio.so writes and verifies 4 MiB"
		else
			fail "fio with the installed engine"
			tail -n 10 "$T/fio.log" | sed 's/^/#   /'
		fi
	fi
	stop_server "$SRV_PID"
else
	fail "installed xvl server starts"
	sed 's/^/#   /' "$T/server.log"
fi

check "installed xvl demo" timeout 60 "$XVL" demo --size 16M --ops 2000
finish
