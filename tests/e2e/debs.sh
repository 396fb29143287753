#!/usr/bin/env bash
# The Debian packages, from a copy of the tree (the source tree stays clean):
#   - `dpkg-buildpackage -us -uc -b` builds libxvloop0, libxvloop-dev, xvloop
#     (with the fio engine when the build directory was configured with fio's
#     headers; dpkg-gensymbols -c4 checks debian/libxvloop0.symbols)
#   - lintian reports no error (warnings are shown as notes)
#   - each .deb unpacked (dpkg -x) into a scratch root holds what it should
#   - from the unpacked files only: a program built with pkg-config against
#     libxvloop-dev runs against the packaged library and the packaged
#     `xvl server`, and the packaged `xvl demo` runs
# The copy: the files git knows (tracked and untracked, not ignored) from the
# working tree, so a clean clone and a tree with local edits both work.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

for tool in dpkg-buildpackage dh lintian fakeroot; do
	command -v "$tool" >/dev/null || {
		fail "$tool is installed (scripts/deps.sh installs debhelper, lintian, fakeroot, dpkg-dev)"
		finish
	}
done

ver=$(dpkg-parsechangelog -l "$E2E_ROOT/debian/changelog" -S Version)
S=$T/src/xvloop-$ver
mkdir -p "$S"
if git -C "$E2E_ROOT" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$E2E_ROOT" && git ls-files -z -c -o --exclude-standard |
		tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$S"
else
	tar -C "$E2E_ROOT" --exclude='./build*' --exclude=./.fio-src --exclude=./.git -cf - . | tar -xf - -C "$S"
fi
[ -f "$S/debian/rules" ] && ok "copy of the tree in $S" || { fail "copy of the tree has debian/rules"; finish; }

