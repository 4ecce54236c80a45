#!/usr/bin/env bash
# Regenerate the NTP reference captures in this directory from real peers
# (chrony and ntpd-rs) talking over loopback. See README.md for the contents.
#
# Usage: tests/captures/regenerate.sh        (as root; takes about 2 minutes)
#
# Requirements: chronyd 4.x built with +NTS, tshark/dumpcap, editcap, mergecap,
# capinfos, openssl, unshare, setpriv, ip, ss; optionally ntp-daemon (ntpd-rs:
# `cargo install ntpd --locked`; set NTP_DAEMON=/path/to/ntp-daemon if it is not
# on PATH or in ~/.cargo/bin). Without ntpd-rs the ntpdrs-*.pcapng files are
# left untouched and ipv6.pcapng holds only the chrony exchange.
#
# How it works: the script re-executes itself in a private network namespace
# (unshare --net), so every server can use the standard ports (NTP UDP 123,
# NTS-KE TCP 4460) on 127.0.0.1 / ::1 without clashing with anything on the
# host, and tshark sees only this script's traffic on the namespace's `lo`.
# Servers run in phases, one set at a time; each capture wraps one or more
# one-shot chrony clients.
#
# Safety:
#  * Every daemon and client runs under `setpriv --bounding-set=-sys_time`, so
#    none of them can set or slew the system clock even when run as root.
#    chronyd servers additionally run with -x, clients with -Q (measure only);
#    ntpd-rs runs with [[server]] sections and no [[source]], so it never tries
#    to steer the clock.
#  * All traffic goes to 127.0.0.1 / ::1 inside the private namespace.
#  * Only processes started by this script are stopped, by PID.
#  * Every wait is bounded.
set -euo pipefail

OUT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[regenerate] %s\n' "$*" >&2; }

if [[ -z "${NTPLAB_CAPTURE_NETNS:-}" ]]; then
    [[ $(id -u) -eq 0 ]] || { log "must run as root (network namespace, packet capture)"; exit 1; }
    exec unshare --net env NTPLAB_CAPTURE_NETNS=1 bash "${BASH_SOURCE[0]}" "$@"
fi
ip link set lo up

NO_TIME=(setpriv --bounding-set=-sys_time --inh-caps=-sys_time)

WORK="$(mktemp -d /tmp/ntplab-captures.XXXXXX)"
PIDS=()        # everything this script started and has not stopped yet
PHASE_PIDS=()  # the servers of the current phase

stop_pid() {
    # Stop one process we started: SIG (default TERM), SIGKILL after ~5 s.
    local pid=$1 sig=${2:-TERM} i
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
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

for tool in chronyd tshark editcap mergecap capinfos openssl setpriv timeout ss; do
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

# Wait (bounded) until something listens on PROTO (udp|tcp) at ADDR:PORT, ADDR
# written the way ss prints it (127.0.0.1 or [::1]).
wait_for_listen() {
    local proto=$1 addr_port=$2 i
    for i in $(seq 1 100); do
        if ss -Hln "--$proto" 2>/dev/null | awk '{print $4}' | grep -qxF "$addr_port"; then
            return 0
        fi
        sleep 0.1
    done
    log "nothing listening on $proto $addr_port"
    return 1
}

# ------------------------------------------------------------- servers
# start_chronyd NAME CONF-LINES...: chrony server, never touching the clock.
start_chronyd() {
    local name=$1; shift
    local dir="$WORK/$name"
    mkdir -p "$dir"
    printf '%s\n' "$@" "cmdport 0" "pidfile $dir/chronyd.pid" "driftfile $dir/drift" \
        >"$dir/chrony.conf"
    "${NO_TIME[@]}" chronyd -n -x -u root -f "$dir/chrony.conf" -l "$dir/chronyd.log" &
    PIDS+=($!); PHASE_PIDS+=($!)
    log "$name: chronyd started (pid $!)"
}

# start_ntpdrs NAME TOML: ntpd-rs with server sections only (no [[source]]).
start_ntpdrs() {
    local name=$1 toml=$2
    local dir="$WORK/$name"
    mkdir -p "$dir"
    if grep -q '^\[\[source\]\]' <<<"$toml"; then
        log "refusing to start ntpd-rs with a [[source]] section"; return 1
    fi
    printf '[observability]\nlog-level = "info"\nansi-colors = false\n\n%s\n' "$toml" \
        >"$dir/ntp.toml"
    "${NO_TIME[@]}" "$NTP_DAEMON" -c "$dir/ntp.toml" >"$dir/ntpd-rs.log" 2>&1 &
    PIDS+=($!); PHASE_PIDS+=($!)
    log "$name: ntp-daemon started (pid $!)"
}

end_phase() {
    local pid
    for pid in "${PHASE_PIDS[@]}"; do
        stop_pid "$pid"
    done
    PHASE_PIDS=()
}

# ------------------------------------------------------------- clients
CLIENT_N=0
# chrony_client COOKIEDIR DIRECTIVES...: one-shot chrony client in
# measurement-only mode (-Q never touches the clock), at most 10 s. COOKIEDIR
# is its ntsdumpdir ("-": a fresh one). A client that gets no usable sample
# (KoD, rate limiting) is not an error.
chrony_client() {
    local dumpdir=$1; shift
    CLIENT_N=$((CLIENT_N + 1))
    local dir="$WORK/client$CLIENT_N" rc=0
    mkdir -p "$dir"
    [[ $dumpdir == "-" ]] && dumpdir=$dir
    log "client $CLIENT_N: $*"
    timeout -s TERM 25 "${NO_TIME[@]}" chronyd -Q -t 10 -u root \
        "pidfile $dir/chronyd.pid" "cmdport 0" "ntsdumpdir $dumpdir" \
        "ntstrustedcerts $WORK/cert.pem" "$@" >"$dir/out.log" 2>&1 || rc=$?
    sed 's/^/    /' "$dir/out.log" >&2
    if [[ $rc -eq 124 ]]; then
        log "client $CLIENT_N did not finish"; return 1
    fi
}

# ------------------------------------------------------------- capturing
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

# capture_stop FILE MIN: stop the capture; fail unless it holds >= MIN packets.
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
    log "$file: $count packets"
}

