#!/usr/bin/env bash
# Regenerate the NTP reference captures in this directory from real peers
# (chrony and ntpd-rs) talking over loopback. See README.md for the contents.
#
# Requirements: chronyd (4.x, built with +NTS), tshark/dumpcap, editcap,
# openssl, setpriv; optionally ntp-daemon (ntpd-rs, `cargo install ntpd --locked`;
# set NTP_DAEMON=/path/to/ntp-daemon if it is not on PATH). Without ntpd-rs the
# ntpdrs-*.pcapng files are left untouched.
#
# Safety:
#  * Every daemon and client runs under `setpriv --bounding-set=-sys_time`, so
#    none of them can set or slew the system clock even when run as root.
#    chronyd servers additionally run with -x, clients with -Q (measure only);
#    ntpd-rs runs with [[server]] sections and no [[source]], so it never tries
#    to steer the clock.
#  * All traffic goes to 127.0.0.1 / ::1 on the high ports listed below.
#  * Only processes started by this script are stopped, by PID.
#  * Every wait is bounded.
set -euo pipefail

OUT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Ports (keep in sync with NTP_UDP_PORTS in tests/tshark_agreement.rs).
CHRONY_NTP=11123     # chrony server A: local stratum 1 (127.0.0.1 and ::1)
CHRONY_NTSKE=11460   # chrony server A: NTS-KE (TCP)
CHRONY2_NTP=11223    # chrony server B: stratum 2, synchronised to A
CHRONY2_ACQ=11224    # chrony server B: client port towards A (not captured)
NTPDRS_NTP=11323     # ntpd-rs: local-stratum 1 (127.0.0.1 and ::1), also NTS
NTPDRS_NTSKE=11360   # ntpd-rs: NTS-KE (TCP)
NTPDRS_DENY=11324    # ntpd-rs: denylist 127.0.0.0/8 -> DENY kiss-o'-death
NTPDRS_RATE=11325    # ntpd-rs: rate limiting 10 s -> RATE kiss-o'-death
NTPDRS_UNSYNC=11326  # second ntpd-rs daemon: default local-stratum 16

NO_TIME=(setpriv --bounding-set=-sys_time --inh-caps=-sys_time)

WORK="$(mktemp -d /tmp/ntplab-captures.XXXXXX)"
PIDS=()

log() { printf '[regenerate] %s\n' "$*" >&2; }

stop_pid() {
    # Stop one process we started: SIGINT/TERM first, SIGKILL after ~5 s.
    local pid=$1 sig=${2:-TERM} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ $rc -ne 0 || -n "${KEEP_WORK:-}" ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in chronyd tshark editcap capinfos openssl setpriv timeout; do
    command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 1; }
done

NTP_DAEMON="${NTP_DAEMON:-$(command -v ntp-daemon || true)}"
if [[ -z "$NTP_DAEMON" && -x "$HOME/.cargo/bin/ntp-daemon" ]]; then
    NTP_DAEMON="$HOME/.cargo/bin/ntp-daemon"
fi
if [[ -z "$NTP_DAEMON" ]]; then
    log "ntp-daemon (ntpd-rs) not found: ntpdrs-*.pcapng will not be regenerated"
fi

# Wait (bounded, ~timeout s) until FILE contains PATTERN.
wait_for_log() {
    local file=$1 pattern=$2 timeout=${3:-10} i
    for i in $(seq 1 $((timeout * 10))); do
        if grep -q -- "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    log "timed out waiting for '$pattern' in $file"
    cat "$file" >&2 || true
    return 1
}

# Wait (bounded) until something listens on PROTO (udp|tcp) ADDR:PORT
# (ADDR as ss prints it: 127.0.0.1 or [::1]).
wait_for_listen() {
    local proto=$1 addr=$2 port=$3 i
    for i in $(seq 1 100); do
        if ss -Hln "--$proto" 2>/dev/null | awk '{print $4}' | grep -qxF "$addr:$port"; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing listening on $proto $addr:$port"
    return 1
}

