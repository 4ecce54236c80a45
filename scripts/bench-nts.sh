#!/usr/bin/env bash
# NTS server throughput of ntplab and chronyd on loopback, measured with
# `ntplab bench server --nts-ke` (one NTS-KE per client socket, then
# NTS-protected requests; a reply counts only when it authenticates).
#
#   scripts/bench-nts.sh
#
# Both servers run in every round, one after the other (the order alternates
# each round), with the same bench parameters: a closed-loop run (--window,
# --duration) and an open-loop ramp (--ramp: from 1000 requests/s up by x1.5
# per step until fewer than half are answered). Per round and server it
# prints responses/s of the closed loop, its round trip p50/p99, the ramp's
# highest rate with >= 99 % responses, the server's CPU time per response
# (utime + stime from /proc over the bench), its peak resident memory
# (VmHWM), the load average before and after; then per mode the median and
# range over the rounds and ntplab's figure over chronyd's, per round and
# the median.
#
# Settings (environment): ROUNDS (3), CLIENTS (16), WINDOW (64), DURATION
# (closed loop, seconds, 3), STEP_S (ramp step, seconds, 1), AEAD (15: the
# only one chrony 4.3 implements), NTPLAB (default target/release/ntplab),
# SERVERS ("ntplab chronyd").
#
# Safety: loopback only; the servers run without CAP_SYS_TIME (setpriv
# --inh-caps=-sys_time --bounding-set=-sys_time) and under `timeout`;
# chronyd with -x (never -q), cmdport 0; `ntplab serve` never controls the
# clock; every bench run is bounded by its --duration and the ramp's 30
# steps; only the processes this script started are stopped, by PID.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-16}
WINDOW=${WINDOW:-64}
DURATION=${DURATION:-3}
STEP_S=${STEP_S:-1}
AEAD=${AEAD:-15}
SERVERS=${SERVERS:-ntplab chronyd}
REPO=$(cd "$(dirname "$0")/.." && pwd)
NTPLAB=${NTPLAB:-$REPO/target/release/ntplab}

# shellcheck source=scripts/lib-server.sh
. "$REPO/scripts/lib-server.sh"

die() { echo "bench-nts: $*" >&2; exit 1; }
[ -x "$NTPLAB" ] || die "no ntplab binary at $NTPLAB (cargo build --release --bin ntplab, or set NTPLAB)"
command -v setpriv >/dev/null || die "setpriv (util-linux) is needed to drop CAP_SYS_TIME"
command -v openssl >/dev/null || die "openssl is needed to make the test certificate"
command -v python3 >/dev/null || die "python3 is needed to read the bench's JSON"
if [[ " $SERVERS " == *" chronyd "* ]] && ! command -v chronyd >/dev/null; then
    die "chronyd not installed (apt-get install -y chrony, then make sure no system chronyd runs), or SERVERS=ntplab"
fi

WORK=$(mktemp -d /tmp/bench-nts.XXXXXX)
chmod 700 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }

nopriv() { setpriv --inh-caps=-sys_time --bounding-set=-sys_time "$@"; }

start_server() { # NAME -> SERVER_PID, SERVER_PROC, NTP_PORT, KE_PORT
    local name=$1 dir=$WORK/$1
    mkdir -p "$dir"
    chmod 700 "$dir"
    NTP_PORT=$(free_port SOCK_DGRAM)
    KE_PORT=$(free_port SOCK_STREAM)
    case $name in
    ntplab)
        printf 'listen = ["127.0.0.1:%s"]\n[local]\nstratum = 1\n[nts]\ncertificate = "%s"\nkey = "%s"\nke_listen = ["127.0.0.1:%s"]\n' \
            "$NTP_PORT" "$WORK/cert.pem" "$WORK/key.pem" "$KE_PORT" >"$dir/ntplab.toml"
        nopriv timeout 900 "$NTPLAB" serve --config "$dir/ntplab.toml" >"$dir/log" 2>&1 &
        ;;
    chronyd)
        cat >"$dir/chrony.conf" <<CONF
port $NTP_PORT
bindaddress 127.0.0.1
cmdport 0
local stratum 1
allow 127.0.0.1
ntsserverkey $WORK/key.pem
ntsservercert $WORK/cert.pem
ntsport $KE_PORT
ntsdumpdir $dir
pidfile $dir/chronyd.pid
CONF
        nopriv timeout 900 chronyd -x -d -u root -f "$dir/chrony.conf" >"$dir/log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    sleep 0.5
    SERVER_PROC=$(server_process "$SERVER_PID" "$name")
    PIDS+=("$SERVER_PROC")
    # Ready when an NTS query succeeds (bounded: 10 s).
    for _ in $(seq 1 20); do
        "$NTPLAB" query --nts "127.0.0.1:$KE_PORT" --trusted-certificates "$WORK/cert.pem" --aead "$AEAD" \
            --timeout 0.5 >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "$name did not answer NTS: $(tail -3 "$dir/log")" >&2
    return 1
}

