#!/usr/bin/env bash
# Mutation testing of the core's protocol modules with cargo-mutants: every
# mutant (a replaced operator, a function body returning a default, ...) of
# impl/proto/src/{source,filter,select,system,server,discipline}.rs and their
# submodules is built and run against ntplab-proto's tests; a mutant the tests
# do not catch is a "survivor" (a gap in the tests, or an equivalent change).
#
#   scripts/mutants.sh [--file GLOB]... [--re REGEX] [--exclude-re REGEX] [--timeout S] [--jobs N] [--skip-baseline]
#                      [--in-place] [--skip-test PATTERN]... [--list]
#
#   --file GLOB   only these files (repeatable; default: the six modules and
#                 their submodules), e.g. --file impl/proto/src/filter.rs
#   --re REGEX    only mutants whose name matches, e.g. --re 'fn intersect'
#   --exclude-re REGEX  leave out the mutants whose name matches (e.g. the
#                 functions an earlier run already covered)
#   --timeout S   per-mutant test timeout in seconds (default 300; the unit
#                 tests take 15-80 s, more on a loaded machine)
#   --jobs N      mutants built and tested in parallel (default 1)
#   --skip-baseline  do not first check that the unmutated tests pass
#   --in-place    mutate this tree and build in its target/ (no copy, no fresh
#                 build; do not edit or commit the tree while it runs: a
#                 mutant may be applied at any moment), e.g. in a scratch copy
#                 (git archive HEAD | tar -x -C /tmp/x; /tmp/x/scripts/mutants.sh --in-place)
#   --skip-test PATTERN  leave out the unit tests whose name contains PATTERN
#                 (libtest --skip; repeatable), e.g. --skip-test server:: when
#                 mutating filter.rs: the server's flood tests take 50 s a run
#   --list        list the mutants, run nothing
#
# PROPTEST_CASES (e.g. 32) lowers the property tests' case count for the run.
#
# The tests are ntplab-proto's unit tests (`cargo test --lib`): they sit beside
# the code; the crate's one integration test reads a capture corpus outside
# the repository.
#
# The whole run is bounded by MUTANTS_MAX_SECONDS (default 3000): what is not
# done by then is reported as not run. Output goes to target/mutants/
# (mutants.out/); the survivors ("MISSED") are printed at the end. Installs
# cargo-mutants (cargo install --locked) when it is missing. Exit status: 0
# when no mutant survived, 2 when some did, 1 on errors.
set -euo pipefail
cd "$(dirname "$0")/.."

files=()
skips=()
re=""
exclude_re=""
timeout=300
jobs=1
list=0
inplace=0
baseline=run
while [ "$#" -gt 0 ]; do
    case "$1" in
        --file) files+=("$2"); shift 2 ;;
        --re) re="$2"; shift 2 ;;
        --exclude-re) exclude_re="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --list) list=1; shift ;;
        --skip-baseline) baseline=skip; shift ;;
        --in-place) inplace=1; shift ;;
        --skip-test) skips+=(--skip "$2"); shift 2 ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        *) echo "mutants.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
if [ "${#files[@]}" -eq 0 ]; then
    for m in source filter select system server discipline; do
        files+=("impl/proto/src/$m.rs" "impl/proto/src/$m/*.rs")
    done
fi

if ! command -v cargo-mutants >/dev/null 2>&1; then
    echo "mutants.sh: installing cargo-mutants" >&2
    cargo install cargo-mutants --locked
fi

args=(--package ntplab-proto --output target/mutants --timeout "$timeout" --no-shuffle --baseline "$baseline")
for f in "${files[@]}"; do
    args+=(--file "$f")
done
if [ -n "$re" ]; then
    args+=(--re "$re")
fi
if [ -n "$exclude_re" ]; then
    args+=(--exclude-re "$exclude_re")
fi
if [ "$inplace" -eq 1 ]; then
    args+=(--in-place) # one tree: cargo-mutants refuses --jobs with it
else
    args+=(--jobs "$jobs")
fi
if [ "$list" -eq 1 ]; then
    exec cargo mutants "${args[@]}" --list
fi
# --lib for the build too (-C: every cargo call), else each mutant also
# links the crate's integration tests, which the run never executes.
args+=(-C --lib)
if [ "${#skips[@]}" -gt 0 ]; then
    args+=(-- -- "${skips[@]}")
fi

# Each mutant rebuilds one crate: incremental compilation makes that about
# 3 s instead of 40-60 s (cargo-mutants builds in one tree, mutant after mutant).
export CARGO_INCREMENTAL=1
# cargo-mutants creates target/mutants but not target/ (a fresh `git archive`
# copy has none yet: "create output parent directory").
mkdir -p target
status=0
timeout --signal=INT --kill-after=60 "${MUTANTS_MAX_SECONDS:-3000}" cargo mutants "${args[@]}" || status=$?
out=target/mutants/mutants.out
echo
echo "== survivors (missed.txt) =="
cat "$out/missed.txt" 2>/dev/null || true
echo "== timeouts (timeout.txt) =="
cat "$out/timeout.txt" 2>/dev/null || true
count() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
if [ ! -f "$out/missed.txt" ]; then
    # cargo-mutants stopped before testing anything (a usage error exits 2 too).
    echo "mutants.sh: cargo mutants ran no mutant (exit status $status)" >&2
    exit 1
fi
echo "caught $(count "$out/caught.txt"), missed $(count "$out/missed.txt"), unviable $(count "$out/unviable.txt"), timeouts $(count "$out/timeout.txt")"
case "$status" in
    0) exit 0 ;;
    2|3) exit 2 ;; # cargo-mutants: 2 = some mutants missed, 3 = some timed out
    124|130) echo "mutants.sh: stopped after MUTANTS_MAX_SECONDS" >&2; exit 2 ;;
    *) exit 1 ;;
esac