publish() {  # publish WORKFILE [OUTNAME]
    install -m 0644 "$WORK/$1" "$OUT_DIR/${2:-$1}"
}

# ------------------------------------------------------------- certificate
# Self-signed P-256 certificate for the NTS-KE servers; clients trust it with
# ntstrustedcerts.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" 2>"$WORK/openssl.log"
chmod 644 "$WORK/key.pem"

# ============================================================= phase 1: chrony
# chrony as a local stratum 1 server on 127.0.0.1:123 and [::1]:123, NTS-KE on
# 127.0.0.1:4460.
mkdir -p "$WORK/chrony-s1/nts"
start_chronyd chrony-s1 \
    "bindaddress 127.0.0.1" "bindaddress ::1" "local stratum 1" \
    "allow 127.0.0.1" "allow ::1" \
    "ntsserverkey $WORK/key.pem" "ntsservercert $WORK/cert.pem" \
    "ntsdumpdir $WORK/chrony-s1/nts"
wait_for_listen udp 127.0.0.1:123
wait_for_listen udp "[::1]:123"
wait_for_listen tcp 127.0.0.1:4460

capture_start chrony-basic.pcapng "udp port 123"
chrony_client - "server 127.0.0.1 iburst maxsamples 4"
capture_stop chrony-basic.pcapng 6
publish chrony-basic.pcapng

capture_start chrony-xleave.pcapng "udp port 123"
chrony_client - "server 127.0.0.1 iburst maxsamples 6 xleave"
capture_stop chrony-xleave.pcapng 8
publish chrony-xleave.pcapng

capture_start chrony-nts.pcapng "udp port 123 or tcp port 4460"
chrony_client - "server 127.0.0.1 nts iburst maxsamples 4"
chrony_client - "server 127.0.0.1 nts iburst maxsamples 4 xleave"
capture_stop chrony-nts.pcapng 12
publish chrony-nts.pcapng

capture_start ipv6-chrony.pcapng "ip6 and udp port 123"
chrony_client - "server ::1 iburst maxsamples 3"
capture_stop ipv6-chrony.pcapng 4
end_phase

# ============================================================= phase 2: stratum 2
# chrony stratum 2 on 127.0.0.1:123, synchronised (with -x only tracking) to a
# chrony stratum 1 on 127.0.0.1:11123 (that traffic is not captured). Its
# responses carry non-zero root delay/dispersion and an IPv4 reference ID.
start_chronyd chrony-upstream \
    "port 11123" "bindaddress 127.0.0.1" "local stratum 1" "allow 127.0.0.1"
wait_for_listen udp 127.0.0.1:11123
start_chronyd chrony-s2 \
    "bindaddress 127.0.0.1" "allow 127.0.0.1" \
    "server 127.0.0.1 port 11123 iburst minpoll 4 maxpoll 4"
wait_for_listen udp 127.0.0.1:123
wait_for_log "$WORK/chrony-s2/chronyd.log" "Selected source" 40

capture_start chrony-stratum2.pcapng "udp port 123"
chrony_client - "server 127.0.0.1 iburst maxsamples 4"
capture_stop chrony-stratum2.pcapng 6
publish chrony-stratum2.pcapng
end_phase

if [[ -n "$NTP_DAEMON" ]]; then
    # ========================================================= phase 3: ntpd-rs
    # ntpd-rs as a local stratum 1 server on 127.0.0.1:123 and [::1]:123,
    # NTS-KE on 127.0.0.1:4460.
    start_ntpdrs ntpdrs-s1 "
[synchronization]
local-stratum = 1

[[server]]
listen = \"127.0.0.1:123\"

