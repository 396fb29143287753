#!/usr/bin/env bash
# `xvl demo --plain --size 8M --ops 500` (no sandbox: valgrind cannot run under seccomp) under valgrind memcheck, children traced:
# the demo parent, the server, and the client processes must each report no
# errors and no definite/indirect leaks (no suppressions), and the demo must
# verify OK and leave nothing behind.  TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
command -v valgrind >/dev/null || { echo "1..0 # SKIP valgrind not installed"; exit 0; }
# An ASan build cannot run under valgrind.
if nm -an "$XVL" 2>/dev/null | grep -q __asan_init; then
	echo "1..0 # SKIP $XVL is built with AddressSanitizer"
	exit 0
fi

mkdir -p "$T/tmp"
TMPDIR=$T/tmp timeout -k 5 80 valgrind --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --trace-children=yes \
	--log-file="$T/vg.%p.log" \
	"$XVL" demo --plain --size 8M --ops 500 >"$T/demo.out" 2>"$T/demo.err" </dev/null
rc=$?
if [ $rc -eq 0 ]; then
	ok "xvl demo under valgrind exits 0"
else
	fail "xvl demo under valgrind exits 0 (exit $rc$([ $rc = 99 ] && echo ': valgrind found errors'))"
	tail -n 15 "$T/demo.out" "$T/demo.err" | sed 's/^/#   /'
fi
if grep -q 'every byte written was read back intact' "$T/demo.out"; then
	ok "demo verified every byte"
else
	fail "demo verified every byte"
fi

n=$(ls "$T"/vg.*.log 2>/dev/null | wc -l)
# demo, server, blk info, blk verify
if [ "$n" -ge 3 ]; then ok "valgrind traced $n processes (demo, server, clients)"; else fail "valgrind traced $n processes, expected at least 3"; fi
for f in "$T"/vg.*.log; do
	[ -f "$f" ] || continue
	cmd=$(sed -n 's/^==[0-9]*== Command: //p' "$f" | head -1 | sed "s|$T|\$T|g; s|$XVL|xvl|")
	cmd=${cmd%% --dev*}
	sum=$(grep -h 'ERROR SUMMARY' "$f" | tail -1)
	if echo "$sum" | grep -q 'ERROR SUMMARY: 0 errors' &&
		! grep -Eq '(definitely|indirectly) lost: [1-9]' "$f"; then
		ok "memcheck clean: ${cmd:0:100}"
	else
		fail "memcheck clean: ${cmd:0:100}"
		grep -v '^==[0-9]*== *$' "$f" | sed -n '/Invalid\|uninitialised\|Uninitialised\|lost\|Syscall param\|ERROR SUMMARY/,+12p' |
			head -60 | sed 's/^/#   /'
	fi
done

left=$(ls -A "$T/tmp")
expect_eq "" "$left" "demo removed its temporary directory"
for p in $(pgrep -f -- "$T/tmp/"); do
	fail "process left behind: $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"
done
finish
