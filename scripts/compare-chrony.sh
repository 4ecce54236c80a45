#!/usr/bin/env bash
# Compares ntplab with chronyd 4.3 on chrony's own simulation tests.
#
#   scripts/compare-chrony.sh [-s N|A-B] [-v] [-P] [-T N] [CASE...] (default: every case, seeds 1-5 (-s N: 1-N, -s A-B: A-B);
#                                                        -v: a row per seed too;
#                                                        -P: paired oscillators, below;
#                                                        -T N: both at poll target N, below)
#   scripts/compare-chrony.sh -l                       (list the cases; also x001-j1e-5, x001-j1e-3,
#                                                        x001-j1e-2, x001-w1e-8, x001-f1e-3: 001 with one
#                                                        variable changed, not chrony tests, run when named)
#   scripts/compare-chrony.sh -p                       (chronyd's precision under clknetsim)
#
# For each case and seed it runs chronyd under clknetsim with chrony's own
# test/simulation/test.common (the case sets the same variables as chrony's
# test script) and ntplab on the scenario mirroring it (scenarios/chrony-*.toml
# or scenarios/chrony-pending/), then reads both per-second offset logs with
# scripts/chrony-metrics.py, which computes every figure with one piece of code:
# sync time = first second after which |offset| <= 1 ms to the end, RMS and
# maximum |offset| from the case's max_sync_time (chrony's clknetsim -r) to the
# end. It prints a Markdown table per case: median [min-max] over the seeds.
#
# The two simulators draw their randomness independently, so a seed's two runs
# face different clock wanders and network delays. With -P (paired) ntplab's
# client replays the frequency clknetsim drew for chronyd's client in the same
# run (clknetsim's raw frequency log, -g, one value a second, written with 15
# digits by a one-line change to the logging of the clknetsim built under
# $WORK; the scenario's `frequency` and `wander` are replaced by that
# `frequency_file`): both then follow the same oscillator, and only the network
# delays differ.
#
# Each table also gives the requests the compared client sent. The two poll
# targets differ by default (chronyd's `polltarget` 8, ntplab's `poll_target`
# 16): with -T N chronyd's client gets `polltarget N` on its server lines and
# ntplab's client `poll_target = N`, so both poll by the same rule's target.
#
# A tool for people, not part of the tests. Everything third-party lives under
# $WORK (default /tmp/ntplab-compare-chrony), never in the repository:
#  - clknetsim is built from ../shared/tools/clknetsim.tar.gz (CLKNETSIM_TARBALL);
#  - chrony is installed from Debian if missing, its service never started;
#  - chrony's test.common comes from Debian's source package (apt-get source).
# Safety: chronyd runs only under clknetsim (LD_PRELOAD: its clock calls go to
# the simulator) and without CAP_SYS_TIME (setpriv drops it from the bounding
# set), so nothing here can change this machine's clock.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/ntplab-compare-chrony}
SEEDS="1 2 3 4 5"
NTPLAB=${NTPLAB:-}
PRECISION=0
PER_SEED=
PAIRED=0
POLL_TARGET=

CASES="001 008 003-plus-5e-3 003-minus-5e-3 003-plus-5e-2 003-minus-5e-2 004-plus-100 004-minus-100 005-plus-100 005-minus-100
005-makestep-minus-1e8 005-makestep-minus-1e5 005-makestep-plus-1e5 005-makestep-plus-1e8 006 007
009-1-falseticker 009-2-falsetickers 010 011 014 101-poll-4 101-poll-5 101-poll-6 101-poll-7 101-poll-8 101-poll-9 101-poll-10
101-poll-11 101-poll-12 101-poll-13 101-poll-14 102 120-trust 120-prefer-long-delay 122 125 126 126-delayed 135 default-1d"

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while getopts "s:lpvPT:h" o; do
    case $o in
        v) PER_SEED=--per-seed ;;
        P) PAIRED=1 ;;
        T) case $OPTARG in
               ''|*[!0-9]*) echo "compare-chrony: -T takes a number of samples (3-64)" >&2; exit 2 ;;
           esac
           POLL_TARGET=$OPTARG ;;
        p) PRECISION=1 ;;
        s) case $OPTARG in
               *-*) SEEDS=$(seq -s ' ' "${OPTARG%-*}" "${OPTARG#*-}") ;;
               *) SEEDS=$(seq -s ' ' 1 "$OPTARG") ;;
           esac ;;
        l) echo $CASES | tr ' ' '\n'; exit 0 ;;
        *) usage 0 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] && CASES="$*"

