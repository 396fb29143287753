#!/usr/bin/env bash
# tests/run.sh [--build]
#
# The one test runner (`make check` calls it with --build).  Suites:
#   compile   (--build only) every configuration: build, build-asan,
#             build-aarch64, build-riscv64, freestanding core, fuzzers; each
#             stage is one check, a failed one prints its compiler errors
#   tests:DIR meson tests of each build dir in BUILD_DIRS that exists (and
#             built): the TAP lines of every test are counted; a test that
#             fails without a `not ok` line (crash, timeout, non-TAP) counts 1
#   e2e       every executable tests/e2e/*.sh, under `timeout E2E_TIMEOUT`;
#             TAP lines counted, a non-zero exit without `not ok`, or a
#             timeout, counts one failure
#   fuzz      each libFuzzer target for FUZZ_SMOKE seconds (one check each)
# Prints a summary per suite; the last line is exactly "N passed, N failed".
# Exit status is non-zero when anything failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
BUILD_DIRS=${BUILD_DIRS:-build build-asan build-aarch64 build-riscv64}
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
FUZZ_SMOKE=${FUZZ_SMOKE:-10}
MAKE=${MAKE:-make}
LOGS=$root/build-logs
mkdir -p "$LOGS"
# sanitizer findings fail the test that has them (UBSan only warns by default)
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export XVL_ROOT=$root XVL_BUILD=$root/build XVL_BIN=$root/build/src/cli/xvl

do_build=0
[ "${1:-}" = --build ] && do_build=1

total_pass=0 total_fail=0 total_skip=0
summary=()
t_start=$(date +%s)

