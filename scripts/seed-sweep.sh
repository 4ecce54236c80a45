#!/usr/bin/env bash
# Runs scenarios over a range of seeds with the conformance checks and counts,
# per scenario, the seeds for which every check and every expectation held.
#
#   scripts/seed-sweep.sh [-n SEEDS] [-b NTPLAB] [SCENARIO.toml ...]
#
#   -n SEEDS   seeds 1..SEEDS (default 25)
#   -b NTPLAB  the ntplab binary (default: target/release/ntplab, built if missing)
#   SCENARIO   scenario files (default: every scenarios/*.toml)
#
# Output: one line per scenario, "NAME clean K/N" (clean: no check failed, not
# only gating ones, and every expectation held), then the failing checks or
# expectations with the seeds they failed for. Needs jq. Exit status 1 when
# any seed of any scenario was not clean.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=25
bin=target/release/ntplab
while getopts "n:b:" opt; do
    case "$opt" in
        n) seeds="$OPTARG" ;;
        b) bin="$OPTARG" ;;
        *) sed -n '2,15p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
command -v jq >/dev/null || { echo "seed-sweep.sh: needs jq" >&2; exit 2; }
if [ ! -x "$bin" ]; then
    cargo build --release --quiet --bin ntplab
fi
if [ "$#" -eq 0 ]; then
    set -- scenarios/*.toml
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for scenario in "$@"; do
    name=$(basename "$scenario" .toml)
    rm -rf "$work/dir" && mkdir "$work/dir"
    ln -s "$(realpath "$scenario")" "$work/dir/"
    clean=0
    : > "$work/failures"
    for seed in $(seq 1 "$seeds"); do
        rm -rf "$work/rep"
        if ! "$bin" suite "$work/dir" --seed "$seed" --report "$work/rep" > "$work/out" 2>&1 && [ ! -e "$work/rep/report.json" ]; then
            echo "$name seed $seed: the suite did not run: $(tail -1 "$work/out")" >&2
            echo "run-error $seed" >> "$work/failures"
            continue
        fi
        jq -r --arg seed "$seed" '.result.scenarios[]
            | ((.checks[] | select(.status == "fail") | "check:\(.check) \($seed)"),
               (.expectations[] | select(.passed | not) | "expect:\(.name | gsub(" "; "_")) \($seed)"),
               (select(.error != null) | "error \($seed)"))' "$work/rep/report.json" > "$work/this"
        if [ -s "$work/this" ]; then
            cat "$work/this" >> "$work/failures"
        else
            clean=$((clean + 1))
        fi
    done
    echo "$name clean $clean/$seeds"
    [ "$clean" -eq "$seeds" ] || status=1
    awk '{ s[$1] = s[$1] " " $2; n[$1]++ } END { for (k in s) printf "    %s failed %d:%s\n", k, n[k], s[k] }' "$work/failures" | sort
done
exit "$status"