# The fio engine needs fio's configured headers: the ones the build used.
B=${XVL_BUILD:-$E2E_ROOT/build}
fio_src=""
if [ -f "$B/build.ninja" ]; then
	fio_src=$(meson introspect --buildoptions "$B" | python3 -c '
import json, sys
print(next((x["value"] for x in json.load(sys.stdin) if x["name"] == "fio_src"), ""))')
fi
[ -n "$fio_src" ] && [ -f "$fio_src/config-host.h" ] || fio_src=""
note "fio engine: ${fio_src:-not built (the build directory has no fio_src)}"

t0=$(date +%s)
if (cd "$S" && XVL_FIO_SRC=$fio_src DEB_BUILD_OPTIONS="parallel=2" \
	dpkg-buildpackage -us -uc -b) >"$T/build.log" 2>&1; then
	ok "dpkg-buildpackage -us -uc -b ($(($(date +%s) - t0)) s)"
else
	fail "dpkg-buildpackage -us -uc -b"
	grep -E -B3 -A10 'error|Error|dpkg-gensymbols' "$T/build.log" | head -40 | sed 's/^/#   /'
	tail -n 20 "$T/build.log" | sed 's/^/#   /'
	finish
fi
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
debs=()
for p in libxvloop0 libxvloop-dev xvloop; do
	f=$T/src/${p}_${ver}_${arch}.deb
	if [ -f "$f" ]; then debs+=("$f"); else fail "package $p was built"; fi
done
expect_eq 3 "${#debs[@]}" "libxvloop0, libxvloop-dev and xvloop built"
dkms_deb=$T/src/xvloop-dkms_${ver}_all.deb
if [ -f "$dkms_deb" ]; then
	dkroot=$T/dkms-root
	dpkg -x "$dkms_deb" "$dkroot"
	dk=$dkroot/usr/src/xvloop-$ver
	if [ -f "$dk/dkms.conf" ] && [ -f "$dk/kernel/Kbuild" ] && [ -f "$dk/src/core/mailbox.c" ] &&
		grep -q 'BUILT_MODULE_NAME\[0\]="xvl_virtio"' "$dk/dkms.conf" &&
		dpkg-deb -I "$dkms_deb" postinst 2>/dev/null | grep -q dkms; then
		ok "xvloop-dkms: /usr/src/xvloop-$ver with dkms.conf, kernel/ and the core it compiles in; postinst runs dkms"
	else
		fail "xvloop-dkms: sources, dkms.conf or postinst missing"
		dpkg -c "$dkms_deb" | sed 's/^/#   /' | head -20
	fi
	# the packaged sources build the module the way DKMS does (make -C KERNEL M=.../kernel)
	kb=$("$E2E_ROOT/scripts/guest/kernel.sh" --headers 2>/dev/null | sed -n 's/^KBUILD=//p')
	if [ -n "$kb" ] && [ -d "$kb" ]; then
		cp -r "$dk" "$T/dkms-build"
		if make -C "$kb" M="$T/dkms-build/kernel" W=1 modules >"$T/dkms-build.log" 2>&1 &&
			[ -f "$T/dkms-build/kernel/xvl_virtio.ko" ] && ! grep -q 'warning:' "$T/dkms-build.log"; then
			ok "xvloop-dkms: the packaged sources build xvl_virtio.ko against $(basename "$kb") (W=1, no warning)"
		else
			fail "xvloop-dkms: the packaged sources do not build"
			grep -E 'error|warning' "$T/dkms-build.log" | head -10 | sed 's/^/#   /'
		fi
	else
		skip "xvloop-dkms build: no guest kernel headers (scripts/guest/kernel.sh --headers)"
	fi
else
	fail "package xvloop-dkms was built"
fi

changes=$T/src/xvloop_${ver}_${arch}.changes
lintian --fail-on error --tag-display-limit 0 "$changes" >"$T/lintian.log" 2>&1
rc=$?
sed 's/^/#   lintian: /' "$T/lintian.log"
nerr=$(grep -c '^E: ' "$T/lintian.log")
[ $rc -eq 0 ] && [ "$nerr" -eq 0 ] && ok "lintian: no errors ($(grep -c '^W: ' "$T/lintian.log") warnings)" ||
	fail "lintian: $nerr error(s), exit $rc"

R=$T/root
for f in "${debs[@]}"; do dpkg -x "$f" "$R"; done
M=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
L=$R/usr/lib/$M
missing=""
for f in "$L/libxvloop.so.0" "$L/libxvloop.so" "$L/pkgconfig/xvloop.pc" /usr/include/xvloop/xvl.h \
	/usr/bin/xvl /usr/share/man/man1/xvl.1.gz /usr/share/man/man3/xvl_blk_open.3.gz \
	/usr/share/man/man5/xvloop-window.5.gz /usr/share/doc/libxvloop0/copyright; do
	case $f in /usr/*) f=$R$f ;; esac
	[ -e "$f" ] || missing+=" ${f#"$R"}"
done
[ -n "$fio_src" ] && { [ -e "$L/fio/xvloop-fio.so" ] || missing+=" /usr/lib/$M/fio/xvloop-fio.so"; }
expect_eq "" "$missing" "the unpacked packages hold the library, header, .pc, xvl, man pages${fio_src:+, fio engine}"
lib_only=$(dpkg -c "${debs[0]}" | awk '{ print $6 }' | grep -v -E '/$|libxvloop\.so\.0|/usr/share/doc/libxvloop0/' | tr '\n' ' ')
expect_eq "" "$lib_only" "libxvloop0 holds only the shared library and its docs"

export PKG_CONFIG_PATH=$L/pkgconfig PKG_CONFIG_LIBDIR=$L/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R
# shellcheck disable=SC2046  # pkg-config's output is words
check "a program builds with pkg-config against the unpacked libxvloop-dev" \
	cc -std=c11 -Wall -Wextra -Werror -o "$T/abi_prog" "$E2E_ROOT/tests/e2e/abi_prog.c" \
	$(pkg-config --cflags --libs xvloop)
export LD_LIBRARY_PATH=$L
XVL=$R/usr/bin/xvl
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
	check "the program runs against the packaged library and the packaged xvl server" \
		"$T/abi_prog" "$T/s.sock"
	stop_server "$SRV_PID"
else
	fail "the packaged xvl server starts"
	sed 's/^/#   /' "$T/server.log"
fi
check "the packaged xvl demo" timeout 60 "$XVL" demo --size 16M --ops 2000
finish
