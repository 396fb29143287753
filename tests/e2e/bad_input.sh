#!/usr/bin/env bash
# Bad input, end to end.
#   CLI: missing or too small disk files, unknown --dev keys, bad queue sizes,
#   duplicate device names, a socket path in use, nobody listening, bad
#   offsets: a one-line error on stderr that names the problem, exit 2 for
#   usage errors and 1 for runtime errors, no signal, no leftover process or
#   socket file.
#   Link: tests/e2e/badpeer.c speaks the protocol by hand (wrong version,
#   truncated/oversized/unknown messages, unknown devices, bad queues and
#   windows, missing VERSION_1...); each must be refused while a well-behaved
#   client keeps verifying on another connection, and the server must end up
#   with the fds and window mappings it started with.
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

[ -x "$XVL" ] || { echo "1..0 # SKIP no xvl binary at $XVL"; exit 0; }
R=$E2E_ROOT

# ---------------------------------------------------------------- CLI errors
# cli_err DESCRIPTION WANT_STATUS PATTERN COMMAND...: run COMMAND (10 s cap),
# expect WANT_STATUS, exactly one stderr line matching PATTERN (grep -E -i),
# and no process left that mentions our temp dir.
cli_err() {
	local d=$1 want=$2 pat=$3
	shift 3
	timeout -k 2 10 "$@" >"$T/out" 2>"$T/err" </dev/null
	local rc=$? why=""
	local lines
	lines=$(wc -l <"$T/err")
	if [ $rc -ne "$want" ]; then
		why="exit status $rc, expected $want"
		[ $rc -ge 124 ] && why="$why (timeout or signal)"
	elif [ "$lines" -ne 1 ]; then
		why="$lines lines on stderr, expected one"
	elif ! grep -Eqi -- "$pat" "$T/err"; then
		why="message does not mention /$pat/"
	else
		local p q known
		for p in $(pgrep -f -- "$T/"); do
			known=0
			for q in "${E2E_PIDS[@]}"; do [ "$p" = "$q" ] && known=1; done
			[ $known = 1 ] || why="a process is left: $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"
		done
	fi
	if [ -z "$why" ]; then
		ok "$d: exit $want, \"$(head -c 150 "$T/err")\""
	else
		fail "$d: $why"
		sed 's/^/#   stderr: /' "$T/err" | head -5
	fi
}
nosock() { # DESCRIPTION PATH
	if [ -e "$2" ]; then fail "$1: $2 left behind"; else ok "$1: no socket file left"; fi
}

truncate -s 1M "$T/small.img"
A=$T/a.sock

cli_err "server: disk file that does not exist" 1 'nope\.img' \
	"$XVL" server -l "$A" -d name=d0,backend=file,path="$T/nope.img"
nosock "server: disk file that does not exist" "$A"
cli_err "server: disk file smaller than size=" 1 'small\.img' \
	"$XVL" server -l "$A" -d name=d0,backend=file,path="$T/small.img",size=8M
nosock "server: disk file smaller than size=" "$A"
cli_err "server: O_DIRECT on a missing file" 1 'missing\.img' \
	"$XVL" server -l "$A" -d name=d0,backend=file,path="$T/missing.img",direct=on
cli_err "server: unknown --dev key" 2 'bogus' \
	"$XVL" server -l "$A" -d name=d0,backend=ram,size=1M,bogus=1
cli_err "server: queue-size=1000" 2 'queue-size' \
	"$XVL" server -l "$A" -d name=d0,backend=ram,size=1M,queue-size=1000
cli_err "server: queues=17" 2 'queues' \
	"$XVL" server -l "$A" -d name=d0,backend=ram,size=1M,queues=17
cli_err "server: size=12Q" 2 'size' \
	"$XVL" server -l "$A" -d name=d0,backend=ram,size=12Q
cli_err "server: unknown backend" 2 'backend|floppy' \
	"$XVL" server -l "$A" -d name=d0,backend=floppy,size=1M
cli_err "server: two devices with the same name" 2 'dup0' \
	"$XVL" server -l "$A" -d name=dup0,backend=ram,size=1M -d name=dup0,backend=null,size=1M
nosock "server: two devices with the same name" "$A"
cli_err "server: no --listen" 2 'listen' \
	"$XVL" server -d name=d0,backend=ram,size=1M
echo "precious" >"$T/notasock"
cli_err "server: --listen path is a regular file" 1 'notasock' \
	"$XVL" server -l "$T/notasock" -d name=d0,backend=ram,size=1M
expect_eq precious "$(cat "$T/notasock")" "server: the regular file at the --listen path is untouched"

# a live server, then a second one on the same path
S=$T/s.sock
start_server "$T/server.log" "$S" -d name=r0,backend=ram,size=16M -d name=f0,backend=file,path="$T/small.img"
[ $? -eq 0 ] && ok "server starts (ram r0, file f0)" || { fail "server starts"; sed 's/^/#   /' "$T/server.log"; finish; }
SRV=$SRV_PID
cli_err "server: socket path already in use by a live server" 1 's\.sock' \
	"$XVL" server -l "$S" -d name=d0,backend=ram,size=1M
if [ -S "$S" ] && alive "$SRV"; then ok "the live server and its socket are untouched"; else fail "the live server and its socket are untouched"; fi

