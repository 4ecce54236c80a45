#!/usr/bin/env bash
# NTS interoperability matrix: each NTS client against each NTS server, for
# AEAD 15 (AES-SIV-CMAC-256), 30 (AES-128-GCM-SIV) and 17 (AES-SIV-CMAC-512).
#
#   scripts/install-peers.sh          # chrony, ntpd-rs, ntpsec (once; see there)
#   scripts/interop-nts.sh            # builds ntplab (debug) if needed, prints the matrix
#   NTPLAB=target/release/ntplab scripts/interop-nts.sh
#   INTEROP_SERVERS="ntpsec" INTEROP_CLIENTS="ntplab_query chrony" INTEROP_AEADS="15" scripts/interop-nts.sh
#
# Clients (rows): `ntplab query --nts`, `ntplab serve` with an `nts = true`
# source, chronyd, ntpd-rs (ntp-daemon), ntpsec (ntpd); servers (columns):
# `ntplab serve` with `[nts]`, chronyd, ntpd-rs, ntpsec. A peer that is not
# installed (scripts/install-peers.sh) gets cells that say so.
#
# What a cell tests: the client offers, and the server accepts, what each can
# be limited to. ntplab (both roles) and ntpsec's client (`aead`) are limited
# to the column's AEAD; chrony 4.3 implements AEAD 15 only; ntpd-rs 1.9 offers
# 17 then 15 and accepts both, with no setting; ntpsec's server takes the
# client's choice. A cell whose AEAD the two sides would not agree on says
# "unsupported" (one side lacks it: when one side is limited to it the pair is
# still run, and what the client reported is shown as evidence) or "n/a" (both
# implement it, neither can be made to pick it: that pair's result is in the
# column of the AEAD they do agree on).
#
# Success is judged from what the client itself reports: ntplab query's JSON
# (a sample from authenticated replies), the ntplab follower serving stratum
# 2, `chronyc ntpdata`/`authdata` (Authenticated: Yes, good replies), `ntp-ctl
# status` (an [NTS] source, system stratum below 16), `ntpq -c associations`
# (auth ok, reach, selected).
#
# Safety: the whole matrix runs inside a network namespace made here (its own
# loopback; ntpsec needs port 123, which is free there), deleted at the end;
# the ntpsec-to-ntpsec pair adds a second namespace joined by a veth pair.
# No daemon has CAP_SYS_TIME (setpriv --inh-caps=-sys_time
# --bounding-set=-sys_time); chronyd runs with -x; the ntpd-rs and ntpsec
# clients and the ntpsec server (local refclock) run with the clock shim
# (hwlab/shim, LD_PRELOAD), which answers their clock adjustments with a
# virtual clock, and ntpsec with `disable kernel` (and `disable ntp` as a
# client); the ntpd-rs server has no [[source]] and never adjusts. Every
# process started here is stopped by its PID when the script ends; every
# wait is bounded (a client gets 20 s).
# Needs: root (namespaces), ip, setpriv, openssl, python3.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# ---- run inside a network namespace of our own ----
if [ -z "${INTEROP_NS:-}" ]; then
    ns=ntplab-nts-$$
    if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && ip netns add "$ns" 2>/dev/null; then
        ip netns exec "$ns" ip link set lo up
        INTEROP_NS=$ns ip netns exec "$ns" "$ROOT/scripts/interop-nts.sh" "$@" &
        inner=$!
        trap 'kill -TERM "$inner" 2>/dev/null' INT TERM
        rc=0
        while kill -0 "$inner" 2>/dev/null; do wait "$inner"; rc=$?; done
        ip netns del "$ns" 2>/dev/null
        ip netns del "$ns-c" 2>/dev/null
        exit $rc
    fi
    echo "interop-nts.sh: cannot make a network namespace (needs root and ip): on this host's loopback, without ntpsec (port 123)" >&2
    INTEROP_NS=none
