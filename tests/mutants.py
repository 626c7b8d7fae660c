#!/usr/bin/env python3
"""Mutation testing of the files whose decisions guard keys and logins.

    tests/mutants.py                 every mutant of every file below
    tests/mutants.py --diff BASE     only mutants on lines changed since BASE
    tests/mutants.py --diff auto     ... since the merge base with the branch's
                                     upstream, or else since the commit of the
                                     last whole run (tests/mutants-base)
    tests/mutants.py FILE...         only these files (of those below)
    tests/mutants.py --iterate ...   only the mutants the last run of these
                                     files did not catch; their rows of the
                                     table are updated, the rest kept

cargo-mutants (pinned, in target/tools) changes one operator, value or
function body at a time and runs the unit tests of every crate that uses
the file; a mutant the tests do not notice is "missed". The run fails on
any missed mutant not in tests/mutants-equivalent.txt, where each mutant
judged unable to change behaviour is listed under a comment giving the
reason, and (in a whole run) on any entry there that no longer matches a
missed mutant. A mutant that makes the tests hang past the timeout counts
as caught.

The mutants are built in target/mutants/tree, a copy of the working tree
(uncommitted changes included) with a build directory of its own that
persists between runs, so only the first run builds from nothing. Results:
target/mutants/<group>/mutants.out, and the table per file in
target/mutants/report.md.
"""

import argparse
import fcntl
import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "mutants"
TREE = WORK / "tree"
# Per file, the outcomes of its latest whole-file run: the table's source.
RESULTS = WORK / "results"
EQUIVALENT = ROOT / "tests" / "mutants-equivalent.txt"
# The commit whose tree the last whole run tested (its table is in the
# README): what `--diff auto` compares with on a clone of main itself.
LAST_WHOLE_RUN = ROOT / "tests" / "mutants-base"

# (name, files, packages whose unit tests judge them). A shared file is
# judged by every crate that uses it; the others by their own crate.
ALL_USERS = ["apikey-proto", "apikeyd", "pam_apikey", "apikey"]
GROUPS = [
    ("proto", ["proto/src/*.rs"], ALL_USERS),
    (
        "daemon",
        [
            "daemon/src/policy.rs",
            "daemon/src/throttle.rs",
            "daemon/src/host.rs",
            "daemon/src/service/*.rs",
        ],
        ["apikeyd"],
    ),
    (
        "pam_module",
        ["pam_module/src/core.rs", "pam_module/src/daemon.rs", "pam_module/src/dbus.rs"],
        ["pam_apikey"],
    ),
    ("cli", ["cli/src/netrc.rs", "cli/src/scan.rs"], ["apikey"]),
]

NAME = re.compile(r"^(?P<file>[^:]+):\d+:\d+: (?P<what>.*)$")


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw).stdout


def source_files():
    """Tracked and untracked, not ignored: what a commit would hold."""
    out = sh("git", "ls-files", "-z", "-co", "--exclude-standard", cwd=ROOT)
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def sync_tree():
    """Makes TREE a copy of the working tree. Only files whose bytes
    differ are written (so they get a new mtime and cargo rebuilds what
    uses them); a mutant left by an interrupted run is undone here."""
    files = source_files()
    wanted = set(files)
    for f in files:
        src, dst = ROOT / f, TREE / f
        if dst.is_file() and src.read_bytes() == dst.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
    for dirpath, dirnames, filenames in os.walk(TREE):
        rel_dir = Path(dirpath).relative_to(TREE)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in ("target", ".git")]
        for name in filenames:
            rel = str(rel_dir / name) if rel_dir != Path(".") else name
            if rel not in wanted:
                (TREE / rel).unlink()
    return files


def git_ok(*argv):
    return subprocess.run(("git", *argv), cwd=ROOT, capture_output=True).returncode == 0


def resolve_base(base):
    """`auto`: a branch is compared with where it left its upstream; main
    itself (a clean clone, as CI has it) with the last whole run."""
    if base != "auto":
        return base
    if git_ok("rev-parse", "--verify", "-q", "@{upstream}"):
        merge_base = sh("git", "merge-base", "HEAD", "@{upstream}", cwd=ROOT).strip()
        if merge_base != sh("git", "rev-parse", "HEAD", cwd=ROOT).strip():
            return merge_base
    recorded = LAST_WHOLE_RUN.read_text().split()[0]
    if not git_ok("cat-file", "-e", f"{recorded}^{{commit}}"):
        sys.exit(f"mutants: {LAST_WHOLE_RUN} names {recorded}, which this clone lacks "
                 "(a shallow clone?); pass --diff BASE")
    return recorded