# The chrony test variables of a case, the ntplab scenario mirroring it, the
# clknetsim node whose offset is compared, and the statistics window start.
case_setup() {
    unset freq_offset time_offset limit max_sync_time jitter jitter_asymmetry wander client_conf \
        client_server_options client_server_conf servers falsetickers base_delay CLKNETSIM_RECV_MULTIPLY server_conf \
        clients peers client_peer_options client_step CLKNETSIM_START_DATE
    node=2 window=210 pre_run=:
    case $1 in
        001) scenario=chrony-001-defaults ;;
        008) # 008-ntpera, first case: the run starts 500 s before the second NTP era.
            export CLKNETSIM_START_DATE; CLKNETSIM_START_DATE=$(date -d 'Feb  7 06:19:56 UTC 2036' +%s)
            scenario=chrony-008-ntp-era ;;
        122) # 122-xleave, second case: interleaved mode, the server keeps its client log.
            client_server_options=xleave max_sync_time=270 window=270
            scenario=chrony-122-interleaved ;;
        003-plus-5e-3) freq_offset=5e-3 time_offset=-0.65 max_sync_time=1000 window=1000
            scenario=chrony-003-large-frequency-offset-plus-0.005 ;;
        003-plus-5e-2) freq_offset=5e-2 time_offset=-6.5 max_sync_time=1000 window=1000
            scenario=chrony-003-large-frequency-offset-plus-0.05 ;;
        003-minus-5e-2) freq_offset=-5e-2 time_offset=6.5 max_sync_time=1000 window=1000
            scenario=chrony-003-large-frequency-offset-minus-0.05 ;;
        003-minus-5e-3) freq_offset=-5e-3 time_offset=0.65 max_sync_time=1000 window=1000
            scenario=chrony-003-large-frequency-offset-minus-0.005 ;;
        004-minus-100) time_offset=-1e2 max_sync_time=1400 window=1400
            scenario=chrony-004-large-time-offset-minus-100s ;;
        005-plus-100) client_step='(* 1e2 (equal 0.1 (sum 1.0) 150))' max_sync_time=1550 window=1550
            scenario=chrony-005-external-step-plus-100s ;;
        005-minus-100) client_step='(* -1e2 (equal 0.1 (sum 1.0) 150))' max_sync_time=1550 window=1550
            scenario=chrony-005-external-step-minus-100s ;;
        005-makestep-*) # 005's second part: makestep 1 -1, one external step at 5000 s
            local w=${1#005-makestep-} v; v=${w#*-}; [ "${w%%-*}" = minus ] && v=-$v
            client_conf="makestep 1 -1" client_step="(* $v (equal 0.1 (sum 1.0) 5000))" max_sync_time=6200 window=6200
            scenario=chrony-005-external-step-makestep-${w}s ;;
        101-poll-*) local p=${1#101-poll-}
            client_server_options="minpoll $p maxpoll $p" wander=0.0 jitter=1e-6 limit=$((2**p * 10))
            max_sync_time=$((2**p * 21 / 10 + 1)) window=$((2**p * 21 / 10 + 1)) client_conf="makestep 1e-2 1"
            scenario=chrony-101-poll-$p ;;
        102) freq_offset=1e-4 client_conf="makestep 1e-2 1