fi

NTPLAB=${NTPLAB:-target/debug/ntplab}
SHIM=${CLOCKSHIM:-target/debug/libntplab_clockshim.so}
if [ ! -x "$NTPLAB" ] || [ ! -e "$SHIM" ]; then
    { CARGO_INCREMENTAL=0 cargo build -q --bin ntplab && CARGO_INCREMENTAL=0 cargo build -q -p ntplab-clockshim; } || exit 1
fi
NTPLAB=$(realpath "$NTPLAB"); SHIM=$(realpath "$SHIM")
for tool in openssl python3 setpriv; do
    command -v $tool >/dev/null || { echo "interop-nts.sh: needs $tool" >&2; exit 1; }
done
PEERS_DIR=${PEERS_DIR:-/tmp/ntplab-peers}
NTPSEC_ROOT=${NTPSEC_ROOT:-$PEERS_DIR/ntpsec}
NTPSEC_NTPD=$NTPSEC_ROOT/usr/sbin/ntpd
NTPSEC_PY=$NTPSEC_ROOT/usr/lib/python3/dist-packages
# Upper bounds on a daemon's life, s: a server serves one column (at most
# 5 clients x 20 s, plus ntpsec's 30 s start), a client one cell (20 s).
SERVER_LIMIT=300 CLIENT_LIMIT=40
NOCAP=(setpriv --inh-caps=-sys_time --bounding-set=-sys_time)
SHIMMED=(env "LD_PRELOAD=$SHIM")

WORK=$(mktemp -d /tmp/ntplab-interop-nts.XXXXXX)
chmod 700 "$WORK"
PIDS=()
NS2=""
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    [ -n "$NS2" ] && ip netns del "$NS2" 2>/dev/null
    if [ -n "${INTEROP_KEEP:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The ntpsec client reaches the ntpsec server (both on port 123) over a veth
# pair into a second namespace: 10.231.0.1 here, 10.231.0.2 there.
VETH_HERE=10.231.0.1 VETH_THERE=10.231.0.2
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:$VETH_HERE" \
    -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null

NEXT_PORT=$((20000 + RANDOM % 20000))
# next_port VAR: sets VAR to a fresh port number (not in a subshell, so the counter moves).
next_port() { NEXT_PORT=$((NEXT_PORT + 1)); printf -v "$1" '%s' "$NEXT_PORT"; }

wait_tcp() { # PORT [HOST]: wait up to 10 s for a listener
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# launch LIMIT LOG CMD...: starts CMD in the background, ended after LIMIT
# seconds whatever happens to this script; sets LAUNCHED to its PID.
launch() {
    local limit=$1 log=$2; shift 2
    timeout -k 3 "$limit" "$@" > "$log" 2>&1 &
    LAUNCHED=$!; PIDS+=("$LAUNCHED")
}
# stop PID: ends a process launched here (once waited for, its PID is forgotten).
stop() {
    kill "$1" 2>/dev/null; wait "$1" 2>/dev/null
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
# last_line FILE REGEX: the last matching line, without ANSI colours, cut to 140 characters.
last_line() { sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null | grep -E "$2" | tail -1 | cut -c1-140; }

have_chrony() { command -v chronyd >/dev/null && command -v chronyc >/dev/null; }
have_ntpdrs() { command -v ntp-daemon >/dev/null && command -v ntp-ctl >/dev/null; }
have_ntpsec() { [ -x "$NTPSEC_NTPD" ] && [ "$INTEROP_NS" != none ]; }
ntpsec_missing() {
    [ -x "$NTPSEC_NTPD" ] || { echo "not installed (scripts/install-peers.sh ntpsec)"; return; }
    echo "needs port 123: run as root (own network namespace)"
}

start_chronyd() { # LIMIT NAME CONFIG-LINES...: sets LAUNCHED
    local limit=$1 name=$2; shift 2
    mkdir -p "$WORK/$name-dump"
    { printf '%s\n' "$@"; printf 'cmdport 0\nntsdumpdir %s\npidfile %s\ndriftfile %s\n' \
        "$WORK/$name-dump" "$WORK/$name.pid" "$WORK/$name.drift"; } > "$WORK/$name.conf"
    launch "$limit" "$WORK/$name.log" "${NOCAP[@]}" chronyd -x -n -u root -f "$WORK/$name.conf"
}

# What each implementation can do (AEAD IDs), and what it offers or accepts
# when asked for AEAD $1. ntpd-rs 1.9 and ntpsec 1.2.2: from their sources
# and logs; see docs/nts.md.
declare -A SUPPORTS=([ntplab]="15 30 17" [chrony]="15" [ntpdrs]="15 17" [ntpsec]="15 16 17")
declare -A IMPL=([ntplab_query]=ntplab [ntplab_serve]=ntplab [chrony]=chrony [ntpdrs]=ntpdrs [ntpsec]=ntpsec)
offers() { # CLIENT AEAD
    case $1 in
    ntplab_*) echo "$2" ;;
    ntpsec) case " ${SUPPORTS[ntpsec]} " in *" $2 "*) echo "$2" ;; *) echo 15 ;; esac ;;
    chrony) echo 15 ;;
    ntpdrs) echo "17 15" ;;
    esac
}
accepts() { # SERVER AEAD
    case $1 in ntplab) echo "$2" ;; *) echo "${SUPPORTS[$1]}" ;; esac
}
# The AEAD the pair agrees on: the client's first offer the server accepts
# (ntpd-rs's and ntpsec's servers take the client's order; chrony's and a
# limited ntplab's accept one).
agreed() { # CLIENT SERVER AEAD
    local a
    for a in $(offers "$1" "$3"); do
        case " $(accepts "$2" "$3") " in *" $a "*) echo "$a"; return ;; esac
    done
}

