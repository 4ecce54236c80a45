#!/bin/sh
# Per-scenario table of the clients' sync time, RMS offset and maximum offset
# over several seeds (median and range), from `ntplab run --format json`.
#
#   scripts/sync-table.sh [NTPLAB] [SEEDS] SCENARIO...
#
# NTPLAB defaults to target/release/ntplab, SEEDS to "1 2 3 4 5". Hosts that
# serve only (name "server*") are left out. Metrics as `ntplab run` defines
# them: sync_time_s = first time the offset stays within the sync bound (1 ms)
# for good, rms/max offset = over the window after `converged_after`.
set -eu
bin=${NTPLAB:-target/release/ntplab}
seeds=${SEEDS:-"1 2 3 4 5"}
command -v jq >/dev/null || { echo "sync-table.sh: needs jq" >&2; exit 2; }
printf '%-32s %-10s %26s %26s %26s\n' scenario host "sync s med [min..max]" "rms us med [min..max]" "max us med [min..max]"
for f in "$@"; do
  for s in $seeds; do
    "$bin" run "$f" --seed "$s" --format json || true  # a failed expectation still reports
  done | jq -rs --arg f "$(basename "$f" .toml)" '
    def med: sort | if length == 0 then null else .[(length - 1) / 2 | floor] end;
    def fmt(k; scale): [.[] | .[k] | if . == null then null else . * scale end] as $v
      | ($v | map(select(. != null))) as $n
      | if ($n | length) < ($v | length) then "never (\($n | length)/\($v | length))"
        else "\($n | med | . * 10 | round / 10) [\($n | min | . * 10 | round / 10)..\($n | max | . * 10 | round / 10)]" end;
    [.[].hosts[] | select(.name | test("^server") | not)] | group_by(.name)[]
    | "\($f)\t\(.[0].name)\t\(fmt("sync_time_s"; 1))\t\(fmt("rms_offset_s"; 1e6))\t\(fmt("max_offset_s"; 1e6))"' \
  | awk -F'\t' '{ printf "%-32s %-10s %26s %26s %26s\n", $1, $2, $3, $4, $5 }'
done
