#!/usr/bin/env bash
# CLI: no silent damage, one-line errors (issue 9, CLI section).
#   Each wrong invocation of xvl blk / xvl run must: exit non-zero, print a
#   message that names the problem (at most one more line, the usual "see
#   --help"), and touch nothing: the device's bytes are compared with a copy
#   taken before, and xvl run must refuse at --check time, before any
#   compartment starts.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }

# refused DESCRIPTION PATTERN COMMAND...: non-zero exit, no signal, 1..2 lines on
# stderr, the first matching PATTERN (grep -E -i).
refused() {
	local d=$1 pat=$2
	shift 2
	timeout -k 2 20 "$@" >"$T/out" 2>"$T/err" </dev/null
	local rc=$? why="" lines
	lines=$(wc -l <"$T/err")
	if [ $rc -eq 0 ]; then
		why="exit status 0"
	elif [ $rc -ge 124 ]; then
		why="exit status $rc (timeout or signal)"
	elif [ "$lines" -lt 1 ] || [ "$lines" -gt 2 ]; then
		why="$lines lines on stderr, expected 1 (or 2 with a --help hint)"
	elif ! head -n 1 "$T/err" | grep -Eqi -- "$pat"; then
		why="first stderr line does not mention /$pat/"
	fi
	if [ -z "$why" ]; then
		ok "$d: exit $rc, \"$(head -n 1 "$T/err" | head -c 160)\""
	else
		fail "$d: $why"
		sed 's/^/#   stderr: /' "$T/err" | head -5
	fi
}
# untouched DESCRIPTION: the disk image still equals the reference copy
untouched() {
	if cmp -s "$T/disk.img" "$T/ref.img"; then
		ok "$1: device bytes unchanged"
	else
		fail "$1: device bytes changed ($(cmp "$T/disk.img" "$T/ref.img" 2>&1 | head -1))"
		cp "$T/ref.img" "$T/disk.img"
	fi
}

# ---------------------------------------------------------------- xvl blk
head -c 1M /dev/urandom >"$T/disk.img"
cp "$T/disk.img" "$T/ref.img"
S=$T/s.sock
start_server "$T/server.log" "$S" -d name=f0,backend=file,path="$T/disk.img" ||
	{ fail "server starts"; sed 's/^/#   /' "$T/server.log"; finish; }
ok "server starts (file f0, 1 MiB of random bytes)"

head -c 100 /dev/urandom >"$T/in100"
refused "write --input of a 100-byte file" '100 bytes|multiple of 512|sector' \
	"$XVL" blk write -c "$S" --offset 0 --input "$T/in100"
untouched "write --input of a 100-byte file"

head -c 1000 /dev/urandom >"$T/in1000"
refused "write --input of a 1000-byte file at offset 4096" '1000 bytes|multiple of 512|sector' \
	"$XVL" blk write -c "$S" --offset 4096 --input "$T/in1000"
untouched "write --input of a 1000-byte file"

: >"$T/empty"
refused "write --input of an empty file" 'empty' \
	"$XVL" blk write -c "$S" --offset 0 --input "$T/empty"
untouched "write --input of an empty file"

head -c 512 /dev/urandom >"$T/in512"
refused "write --input of 512 bytes with --length 1024" '512 bytes|short|length' \
	"$XVL" blk write -c "$S" --offset 0 --input "$T/in512" --length 1024
untouched "write --input shorter than --length"

refused "write --input of a directory" 'directory|regular' \
	"$XVL" blk write -c "$S" --offset 0 --input "$T"
untouched "write --input of a directory"

# a stream whose tail is not a whole sector: the rest of that sector is kept
# (read-modify-write), and stderr says so; exit 0.
head -c 700 /dev/urandom >"$T/in700"
if cat "$T/in700" | "$XVL" blk write -c "$S" --offset 8192 --input /dev/stdin >"$T/out" 2>"$T/err" &&
	grep -qi 'read-modify-write' "$T/err"; then
	ok "write --input from a pipe with a partial last sector: done read-modify-write, and said so"
else
	fail "write --input from a pipe with a partial last sector"
	sed 's/^/#   stderr: /' "$T/err" | head -3
fi
{ head -c 8192 "$T/ref.img"; cat "$T/in700"; tail -c +$((8192 + 700 + 1)) "$T/ref.img"; } >"$T/want.img"
if cmp -s "$T/disk.img" "$T/want.img"; then
	ok "the pipe's 700 bytes landed at 8192 and the 324 bytes after them are the device's own"
	cp "$T/disk.img" "$T/ref.img"
