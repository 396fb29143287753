#!/usr/bin/env bash
# The generated man pages ($XVL_BUILD/man, made by man/xvlman.py):
#   - every page renders with `man --warnings -l` and `groff -man -ww -z`
#     without a single warning, and lexgrog (mandb's parser) reads its NAME
#   - every command listed under COMMANDS in `xvl --help` has an xvl-CMD(1)
#     page, and every exported symbol of the version script a page in 3
#   - no drift: each section 1 page names exactly the --options of the
#     --help text it was made from (made from the binary as built)
# TAP on stdout.
set -u
. "$(dirname "$0")/lib.sh"

B=${XVL_BUILD:-$E2E_ROOT/build}
[ -d "$B/man" ] && [ -x "$XVL" ] || { echo "1..0 # SKIP no $B/man or xvl (build first)"; exit 0; }

# A man tree, so that .so links between pages resolve.
M=$T/man
for s in 1 3 5; do
	mkdir -p "$M/man$s"
	cp "$B"/man/*."$s" "$M/man$s/"
done
n=0 bad=0
cd "$M" || exit 1
for f in man?/*.?; do
	n=$((n + 1))
	w=$( { LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$f" >/dev/null; } 2>&1)
	grep -q '^\.so ' "$f" || w+=$( { groff -man -Tutf8 -ww -z "$f"; } 2>&1)
	w+=$(lexgrog "$f" >/dev/null 2>&1 || echo "lexgrog cannot parse its NAME section")
	if [ -n "$w" ]; then
		bad=$((bad + 1))
		fail "$f renders without warnings"
		echo "$w" | head -5 | sed 's/^/#   /'
	fi
done
cd "$OLDPWD" || exit 1
[ "$bad" -eq 0 ] && ok "all $n pages render without warnings (man --warnings, groff -ww, lexgrog)"
drift=$(grep -l XVLMAN-DRIFT "$M"/man?/*.? 2>/dev/null | sed "s,^$M/,," | tr '\n' ' ')
expect_eq "" "$drift" "no page lacks its source (a declaration without a comment, a symbol not declared)"

cmds=$("$XVL" --help | awk '/^[A-Z]/ { s = $0; next } s == "COMMANDS" && /^    [a-z]/ { print $1 }')
missing=""
for c in $cmds; do [ -f "$M/man1/xvl-$c.1" ] || missing+=" xvl-$c.1"; done
if [ -z "$cmds" ]; then
	fail "xvl --help lists commands under COMMANDS"
else
	expect_eq "" "$missing" "every command of xvl --help has a page: $(echo "$cmds" | tr '\n' ' ')"
fi

syms=$(sed -e 's,/\*.*\*/,,' "$E2E_ROOT/src/client/libxvloop.map" | sed -n 's/^[[:space:]]*\(xvl_[a-z0-9_]*\);.*/\1/p')
missing=""
for s in $syms; do [ -f "$M/man3/$s.3" ] || missing+=" $s.3"; done
expect_eq "" "$missing" "every exported symbol has a page in section 3"

opts() { grep -o -- '--[a-z][a-z-]*' | sort -u | tr '\n' ' '; }
for c in "" $cmds; do
	page=$M/man1/xvl${c:+-$c}.1
	# shellcheck disable=SC2086  # no command: xvl --help
	want=$("$XVL" $c --help | opts)
	got=$(MANWIDTH=200 man -l "$page" 2>/dev/null | sed 's/\xe2\x80\x90/-/g' | opts)
	expect_eq "$want" "$got" "xvl${c:+ $c}: the page names the options of --help"
done
finish