# ---------------------------------------------------------------- certificates
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" 2>"$WORK/openssl.log"
chmod 644 "$WORK/key.pem"

# ------------------------------------------------------------- chrony server A
mkdir -p "$WORK/chronyA/nts"
cat >"$WORK/chronyA/chrony.conf" <<EOF
port $CHRONY_NTP
bindaddress 127.0.0.1
bindaddress ::1
cmdport 0
local stratum 1
allow 127.0.0.1
allow ::1
ntsserverkey $WORK/key.pem
ntsservercert $WORK/cert.pem
ntsport $CHRONY_NTSKE
ntsdumpdir $WORK/chronyA/nts
pidfile $WORK/chronyA/chronyd.pid
driftfile $WORK/chronyA/drift
EOF
"${NO_TIME[@]}" chronyd -n -x -u root -f "$WORK/chronyA/chrony.conf" \
    -l "$WORK/chronyA/chronyd.log" &
PIDS+=($!)
wait_for_listen udp 127.0.0.1 "$CHRONY_NTP"
wait_for_listen udp "[::1]" "$CHRONY_NTP"
wait_for_listen tcp 127.0.0.1 "$CHRONY_NTSKE"
log "chrony server A up (pid ${PIDS[-1]})"

# ------------------------------------------------------------- chrony server B
# Stratum 2, synchronised (with -x: tracking only) to A, so its responses carry
# a non-zero root delay and dispersion and an IPv4 reference ID.
mkdir -p "$WORK/chronyB"
cat >"$WORK/chronyB/chrony.conf" <<EOF
port $CHRONY2_NTP
bindaddress 127.0.0.1
acquisitionport $CHRONY2_ACQ
cmdport 0
server 127.0.0.1 port $CHRONY_NTP iburst minpoll 4 maxpoll 4
allow 127.0.0.1
pidfile $WORK/chronyB/chronyd.pid
driftfile $WORK/chronyB/drift
EOF
"${NO_TIME[@]}" chronyd -n -x -u root -f "$WORK/chronyB/chrony.conf" \
    -l "$WORK/chronyB/chronyd.log" &
PIDS+=($!)
log "chrony server B started (pid ${PIDS[-1]})"

# ------------------------------------------------------------ ntpd-rs servers
if [[ -n "$NTP_DAEMON" ]]; then
    mkdir -p "$WORK/ntpdrs" "$WORK/ntpdrs-unsync"
    cat >"$WORK/ntpdrs/ntp.toml" <<EOF
# Server only: no [[source]] section, so ntpd-rs never steers the clock.
[observability]
log-level = "info"
ansi-colors = false

[synchronization]
local-stratum = 1

[[server]]
listen = "127.0.0.1:$NTPDRS_NTP"

[[server]]
listen = "[::1]:$NTPDRS_NTP"

[[server]]
listen = "127.0.0.1:$NTPDRS_DENY"
denylist = { filter = ["127.0.0.0/8"], action = "deny" }

[[server]]
listen = "127.0.0.1:$NTPDRS_RATE"
rate-limiting-cache-size = 32
rate-limiting-cutoff-ms = 10000

[[nts-ke-server]]
listen = "127.0.0.1:$NTPDRS_NTSKE"
certificate-chain-path = "$WORK/cert.pem"
private-key-path = "$WORK/key.pem"
ntp-port = $NTPDRS_NTP
ntp-server = "127.0.0.1"
EOF
    cat >"$WORK/ntpdrs-unsync/ntp.toml" <<EOF
# Server only, default local-stratum (16): answers as an unsynchronised server.
[observability]
log-level = "info"
ansi-colors = false

