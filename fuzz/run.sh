#!/bin/sh
# fuzz/run.sh SECONDS [TARGET...]
# Builds the fuzz targets with cargo-afl (pinned, installed into
# target/tools; AFL++ itself is built there too, so a clean clone builds
# it again), replays every seed and every past crash in fuzz/regressions,
# then runs AFL++ on each target for SECONDS. Fails when a replay fails or
# AFL++ found a crash or a hang; the inputs are left in
# target/fuzz/out/TARGET/default/{crashes,hangs} (copy a crash into
# fuzz/regressions/TARGET/ once it is fixed, so it stays fixed).
set -eu
seconds=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
targets=${*:-token bus_reply pam_socket pam_inputs config netrc account_files}
tools=$root/target/tools
export PATH="$tools/bin:$PATH"
export XDG_DATA_HOME="$tools/share"
export CARGO_TARGET_DIR="$root/target/fuzz"

sh "$root/tests/cargo-tool.sh" cargo-afl "$CARGO_AFL_VERSION"
if ! ls "$XDG_DATA_HOME"/afl.rs/rustc-*/afl.rs-*/afl/bin/afl-fuzz >/dev/null 2>&1; then
	echo "fuzz: building AFL++ into $XDG_DATA_HOME (a few minutes, once)"
	cargo afl config --build
fi
(cd "$root/fuzz" && cargo afl build --release --locked --quiet)

status=0
for t in $targets; do
	bin=$CARGO_TARGET_DIR/release/$t
	for input in "$root/fuzz/seeds/$t"/* "$root/fuzz/regressions/$t"/*; do
		[ -f "$input" ] || continue
		if ! timeout 10 "$bin" <"$input" >/dev/null 2>&1; then
			echo "fuzz: $t fails on $input" >&2
			status=1
		fi
	done
done
[ "$status" = 0 ] || exit 1

# No core_pattern or CPU governor changes on a shared machine: AFL++ is
# told to go on without them.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_QUIET=1
report=$root/target/fuzz/report.txt
: >"$report"
for t in $targets; do
	out=$CARGO_TARGET_DIR/out/$t
	mkdir -p "$CARGO_TARGET_DIR/out"
	rm -rf "$out"
	echo "fuzz: $t for ${seconds}s"
	cargo afl fuzz -i "$root/fuzz/seeds/$t" -o "$out" -V "$seconds" -t 2000 \
		"$CARGO_TARGET_DIR/release/$t" >"$out.log" 2>&1 || {
		echo "fuzz: afl-fuzz failed on $t:" >&2
		tail -n 30 "$out.log" >&2
		exit 1
	}
	stats=$out/default/fuzzer_stats
	execs=$(sed -n 's/^execs_done *: *//p' "$stats" 2>/dev/null || true)
	paths=$(sed -n 's/^corpus_count *: *//p' "$stats" 2>/dev/null || true)
	crashes=$(find "$out/default/crashes" -type f -name 'id:*' | wc -l)
	hangs=$(find "$out/default/hangs" -type f -name 'id:*' | wc -l)
	# A fuzzer that ran nothing is a failure, not a clean result.
	if [ -z "$execs" ] || [ "$execs" -eq 0 ]; then
		echo "fuzz: $t ran no executions; see $out.log" >&2
		exit 1
	fi
	line="$t: ${seconds}s, $execs execs, $paths inputs in the corpus, $crashes crashes, $hangs hangs"
	echo "fuzz: $line"
	echo "$line" >>"$report"
	if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
		echo "fuzz: $t: see $out/default/crashes and hangs" >&2
		status=1
	fi
done
exit "$status"