def group_files(patterns, files):
    return sorted(f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns))


def load_equivalent():
    """Entries `path: mutation`, each under a `# reason` comment."""
    entries, reason = {}, None
    for n, line in enumerate(EQUIVALENT.read_text().splitlines(), 1):
        line = line.rstrip()
        if not line:
            reason = None
        elif line.startswith("#"):
            reason = line.lstrip("# ").strip() or reason
        else:
            if not reason:
                sys.exit(f"{EQUIVALENT}:{n}: an entry without a `# reason` line above it")
            if not re.match(r"^[^:\s]+: \S", line):
                sys.exit(f"{EQUIVALENT}:{n}: not `path: mutation [@ source line]`: {line}")
            entries[line] = reason
    return entries


def run_group(name, files, packages, diff, iterate):
    out = WORK / name
    if out.exists() and not iterate:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        "cargo", "mutants", "--in-place", "--dir", str(TREE), "--output", str(out),
        "--no-shuffle", "--colors", "never",
        "--test-package", ",".join(packages),
        # Unit tests: the end-to-end suites need root, real services and
        # minutes a run.
        "--cargo-test-arg=--lib",
    ]
    for f in files:
        argv += ["--file", f]
    if iterate:
        argv.append("--iterate")
    if diff is not None:
        patch = out / "changes.diff"
        patch.write_text(diff)
        argv += ["--in-diff", str(patch)]
    print(f"mutants: {name}: {len(files)} files, tests of {', '.join(packages)}", flush=True)
    # No debug info: each mutant links test binaries, and linking is most
    # of a mutant's time.
    env = dict(os.environ, CARGO_PROFILE_DEV_DEBUG="0", CARGO_PROFILE_TEST_DEBUG="0")
    rc = subprocess.run(argv, cwd=TREE, env=env).returncode
    # 0 all caught, 2 some missed, 3 some timed out: judged below.
    if rc not in (0, 2, 3):
        sys.exit(f"mutants: cargo mutants failed on {name} (exit {rc}); see {out}")
    outcomes = out / "mutants.out" / "outcomes.json"
    if not outcomes.exists():
        # --in-diff with no mutable line changed: nothing was run.
        return []
    return json.loads(outcomes.read_text())["outcomes"]


def listed_mutants(files):
    """The names of every mutant of `files` as they are now (no build)."""
    argv = ["cargo", "mutants", "--list", "--dir", str(TREE), "--colors", "never"]
    for f in files:
        argv += ["--file", f]
    return set(sh(*argv, cwd=TREE).splitlines())


KINDS = {"CaughtMutant": "caught", "MissedMutant": "missed", "Timeout": "timeout",
         "Unviable": "unviable"}


def mutants_of(outcomes):
    """The mutants among cargo-mutants' outcomes (not the baseline)."""
    for o in outcomes:
        scenario = o["scenario"]
        if isinstance(scenario, dict) and "Mutant" in scenario:
            yield scenario["Mutant"], o["summary"]


@functools.lru_cache(maxsize=None)
def source_lines(path):
    return (ROOT / path).read_text().splitlines()


def source_line(mutant):
    """The stripped source line a mutant changes, as the working tree has it."""
    if "line" in mutant:
        return mutant["line"]
    lines = source_lines(mutant["file"])
    number = mutant["span"]["start"]["line"]
    return lines[number - 1].strip() if number <= len(lines) else ""


def keys_of(mutant):
    """How the list may name a mutant: `path: mutation` (its name without
    line and column), or, where one function has the same mutation on two
    lines, `path: mutation @ the source line`, stripped."""
    m = NAME.match(mutant["name"])
    if not m:
        return [mutant["name"]]
    key = f"{m['file']}: {m['what']}"
    return [key, f"{key} @ {source_line(mutant)}"]


def result_path(file):
    return RESULTS / (file.replace("/", "__") + ".json")


