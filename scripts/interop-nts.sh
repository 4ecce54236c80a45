#!/usr/bin/env bash
# NTS interoperability matrix on loopback: each NTS client against each NTS
# server, for AEAD 15 (AES-SIV-CMAC-256) and 30 (AES-128-GCM-SIV).
#
#   scripts/interop-nts.sh            # builds ntplab (debug) if needed, prints the matrix
#   NTPLAB=target/release/ntplab scripts/interop-nts.sh
#   INTEROP_SERVERS="chrony" scripts/interop-nts.sh   # only these server columns
#
# Clients (rows): `ntplab query --nts`, `ntplab serve` with an `nts = true`
# source, chronyd; servers (columns): `ntplab serve` with `[nts]`, chronyd.
# ntpd-rs and ntpsec have rows and columns that say "not installed" when
# their binaries are absent (ntp-daemon; ntpd from ntpsec, which needs port
# 123 and so a network namespace): their hooks are the *_ntpdrs and
# *_ntpsec functions below.
#
# Safety: chronyd runs with -x (never touches the clock), without
# CAP_SYS_TIME (setpriv), cmdport 0; all traffic is on 127.0.0.1; every
# process started here is stopped by its PID when the script ends.
# Needs: openssl (to make a self-signed certificate), chrony for its cells.
set -uo pipefail
cd "$(dirname "$0")/.."

NTPLAB=${NTPLAB:-target/debug/ntplab}
if [ ! -x "$NTPLAB" ]; then
    CARGO_INCREMENTAL=0 cargo build -q --bin ntplab || exit 1
fi
command -v openssl >/dev/null || { echo "interop-nts.sh: needs openssl" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ntplab-interop-nts.XXXXXX)
chmod 700 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null

NEXT_PORT=$((20000 + RANDOM % 20000))
# next_port VAR: sets VAR to a fresh port number (not in a subshell, so the counter moves).
next_port() { NEXT_PORT=$((NEXT_PORT + 1)); printf -v "$1" '%s' "$NEXT_PORT"; }

wait_tcp() { # PORT: wait up to 10 s for a listener
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

have_chrony() { command -v chronyd >/dev/null && command -v setpriv >/dev/null; }

start_chronyd() { # NAME CONFIG-LINES...: echoes the PID
    local name=$1; shift
    mkdir -p "$WORK/$name-dump"
    { printf '%s\n' "$@"; printf 'cmdport 0\nntsdumpdir %s\npidfile %s\ndriftfile %s\n' \
        "$WORK/$name-dump" "$WORK/$name.pid" "$WORK/$name.drift"; } > "$WORK/$name.conf"
    setpriv --inh-caps=-sys_time --bounding-set=-sys_time \
        chronyd -x -n -u root -f "$WORK/$name.conf" > "$WORK/$name.log" 2>&1 &
    echo $!
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
    "$NTPLAB" serve --config "$WORK/server.toml" --duration 120 > "$WORK/server.log" 2>&1 &
    SERVER_PID=$!; PIDS+=("$SERVER_PID")
    wait_tcp "$KE_PORT" || SKIP="ntplab serve did not start"
}

server_chrony() { # AEAD (chrony 4.3 chooses 15 whatever is asked)
    have_chrony || { SKIP="not installed"; return; }
    next_port NTP_PORT; next_port KE_PORT
    SERVER_PID=$(start_chronyd server "port $NTP_PORT" "bindaddress 127.0.0.1" "local stratum 1" \
        "allow 127.0.0.1" "ntsserverkey $WORK/key.pem" "ntsservercert $WORK/cert.pem" "ntsport $KE_PORT")
    PIDS+=("$SERVER_PID")
    wait_tcp "$KE_PORT" || SKIP="chronyd did not start"
}

server_ntpdrs() { # hook: ntpd-rs server (ntp-daemon with [[server]] and [[nts-ke-server]])
    command -v ntp-daemon >/dev/null || { SKIP="not installed"; return; }
    SKIP="installed; hook not written"
}

server_ntpsec() { # hook: ntpsec (port 123 only: needs a network namespace)
    command -v ntpd >/dev/null && ntpd --version 2>&1 | grep -qi ntpsec || { SKIP="not installed"; return; }
    SKIP="installed; hook not written"
}

# ---- clients: each prints one cell ----

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
    "$NTPLAB" serve --config "$WORK/follower.toml" --duration 60 > "$WORK/follower.log" 2>&1 &
    local pid=$!; PIDS+=("$pid")
    local cell=""
    for _ in $(seq 20); do
        sleep 1
        if "$NTPLAB" query "127.0.0.1:$listen" --samples 1 --timeout 0.5 --format json 2>/dev/null | grep -q '"stratum":2'; then
            cell="ok: synchronized, serves stratum 2"
            break
        fi
        cell="FAIL: not synchronized after 20 s ($(grep -o 'error=.*' "$WORK/follower.log" | head -1 | cut -c1-100))"
    done
    stop "$pid"
    echo "$cell"
}

