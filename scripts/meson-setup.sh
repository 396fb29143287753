#!/usr/bin/env bash
# scripts/meson-setup.sh DIR [meson options...]
# Configure a meson build directory once; reconfigure only when the options
# change (or the previous setup failed).  Then `ninja -C DIR` keeps it fresh.
set -euo pipefail
dir=$1; shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
want="$*"
# A cross file that changed (another compiler, say) needs a fresh setup too.
prev=""
for a in "$@"; do
	[ "$prev" = --cross-file ] && [ -f "$a" ] && want+=" $(sha1sum <"$a" | cut -c1-12)"
	prev=$a
done
stamp="$dir/.xvl-setup-opts"

if [ -f "$dir/build.ninja" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi
rm -f "$stamp"
if [ -f "$dir/build.ninja" ] && [ -f "$dir/meson-private/coredata.dat" ]; then
	echo "meson: reconfiguring $dir ($want)"
	# a cross file's compiler is fixed at the first setup: start over for it
	case " $* " in
	*" --cross-file "*) rm -rf "$dir"; meson setup "$dir" "$@" ;;
	*) meson setup --reconfigure "$dir" "$@" || { rm -rf "$dir"; meson setup "$dir" "$@"; } ;;
	esac
else
	echo "meson: setting up $dir ($want)"
	rm -rf "$dir"
	meson setup "$dir" "$@"
fi
echo "$want" >"$stamp"