[[server]]
listen = \"[::1]:123\"

[[nts-ke-server]]
listen = \"127.0.0.1:4460\"
certificate-chain-path = \"$WORK/cert.pem\"
private-key-path = \"$WORK/key.pem\"
"
    wait_for_listen udp 127.0.0.1:123
    wait_for_listen udp "[::1]:123"
    wait_for_listen tcp 127.0.0.1:4460

    capture_start ntpdrs-basic.pcapng "udp port 123"
    chrony_client - "server 127.0.0.1 iburst maxsamples 4"
    capture_stop ntpdrs-basic.pcapng 6
    publish ntpdrs-basic.pcapng

    # The cookies this client is left with are kept for phase 4.
    mkdir -p "$WORK/old-cookies"
    capture_start ntpdrs-nts.pcapng "udp port 123 or tcp port 4460"
    chrony_client "$WORK/old-cookies" "server 127.0.0.1 nts iburst maxsamples 4"
    capture_stop ntpdrs-nts.pcapng 8
    publish ntpdrs-nts.pcapng

    capture_start ipv6-ntpdrs.pcapng "ip6 and udp port 123"
    chrony_client - "server ::1 iburst maxsamples 3"
    capture_stop ipv6-ntpdrs.pcapng 4
    end_phase

    # ========================================================= phase 4: NTS errors
    # A fresh ntpd-rs (new cookie keys) with rate limiting: the client's saved
    # cookies from phase 3 cannot be decrypted (NTSN kiss-o'-death), and after
    # a new key exchange, rate-limited (unanswered) requests make the client
    # ask for cookies with Cookie Placeholder extension fields.
    start_ntpdrs ntpdrs-ratelimit "
[synchronization]
local-stratum = 1

[[server]]
listen = \"127.0.0.1:123\"
rate-limiting-cache-size = 32
rate-limiting-cutoff-ms = 3000

[[nts-ke-server]]
listen = \"127.0.0.1:4460\"
certificate-chain-path = \"$WORK/cert.pem\"
private-key-path = \"$WORK/key.pem\"
"
    wait_for_listen udp 127.0.0.1:123
    wait_for_listen tcp 127.0.0.1:4460

    capture_start ntpdrs-nts-errors.pcapng "udp port 123 or tcp port 4460"
    chrony_client "$WORK/old-cookies" "server 127.0.0.1 nts iburst maxsamples 4"
    capture_stop ntpdrs-nts-errors.pcapng 6
    publish ntpdrs-nts-errors.pcapng
    end_phase

    # ========================================================= phase 5: DENY, unsync
    # ntpd-rs with the default local stratum (16, unsynchronised): DENY
    # kiss-o'-death on 127.0.0.1:123 (denylist), unsynchronised answers on
    # [::1]:123.
    start_ntpdrs ntpdrs-deny "
[[server]]
listen = \"127.0.0.1:123\"
denylist = { filter = [\"127.0.0.0/8\"], action = \"deny\" }

[[server]]
listen = \"[::1]:123\"
"
    wait_for_listen udp 127.0.0.1:123
    wait_for_listen udp "[::1]:123"

    capture_start ntpdrs-kod.pcapng "udp port 123"
    chrony_client - "server 127.0.0.1 iburst maxsamples 2"
    chrony_client - "server ::1 iburst maxsamples 2"
    capture_stop ntpdrs-kod.pcapng 4
    publish ntpdrs-kod.pcapng
    end_phase
fi

# ============================================================= derived files
# IPv6: chrony and (if available) ntpd-rs exchanges over ::1, merged into one
# pcapng in time order.
if [[ -n "$NTP_DAEMON" ]]; then
    mergecap -w "$WORK/ipv6.pcapng" "$WORK/ipv6-chrony.pcapng" "$WORK/ipv6-ntpdrs.pcapng"
else
    cp "$WORK/ipv6-chrony.pcapng" "$WORK/ipv6.pcapng"
fi
publish ipv6.pcapng

# Classic libpcap copies: microsecond (magic a1b2c3d4) and nanosecond
# (magic a1b23c4d) timestamp variants.
editcap -F pcap "$WORK/chrony-basic.pcapng" "$WORK/chrony-basic.pcap"
publish chrony-basic.pcap
editcap -F nsecpcap "$WORK/chrony-stratum2.pcapng" "$WORK/chrony-stratum2-nsec.pcap"
publish chrony-stratum2-nsec.pcap

# ------------------------------------------------------------- summary
{
    echo "generated $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    chronyd --version 2>/dev/null | head -n1
    if [[ -n "$NTP_DAEMON" ]]; then "$NTP_DAEMON" --version 2>&1 | head -n1; fi
    tshark --version 2>/dev/null | head -n1
} >&2
for f in "$OUT_DIR"/*.pcap "$OUT_DIR"/*.pcapng; do
    capinfos -t -E -c -M "$f" | grep -E 'File name|File type|File encapsulation|Number of packets' >&2
done
log "done"