# count TAP lines in a file: prints "pass fail skip"
tap_count() {
	awk '
		/^not ok([ \t]|$)/ { if (tolower($0) ~ /#[ \t]*todo/) s++; else f++; next }
		/^ok([ \t]|$)/     { if (tolower($0) ~ /#[ \t]*skip/) s++; else p++; next }
		END { printf "%d %d %d\n", p, f, s }' "$1"
}

suite_done() { # name pass fail skip seconds
	total_pass=$((total_pass + $2)) total_fail=$((total_fail + $3)) total_skip=$((total_skip + $4))
	summary+=("$(printf '%-20s %5d passed, %3d failed, %3d skipped  (%ss)' "$1" "$2" "$3" "$4" "$5")")
	echo "== $1: $2 passed, $3 failed, $4 skipped ($5 s)"
}

show_errors() { # log file: compiler/linker/test errors if any, else its tail
	local e
	e=$(grep -E -B2 -A6 'error:|Error|ERROR|FAILED:|undefined reference|not ok|needs symbols|does not compile' "$1" | head -100)
	if [ -n "$e" ]; then
		echo "#   ---- errors from ${1#$root/}"
		printf '%s\n' "$e" | sed 's/^/#   /'
	else
		echo "#   ---- last lines of ${1#$root/}"
		tail -n 30 "$1" | sed 's/^/#   /'
	fi
}

declare -A built
for d in $BUILD_DIRS; do built[$d]=1; done

# ---------------------------------------------------------------- build
if [ $do_build -eq 1 ]; then
	echo "== compile"
	p=0 f=0 t0=$(date +%s)
	stages="$BUILD_DIRS build-aarch64-static freestanding"
	[ -n "$(scripts/fuzz.sh list)" ] && stages+=" fuzz-build"
	for st in $stages; do
		s0=$(date +%s)
		if $MAKE --no-print-directory "$st" >"$LOGS/$st.log" 2>&1; then
			p=$((p + 1))
			echo "ok - build $st ($(($(date +%s) - s0)) s)"
			[ "$st" = freestanding ] && grep '^freestanding:' "$LOGS/$st.log" | sed 's/^/#   /'
		else
			f=$((f + 1))
			built[$st]=0
			echo "not ok - build $st failed ($(($(date +%s) - s0)) s; full log: build-logs/$st.log)"
			show_errors "$LOGS/$st.log"
		fi
	done
	suite_done compile $p $f 0 $(($(date +%s) - t0))
fi

# ---------------------------------------------------------------- meson tests
# Parse meson's JSON test log: one line per test, "name result pass fail skip".
meson_tap() {
	python3 - "$1" <<'PY'
import json, re, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    t = json.loads(line)
    out = t.get("stdout") or ""
    p = f = s = 0
    for l in out.splitlines():
        if re.match(r"not ok(\s|$)", l):
            if re.search(r"#\s*todo", l, re.I): s += 1
            else: f += 1
        elif re.match(r"ok(\s|$)", l):
            if re.search(r"#\s*skip", l, re.I): s += 1
            else: p += 1
    res = t.get("result", "?")
    if res in ("OK", "EXPECTEDFAIL"):
        if p + f + s == 0: p = 1          # non-TAP test that passed
    elif res == "SKIP":
        if p + f + s == 0: s = 1
    elif f == 0:
        f = 1                             # crashed / timed out / bad plan
    name = t.get("name", "?").replace(" ", "_")
    print(name, res, p, f, s)
    for l in out.splitlines():
        if re.match(r"not ok(\s|$)", l) and not re.search(r"#\s*todo", l, re.I):
            print("#  " + l)
PY
}

for d in $BUILD_DIRS; do
	[ "${built[$d]}" = 1 ] || { echo "== tests:$d: not run, $d did not build (counted in compile)"; continue; }
	[ -f "$d/build.ninja" ] || { echo "== $d: no build directory (run make check)"; continue; }
	echo "== tests:$d"
	t0=$(date +%s)
	mult=1
	case $d in *asan*) mult=3 ;; build-aarch64|build-riscv64) mult=5 ;; esac
	rm -f "$d/meson-logs/xvl-check.json" "$d/meson-logs/xvl-check.txt"
	meson test -C "$d" --no-rebuild --print-errorlogs --logbase xvl-check \
		--timeout-multiplier $mult >"$LOGS/test-$d.log" 2>&1
	mrc=$?
	p=0 f=0 s=0
	if [ -f "$d/meson-logs/xvl-check.json" ]; then
		while read -r line; do
			case $line in "#"*) echo "#   ${line#\#}"; continue ;; esac
			read -r name res tp tf ts <<<"$line"
			p=$((p + tp)) f=$((f + tf)) s=$((s + ts))
			echo "$( [ "$tf" -eq 0 ] && echo ok || echo 'not ok') - $d: $name: $res, $tp ok, $tf not ok, $ts skipped"
		done < <(meson_tap "$d/meson-logs/xvl-check.json")
	fi
	if [ $mrc -ne 0 ]; then
		# meson itself may fail before any test ran: count that once.
		[ $f -eq 0 ] && f=1
		show_errors "$LOGS/test-$d.log"
	fi
	suite_done "tests:$d" $p $f $s $(($(date +%s) - t0))
done

# ---------------------------------------------------------------- e2e
e2e=()
for s in tests/e2e/*.sh; do
	# scripts that a meson.build registers run under meson test, in every build dir
	grep -qs "find_program('$(basename "$s")')" tests/e2e/meson.build && continue
	[ -f "$s" ] && [ -x "$s" ] && e2e+=("$s")
done
if [ ${#e2e[@]} -gt 0 ]; then
	echo "== e2e"
	p=0 f=0 sk=0 t0=$(date +%s)
	mkdir -p "$LOGS/e2e"
	for s in "${e2e[@]}"; do
		n=$(basename "$s" .sh)
		log=$LOGS/e2e/$n.log
		s0=$(date +%s)
		# output to a file, not a pipe: a daemon left behind must not hang us
		timeout -k 10 "$E2E_TIMEOUT" "$s" >"$log" 2>&1 </dev/null
		rc=$?
		read -r tp tf ts < <(tap_count "$log")
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			tf=$((tf + 1))
			echo "not ok - e2e $n: timed out after ${E2E_TIMEOUT}s"
		elif [ $rc -ne 0 ] && [ "$tf" -eq 0 ]; then
			tf=1
			echo "not ok - e2e $n: exit status $rc"
		fi
		p=$((p + tp)) f=$((f + tf)) sk=$((sk + ts))
		if [ "$tf" -eq 0 ]; then
			echo "ok - e2e $n: $tp ok, $ts skipped ($(($(date +%s) - s0)) s)"
		else
			echo "not ok - e2e $n: $tp ok, $tf not ok ($(($(date +%s) - s0)) s; log: build-logs/e2e/$n.log)"
			grep -E '^not ok' "$log" | sed 's/^/#   /'
			tail -n 30 "$log" | sed 's/^/#   /'
		fi
	done
	suite_done e2e $p $f $sk $(($(date +%s) - t0))
fi

# ---------------------------------------------------------------- fuzz smoke
if [ "${built[fuzz-build]:-1}" = 0 ]; then
	echo "== fuzz: not run, the fuzz targets did not build (counted in compile)"
elif [ -n "$(scripts/fuzz.sh list)" ] && [ "$FUZZ_SMOKE" != 0 ]; then
	echo "== fuzz (${FUZZ_SMOKE}s each)"
	t0=$(date +%s)
	if [ $do_build -eq 0 ]; then
		# without --build, make sure the targets are fresh
		$MAKE --no-print-directory fuzz-build >"$LOGS/fuzz-build.log" 2>&1 || show_errors "$LOGS/fuzz-build.log"
	fi
	scripts/fuzz.sh run "$FUZZ_SMOKE" >"$LOGS/fuzz.log" 2>&1
	cat "$LOGS/fuzz.log"
	read -r p f s < <(tap_count "$LOGS/fuzz.log")
	suite_done fuzz $p $f $s $(($(date +%s) - t0))
fi

# ---------------------------------------------------------------- summary
echo
echo "== summary ($(($(date +%s) - t_start)) s)"
for l in "${summary[@]}"; do echo "   $l"; done
[ $total_skip -gt 0 ] && echo "   ($total_skip skipped)"
echo "$total_pass passed, $total_fail failed"
[ $total_fail -eq 0 ]