driftfile tmp/drift" client_server_options=iburst max_sync_time=6 window=6
            # chrony's test writes the drift file (the exact 100 ppm) before the run;
            # the scenario gives ntplab's client the same (drift = 1e-4: its daemon
            # starts from a -100 ppm correction, as from [clock] drift_file).
            pre_run='echo "100 1.0" > tmp/drift'
            scenario=chrony-102-iburst ;;
        125) base_delay='(+ 1e-4 (* -1 (equal 0.33 (uniform) 1.0)) (* -1 (equal 0.1 from 3) (equal 0.1 to 1)))'
            clients=2 peers=2 jitter=1e-5 limit=20000 max_sync_time=10000 window=10000
            client_server_options="maxpoll 8" client_peer_options="maxpoll 8"
            scenario=chrony-125-packet-loss ;;
        126-delayed) base_delay='(+ 1e-4 (* 0.15 (equal 0.1 from 2) (equal 0.1 to 1) (equal 0.1 (min (sum 1) 7) 7) (equal 0.7 (uniform) 0.0)))'
            client_server_options="burst polltarget 1" max_sync_time=730 window=730
            scenario=chrony-126-burst-delayed-after-6th-packet ;;
        135) # chrony's 135-ratelimit at ntplab's parameters (the scenario's):
            # polls of 2^4 s (ntplab's floor) against one answer per 2^7 s.
            server_conf="ratelimit interval 7 burst 2 leak 4" client_server_options="minpoll 4 maxpoll 4"
            scenario=chrony-135-rate-limit ;;
        004-plus-100) time_offset=1e2 max_sync_time=1400 window=1400
            scenario=chrony-004-large-time-offset-plus-100s ;;
        006) time_offset=1e0 jitter=1e-1
            scenario=chrony-006-large-jitter ;;
        007) wander=1e-7
            scenario=chrony-007-large-wander ;;
        default-1d) limit=86400 window=21600
            scenario=chrony-default ;;
        014) base_delay='(+ 1e-4 (* -1 (equal 0.1 (min (% time 10000) 1200) 1200)))' limit=100000
            scenario=chrony-014-intermittent-link ;;
        126) base_delay='(+ 1e-4 (* -1 (equal 0.1 from 2) (equal 0.1 to 1) (equal 0.1 (min (% (sum 1) 4) 1) 1)))'
            client_server_options="burst polltarget 1" max_sync_time=730 window=730
            scenario=chrony-126-burst ;;
        009-1-falseticker) base_delay=1e-3 servers=5 falsetickers=1 node=6
            scenario=chrony-009-source-selection-1-falsetickers-of-5 ;;
        009-2-falsetickers) base_delay=1e-3 servers=5 falsetickers=2 node=6
            scenario=chrony-009-source-selection-2-falsetickers-of-5 ;;
        010) export CLKNETSIM_RECV_MULTIPLY=4; limit=50000 client_server_options="minpoll 6 maxpoll 6"
            scenario=chrony-010-duplicated-packets ;;
        011) jitter=5e-4 jitter_asymmetry=0.47 limit=100000 max_sync_time=2000 window=2000
            scenario=chrony-011-asymmetric-jitter ;;
        120-trust) # 120-selectoptions, case 1: two falsetickers (+1, +2 s) of three, 0.6 s each way
            base_delay=0.6 servers=3 falsetickers=2 node=4 client_server_conf="server 192.168.123.1
server 192.168.123.2
server 192.168.123.3 trust"
            scenario=chrony-120-select-options-trust ;;
        120-prefer-long-delay) # case 3: prefer on the true server, 1.1 s each way
            base_delay=1.1 servers=3 falsetickers=2 node=4 client_server_conf="server 192.168.123.1
server 192.168.123.2
server 192.168.123.3 prefer"
            scenario=chrony-120-select-options-long-delay-max-distance ;;
        # Variations of 001 that are not chrony tests (scenarios/chrony-variants/):
        # one test.common variable changed, to see whether the comparison holds
        # off chrony's own parameters. Not in the default list; name them.
        x001-j1e-5) jitter=1e-5 scenario=chrony-x001-j1e-5 ;;
        x001-j1e-3) jitter=1e-3 scenario=chrony-x001-j1e-3 ;;
        x001-j1e-2) jitter=1e-2 scenario=chrony-x001-j1e-2 ;;
        x001-w1e-8) wander=1e-8 scenario=chrony-x001-w1e-8 ;;
        x001-f1e-3) freq_offset=1e-3 scenario=chrony-x001-f1e-3 ;;
        *) echo "compare-chrony: unknown case $1 (try -l)" >&2; exit 2 ;;
    esac
}

