#!/usr/bin/env bash
# Server throughput of ntplab, chronyd and ntpd-rs (when installed), measured
# with ntpperf, an independent load generator (github.com/mlichvar/ntpperf).
#
#   sudo scripts/bench-servers.sh [NTPPERF_SOURCE]
#
# NTPPERF_SOURCE: ntpperf's source, a .tar.gz or a directory (default
# $NTPPERF_SRC, else /work/shared/tools/ntpperf.tar.gz). It is built under
# /tmp, never in the repository. Needs root (network namespaces), cc and
# libpcap-dev.
#
# Setup: two network namespaces joined by a veth pair; the server listens on
# 10.213.0.1:123 in one, ntpperf sends from 172.30.0.0/16 (/15 with CLIENTS) through the other
# (the server routes those replies back over the veth; the client side drops
# them after ntpperf has read them with pcap). Traffic never leaves the two
# namespaces.
#
# Safety: servers run without CAP_SYS_TIME (setpriv --inh-caps=-sys_time
# --bounding-set=-sys_time), chronyd with -x (never -q); ntplab serve without
# --control-system-clock; every run is bounded by `timeout`; only processes
# this script started are stopped, by PID; the namespaces are removed at exit.
#
# NTS mode (MODES="nts"): each server also runs NTS-KE on 10.213.0.1:4460
# with a self-signed certificate made here; before each ntpperf run
# `ntplab query --nts ... --aead 15 --ntpperf-session FILE` runs NTS-KE with
# it from the client namespace and one NTS exchange, and ntpperf (built with
# NTPPERF_NTS=1, which needs gnutls-dev) sends every request with that
# session's cookie and an authenticator (-S C2S,COOKIE); a response counts as
# valid only when it is long enough to carry an authenticator (an NTSN is
# invalid). ntpd-rs is not run in NTS mode. MODES="nts-interleaved" is the
# same with interleaved requests (ntpperf -I -S).
#
# TX_OFFSET=CORRECTION passes `-o CORRECTION` to ntpperf (seconds; not 0, which
# ntpperf takes for no -o: 1e-9 subtracts 1 ns):
# it then prints, per step, the offset between the server's transmit
# timestamp and ntpperf's capture time of the reply (in interleaved mode the
# exact transmit time of the previous reply), and this script prints each
# run's ntpperf table after its row (lines starting with "#").
#
# Settings (environment): ROUNDS (3), MODES ("basic interleaved"; "nts" too),
# RATE_MIN (1000 requests/s), RATE_MAX (1000000 requests/s; RATE_MIN=RATE_MAX
# holds one rate for STEP_S seconds: the CPU per response at that rate without
# the overloaded steps of a ramp), STEP_S (ntpperf's interval per rate, 1 s),
# WORKERS (ntplab's [server] workers, default: the CPU cores), SERVER_CPUS and
# NTPPERF_CPUS (taskset CPU lists for every server and for ntpperf, e.g. 1 and 0), NTPLAB (the
# binary, default target/release/ntplab), NTPLAB_CONF (lines put at the top of
# ntplab's configuration, e.g. "interleaved = false"), NTPLAB_SERVER_CONF
# (lines added to its [server] section, e.g. "busy_poll_us = 200"),
# RECV_BUFFER (its [server] recv_buffer, default 4194304: it rides out the
# moments the server is not scheduled; under sustained overload it makes
# ntplab answer requests that waited tens of ms, late for ntpperf; 212992 is
# the kernel's default, chronyd's: see docs/throughput.md), SERVERS ("ntplab chronyd ntpd-rs"),
# PERF_DIR (if set: `perf record` of the server over the first PERF_S
# seconds, default 5, of each run, into PERF_DIR/SERVER-MODE-ROUND.data; with
# PERF_ALL=1 of both CPUs instead; call graphs from frame pointers, or as
# PERF_CALLGRAPH says, e.g. "--call-graph dwarf" for a release build without
# frame pointers), PERF_STAT (a `perf stat -e` event list:
# counted on the server's threads over PERF_S seconds from 1 s into each run,
# printed before its row as "#   perf stat: EVENT COUNT").
#
# CLIENTS=N (opt-in, N <= 131072; e.g. CLIENTS=100000): ntpperf simulates N
# clients at every rate instead of its own rate/10 (at most 16,384). This
# CHANGES THE INDEPENDENT TOOL: the script patches its own /tmp copy of
# ntpperf's perf.c before building it (never the repository, never the
# source archive), exactly these two lines:
#   #define MAX_CLIENTS 16384      ->  #define MAX_CLIENTS N
#   num_clients = rate / 10;       ->  num_clients = N;
# so each client sends rate/N requests a second (1/s at 100,000 requests/s
# from 100,000 clients) instead of 10, and warms up with 2 requests (its
# first counted one is its third), which takes 2N/rate seconds at each step:
# use a RATE_MIN near N (e.g. RATE_MIN=100000: 2 s of warm-up a step).
# ntpperf computes that warm-up in 32-bit unsigned nanoseconds
# (interval x clients x 2), which wraps below 2N x 1e9 / 2^32 requests/s
# (46,567/s for 100,000 clients: the step then ends inside the warm-up and
# counts no request), so the script refuses a lower RATE_MIN. The
# sources become 172.30.0.0/15 (131,072 addresses; the server routes the
# /15 back) and ntpperf runs with a 256 MiB stack limit (`ulimit -s`), since
# its client array (56 octets a client) is on its stack. ntpperf's
# "clients" column, in the table printed with TX_OFFSET, shows N.
#
# Per round, mode and server it prints: the highest rate with >= 99 %
# responses (in interleaved mode also with >= 99 % of them interleaved), the
# peak responses/s, the server's CPU time per response (utime + stime from
# /proc over the ntpperf run, divided by the responses ntpperf counted), the
# server's peak resident memory (VmHWM), the load average before and after,
# the user-mode part of the CPU time per response (utime alone: the part a
# change to the server's own code moves; the rest is the kernel's),
# and ntplab's rate as a ratio of each other server's in that round. The
# servers of a round run one after the other, the order rotating each round.
set -euo pipefail