# ---- servers: each sets SERVER_PID, NTP_PORT, KE_PORT, or SKIP (why) ----

server_ntplab() { # AEAD
    next_port NTP_PORT; next_port KE_PORT
    cat > "$WORK/server.toml" <<CONF
listen = ["127.0.0.1:$NTP_PORT"]
[local]
stratum = 1
[nts]
certificate = "$WORK/cert.pem"
key = "$WORK/key.pem"
ke_listen = ["127.0.0.1:$KE_PORT"]
aeads = [$1]
CONF
    launch "$SERVER_LIMIT" "$WORK/server.log" env RUST_LOG="${INTEROP_RUST_LOG:-info}" "${NOCAP[@]}" "$NTPLAB" serve --config "$WORK/server.toml"
    SERVER_PID=$LAUNCHED
    wait_tcp "$KE_PORT" || SKIP="ntplab serve did not start"
}

server_chrony() { # AEAD (chrony 4.3 has 15 only)
    have_chrony || { SKIP="not installed"; return; }
    next_port NTP_PORT; next_port KE_PORT
    start_chronyd "$SERVER_LIMIT" server "port $NTP_PORT" "bindaddress 127.0.0.1" "local stratum 1" \
        "allow 127.0.0.1" "ntsserverkey $WORK/key.pem" "ntsservercert $WORK/cert.pem" "ntsport $KE_PORT"
    SERVER_PID=$LAUNCHED
    wait_tcp "$KE_PORT" || SKIP="chronyd did not start"
}

ntpdrs_observability() { # NAME: the [observability] section (ntp-ctl finds the socket through it)
    printf '[observability]\nlog-level = "%s"\nansi-colors = false\nobservation-path = "%s"\n' "${NTPDRS_LOG_LEVEL:-info}" "$WORK/ntpdrs-$1.sock"
}

