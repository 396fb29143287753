#!/bin/bash
# SPDX-License-Identifier: MIT
# Crash without data loss (issue 6): bench/soak kills -9 the xvl server, then
# (separately) the qemu-storage-daemon behind its vhost-user bridge, 20 times
# each at random moments under a write-and-verify workload.  Every
# acknowledged write must read back intact; nothing may fail, be lost, or be
# completed twice.  Prints TAP.
set -u
ROOT=${XVL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
XVL=${XVL_BIN:-$ROOT/build/src/cli/xvl}
n=0 fails=0
for target in server backend; do
	out=$(XVL_BIN=$XVL "$ROOT/bench/soak" --target "$target" --kills 20 --seed $((RANDOM + 1)) 2>&1)
	rc=$?
	kills=$(grep -c "^kill [0-9]*: done" <<<"$out")
	n=$((n + 1))
	if [ "$rc" -eq 0 ] && [ "$kills" -ge 20 ]; then
		echo "ok $n - kill -9 of the $target x$kills under load: $(grep -o '[0-9]* requests *[0-9.]* MiB' <<<"$out" | sed -n 2p), $(grep -o 'reconnections [0-9]*, device restarts [0-9]*' <<<"$out"), 0 mismatches, 0 failed, 0 twice"
	else
		fails=$((fails + 1))
		echo "not ok $n - kill -9 of the $target under load (exit $rc, $kills kills)"
		sed 's/^/#   /' <<<"$out" | tail -20
	fi
done
echo "1..$n"
[ "$fails" -eq 0 ]