SRC=${1:-${NTPPERF_SRC:-/work/shared/tools/ntpperf.tar.gz}}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-basic interleaved}
RATE_MIN=${RATE_MIN:-1000}
RATE_MAX=${RATE_MAX:-1000000}
STEP_S=${STEP_S:-1}
WORKERS=${WORKERS:-$(nproc)}
SERVERS=${SERVERS:-ntplab chronyd ntpd-rs}
CLIENTS=${CLIENTS:-}
SRC_NET=172.30.0.0/16
REPO=$(cd "$(dirname "$0")/.." && pwd)
NTPLAB=${NTPLAB:-$REPO/target/release/ntplab}

# shellcheck source=scripts/lib-server.sh
. "$REPO/scripts/lib-server.sh"

die() { echo "bench-servers: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
[ -e "$SRC" ] || die "ntpperf source not found at $SRC (give its .tar.gz or directory as the first argument or in NTPPERF_SRC)"
[ -x "$NTPLAB" ] || die "no ntplab binary at $NTPLAB (cargo build --release --bin ntplab, or set NTPLAB)"
command -v setpriv >/dev/null || die "setpriv (util-linux) is needed to drop CAP_SYS_TIME"

if [ -n "$CLIENTS" ]; then
    [[ "$CLIENTS" =~ ^[1-9][0-9]*$ ]] && [ "$CLIENTS" -le 131072 ] || die "CLIENTS must be a number from 1 to 131072, not '$CLIENTS'"
    SRC_NET=172.30.0.0/15
    min_rate=$((2 * CLIENTS * 1000000000 / 4294967296 + 1))
    [ "$RATE_MIN" -ge "$min_rate" ] || die "CLIENTS=$CLIENTS needs RATE_MIN >= $min_rate (ntpperf's warm-up time would wrap in 32 bits)"
fi

WORK=$(mktemp -d /tmp/bench-servers.XXXXXX)
SRV=bsrv$$
CLI=bcli$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$SRV" 2>/dev/null || true
    ip netns del "$CLI" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

# Build ntpperf outside the repository.
if [ -d "$SRC" ]; then cp -r "$SRC" "$WORK/ntpperf"; else mkdir "$WORK/ntpperf" && tar xzf "$SRC" -C "$WORK/ntpperf" --strip-components=1; fi
if [ -n "$CLIENTS" ]; then
    # CLIENTS: the two-line change to ntpperf described in the header, on this copy only.
    sed -i -e "s/^#define MAX_CLIENTS 16384\$/#define MAX_CLIENTS $CLIENTS/" \
        -e "s|^\tnum_clients = rate / 10;\$|\tnum_clients = $CLIENTS;|" "$WORK/ntpperf/perf.c"
    grep -q "^#define MAX_CLIENTS $CLIENTS\$" "$WORK/ntpperf/perf.c" && grep -q "^.num_clients = $CLIENTS;\$" "$WORK/ntpperf/perf.c" ||
        die "CLIENTS: ntpperf's perf.c does not have the lines to change (another ntpperf version?)"
fi
make -s -C "$WORK/ntpperf" >"$WORK/make.log" 2>&1 || die "ntpperf did not build (libpcap-dev installed?): $(tail -3 "$WORK/make.log")"
NTPPERF=$WORK/ntpperf/ntpperf
if [[ " $MODES " == *" nts"* ]]; then
    # A second build with NTS (gnutls); the plain one serves the other modes.
    cp -r "$WORK/ntpperf" "$WORK/ntpperf-nts"
    make -s -C "$WORK/ntpperf-nts" clean >/dev/null 2>&1 || true
    NTPPERF_NTS=1 make -s -C "$WORK/ntpperf-nts" >"$WORK/make-nts.log" 2>&1 ||
        die "ntpperf with NTS did not build (gnutls-dev installed?): $(tail -3 "$WORK/make-nts.log")"
    command -v openssl >/dev/null || die "openssl is needed to make the NTS certificate"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 -nodes \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj "/CN=10.213.0.1" \
        -addext "subjectAltName=IP:10.213.0.1" -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
fi

# Two namespaces and a veth pair.
ip netns add "$SRV"
ip netns add "$CLI"
ip link add vs$$ type veth peer name vc$$
ip link set vs$$ netns "$SRV"
ip link set vc$$ netns "$CLI"
ip -n "$SRV" addr add 10.213.0.1/24 dev vs$$
ip -n "$CLI" addr add 10.213.0.2/24 dev vc$$
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up
ip -n "$SRV" link set vs$$ up
ip -n "$CLI" link set vc$$ up
ip -n "$SRV" route add "$SRC_NET" via 10.213.0.2
MAC=$(ip netns exec "$SRV" cat /sys/class/net/vs$$/address)

# SERVER_CPUS / NTPPERF_CPUS: taskset CPU lists for every server (all its
# threads) and for ntpperf; unset: wherever the scheduler puts them.
pin() { # CPUS: the taskset prefix for a command, none without CPUS
    [ -n "$1" ] && printf '%s\n' taskset -c "$1"
    return 0
}
nopriv() {
    local pre
    mapfile -t pre < <(pin "${SERVER_CPUS:-}")
    ip netns exec "$SRV" "${pre[@]}" setpriv --inh-caps=-sys_time --bounding-set=-sys_time "$@"
}

# The process name (comm: at most 15 characters) of server NAME: ntplab's is
# its binary's file name (NTPLAB may be a copy named otherwise).
server_comm() {
    case $1 in
    ntpd-rs) echo ntp-daemon ;;
    ntplab) basename "$NTPLAB" | cut -c1-15 ;;
    *) echo "$1" ;;
    esac
}