def store(outcomes, files, listed=None):
    """Keeps each file's outcomes from its latest whole-file run, so that
    re-running some files updates their rows of the table. An iterating
    run (`listed`: the names of every mutant the files have now) updates
    the rows it tested again and drops rows of mutants that are gone."""
    by_file = {f: {} for f in files}
    if listed is not None:
        for f in files:
            if result_path(f).exists():
                rows = json.loads(result_path(f).read_text())
                by_file[f] = {r["name"]: r for r in rows if r["name"] in listed}
    for mutant, summary in mutants_of(outcomes):
        by_file.setdefault(mutant["file"], {})[mutant["name"]] = {
            "name": mutant["name"],
            "file": mutant["file"],
            "line": source_line(mutant),
            "summary": summary,
        }
    for f, rows in by_file.items():
        result_path(f).write_text(json.dumps(list(rows.values()), indent=1))


def report(files, equivalent):
    """The table per file, from the stored results."""
    lines = [
        "| file | mutants | caught | timeout (caught) | missed | of which equivalent "
        "| unviable |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in sorted(files):
        if not result_path(f).exists():
            lines.append(f"| {f} | not run | | | | | |")
            continue
        rows = json.loads(result_path(f).read_text())
        count = dict.fromkeys(KINDS.values(), 0)
        equivalent_missed = 0
        for r in rows:
            kind = KINDS.get(r["summary"], "missed")
            count[kind] += 1
            if kind == "missed" and any(k in equivalent for k in keys_of(r)):
                equivalent_missed += 1
        lines.append(
            f"| {f} | {len(rows)} | {count['caught']} | {count['timeout']} | {count['missed']} "
            f"| {equivalent_missed} | {count['unviable']} |"
        )
    text = "\n".join(lines) + "\n"
    (WORK / "report.md").write_text(text)
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diff", metavar="BASE", help="only lines changed since BASE")
    parser.add_argument("--iterate", action="store_true",
                        help="only what the last run did not catch")
    parser.add_argument("files", nargs="*", help="restrict to these files")
    args = parser.parse_args()

    # The pinned cargo-mutants (tests/cargo-tool.sh), as the Makefile has it.
    os.environ["PATH"] = f"{ROOT / 'target' / 'tools' / 'bin'}:{os.environ['PATH']}"
    if args.diff:
        args.diff = resolve_base(args.diff)
        print(f"mutants: lines changed since {args.diff}")
    equivalent = load_equivalent()
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Two runs would mutate the same copy under each other.
    lock = open(WORK / "lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"mutants: another run holds {WORK / 'lock'}")
    files = sync_tree()
    outcomes, run_files, examined = [], [], []
    for name, patterns, packages in GROUPS:
        chosen = group_files(patterns, files)
        examined += chosen
        if args.files:
            chosen = [f for f in chosen if f in args.files]
        if not chosen:
            continue
        diff = None
        if args.diff:
            diff = sh("git", "diff", "--no-color", "--no-ext-diff", args.diff, "--", *chosen,
                      cwd=ROOT)
            if not diff.strip():
                print(f"mutants: {name}: no change since {args.diff}")
                continue
        outcomes += run_group(name, chosen, packages, diff, args.iterate)
        run_files += chosen

    if not args.diff:
        store(outcomes, run_files, listed_mutants(run_files) if args.iterate else None)
        print(report(examined, equivalent))
    # Each missed mutant, by its name without line and column.
    unexplained, explained = [], set()
    for mutant, summary in mutants_of(outcomes):
        if summary != "MissedMutant":
            continue
        matching = [k for k in keys_of(mutant) if k in equivalent]
        if matching:
            explained.update(matching)
        else:
            unexplained.append(mutant["name"])
    status = 0
    if unexplained:
        print("mutants: missed, and not in tests/mutants-equivalent.txt:")
        for name in unexplained:
            print(f"  {name}")
        status = 1
    # Entries for a file tested whole in this run that matched nothing.
    stale = sorted(
        k for k in equivalent if k.split(": ", 1)[0] in run_files and k not in explained
    )
    if not args.diff and stale:
        print("mutants: tests/mutants-equivalent.txt lists mutants that are no longer missed:")
        for entry in stale:
            print(f"  {entry}")
        status = 1
    if status == 0:
        tested = sum(1 for _ in mutants_of(outcomes))
        print(f"mutants: {tested} mutants, none missed outside the equivalence list")
    return status


if __name__ == "__main__":
    sys.exit(main())
