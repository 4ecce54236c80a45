#!/usr/bin/env bash
# Certification runs: `ntplab probe` against ntplab serve, chronyd, ntpsec and
# ntpd-rs on loopback, each serving NTS too (a self-signed certificate made
# here with openssl), then a side-by-side table requirement -> verdict.
#
#   scripts/probe-peers.sh [-k] [NAME...]     (default: every row; -k keeps the reports)
#
# Rows: ntplab-serve, chronyd-4.3, ntpsec, ntpd-rs. A row whose daemon is not
# installed is skipped with a note (scripts/install-peers.sh installs all
# three: chrony from Debian; ntpsec, whose package conflicts with chrony's,
# unpacked under $PEERS_DIR/ntpsec, looked for there or on PATH; ntpd-rs by
# cargo install ntpd --locked).
# Each row is probed twice: the ntpv4 and ntpv5 groups (verdicts compared with
# tests/probe/NAME.verdicts) and the nts-ke and nts groups against its NTS-KE
# port (compared with tests/probe/NAME-nts.verdicts), when the snapshot
# exists (ntplab-serve and chronyd-4.3 are also checked by `cargo test --test
# probe_cli`); a difference fails the script.
#
# Safety: no daemon may touch the clock. chronyd runs with -x, every daemon
# under setpriv without CAP_SYS_TIME, ntpd-rs with no [[source]], ntpsec
# (port 123 only) inside a network namespace created here, with `disable
# kernel`. Every daemon is stopped by the PID this script started; the
# namespace is deleted on exit. Reports go to $WORK (default /tmp/ntplab-probe-peers).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/ntplab-probe-peers}
KEEP=0
if [ "${1:-}" = "-k" ]; then KEEP=1; shift; fi
ROWS=("$@")
[ ${#ROWS[@]} -eq 0 ] && ROWS=(ntplab-serve chronyd-4.3 ntpsec ntpd-rs)

NTPLAB=${NTPLAB:-$ROOT/target/debug/ntplab}
if [ ! -x "$NTPLAB" ]; then
    (cd "$ROOT" && cargo build -q -p ntplab)
fi
NOCAP=(setpriv --inh-caps=-sys_time --bounding-set=-sys_time)
PEERS_DIR=${PEERS_DIR:-/tmp/ntplab-peers}
[ -x "$PEERS_DIR/ntpsec/usr/sbin/ntpd" ] && PATH=$PEERS_DIR/ntpsec/usr/sbin:$PATH
NS=ntplab-probe-$$
PIDS=()
cleanup() {
    # `|| true`: under set -e, wait's status for a killed daemon (143) would
    # end the trap here, leaving the namespace behind and the exit status 143.
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; } || true; done
    ip netns del "$NS" 2>/dev/null || true
    [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK"
mkdir -p "$WORK"
chmod 700 "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (at most 10 s) until `$@ query ADDR` answers.
wait_answer() {
    local addr=$1; shift
    for _ in $(seq 50); do
        "$@" "$NTPLAB" query "$addr" --samples 1 --timeout 0.5 >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}

ran=()
failed=0
probe_row() { # NAME ADDR KE_ADDR [PREFIX...]: probe (ntpv4; nts-ke and nts), keep the reports, compare with the snapshots
    local name=$1 addr=$2 ke=$3; shift 3
    if ! wait_answer "$addr" "$@"; then
        echo "$name: no answer on $addr; skipped" >&2
        return
    fi
    ran+=("$name")
    local run
    for run in "$name" "$name-nts"; do
        local dir="$WORK/$run" code=0
        local groups=(--only ntpv4,ntpv5)
        [ "$run" = "$name-nts" ] && groups=(--only nts-ke,nts --nts-ke "$ke" --trusted-certificates "$WORK/cert.pem")
        "$@" "$NTPLAB" probe "$addr" "${groups[@]}" --report "$dir" --timeout 0.3 >"$dir.txt" 2>&1 || code=$?
        head -1 "$dir.txt"
        echo "$run: exit status $code; report in $dir"
        local snap="$ROOT/tests/probe/$run.verdicts"
        if [ -f "$snap" ]; then
            if ! diff -u "$snap" "$dir/verdicts.txt"; then
                echo "$run: verdicts differ from tests/probe/$run.verdicts" >&2
                failed=1
            fi
        else
            echo "$run: no snapshot tests/probe/$run.verdicts (copy $dir/verdicts.txt there to add one)"
        fi
    done
}

tcp_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for row in "${ROWS[@]}"; do
    case "$row" in
    ntplab-serve)
        port=$(free_port); ke=$(tcp_port)
        printf 'listen = ["127.0.0.1:%s"]\n[local]\nstratum = 1\n[nts]\ncertificate = "%s"\nkey = "%s"\nke_listen = ["127.0.0.1:%s"]\n' \
            "$port" "$WORK/cert.pem" "$WORK/key.pem" "$ke" >"$WORK/serve.toml"
        "${NOCAP[@]}" "$NTPLAB" serve --config "$WORK/serve.toml" --duration 180 >"$WORK/serve.log" 2>&1 &
        PIDS+=($!)
        probe_row ntplab-serve "127.0.0.1:$port" "127.0.0.1:$ke"
        ;;
    chronyd-4.3)
        if ! command -v chronyd >/dev/null; then echo "chronyd-4.3: chronyd not installed; skipped" >&2; continue; fi
        port=$(free_port); ke=$(tcp_port)
        d="$WORK/chronyd-run"; mkdir -p "$d"
        printf 'port %s\nbindaddress 127.0.0.1\ncmdport 0\nlocal stratum 1\nallow 127.0.0.1\npidfile %s/chronyd.pid\ndriftfile %s/drift\n' "$port" "$d" "$d" >"$d/chrony.conf"
        printf 'ntsserverkey %s\nntsservercert %s\nntsport %s\nntsdumpdir %s\n' "$WORK/key.pem" "$WORK/cert.pem" "$ke" "$d" >>"$d/chrony.conf"
        "${NOCAP[@]}" chronyd -n -x -u root -f "$d/chrony.conf" >"$d/log" 2>&1 &
        PIDS+=($!)
        probe_row chronyd-4.3 "127.0.0.1:$port" "127.0.0.1:$ke"
        ;;
    ntpd-rs)
        if ! command -v ntp-daemon >/dev/null; then echo "ntpd-rs: ntp-daemon not installed (cargo install ntpd --locked); skipped" >&2; continue; fi
        port=$(free_port); ke=$(tcp_port)
        d="$WORK/ntpd-rs-run"; mkdir -p "$d"
        # No [[source]]: ntpd-rs then never steers the clock; it serves its
        # local clock at stratum 1. NTPv5 (its draft) is off unless accepted.
        printf '[observability]\nlog-level = "warn"\n\n[[server]]\nlisten = "127.0.0.1:%s"\naccept-ntp-versions = [3, 4, 5]\n\n[synchronization]\nlocal-stratum = 1\n' "$port" >"$d/ntp.toml"
        printf '\n[[nts-ke-server]]\nlisten = "127.0.0.1:%s"\ncertificate-chain-path = "%s"\nprivate-key-path = "%s"\nntp-port = %s\n\n[keyset]\nkey-storage-path = "%s/keyset"\n' \
            "$ke" "$WORK/cert.pem" "$WORK/key.pem" "$port" "$d" >>"$d/ntp.toml"
        "${NOCAP[@]}" ntp-daemon -c "$d/ntp.toml" >"$d/log" 2>&1 &
        PIDS+=($!)
        probe_row ntpd-rs "127.0.0.1:$port" "127.0.0.1:$ke"
        ;;
    ntpsec)
        if ! command -v ntpd >/dev/null || ! ntpd --version 2>&1 | grep -qi ntpsec; then echo "ntpsec: ntpsec's ntpd not on PATH; skipped" >&2; continue; fi
        if ! ip netns add "$NS" 2>/dev/null; then echo "ntpsec: cannot create a network namespace (needs root); skipped" >&2; continue; fi
        ip netns exec "$NS" ip link set lo up
        d="$WORK/ntpsec-run"; mkdir -p "$d"
        # ntpsec serves only on port 123: in the namespace it is alone there.
        printf 'refclock local stratum 1 minpoll 0 maxpoll 0\ntos orphanwait 1\ndisable kernel\nrestrict default kod limited nomodify nopeer noquery\nrestrict 127.0.0.1\ndriftfile %s/drift\n' "$d" >"$d/ntp.conf"
        # NTS-KE on its fixed port 4460, in the namespace too.
        printf 'nts enable cert %s key %s cookie %s/keys\n' "$WORK/cert.pem" "$WORK/key.pem" "$d" >>"$d/ntp.conf"
        ip netns exec "$NS" "${NOCAP[@]}" ntpd -n -c "$d/ntp.conf" >"$d/log" 2>&1 &
        PIDS+=($!)
        probe_row ntpsec "127.0.0.1:123" "127.0.0.1:4460" ip netns exec "$NS"
        ;;
    *) echo "unknown row $row (rows: ntplab-serve chronyd-4.3 ntpsec ntpd-rs)" >&2; exit 2 ;;
    esac
done

# Side by side: one line per requirement any row judged.
if [ ${#ran[@]} -gt 0 ]; then
    printf '\n| requirement |'; for r in "${ran[@]}"; do printf ' %s |' "$r"; done; printf '\n|---|'; for _ in "${ran[@]}"; do printf -- '---|'; done; printf '\n'
    for r in "${ran[@]}"; do cat "$WORK/$r/verdicts.txt" "$WORK/$r-nts/verdicts.txt" 2>/dev/null; done | awk '!seen[$1]++ {print $1}' | while read -r id; do
        printf '| %s |' "$id"
        for r in "${ran[@]}"; do
            v=$(cat "$WORK/$r/verdicts.txt" "$WORK/$r-nts/verdicts.txt" 2>/dev/null | awk -v id="$id" '$1 == id { $1 = ""; sub(/^ /, ""); print }')
            printf ' %s |' "${v:--}"
        done
        printf '\n'
    done
fi
exit $failed
