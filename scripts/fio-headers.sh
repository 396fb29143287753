#!/usr/bin/env bash
# scripts/fio-headers.sh [DEST]
#
# Fetch Debian's fio *source* package matching the installed fio, unpack it to
# DEST (default: <repo>/.fio-src) and run fio's ./configure --disable-native
# there, so that an external ioengine can be compiled against fio's own
# headers (config-host.h, fio.h, ioengines.h ...).
#
# apt is driven through a private configuration in a temporary directory (its
# own sources list with a deb-src line, its own lists and caches): the system's
# sources and package lists are not touched.
#
# Idempotent: nothing is done when DEST/config-host.h exists and DEST was made
# for the installed fio version.  Progress goes to stderr; the last (only)
# line on stdout is the absolute path of DEST.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
DEST=${1:-$root/.fio-src}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
stamp="$DEST/.xvl-fio-version"

log() { echo "fio-headers: $*" >&2; }

if ! dpkg-query -W -f='${db:Status-Status}' fio 2>/dev/null | grep -qx installed; then
	log "fio is not installed (run scripts/deps.sh)"
	exit 1
fi
src_pkg=$(dpkg-query -W -f='${source:Package}' fio)
src_ver=$(dpkg-query -W -f='${source:Version}' fio)
want="$src_pkg $src_ver"

# Serialise concurrent runs on the same DEST.
exec 9<"$DEST"
flock 9

if [ -f "$DEST/config-host.h" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	log "up to date ($want)"
	echo "$DEST"
	exit 0
fi

# Suite and mirror: the system's own, read from its apt sources.
. /etc/os-release
suite=${VERSION_CODENAME:-bookworm}
mirror=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
	# deb822: first stanza whose Suites list holds "$suite" exactly.
	mirror=$(awk -v s="$suite" '
		BEGIN { RS = ""; FS = "\n" }
		{
			uris = ""; ok = 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris = u[1] }
				if ($i ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", $i); n = split($i, v, /[ \t]+/)
				                       for (j = 1; j <= n; j++) if (v[j] == s) ok = 1 }
			}
			if (ok && uris != "") { print uris; exit }
		}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
	mirror=$(awk -v s="$suite" '$1 == "deb" {
			i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i + 1) == s) { print $i; exit } }' /etc/apt/sources.list)
fi
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
log "fetching $src_pkg $src_ver source from $mirror $suite"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xvl-fio-src.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/dl"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
signed=""
[ -r "$keyring" ] && signed="[signed-by=$keyring] "
echo "deb-src ${signed}$mirror $suite main" >"$tmp/sources.list"

APT=(apt-get -q
	-o Dir::Etc::SourceList="$tmp/sources.list"
	-o Dir::Etc::SourceParts=/dev/null
	-o Dir::State::Lists="$tmp/lists"
	-o Dir::Cache="$tmp/cache"
	-o Dir::Cache::pkgcache=
	-o Dir::Cache::srcpkgcache=
	-o APT::Sandbox::User=root)

"${APT[@]}" update >&2
(cd "$tmp/dl" && "${APT[@]}" source --download-only "$src_pkg=$src_ver" >&2)
dsc=$(ls "$tmp/dl"/*.dsc)
dpkg-source --no-check -x "$dsc" "$tmp/src" >&2

# Replace DEST's contents (keep DEST itself: it may be a mount or a symlink).
find "$DEST" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
cp -a "$tmp/src/." "$DEST/"

# Configure as debian/rules does (minus gfio), so that config-host.h matches
# the installed binary's build.
cfg=(--disable-native --prefix=/usr)
pkg-config --exists libnbd 2>/dev/null && cfg+=(--enable-libnbd)
log "configuring fio in $DEST: ./configure ${cfg[*]}"
(cd "$DEST" && ./configure "${cfg[@]}" >"$DEST/.xvl-configure.log" 2>&1) || {
	cat "$DEST/.xvl-configure.log" >&2
	log "fio ./configure failed"
	exit 1
}
[ -f "$DEST/config-host.h" ] || { log "no config-host.h after configure"; exit 1; }
echo "$want" >"$stamp"
log "ready: fio $src_ver headers in $DEST"
echo "$DEST"