else
	fail "pipe write: device is not old bytes + 700 input bytes ($(cmp "$T/disk.img" "$T/want.img" 2>&1 | head -1))"
	cp "$T/disk.img" "$T/ref.img"
fi

refused "verify --size 100" 'size.*(512|sector)' \
	"$XVL" blk verify -c "$S" --size 100
untouched "verify --size 100"
refused "verify --size 0" 'size' \
	"$XVL" blk verify -c "$S" --size 0
untouched "verify --size 0"

refused "verify --qd -1" "qd.*-1" "$XVL" blk verify -c "$S" --qd -1
if [ "$(wc -l <"$T/err")" -eq 1 ]; then ok "verify --qd -1: one line, not two contradictory ones"; else fail "verify --qd -1: $(wc -l <"$T/err") lines: $(tr '\n' '|' <"$T/err")"; fi
untouched "verify --qd -1"
refused "verify --queues -1" "queues.*-1" "$XVL" blk verify -c "$S" --queues -1
if [ "$(wc -l <"$T/err")" -eq 1 ]; then ok "verify --queues -1: one line"; else fail "verify --queues -1: $(tr '\n' '|' <"$T/err")"; fi

if [ -w /dev/full ]; then
	refused "read --output /dev/full names the output, not the read" '/dev/full' \
		"$XVL" blk read -c "$S" --offset 0 --length 4096 --output /dev/full
	if grep -qi 'read failed' "$T/err"; then fail "read --output /dev/full still blames the read"; else ok "read --output /dev/full does not blame the read"; fi
else
	skip "read --output /dev/full (no /dev/full here)"
fi
refused "read --output into a missing directory" 'nodir' \
	"$XVL" blk read -c "$S" --offset 0 --length 4096 --output "$T/nodir/out"
untouched "after the read errors"

if alive "$SRV_PID"; then ok "server still up"; else fail "server still up"; fi
stop_server "$SRV_PID"

# ---------------------------------------------------------------- xvl run
SD=$T/state
mkdir -p "$T/dir.img"
head -c 100 /dev/zero >"$T/tiny.img"
truncate -s 8M "$T/ok.img"
# cfg DEVICE-KEYS PROGRAM: a config with one device compartment and one driver
cfg() {
	cat >"$T/run.cfg" <<EOF
name = "ce$$";
state_dir = "$SD";
windows = ( { name = "w"; size = "8M"; } );
devices = ( { name = "r"; $1 } );
compartments = ( { name = "d"; role = "device"; devices = ["r"]; },
  { name = "app"; role = "driver"; window = "w";
    program = [$2]; } );
EOF
}
INFO='"xvl", "blk", "info", "--connect", "{link}"'
# run_refused DESCRIPTION PATTERN: --check refuses, and so does a real run, before
# anything starts (no state dir, no compartment)
run_refused() {
	refused "run --check, $1" "$2" "$XVL" run --check "$T/run.cfg"
	refused "run, $1" "$2" "$XVL" run --quiet "$T/run.cfg"
	if grep -qi 'compartment' "$T/err" && grep -Eqi 'exited|listening' "$T/err"; then
		fail "run, $1: failed only after starting compartments"
	elif [ -e "$SD" ]; then
		fail "run, $1: state dir $SD was created"
	else
		ok "run, $1: refused before anything started"
	fi
	rm -rf "$SD"
}
cfg "backend = \"file\"; path = \"$T/dir.img\";" "$INFO"
run_refused "device file is a directory" 'dir\.img.*directory'
cfg "backend = \"file\"; path = \"$T/tiny.img\";" "$INFO"
run_refused "device file smaller than a sector" 'tiny\.img.*(100 bytes|sector|512)'
cfg "backend = \"ram\"; size = \"8M\";" '"/nonexistent/prog"'
run_refused "driver program that does not exist" '/nonexistent/prog'
cfg "backend = \"ram\"; size = \"8M\";" '"no-such-program-xvl"'
run_refused "driver program not on PATH" 'no-such-program-xvl'
cfg "backend = \"ram\"; size = \"8M\";" "\"$T\""
run_refused "driver program that is a directory" 'program'
cfg "backend = \"file\"; path = \"$T/ok.img\";" "$INFO"
check "run --check, a good config still passes" "$XVL" run --check "$T/run.cfg"
finish
