#!/bin/sh
# cargo-tool.sh NAME VERSION [--on-path]
# Makes the cargo tool NAME exactly VERSION available to the build:
# installed with `cargo install --locked` into target/tools (which the
# Makefile puts first on PATH), so a clean clone installs it again rather
# than trusting whatever ~/.cargo/bin happens to hold. With --on-path, a
# copy of exactly that version already on PATH (the machine's own) is
# used as it is.
set -eu
name=$1 version=$2 mode=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)/target/tools

# `cargo-deb --version` prints "cargo-deb 3.8.0"; nextest wants its
# subcommand word: "cargo-nextest nextest --version".
reports() {
	out=$("$@" 2>/dev/null | head -n 1) || return 1
	case " $out " in *" $version "*) return 0 ;; esac
	return 1
}
sub=${name#cargo-}

if [ -x "$root/bin/$name" ] && reports "$root/bin/$name" "$sub" --version; then
	exit 0
fi
if [ "$mode" = --on-path ] && command -v "$name" >/dev/null 2>&1 &&
	reports "$name" "$sub" --version; then
	exit 0
fi
echo "installing $name $version into $root (cargo install, a few minutes)"
cargo install --locked --quiet --root "$root" "$name@=$version"
reports "$root/bin/$name" "$sub" --version || {
	echo "cargo-tool.sh: $root/bin/$name does not report version $version" >&2
	exit 1
}