client_chrony() { # AEAD: chronyd as NTS client; the cell says what chronyc reports
    have_chrony || { echo "skip: not installed"; return; }
    local sock="$WORK/chronyc.sock" pid
    pid=$(start_chronyd client "server 127.0.0.1 port $NTP_PORT nts ntsport $KE_PORT iburst minpoll 0 maxpoll 0" \
        "ntstrustedcerts $WORK/cert.pem" "bindcmdaddress $sock")
    PIDS+=("$pid")
    local cell="FAIL: not authenticated after 15 s"
    for _ in $(seq 15); do
        sleep 1
        local data auth
        data=$(chronyc -h "$sock" -n ntpdata 2>/dev/null)
        if grep -q 'Authenticated   : Yes' <<<"$data" && grep -Eq 'Total good RX   : [1-9]' <<<"$data"; then
            auth=$(chronyc -h "$sock" -n authdata 2>/dev/null | awk '$1=="127.0.0.1"{print "AEAD " $4 ", " $9 " cookies x " $10 " B"}')
            cell="ok: Authenticated, $auth"
            break
        fi
    done
    if [[ $cell == FAIL* ]]; then
        local nak; nak=$(chronyc -h "$sock" -n authdata 2>/dev/null | awk '$1=="127.0.0.1"{print "KE attempts " $7 ", NAKs " $8 ", cookies " $9}')
        cell="$cell ($nak)"
    fi
    stop "$pid"
    echo "$cell"
}

client_ntpdrs() { command -v ntp-daemon >/dev/null && echo "skip: installed; hook not written" || echo "skip: not installed"; }
client_ntpsec() { command -v ntpd >/dev/null && ntpd --version 2>&1 | grep -qi ntpsec && echo "skip: installed; hook not written" || echo "skip: not installed"; }

SERVERS=(${INTEROP_SERVERS:-ntplab chrony ntpdrs ntpsec})
CLIENTS=(ntplab_query ntplab_serve chrony ntpdrs ntpsec)
declare -A NAME=([ntplab]="ntplab serve" [chrony]="chronyd $(chronyd --version 2>/dev/null | awk '{print $4}')" \
    [ntpdrs]="ntpd-rs" [ntpsec]="ntpsec" [ntplab_query]="ntplab query --nts" [ntplab_serve]="ntplab serve (nts source)")

printf '%-26s %-20s %-5s %s\n' "NTS client" "NTS server" "AEAD" "result"
printf '%-26s %-20s %-5s %s\n' "----------" "----------" "----" "------"
fails=0
for server in "${SERVERS[@]}"; do
    for aead in 15 30; do
        SKIP=""; SERVER_PID=""
        "server_$server" "$aead"
        for client in "${CLIENTS[@]}"; do
            if [ -n "$SKIP" ]; then
                cell="skip: server $SKIP"
            else
                cell=$("client_$client" "$aead")
            fi
            [[ $cell == FAIL* ]] && fails=$((fails + 1))
            printf '%-26s %-20s %-5s %s\n' "${NAME[$client]}" "${NAME[$server]}" "$aead" "$cell"
        done
        [ -n "$SERVER_PID" ] && stop "$SERVER_PID"
    done
done
echo "$fails failing cell(s); chrony 4.3 supports only AEAD 15 (AES-SIV-CMAC-256): its AEAD 30 cells fail by design."