server_ntpdrs() { # AEAD (ntpd-rs takes the client's first of 15 and 17; no setting)
    have_ntpdrs || { SKIP="not installed (scripts/install-peers.sh ntpd-rs)"; return; }
    next_port NTP_PORT; next_port KE_PORT
    # No [[source]]: the daemon never adjusts the clock; it serves it at stratum 1.
    { ntpdrs_observability server; cat <<CONF
[[server]]
listen = "127.0.0.1:$NTP_PORT"
[[nts-ke-server]]
listen = "127.0.0.1:$KE_PORT"
certificate-chain-path = "$WORK/cert.pem"
private-key-path = "$WORK/key.pem"
ntp-port = $NTP_PORT
[synchronization]
local-stratum = 1
[keyset]
key-storage-path = "$WORK/ntpdrs-keyset"
CONF
    } > "$WORK/ntpdrs-server.toml"
    launch "$SERVER_LIMIT" "$WORK/ntpdrs-server.log" "${NOCAP[@]}" ntp-daemon -c "$WORK/ntpdrs-server.toml"
    SERVER_PID=$LAUNCHED
    wait_tcp "$KE_PORT" || SKIP="ntp-daemon did not start: $(last_line "$WORK/ntpdrs-server.log" 'ERROR|WARN|rror')"
}

server_ntpsec() { # AEAD (ntpsec takes the client's choice; KE port 4460 and NTP port 123, fixed)
    have_ntpsec || { SKIP=$(ntpsec_missing); return; }
    NTP_PORT=123; KE_PORT=4460
    # A local refclock of stratum 0 polled every second makes it a stratum-1
    # server within seconds, as the other servers here are (ntpd-rs 1.9
    # rejects a source of stratum 2 or more at one of its own addresses as a
    # timing loop: docs/nts.md). `disable kernel`, the shim and no
    # CAP_SYS_TIME keep the clock untouched. Restrictions: time service for
    # all, nothing else.
    cat > "$WORK/ntpsec-server.conf" <<CONF
refclock local stratum 0 minpoll 0 maxpoll 0
tos orphanwait 1
disable kernel
restrict default nomodify nopeer noquery
restrict 127.0.0.1
nts enable cert $WORK/cert.pem key $WORK/key.pem cookie $WORK/ntpsec-server-keys
driftfile $WORK/ntpsec-server.drift
CONF
    launch "$SERVER_LIMIT" "$WORK/ntpsec-server.out" "${NOCAP[@]}" "${SHIMMED[@]}" "$NTPSEC_NTPD" -n \
        -c "$WORK/ntpsec-server.conf" -l "$WORK/ntpsec-server.log"
    SERVER_PID=$LAUNCHED
    wait_tcp "$KE_PORT" || { SKIP="ntpsec did not start: $(last_line "$WORK/ntpsec-server.log" 'rror|ERR')"; return; }
    # Until it has synchronized to its refclock it answers INIT kisses, and its
    # root dispersion starts at seconds: wait (at most 30 s) for it to fall below 0.1 s.
    local disp
    for _ in $(seq 30); do
        disp=$("$NTPLAB" query 127.0.0.1:123 --samples 1 --timeout 0.5 --format json 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["root_dispersion"])' 2>/dev/null)
        [ -n "$disp" ] && python3 -c "import sys; sys.exit(0 if $disp < 0.1 else 1)" && return
        sleep 1
    done
    SKIP="ntpsec did not synchronize to its local refclock in 30 s"
}

# ---- clients: each prints one cell, starting with "ok" or "FAIL" ----

client_ntplab_query() { # AEAD
    local out
    out=$("$NTPLAB" query --nts "localhost:$KE_PORT" --trusted-certificates "$WORK/cert.pem" \
        --aead "$1" --samples 2 --timeout 1 --format json 2>"$WORK/query.err")
    if [ $? -eq 0 ]; then
        python3 -c 'import json,sys; v=json.load(sys.stdin); print("ok: AEAD %d, %d cookies x %d B, offset %+.1f us" % (v["nts"]["aead"], v["nts"]["cookies"], v["nts"]["cookie_len"], v["offset"]*1e6))' <<<"$out" 2>/dev/null || echo "ok"
    else
        echo "FAIL: $(sed 's/^ntplab: error: //' "$WORK/query.err" | head -1)"
    fi
}