start_server() { # NAME MODE -> PID in SERVER_PID
    local name=$1 mode=$2 dir=$WORK/$1
    mkdir -p "$dir"
    chmod 700 "$dir"
    case $name in
    ntplab)
        printf '%b[server]\nworkers = %s\n%b%b' "${NTPLAB_CONF:+$NTPLAB_CONF\n}" "$WORKERS" "recv_buffer = ${RECV_BUFFER:-4194304}\n" \
            "${NTPLAB_SERVER_CONF:+$NTPLAB_SERVER_CONF\n}" >"$dir/ntplab.toml"
        [ "$mode" = nts ] && printf '[nts]\ncertificate = "%s"\nkey = "%s"\nke_listen = ["10.213.0.1:4460"]\n' \
            "$WORK/cert.pem" "$WORK/key.pem" >>"$dir/ntplab.toml"
        nopriv timeout 600 "$NTPLAB" serve --listen 10.213.0.1:123 --local-stratum 1 --config "$dir/ntplab.toml" \
            >"$dir/log" 2>&1 &
        ;;
    chronyd)
        cat >"$dir/chrony.conf" <<EOF
local stratum 1
allow all
cmdport 0
pidfile $dir/chronyd.pid
clientloglimit 100000000
EOF
        [ "$mode" = nts ] && printf 'ntsserverkey %s\nntsservercert %s\nntsport 4460\nntsdumpdir %s\n' \
            "$WORK/key.pem" "$WORK/cert.pem" "$dir" >>"$dir/chrony.conf"
        nopriv timeout 600 chronyd -x -d -u root -f "$dir/chrony.conf" >"$dir/log" 2>&1 &
        ;;
    ntpd-rs)
        cat >"$dir/ntp.toml" <<EOF