stop_server() {
    kill "$SERVER_PROC" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    kill -0 "$SERVER_PROC" 2>/dev/null && { sleep 1; kill -9 "$SERVER_PROC" 2>/dev/null || true; }
    return 0
}

cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat 2>/dev/null || echo 0; }

bench() { # OUT ARGS...
    local out=$1
    shift
    "$NTPLAB" bench server "127.0.0.1:$NTP_PORT" --nts-ke "127.0.0.1:$KE_PORT" \
        --trusted-certificates "$WORK/cert.pem" --aead "$AEAD" --clients "$CLIENTS" --format json "$@" >"$out"
}

run_one() { # NAME ROUND
    local name=$1 round=$2 dir=$WORK/$1
    start_server "$name" || { stop_server; return 0; }
    local load0 load1 t0 t1 hwm
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    t0=$(cpu_ticks "$SERVER_PROC")
    bench "$dir/closed-$round.json" --window "$WINDOW" --duration "$DURATION" || true
    bench "$dir/ramp-$round.json" --ramp --duration "$STEP_S" --timeout-ms 200 || true
    t1=$(cpu_ticks "$SERVER_PROC")
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    hwm=$(awk '/VmHWM/ {print $2}' /proc/"$SERVER_PROC"/status 2>/dev/null || echo 0)
    stop_server
    python3 - "$dir/closed-$round.json" "$dir/ramp-$round.json" "$name" "$round" $((t1 - t0)) "$(getconf CLK_TCK)" "$hwm" "$load0" "$load1" <<'PY' | tee -a "$WORK/results.tsv"
import json, sys
closed_f, ramp_f, name, rnd, ticks, hz, hwm, load0, load1 = sys.argv[1:]
def load(f):
    try:
        return json.load(open(f))
    except Exception:
        return None
c, r = load(closed_f), load(ramp_f)
resp = c["responses_per_s"] if c else 0
p50 = (c or {}).get("latency_us", {}).get("p50") or 0
p99 = (c or {}).get("latency_us", {}).get("p99") or 0
unauth = c["nts"]["unauthenticated"] if c else 0
hi = (r or {}).get("highest_rate_99_per_s") or 0
total = (c["responses"] if c else 0) + sum(s["report"]["responses"] for s in (r or {}).get("steps", []))
cpu_us = int(ticks) / int(hz) * 1e6 / total if total else 0
print(f"{rnd}\t{name}\t{resp:.0f}\t{p50:.1f}\t{p99:.1f}\t{unauth}\t{hi:.0f}\t{cpu_us:.2f}\t{hwm}\t{load0}\t{load1}")
PY
}

available=()
for s in $SERVERS; do available+=("$s"); done
n=${#available[@]}
echo "# ntplab bench server --nts-ke on loopback; $(nproc) CPUs; AEAD $AEAD; $CLIENTS clients (one NTS-KE each, per run and per ramp step)"
echo "# closed loop: window $WINDOW, $DURATION s; ramp: 1000/s up by x1.5, $STEP_S s a step"
printf 'round\tserver\tclosed resp/s\tp50 us\tp99 us\tunauth\tramp highest>=99%%\tCPU us/resp\tVmHWM kB\tload before\tload after\n'
for round in $(seq 1 "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
        # Alternate the order each round.
        run_one "${available[$(((i + round - 1) % n))]}" "$round"
    done
done

echo
python3 - "$WORK/results.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault(r[1], {})[int(r[0])] = r
for col, label in ((2, "closed-loop responses/s"), (6, "ramp: highest rate with >= 99 % responses")):
    print(f"# {label}: median (min-max) over the rounds")
    for name, rounds in sorted(by.items()):
        v = [float(r[col]) for r in rounds.values()]
        print(f"{name}\t{statistics.median(v):.0f}\t({min(v):.0f}-{max(v):.0f})")
    if "ntplab" in by and "chronyd" in by:
        ratios = [float(by["ntplab"][k][col]) / float(by["chronyd"][k][col])
                  for k in sorted(by["ntplab"]) if k in by["chronyd"] and float(by["chronyd"][k][col]) > 0]
        if ratios:
            print("ntplab/chronyd per round\t" + " ".join(f"{x:.2f}" for x in ratios)
                  + f"\tmedian {statistics.median(ratios):.2f}")
PY