client_ntplab_serve() { # AEAD: a daemon following the server through an NTS source
    local listen; next_port listen
    cat > "$WORK/follower.toml" <<CONF
listen = ["127.0.0.1:$listen"]
[[source]]
address = "127.0.0.1:$NTP_PORT"
iburst = true
nts = true
ke_server = "localhost:$KE_PORT"
trusted_certificates = "$WORK/cert.pem"
aeads = [$1]
CONF
    launch "$CLIENT_LIMIT" "$WORK/follower.log" env RUST_LOG=info "${NOCAP[@]}" "$NTPLAB" serve --config "$WORK/follower.toml"
    local pid=$LAUNCHED
    local cell="" stratum
    for _ in $(seq 20); do
        sleep 1
        # Unsynchronized it answers stratum 16 (or an INIT kiss, stratum 0); synchronized, its server's + 1.
        stratum=$("$NTPLAB" query "127.0.0.1:$listen" --samples 1 --timeout 0.5 --format json 2>/dev/null | grep -o '"stratum":[0-9]*' | head -1 | cut -d: -f2)
        if [ -n "$stratum" ] && [ "$stratum" -ge 2 ] && [ "$stratum" -le 15 ]; then
            cell="ok: synchronized, serves stratum $stratum ($(last_line "$WORK/follower.log" 'NTS keys established' | grep -o 'aead=[0-9]*\|cookies=[0-9]*' | tr '\n' ' ' | sed 's/ $//'))"
            break
        fi
        cell="FAIL: not synchronized after 20 s ($(sed 's/\x1b\[[0-9;]*m//g' "$WORK/follower.log" | grep -E 'WARN|ERROR' | tail -1 | grep -o 'error=.*' | cut -c1-120))"
    done
    stop "$pid"
    echo "$cell"
}

client_chrony() { # AEAD: chronyd as NTS client; the cell says what chronyc reports
    have_chrony || { echo "skip: not installed"; return; }
    local sock="$WORK/chronyc.sock"
    start_chronyd "$CLIENT_LIMIT" client "server 127.0.0.1 port $NTP_PORT nts ntsport $KE_PORT iburst minpoll 0 maxpoll 0" \
        "ntstrustedcerts $WORK/cert.pem" "bindcmdaddress $sock"
    local pid=$LAUNCHED
    local cell="FAIL: not authenticated after 20 s"
    for _ in $(seq 20); do
        sleep 1
        local data auth
        data=$(chronyc -h "$sock" -n ntpdata 2>/dev/null)
        if grep -q 'Authenticated   : Yes' <<<"$data" && grep -Eq 'Total good RX   : [1-9]' <<<"$data"; then
            auth=$(chronyc -h "$sock" -n authdata 2>/dev/null | awk '$2=="NTS"{print "AEAD " $4 ", " $9 " cookies x " $10 " B"}')
            cell="ok: Authenticated, $auth"
            break
        fi
    done
    if [[ $cell == FAIL* ]]; then
        local nak; nak=$(chronyc -h "$sock" -n authdata 2>/dev/null | awk '$2=="NTS"{print "KE attempts " $7 ", NAKs " $8 ", cookies " $9}')
        # chronyd logs nothing about a refused NTS-KE at its default level.
        local why; why=$(last_line "$WORK/client.log" 'NTS|TLS' | cut -c21-)
        cell="$cell ($nak${why:+; $why})"
    fi
    stop "$pid"
    echo "$cell"
}