# clients
cli_err "blk: socket nobody listens on (no file)" 1 'nobody\.sock' \
	"$XVL" blk info -c "$T/nobody.sock"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])' "$T/stale.sock"
cli_err "blk: stale socket file nobody listens on" 1 'stale\.sock' \
	"$XVL" blk info -c "$T/stale.sock"
cli_err "blk: --queue-size 1000" 2 'queue-size' \
	"$XVL" blk verify -c "$S" --queue-size 1000
cli_err "blk: --queues 0" 2 'queues' \
	"$XVL" blk verify -c "$S" --queues 0
cli_err "blk: --offset not a multiple of 512" 2 'offset' \
	"$XVL" blk read -c "$S" --offset 100 --length 512
cli_err "blk: read past the end of the device" 1 'capacity|end' \
	"$XVL" blk read -c "$S" --offset 16M --length 4K
cli_err "blk: write --input of a file that does not exist" 1 'noinput\.bin' \
	"$XVL" blk write -c "$S" --offset 0 --input "$T/noinput.bin"
cli_err "blk: unknown device name" 1 'nosuchdev' \
	"$XVL" blk info -c "$S" -d nosuchdev
cli_err "blk: --min larger than --max" 2 'min' \
	"$XVL" blk verify -c "$S" --min 1M --max 4K
cli_err "blk: unknown subcommand" 2 'frobnicate' \
	"$XVL" blk frobnicate -c "$S"
if alive "$SRV"; then ok "server still up after the CLI errors"; else fail "server still up after the CLI errors"; fi

# ---------------------------------------------------------------- hostile peer
BP=$T/badpeer
if ! gcc -std=gnu11 -O1 -g -Wall -Wextra -Werror -D_GNU_SOURCE \
	-I"$R/include" -I"$R/src/core" -I"$R/src/os" \
	"$R/tests/e2e/badpeer.c" "$R/src/core/proto.c" "$R/src/core/window.c" "$R"/src/os/os_*.c \
	-o "$BP" >"$T/cc.log" 2>&1; then
	fail "badpeer builds"
	sed 's/^/#   /' "$T/cc.log" | head -20
	finish
fi
ok "badpeer builds against src/core/proto.c and src/os"

sleep 0.1
BASE=$(res_of "$SRV")
note "server baseline: $BASE"

# a well-behaved client verifies on f0 the whole time the bad peer runs
bg "$T/good.log" "$XVL" blk verify -c "$S" -d f0 -Q 1 --min 512 --max 64K --seed 7 \
	--ops 100000000 --time 3
GOOD=$BG_PID
sleep 0.3
"$BP" "$S" >"$T/bp.out" 2>"$T/bp.err"
bprc=$?
while read -r verdict rest; do
	case $verdict in
	PASS) ok "link: $rest" ;;
	FAIL) fail "link: $rest" ;;
	*) note "badpeer: $verdict $rest" ;;
	esac
done <"$T/bp.out"
[ $bprc -le 1 ] || { fail "badpeer exit status $bprc"; sed 's/^/#   /' "$T/bp.err"; }
if alive "$SRV"; then ok "server still up after the bad peer"; else fail "server still up after the bad peer"; tail -5 "$T/server.log" | sed 's/^/#   /'; fi
if wait "$GOOD"; then
	ok "well-behaved client on another connection verified OK during the bad peer"
else
	fail "well-behaved client on another connection verified OK during the bad peer"
	tail -n 6 "$T/good.log" | sed 's/^/#   /'
fi
check "the device the bad peer abused (r0) verifies OK afterwards" \
	"$XVL" blk verify -c "$S" -d r0 -Q 1 --min 512 --max 1M --seed 8 --ops 300
if back_to "$SRV" "$BASE"; then
	ok "no fds or window mappings leaked in the server ($BASE)"
else
	fail "no fds or window mappings leaked in the server (baseline $BASE, now $(res_of "$SRV"))"
	ls -l "/proc/$SRV/fd" | sed 's/^/#   /'
	grep memfd "/proc/$SRV/maps" | sed 's/^/#   /'
fi
if grep -Eq 'malformed|refused' "$T/server.log"; then
	ok "server logged the refusals"
else
	fail "server logged the refusals"
fi

stop_server "$SRV"
expect_eq 0 $? "server stops on SIGTERM with status 0 after all that"
nosock "server stopped" "$S"

# ---------------------------------------------------------------- window shrunk under the server
# A driver that hands over an unsealed memfd and shrinks it afterwards: the
# server must refuse such a window (or survive touching it), never SIGBUS.
S2=$T/s2.sock
start_server "$T/server2.log" "$S2" -d name=r0,backend=ram,size=16M
SRV2=$SRV_PID
"$BP" "$S2" shrink >"$T/bp2.out" 2>&1
sleep 0.2
if alive "$SRV2" && grep -q '^PASS' "$T/bp2.out"; then
	ok "server survives a driver that shrinks its window after SET_WINDOW"
else
	fail "server survives a driver that shrinks its window after SET_WINDOW"
	sed 's/^/#   /' "$T/bp2.out"
	tail -n 3 "$T/server2.log" | sed 's/^/#   /'
fi
check "and still serves a well-behaved client" \
	"$XVL" blk verify -c "$S2" --min 512 --max 1M --seed 9 --ops 200
stop_server "$SRV2"
expect_eq 0 $? "that server stops with status 0"
finish
