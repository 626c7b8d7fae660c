#!/bin/sh
# deb-md5sums.sh FILE.deb
# Adds DEBIAN/md5sums (what dh_md5sums writes; dpkg --verify and debsums
# check files against it) to a .deb made by cargo-deb, which writes none,
# and builds it again in place. With SOURCE_DATE_EPOCH set, as `make deb`
# sets it, the result is byte for byte the same for the same tree.
set -eu
deb=$1
: "${SOURCE_DATE_EPOCH:?set SOURCE_DATE_EPOCH (make deb does)}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -R "$deb" "$work/tree"
(
	cd "$work/tree"
	find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
		while IFS= read -r f; do md5sum "$f"; done
) > "$work/tree/DEBIAN/md5sums"
chmod 0644 "$work/tree/DEBIAN/md5sums"
touch -h -d "@$SOURCE_DATE_EPOCH" "$work/tree/DEBIAN/md5sums" "$work/tree/DEBIAN"
dpkg-deb --root-owner-group -Zxz --build "$work/tree" "$deb" >/dev/null