client_ntpdrs() { # AEAD (ignored: ntpd-rs offers 17 then 15): ntp-daemon with the clock shim
    have_ntpdrs || { echo "skip: not installed (scripts/install-peers.sh ntpd-rs)"; return; }
    { ntpdrs_observability client; cat <<CONF
[[source]]
mode = "nts"
address = "localhost:$KE_PORT"
certificate-authority = "$WORK/cert.pem"
[synchronization]
minimum-agreeing-sources = 1
CONF
    } > "$WORK/ntpdrs-client.toml"
    # Its clock adjustments go to the shim's virtual clock (it starts on the
    # real time, so there is nothing to correct); without CAP_SYS_TIME a call
    # the shim missed fails instead of changing the system clock.
    launch "$CLIENT_LIMIT" "$WORK/ntpdrs-client.log" "${NOCAP[@]}" "${SHIMMED[@]}" ntp-daemon -c "$WORK/ntpdrs-client.toml"
    local pid=$LAUNCHED
    local cell="" status
    for _ in $(seq 20); do
        sleep 1
        status=$(ntp-ctl -c "$WORK/ntpdrs-client.toml" status 2>/dev/null)
        if grep -q '\[NTS\]' <<<"$status" && grep -Eq 'Stratum:[[:space:]]+([1-9]|1[0-5])$' <<<"$status"; then
            cell="ok: [NTS] source, system stratum $(awk '/Stratum:/{print $2; exit}' <<<"$status"), $(grep -o 'NTS cookies:.*' <<<"$status" | tr -s '\t ' ' ')"
            break
        fi
        cell="FAIL: no synchronized [NTS] source after 20 s ($(last_line "$WORK/ntpdrs-client.log" 'WARN|ERROR' | cut -c29- | sed 's/^ *//'))"
    done
    stop "$pid"
    echo "$cell"
}

client_ntpsec() { # AEAD: ntpsec's ntpd as NTS client (`aead`), port 123
    have_ntpsec || { echo "skip: $(ntpsec_missing)"; return; }
    local aead_name
    case $1 in 15) aead_name=AES_SIV_CMAC_256 ;; 16) aead_name=AES_SIV_CMAC_384 ;; 17) aead_name=AES_SIV_CMAC_512 ;; *) aead_name="" ;; esac
    local host=localhost in=() ctl=127.0.0.1
    if [ "$CURRENT_SERVER" = ntpsec ]; then
        # Port 123 is the server's here: the client runs in the second namespace.
        [ -n "$NS2" ] || { echo "FAIL: no second namespace for the ntpsec client"; return; }
        host=$VETH_HERE in=(ip netns exec "$NS2") ctl=127.0.0.1
    fi
    cat > "$WORK/ntpsec-client.conf" <<CONF
server $host:$KE_PORT nts ca $WORK/cert.pem ${aead_name:+aead $aead_name} minpoll 0 maxpoll 0 iburst
disable kernel
disable ntp
restrict default nomodify nopeer noquery
restrict 127.0.0.1
driftfile $WORK/ntpsec-client.drift
CONF
    rm -f "$WORK/ntpsec-client.log"
    launch "$CLIENT_LIMIT" "$WORK/ntpsec-client.out" "${in[@]}" "${NOCAP[@]}" "${SHIMMED[@]}" "$NTPSEC_NTPD" -n \
        -c "$WORK/ntpsec-client.conf" -l "$WORK/ntpsec-client.log"
    local pid=$LAUNCHED
    local cell="" as why
    for _ in $(seq 20); do
        sleep 1
        # ind assid status conf reach auth condition last_event cnt
        as=$("${in[@]}" env PYTHONPATH="$NTPSEC_PY" "$NTPSEC_ROOT/usr/bin/ntpq" -n -c associations "$ctl" 2>/dev/null | awk '$1 ~ /^[0-9]+$/')
        if awk '$6 == "ok" && $5 == "yes" && ($7 == "sys.peer" || $7 == "candidate") {f=1} END {exit !f}' <<<"$as"; then
            cell="ok: auth ok, $(awk '{print $7}' <<<"$as" | head -1), $(last_line "$WORK/ntpsec-client.log" 'NTSc: Got' | grep -o 'Got.*' | sed 's/\.$//')"
            break
        fi
        # The line that says why (e.g. "AN-Wrong length: 0", an empty AEAD record), else the last failure.
        why=$(last_line "$WORK/ntpsec-client.log" 'NTSc: .*([Ww]rong|[Ee]rror|[Bb]ad|[Rr]eject|[Tt]imeout|[Nn]o )')
        [ -n "$why" ] || why=$(last_line "$WORK/ntpsec-client.log" 'NTSc: .*fail')
        cell="FAIL: no authenticated association after 20 s (${why#* ntpd\[*\]: })"
    done
    stop "$pid"
    echo "$cell"
}