[[server]]
listen = "10.213.0.1:123"
[synchronization]
local-stratum = 1
EOF
        nopriv timeout 600 ntp-daemon -c "$dir/ntp.toml" >"$dir/log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    sleep 1.5
    SERVER_PROC=$(server_process "$SERVER_PID" "$(server_comm "$name")")
    PIDS+=("$SERVER_PROC")
}

# Stops the server itself (timeout and the shell above it then end), by PID.
stop_bench_server() {
    kill "$SERVER_PROC" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    kill -0 "$SERVER_PROC" 2>/dev/null && { sleep 1; kill -9 "$SERVER_PROC" 2>/dev/null || true; }
    return 0
}

# UDP InDatagrams, RcvbufErrors and OutDatagrams of the server's namespace.
udp_counts() {
    ip netns exec "$SRV" awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1; next }
        print $col["InDatagrams"], $col["RcvbufErrors"], $col["OutDatagrams"] }' /proc/net/snmp
}
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat 2>/dev/null || echo 0; }
user_ticks() { awk '{print $14}' /proc/"$1"/stat 2>/dev/null || echo 0; }

run_one() { # NAME MODE ROUND
    local name=$1 mode=$2 round=$3 flag=-B perf=$NTPPERF extra=()
    local secure=${mode%-interleaved}
    [ "${mode#*interleaved}" != "$mode" ] && flag=-I
    if [ "$secure" = nts ] && [ "$name" = ntpd-rs ]; then
        echo "$round $mode $name: not run in NTS mode" >&2
        return
    fi
    start_server "$name" "$secure"
    if [ "$(cat /proc/"$SERVER_PROC"/comm 2>/dev/null)" = "$(server_comm "$name")" ]; then :; else
        echo "$round $mode $name: server did not start: $(tail -2 "$WORK/$name/log")" >&2
        stop_bench_server # whatever did start must not answer for the next server
        return
    fi
    local load0 load1 t0 t1 u0 u1 out=$WORK/$name-$mode-$round.txt
    if [ "$secure" = nts ]; then
        # A fresh NTS session from the client namespace (bounded: 10 tries, 0.5 s apart).
        local session=$WORK/$name/session-$round
        for _ in $(seq 1 10); do
            rm -f "$session"
            ip netns exec "$CLI" timeout 10 "$NTPLAB" query --nts 10.213.0.1:4460 --trusted-certificates "$WORK/cert.pem" \
                --aead 15 --timeout 1 --ntpperf-session "$session" >/dev/null 2>&1 && break
            sleep 0.5
        done
        if [ ! -s "$session" ]; then
            echo "$round $mode $name: no NTS session: $(tail -2 "$WORK/$name/log")" >&2
            stop_bench_server
            return
        fi
        perf=$WORK/ntpperf-nts/ntpperf
        extra=(-S "$(cat "$session")")
    fi
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    local udp0 udp1
    udp0=$(udp_counts)
    t0=$(cpu_ticks "$SERVER_PROC")
    u0=$(user_ticks "$SERVER_PROC")
    [ -n "${TX_OFFSET:-}" ] && extra+=(-o "$TX_OFFSET")
    local perf_pid= stat_pid=
    if [ -n "${PERF_DIR:-}" ]; then
        # Samples (call graphs, 999 Hz) over the first PERF_S seconds of the
        # run: of the server, or with PERF_ALL=1 of both CPUs (ntpperf and
        # softirqs too; the server's threads are then in the comm column).
        local target=(-p "$SERVER_PROC")
        [ -n "${PERF_ALL:-}" ] && target=(-a)
        timeout $((${PERF_S:-5} + 30)) perf record -q -F 999 ${PERF_CALLGRAPH:---call-graph fp} "${target[@]}" -o "$PERF_DIR/$name-$mode-$round.data" \
            -- sleep "${PERF_S:-5}" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    if [ -n "${PERF_STAT:-}" ]; then
        # Counts of the server's threads over the same PERF_S seconds (after
        # 1 s of ramp-up): PERF_STAT is a perf stat event list, e.g.
        # "syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,context-switches".
        (sleep 1 && exec timeout $((${PERF_S:-5} + 30)) perf stat -x, -e "$PERF_STAT" -p "$SERVER_PROC" \
            -o "${PERF_DIR:-$WORK}/$name-$mode-$round.stat" -- sleep "${PERF_S:-5}") >/dev/null 2>&1 &
        stat_pid=$!
    fi
    # The stack limit: ntpperf keeps its clients on its stack (CLIENTS).
    local pre
    mapfile -t pre < <(pin "${NTPPERF_CPUS:-}")
    ip netns exec "$CLI" "${pre[@]}" bash -c 'ulimit -s 262144 && exec "$@"' ntpperf timeout 120 "$perf" -i vc$$ -m "$MAC" -d 10.213.0.1 -s "$SRC_NET" "$flag" "${extra[@]}" -l \
        -r "$RATE_MIN"-"$RATE_MAX" -t "$STEP_S" >"$out" 2>&1 || true
    t1=$(cpu_ticks "$SERVER_PROC")
    u1=$(user_ticks "$SERVER_PROC")
    udp1=$(udp_counts)
    [ -n "$perf_pid" ] && { wait "$perf_pid" || true; }
    [ -n "$stat_pid" ] && { wait "$stat_pid" || true; }
    [ -n "$stat_pid" ] && sed -n 's/^\([0-9.<>a-z ]*\),[^,]*,\([^,]*\),.*/#   perf stat: \2 \1/p' "${PERF_DIR:-$WORK}/$name-$mode-$round.stat"
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    local hwm
    hwm=$(awk '/VmHWM/ {print $2}' /proc/"$SERVER_PROC"/status 2>/dev/null || echo 0)
    stop_bench_server
    # ntpperf lines: rate clients lost% invalid% basic% xleave% ... (a step
    # that counted no request prints -nan%: skipped)
    awk -v name="$name" -v mode="$mode" -v round="$round" -v step="$STEP_S" -v ticks=$((t1 - t0)) -v uticks=$((u1 - u0)) \
        -v hz="$(getconf CLK_TCK)" -v hwm="$hwm" -v load0="$load0" -v load1="$load1" '
        $1 ~ /^[0-9]+$/ && $3 ~ /^[0-9.]+%$/ {
            rate = $1; lost = $3 + 0; invalid = $4 + 0; xl = $6 + 0
            # Valid responses only (an NTSN, say, is invalid).
            ok = 100 - lost - invalid
            resp += rate * step * ok / 100
            if (rate * ok / 100 > peak) peak = rate * ok / 100
            if (ok >= 99 && rate > hi) hi = rate
            if (ok >= 99 && xl >= 99 && rate > hix) hix = rate
        }
        END {
            cpu_us = resp > 0 ? ticks / hz * 1e6 / resp : 0
            user_us = resp > 0 ? uticks / hz * 1e6 / resp : 0
            printf "%s\t%s\t%s\t%d\t%d\t%d\t%.2f\t%d\t%s\t%s\t%.2f\n", round, mode, name, hi, (mode ~ /interleaved/ ? hix : hi), peak, cpu_us, hwm, load0, load1, user_us
        }' "$out" | tee -a "$WORK/results.tsv"
    [ -n "${TX_OFFSET:-}" ] && sed 's/^/#   /' "$out"
    # What reached the server: ntpperf (-l) sends late when it falls behind
    # and stops at the end of the step, so it can send fewer requests than
    # its rate says; its percentages are of the requests it sent.
    read -r a0 b0 c0 <<<"$udp0"
    read -r a1 b1 c1 <<<"$udp1"
    echo "#   udp in the server's namespace: $((a1 - a0)) datagrams received, $((b1 - b0)) dropped (receive buffer full), $((c1 - c0)) sent"
    return 0
}