setup_tools() {
    mkdir -p "$WORK"
    if [ ! -x "$WORK/clknetsim/clknetsim" ]; then
        local tarball=${CLKNETSIM_TARBALL:-}
        for t in "$ROOT/../shared/tools/clknetsim.tar.gz" "$ROOT/../../shared/tools/clknetsim.tar.gz"; do
            [ -z "$tarball" ] && [ -e "$t" ] && tarball=$t
        done
        [ -n "$tarball" ] || { echo "compare-chrony: no clknetsim.tar.gz (set CLKNETSIM_TARBALL)" >&2; exit 3; }
        tar xzf "$tarball" -C "$WORK"
        make -s -C "$WORK/clknetsim" >/dev/null
    fi
    if [ ! -e "$WORK/clknetsim/.rawfreq-15-digits" ]; then
        # -g logs each node's raw frequency with printf's %e (7 digits: 1e-10
        # at 1e-4, 1e-8 at 5e-2, coarser than a second's wander of 1e-9); the
        # paired mode replays it, so it is logged with 15 digits. Logging only.
        sed -i '/fprintf(rawfreq_log, "%e%c",/s/"%e%c"/"%.15e%c"/' "$WORK/clknetsim/network.cc"
        grep -q 'fprintf(rawfreq_log, "%.15e%c",' "$WORK/clknetsim/network.cc" \
            || { echo "compare-chrony: cannot find clknetsim's raw frequency log format in network.cc" >&2; exit 3; }
        make -s -C "$WORK/clknetsim" >/dev/null
        touch "$WORK/clknetsim/.rawfreq-15-digits"
    fi
    # Runs clknetsim with its raw frequency log (test.common's server wrapper hook).
    printf '#!/bin/sh\nexec "$@" -g tmp/log.rawfreq\n' > "$WORK/clknetsim-rawfreq"
    chmod +x "$WORK/clknetsim-rawfreq"
    if ! command -v chronyd >/dev/null && [ ! -x /usr/sbin/chronyd ]; then
        # Never let the package start its service (it would discipline this clock).
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chrony >/dev/null
    fi
    CHRONY_VERSION=$(/usr/sbin/chronyd -v | head -1)
    local upstream
    upstream=$(dpkg-query -W -f='${Version}' chrony | sed 's/-.*//')
    SIMDIR="$WORK/chrony-$upstream/test/simulation"
    if [ ! -e "$SIMDIR/test.common" ]; then
        # Debian's source package; a private sources list keeps the system's alone.
        local a="$WORK/apt"
        mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
        printf 'deb-src http://deb.debian.org/debian bookworm main\ndeb-src http://deb.debian.org/debian-security bookworm-security main\n' > "$a/src.list"
        local opts=(-o "Dir::Etc::SourceList=$a/src.list" -o Dir::Etc::SourceParts=/nonexistent
            -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache")
        apt-get "${opts[@]}" update -qq
        (cd "$WORK" && apt-get "${opts[@]}" source --download-only -qq "chrony=$(dpkg-query -W -f='${Version}' chrony)" 2>/dev/null)
        tar xzf "$WORK/chrony_$upstream.orig.tar.gz" -C "$WORK"
    fi
    ln -sfn "$WORK/clknetsim" "$SIMDIR/clknetsim"
    # chrony's test.common works in ./tmp: a private copy of the directory
    # (at the same depth, for its ../../ paths) lets several comparisons
    # share one $WORK at once.
    RUNDIR=$(mktemp -d "$(dirname "$SIMDIR")/simulation-run.XXXXXX")
    trap 'rm -rf "$RUNDIR"' EXIT
    cp "$SIMDIR/test.common" "$RUNDIR/"
    mkdir "$RUNDIR/tmp"   # test.common stops silently when it has to create it
    ln -s "$WORK/clknetsim" "$RUNDIR/clknetsim"
    SIMDIR=$RUNDIR
    if [ -z "$NTPLAB" ]; then
        (cd "$ROOT" && cargo build -q --release --bin ntplab)
        NTPLAB="$ROOT/target/release/ntplab"
    fi
}

# chronyd under clknetsim: writes $out/chrony.offsets (one line per second, one column per node) and $out/chrony.packets.
run_chrony() {
    local c=$1 seed=$2 out=$3
    (
        cd "$SIMDIR"
        case_setup "$c"
        export CLKNETSIM_RANDOM_SEED=$seed
        export CLKNETSIM_SERVER_WRAPPER=$WORK/clknetsim-rawfreq
        if [ -n "$POLL_TARGET" ]; then
            client_server_options="${client_server_options:-} polltarget $POLL_TARGET"
            [ -n "${client_server_conf:-}" ] && client_server_conf=$(printf '%s\n' "$client_server_conf" | sed "s/^server .*/& polltarget $POLL_TARGET/")
        fi
        # shellcheck disable=SC1091
        . ./test.common
        mkdir -p tmp && rm -rf tmp/*
        eval "$pre_run"
        run_test > "$out/chrony.log" 2>&1 || true
        cp tmp/log.offset "$out/chrony.offsets" 2>/dev/null || true
        # The compared node's raw frequency, one value a second (for -P).
        awk -v n="$node" '{ print $n }' tmp/log.rawfreq > "$out/chrony.rawfreq" 2>/dev/null || true
        # clknetsim's packet log (one line per packet: when, from, to, ...),
        # for looking into chronyd's polling; the tables do not use it.
        cp tmp/log.packets "$out/chrony.packets" 2>/dev/null || true
    )
}

# The precision chronyd measures for its clock under clknetsim (the value a
# simulated ntplab host reports, sim/src/host_clock.rs DEFAULT_PRECISION_LOG2):
# chrony's default network of one server and one client, and chronyc's
# `ntpdata` on the client at 200 s, whose "Precision" line is the server's
# precision field. chronyc is node 3 (servers, clients, then chronyc).
run_precision() {
    (
        cd "$SIMDIR"
        case_setup 001
        export CLKNETSIM_RANDOM_SEED=1
        limit=300 chronyc_start=200 chronyc_conf=ntpdata
        # shellcheck disable=SC1091
        . ./test.common
        mkdir -p tmp && rm -rf tmp/*
        run_test >/dev/null 2>&1 || true
        grep -h '^Precision' tmp/log.3 || { echo "compare-chrony: chronyc printed no ntpdata; see $SIMDIR/tmp" >&2; exit 4; }
    )
}

run_ntplab() {
    local c=$1 seed=$2 out=$3 file
    case_setup "$c"
    file=
    for f in "$ROOT/scenarios/$scenario.toml" "$ROOT/scenarios/chrony-pending/$scenario.toml" "$ROOT/scenarios/chrony-variants/$scenario.toml"; do
        [ -z "$file" ] && [ -e "$f" ] && file=$f
    done
    [ -n "$file" ] || { echo "compare-chrony: no scenario $scenario" >&2; exit 3; }
    if [ "$PAIRED" = 1 ]; then
        # The scenario with its client's frequency and wander replaced by
        # chronyd's client's oscillator from the same seed.
        [ -s "$out/chrony.rawfreq" ] || { echo "compare-chrony: clknetsim logged no raw frequency for case $c seed $seed" >&2; exit 4; }
        python3 - "$file" "$out/paired.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r'(?m)^(?=\[\[)', text)
done = False
for i, b in enumerate(blocks):
    if b.startswith('[[host]]') and re.search(r'(?m)^name = "client"\s*$', b):
        m = re.search(r'(?m)^clock = \{(.*)\}\s*$', b)
        if not m:
            sys.exit(f"compare-chrony: host `client` of {sys.argv[1]} has no one-line clock table")
        keys = [k.strip() for k in m.group(1).split(',') if k.strip()]
        keys = [k for k in keys if not re.match(r'(frequency|wander)\s*=', k)]
        keys.append('frequency_file = "chrony.rawfreq"')
        blocks[i] = b[:m.start()] + 'clock = { ' + ', '.join(keys) + ' }' + b[m.end():]
        done = True
if not done:
    sys.exit(f"compare-chrony: no host `client` in {sys.argv[1]}")
open(sys.argv[2], 'w').write(''.join(blocks))
PY
        file=$out/paired.toml
    fi
    if [ -n "$POLL_TARGET" ]; then
        # The client host's `poll_target`, after its name (replacing its own).
        awk -v n="$POLL_TARGET" '
            /^\[/ { client = 0 }
            client && /^poll_target[[:space:]]*=/ { next }
            { print }
            /^name = "client"[[:space:]]*$/ { client = 1; print "poll_target = " n }' "$file" > "$out/target.toml"
        grep -q "^poll_target = $POLL_TARGET\$" "$out/target.toml" || { echo "compare-chrony: no host \`client\` in $file" >&2; exit 3; }
        file=$out/target.toml
    fi
    # A failed expectation is a figure here, not an error.
    "$NTPLAB" run "$file" --seed "$seed" --out "$out/ntplab" >/dev/null 2>&1 || true
}

setup_tools
if [ "$PRECISION" = 1 ]; then
    echo "$CHRONY_VERSION under clknetsim, the server's precision as its client sees it:"
    setpriv --inh-caps=-sys_time --bounding-set=-sys_time bash -c "$(declare -f case_setup run_precision); SIMDIR='$SIMDIR'; run_precision"
    exit 0
fi
NTPLAB_VERSION=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)
echo "# ntplab vs chronyd under clknetsim"
echo
[ -n "$POLL_TARGET" ] && echo "Poll target (-T): chronyd's client with \`polltarget $POLL_TARGET\`, ntplab's with \`poll_target = $POLL_TARGET\`." && echo
[ "$PAIRED" = 1 ] && echo "Paired (-P): ntplab's client replays the frequency clknetsim drew for chronyd's client in each run; network delays are drawn independently." && echo
echo "$(date -u +%Y-%m-%d), seeds $SEEDS; chronyd: $CHRONY_VERSION (Debian $(dpkg-query -W -f='${Version}' chrony)), clknetsim $(cat "$WORK/clknetsim/.commit" 2>/dev/null || echo 'from ../shared/tools'), ntplab $NTPLAB_VERSION."
for c in $CASES; do
    case_setup "$c"
    rows=()
    for seed in $SEEDS; do
        out="$WORK/runs/$c/$seed"
        rm -rf "$out" && mkdir -p "$out"
        setpriv --inh-caps=-sys_time --bounding-set=-sys_time bash -c "$(declare -f case_setup run_chrony); SIMDIR='$SIMDIR' WORK='$WORK' POLL_TARGET='$POLL_TARGET'; run_chrony '$c' '$seed' '$out'"
        if [ ! -s "$out/chrony.offsets" ]; then
            echo "compare-chrony: chronyd under clknetsim wrote no offset log for case $c seed $seed; its output: $out/chrony.log" >&2
            exit 4
        fi
        run_ntplab "$c" "$seed" "$out"
        rows+=("$out")
    done
    echo
    rel=scenarios/$scenario.toml
    [ -e "$ROOT/$rel" ] || rel=scenarios/chrony-pending/$scenario.toml
    [ -e "$ROOT/$rel" ] || rel=scenarios/chrony-variants/$scenario.toml
    python3 "$ROOT/scripts/chrony-metrics.py" --case "$c" --scenario "$rel" --node "$node" --window "$window" $PER_SEED "${rows[@]}"
done