# ntpsec_pair_namespace: a second namespace for the ntpsec client, joined to
# this one by a veth pair (made before the ntpsec server starts, so that it
# listens on the veth's address too).
ntpsec_pair_namespace() {
    NS2=$INTEROP_NS-c
    ip netns add "$NS2" || { NS2=""; return 1; }
    ip link add ntsint0 type veth peer name ntsint1 netns "$NS2" &&
        ip addr add "$VETH_HERE/30" dev ntsint0 && ip link set ntsint0 up &&
        ip netns exec "$NS2" ip addr add "$VETH_THERE/30" dev ntsint1 &&
        ip netns exec "$NS2" ip link set ntsint1 up && ip netns exec "$NS2" ip link set lo up
}

# clock_state: the system clock's adjtimex state (offset, freq, status, tick:
# modes 0 is a pure query) and CLOCK_REALTIME - CLOCK_MONOTONIC in ns, as
# hwlab's SystemClockState reads them.
clock_state() {
    python3 -c '
import ctypes, struct, time
tx = ctypes.create_string_buffer(208)
if ctypes.CDLL(None, use_errno=True).adjtimex(tx) < 0:
    raise SystemExit("adjtimex query failed")
offset, freq = struct.unpack_from("qq", tx, 8)
(status,) = struct.unpack_from("i", tx, 40)
(tick,) = struct.unpack_from("q", tx, 88)
print(offset, freq, status, tick, time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_MONOTONIC))'
}
# clock_changed BEFORE AFTER: says what changed (adjtimex state, or a move of more than 1 ms).
clock_changed() {
    local b=($1) a=($2)
    [ "${b[*]:0:4}" = "${a[*]:0:4}" ] || { echo "adjtimex offset/freq/status/tick ${b[*]:0:4} -> ${a[*]:0:4}"; return; }
    local moved=$(( a[4] - b[4] ))
    [ ${moved#-} -le 1000000 ] || echo "CLOCK_REALTIME moved by $moved ns against CLOCK_MONOTONIC"
}

version_of() {
    case $1 in
    ntplab) echo "ntplab $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)" ;;
    chrony) have_chrony && echo "chrony $(chronyd --version | awk '{print $4}')" || echo "chrony" ;;
    ntpdrs) have_ntpdrs && echo "ntpd-rs $(ntp-daemon --version 2>&1 | awk '{print $2; exit}')" || echo "ntpd-rs" ;;
    ntpsec) [ -x "$NTPSEC_NTPD" ] && echo "ntpsec $("$NTPSEC_NTPD" --version 2>&1 | sed -n 's/.*ntpsec-//p' | head -1)" || echo "ntpsec" ;;
    esac
}
lacks() { # SERVER CLIENT AEAD: names the side(s) without the AEAD
    local who=() impl
    for impl in $(printf '%s\n' "${IMPL[$2]}" "$1" | sort -u); do
        case " ${SUPPORTS[$impl]} " in *" $3 "*) ;; *) who+=("$(version_of "$impl") implements ${SUPPORTS[$impl]// /, } only") ;; esac
    done
    local IFS=';'; echo "${who[*]}" | sed 's/;/; /g'
}