available=()
for s in $SERVERS; do
    case $s in
    ntplab) available+=(ntplab) ;;
    chronyd) command -v chronyd >/dev/null && available+=(chronyd) || echo "chronyd not installed: skipped" >&2 ;;
    ntpd-rs) command -v ntp-daemon >/dev/null && available+=(ntpd-rs) || echo "ntpd-rs (ntp-daemon) not installed: skipped" >&2 ;;
    esac
done

echo "# ntpperf over veth between two namespaces; $(nproc) CPUs; ntplab workers=$WORKERS; rate $RATE_MIN-$RATE_MAX, x1.5, $STEP_S s a step${CLIENTS:+; ntpperf patched: $CLIENTS clients from $SRC_NET}"
printf 'round\tmode\tserver\thighest>=99%%\thighest>=99%%+xleave>=99%%\tpeak resp/s\tCPU us/resp\tVmHWM kB\tload before\tload after\tuser us/resp\n'
for round in $(seq 1 "$ROUNDS"); do
    n=${#available[@]}
    for mode in $MODES; do
        for i in $(seq 0 $((n - 1))); do
            # Rotate the order each round: A B C, B C A, C A B.
            run_one "${available[$(((i + round - 1) % n))]}" "$mode" "$round"
        done
    done
done

echo
echo "# ntplab's highest rate with >= 99 % responses (interleaved: and >= 99 % interleaved) over each server's, per round"
awk -F'\t' '{ key = $1 "\t" $2; v[key, $3] = $5; keys[key] = 1; servers[$3] = 1 }
    END {
        for (k in keys) for (s in servers) if (s != "ntplab" && v[k, s] > 0 && v[k, "ntplab"] != "")
            printf "%s\tntplab/%s\t%.2f\n", k, s, v[k, "ntplab"] / v[k, s]
    }' "$WORK/results.tsv" | sort
