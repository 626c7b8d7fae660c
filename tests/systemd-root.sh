#!/bin/sh
# Prepares what tests/tests/systemd_boot.rs boots, under target/systemd:
#   root/   a Debian 12 root file system with systemd as PID 1, dbus, sshd
#           (mmdebstrap --variant=minbase, from the mirror this machine's apt
#           already uses), made once and reused while this script and the
#           package list are unchanged
#   tools/  systemd-nspawn from Debian's systemd-container, systemd and
#           libsystemd-shared, unpacked with dpkg-deb -x: installing
#           systemd-container would upgrade this machine's own systemd
# Needs root, mmdebstrap and apt. Prints nothing when all is in place.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
out=${APIKEY_SYSTEMD_DIR:-$here/target/systemd}
suite=bookworm
packages=systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,openssh-client,sshpass,libpam-runtime,adduser,passwd,login,procps,iproute2

# The first deb line of the machine's apt sources (deb822 or one-line).
mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		awk '/^URIs:/ { print $2; exit }' "$f"
	done | grep -m1 -v security ||
		awk '$1 == "deb" && $2 !~ /^\[/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null
}

stamp=$(printf '%s %s %s\n' "$suite" "$packages" "$(sha256sum "$0" | cut -c1-16)")

if [ ! -e "$out/root/.apikey-stamp" ] || [ "$(cat "$out/root/.apikey-stamp")" != "$stamp" ]; then
	url=$(mirror)
	[ -n "$url" ] || { echo "systemd-root: no Debian mirror in /etc/apt/sources.list*" >&2; exit 1; }
	echo "systemd-root: building a $suite root file system from $url (a minute or two, once)"
	rm -rf "$out/root" "$out/root.new"
	mkdir -p "$out"
	# The login path of the image: ssh password logins run pam_systemd
	# and pam_loginuid, as on a real server. Host keys are made by
	# openssh-server's postinst. man pages and docs are left out.
	mmdebstrap --quiet --variant=minbase --mode=root --include="$packages" \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--customize-hook='echo apikey-test > "$1/etc/hostname"' \
		--customize-hook='rm -f "$1/etc/machine-id" && : > "$1/etc/machine-id"' \
		"$suite" "$out/root.new" "deb $url $suite main"
	printf '%s\n' "$stamp" > "$out/root.new/.apikey-stamp"
	mv "$out/root.new" "$out/root"
fi

if [ ! -x "$out/tools/usr/bin/systemd-nspawn" ]; then
	echo "systemd-root: unpacking systemd-nspawn into $out/tools"
	rm -rf "$out/tools" "$out/debs"
	mkdir -p "$out/debs" "$out/tools"
	# One version for all three, whatever the machine has installed.
	version=$(apt-cache policy systemd-container | awk '/Candidate:/ { print $2 }')
	if [ -z "$version" ] || [ "$version" = "(none)" ]; then
		apt-get update -qq
		version=$(apt-cache policy systemd-container | awk '/Candidate:/ { print $2 }')
	fi
	(cd "$out/debs" && apt-get download -qq "systemd-container=$version" "systemd=$version" "libsystemd-shared=$version")
	for deb in "$out/debs"/*.deb; do
		dpkg-deb -x "$deb" "$out/tools"
	done
	rm -rf "$out/debs"
fi