SERVERS=(${INTEROP_SERVERS:-ntplab chrony ntpdrs ntpsec})
CLIENTS=(${INTEROP_CLIENTS:-ntplab_query ntplab_serve chrony ntpdrs ntpsec})
AEADS=(${INTEROP_AEADS:-15 30 17})
declare -A NAME=([ntplab]="ntplab serve" [chrony]="chronyd" [ntpdrs]="ntpd-rs" [ntpsec]="ntpsec" \
    [ntplab_query]="ntplab query --nts" [ntplab_serve]="ntplab serve (nts source)")
# A row's name in the table: the client program and its implementation's version.
row_name() { case $1 in ntplab_*) echo "${NAME[$1]}" ;; *) version_of "$1" ;; esac; }

if have_ntpsec && [[ " ${SERVERS[*]} " == *" ntpsec "* ]] && [[ " ${CLIENTS[*]} " == *" ntpsec "* ]]; then
    ntpsec_pair_namespace || echo "interop-nts.sh: no second namespace: ntpsec cannot be its own client" >&2
fi

echo "versions: $(version_of ntplab), $(version_of chrony), $(version_of ntpdrs), $(version_of ntpsec); $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '%-26s %-14s %-5s %s\n' "NTS client" "NTS server" "AEAD" "result"
printf '%-26s %-14s %-5s %s\n' "----------" "----------" "----" "------"
fails=0
CLOCK_BEFORE=$(clock_state)
for server in "${SERVERS[@]}"; do
    for aead in "${AEADS[@]}"; do
        SKIP=""; SERVER_PID=""; CURRENT_SERVER=$server
        "server_$server" "$aead"
        for client in "${CLIENTS[@]}"; do
            agree=$(agreed "$client" "$server" "$aead")
            supported=1
            for impl in "${IMPL[$client]}" "$server"; do
                case " ${SUPPORTS[$impl]} " in *" $aead "*) ;; *) supported=0 ;; esac
            done
            if [ -n "$SKIP" ]; then
                cell="skip: server $SKIP"
            elif [ "$agree" = "$aead" ]; then
                cell=$("client_$client" "$aead")
            elif [ -z "$agree" ] && [ $supported = 0 ]; then
                # One side is limited to the AEAD, the other lacks it: run, and show what the client reports.
                seen=$("client_$client" "$aead")
                if [[ $seen == ok* ]]; then
                    cell="FAIL: expected no agreement ($(lacks "$server" "$client" "$aead")), got: $seen"
                else
                    cell="unsupported: $(lacks "$server" "$client" "$aead"); client: ${seen#FAIL: }"
                fi
            elif [ $supported = 0 ]; then
                cell="unsupported: $(lacks "$server" "$client" "$aead") (this pair agrees on AEAD $agree)"
            else
                cell="n/a: neither side can be limited to AEAD $aead (this pair agrees on AEAD ${agree:-none})"
            fi
            [[ $cell == FAIL* ]] && fails=$((fails + 1))
            printf '%-26s %-14s %-5s %s\n' "$(row_name "$client")" "$(version_of "$server")" "$aead" "$cell"
        done
        [ -n "$SERVER_PID" ] && stop "$SERVER_PID"
    done
done
# No daemon here could change the clock (no CAP_SYS_TIME); check that none did.
changed=$(clock_changed "$CLOCK_BEFORE" "$(clock_state)")
if [ -n "$changed" ]; then
    echo "FAIL: the system clock changed during the run: $changed"
    fails=$((fails + 1))
else
    echo "system clock: adjtimex state unchanged, CLOCK_REALTIME did not move against CLOCK_MONOTONIC (1 ms tolerance)"
fi
echo "$fails failing cell(s)"
[ "$fails" = 0 ]