[[server]]
listen = "127.0.0.1:$NTPDRS_UNSYNC"
EOF
    "${NO_TIME[@]}" "$NTP_DAEMON" -c "$WORK/ntpdrs/ntp.toml" >"$WORK/ntpdrs/ntpd-rs.log" 2>&1 &
    PIDS+=($!)
    log "ntpd-rs started (pid ${PIDS[-1]})"
    "${NO_TIME[@]}" "$NTP_DAEMON" -c "$WORK/ntpdrs-unsync/ntp.toml" \
        >"$WORK/ntpdrs-unsync/ntpd-rs.log" 2>&1 &
    PIDS+=($!)
    log "ntpd-rs (unsynchronised) started (pid ${PIDS[-1]})"
    wait_for_listen udp 127.0.0.1 "$NTPDRS_NTP"
    wait_for_listen udp "[::1]" "$NTPDRS_NTP"
    wait_for_listen udp 127.0.0.1 "$NTPDRS_DENY"
    wait_for_listen udp 127.0.0.1 "$NTPDRS_RATE"
    wait_for_listen udp 127.0.0.1 "$NTPDRS_UNSYNC"
    wait_for_listen tcp 127.0.0.1 "$NTPDRS_NTSKE"
fi

# --------------------------------------------------------------------- helpers
CLIENT_N=0
# One-shot chrony client in measurement-only mode (-Q never touches the clock).
# Arguments are chrony.conf directives. Fails only if chronyd itself does not
# terminate; a client that gets no usable sample (e.g. after a KoD) is fine.
chrony_client() {
    CLIENT_N=$((CLIENT_N + 1))
    local dir="$WORK/client$CLIENT_N" rc=0
    mkdir -p "$dir"
    log "client $CLIENT_N: $*"
    timeout -s TERM 25 "${NO_TIME[@]}" chronyd -Q -t 10 -u root \
        "pidfile $dir/chronyd.pid" "cmdport 0" "ntsdumpdir $dir" \
        "ntstrustedcerts $WORK/cert.pem" "$@" >"$dir/out.log" 2>&1 || rc=$?
    if [[ $rc -eq 124 ]]; then
        log "client $CLIENT_N did not finish"; cat "$dir/out.log" >&2; return 1
    fi
    sed 's/^/    /' "$dir/out.log" >&2
}

TSHARK_PID=""
capture_start() {
    local file=$1 filter=$2
    log "capture $file: $filter"
    rm -f "$WORK/$file"
    tshark -i lo -q -w "$WORK/$file" -f "$filter" >"$WORK/$file.tshark.log" 2>&1 &
    TSHARK_PID=$!
    PIDS+=("$TSHARK_PID")
    wait_for_log "$WORK/$file.tshark.log" "Capturing on" 10
    sleep 0.5
}

# Stop the capture and copy it into OUT_DIR if it holds at least MIN packets.
capture_stop() {
    local file=$1 min=$2 count
    sleep 1
    stop_pid "$TSHARK_PID" INT
    TSHARK_PID=""
    count=$(capinfos -c -M "$WORK/$file" | awk '/Number of packets/ {print $NF}')
    if [[ "$count" -lt "$min" ]]; then
        log "$file: only $count packets (expected at least $min)"
        return 1
    fi
    cp "$WORK/$file" "$OUT_DIR/$file"
    log "$file: $count packets"
}

# ------------------------------------------------------------------- captures
# 1. chrony client -> chrony server A, basic client/server mode, IPv4.
capture_start chrony-basic.pcapng "udp port $CHRONY_NTP"
chrony_client "server 127.0.0.1 port $CHRONY_NTP iburst maxsamples 4"
capture_stop chrony-basic.pcapng 4

# 2. Interleaved mode (xleave) chrony -> chrony.
capture_start chrony-xleave.pcapng "udp port $CHRONY_NTP"
chrony_client "server 127.0.0.1 port $CHRONY_NTP iburst maxsamples 6 xleave"
capture_stop chrony-xleave.pcapng 6

