#!/usr/bin/env bash
# Runs every cargo-fuzz target of impl/proto/fuzz, impl/daemon/fuzz and conformance/fuzz.
#   scripts/fuzz.sh                 1,000,000 executions per target (the release bar)
#   scripts/fuzz.sh --runs N        N executions per target
#   scripts/fuzz.sh --seconds S     S seconds per target (CI smoke run)
#   ... TARGET...                   only these targets (e.g. v5_server v5_client, the NTPv5 paths)
# Installs cargo-fuzz and the nightly toolchain if missing. Prints one summary
# line per target; exits non-zero on the first crash (its input is left in
# <crate>/fuzz/artifacts/<target>/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

limit=(-runs=1000000)
case "${1:-}" in
    --runs) limit=(-runs="$2"); shift 2 ;;
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    --*) echo "usage: scripts/fuzz.sh [--runs N | --seconds S] [TARGET...]" >&2; exit 2 ;;
esac
only=("$@")

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# One target directory for the three fuzz crates: the crates and dependencies
# they share (ntplab-proto, tokio, rustls, ...) are built once with the
# sanitizer's flags (2026-12-07: 316 s for the three builds, 473 s with a
# target directory each).
fuzz_target_dir="$root/target/fuzz"
for crate in impl/proto impl/daemon conformance; do
cd "$root/$crate"
targets=$(cargo +nightly fuzz list)
# All of a crate's targets in one build (its binaries link in parallel), with
# the flags `fuzz run` uses, so that each run below finds its binary built.
if [ ${#only[@]} -eq 0 ]; then
    cargo +nightly fuzz build --target-dir "$fuzz_target_dir" >/dev/null 2>&1 || cargo +nightly fuzz build --target-dir "$fuzz_target_dir"
fi
for t in $targets; do
    if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qx "$t"; then
        continue
    fi
    mkdir -p "fuzz/corpus/$t"
    log=$(mktemp)
    if ! cargo +nightly fuzz run --target-dir "$fuzz_target_dir" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- "${limit[@]}" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $t FAILED (artifact in $crate/fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    secs=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
    echo "fuzz: $t: ${runs:-?} executions, ${secs:-?} exec/s, no crash"
    rm -f "$log"
done
done