# 3. chrony client -> chrony server B (stratum 2: non-zero root delay and
#    dispersion, IPv4 address as reference ID). Wait until B has selected A.
wait_for_log "$WORK/chronyB/chronyd.log" "Selected source" 40
capture_start chrony-stratum2.pcapng "udp port $CHRONY2_NTP"
chrony_client "server 127.0.0.1 port $CHRONY2_NTP iburst maxsamples 4"
capture_stop chrony-stratum2.pcapng 4

# 4. NTS: chrony client -> chrony server A (NTS-KE over TCP, then NTP with
#    NTS extension fields), once in basic and once in interleaved mode.
capture_start chrony-nts.pcapng "udp port $CHRONY_NTP or tcp port $CHRONY_NTSKE"
chrony_client "server 127.0.0.1 port $CHRONY_NTP nts ntsport $CHRONY_NTSKE iburst maxsamples 4"
chrony_client "server 127.0.0.1 port $CHRONY_NTP nts ntsport $CHRONY_NTSKE iburst maxsamples 4 xleave"
capture_stop chrony-nts.pcapng 8

if [[ -n "$NTP_DAEMON" ]]; then
    # 5. chrony client -> ntpd-rs (local-stratum 1), IPv4.
    capture_start ntpdrs-basic.pcapng "udp port $NTPDRS_NTP"
    chrony_client "server 127.0.0.1 port $NTPDRS_NTP iburst maxsamples 4"
    capture_stop ntpdrs-basic.pcapng 4

    # 6. Kiss-o'-death and unsynchronised responses from ntpd-rs.
    capture_start ntpdrs-kod.pcapng \
        "udp port $NTPDRS_DENY or udp port $NTPDRS_RATE or udp port $NTPDRS_UNSYNC"
    chrony_client "server 127.0.0.1 port $NTPDRS_DENY iburst maxsamples 2"
    chrony_client "server 127.0.0.1 port $NTPDRS_RATE iburst maxsamples 3"
    chrony_client "server 127.0.0.1 port $NTPDRS_UNSYNC iburst maxsamples 2"
    capture_stop ntpdrs-kod.pcapng 4

    # 7. NTS: chrony client -> ntpd-rs NTS-KE + NTP.
    capture_start ntpdrs-nts.pcapng "udp port $NTPDRS_NTP or tcp port $NTPDRS_NTSKE"
    chrony_client "server 127.0.0.1 port $NTPDRS_NTP nts ntsport $NTPDRS_NTSKE iburst maxsamples 4"
    capture_stop ntpdrs-nts.pcapng 4
fi

# 8. IPv6 (::1): chrony -> chrony A, and chrony -> ntpd-rs if available.
IPV6_FILTER="udp port $CHRONY_NTP"
[[ -n "$NTP_DAEMON" ]] && IPV6_FILTER="$IPV6_FILTER or udp port $NTPDRS_NTP"
capture_start ipv6.pcapng "ip6 and ($IPV6_FILTER)"
chrony_client "server ::1 port $CHRONY_NTP iburst maxsamples 3"
if [[ -n "$NTP_DAEMON" ]]; then
    chrony_client "server ::1 port $NTPDRS_NTP iburst maxsamples 3"
fi
capture_stop ipv6.pcapng 4

# 9. Classic libpcap (microsecond timestamps) copy of the basic capture.
editcap -F pcap "$OUT_DIR/chrony-basic.pcapng" "$OUT_DIR/chrony-basic.pcap"

# ------------------------------------------------------------------- summary
{
    echo "# generated $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# $(chronyd --version 2>/dev/null | head -n1)"
    if [[ -n "$NTP_DAEMON" ]]; then echo "# $("$NTP_DAEMON" --version 2>&1 | head -n1)"; fi
    echo "# $(tshark --version 2>/dev/null | head -n1)"
} >"$WORK/versions.txt"
cat "$WORK/versions.txt" >&2
for f in "$OUT_DIR"/*.pcap "$OUT_DIR"/*.pcapng; do
    capinfos -t -E -c -M "$f" | grep -E 'File name|File type|File encapsulation|Number of packets' >&2
done
log "done"
