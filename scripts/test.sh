#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs them all.
#
# Needs: the Rust toolchain (cargo), cargo-nextest, from Debian's packages
# tshark (the decoder is checked field by field against Wireshark's dissector;
# its dumpcap captures the ntpd-rs interop traffic) and chrony (loopback
# interoperability tests), ntpd-rs 1.9 (NTPv5 interop; cargo install) and
# ntpsec 1.2.2 (lab hosts; unpacked under /tmp/ntplab-peers), gpsd 3.22 (lab
# hosts with a GPS receiver on chronyd). Missing packages are installed
# with apt-get when running as root; otherwise the script says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v tshark >/dev/null 2>&1 || need_pkgs+=(tshark)
command -v chronyd >/dev/null 2>&1 || need_pkgs+=(chrony)
if ((${#need_pkgs[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        # Never let a package's service start on install: chronyd started by its
        # postinst would discipline this machine's clock.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
        fi
        echo "test.sh: installing ${need_pkgs[*]} (Debian packages)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    else
        echo "test.sh: missing ${need_pkgs[*]}; install with: sudo apt-get install ${need_pkgs[*]}" >&2
        exit 1
    fi
fi
# ntpd-rs 1.9 (ntp-daemon, ntp-ctl) for the NTPv5 interop tests
# (tests/interop_ntpdrs.rs): built from crates.io by cargo install, as root
# only (those tests need root too; elsewhere they say they are skipped).
if ! command -v ntp-daemon >/dev/null 2>&1 || ! command -v ntp-ctl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        scripts/install-peers.sh ntpd-rs
    else
        echo "test.sh: ntpd-rs is missing (the NTPv5 interop tests will be skipped); install with: scripts/install-peers.sh ntpd-rs" >&2
    fi
fi
# ntpsec 1.2.2 for the lab's ntpsec hosts (tests/lab_cli.rs, hwlab/tests):
# fetched and unpacked under /tmp/ntplab-peers (it conflicts with chrony's
# package, so it is not installed), as root only, like the tests.
if [ ! -x "${NTPLAB_PEERS_DIR:-/tmp/ntplab-peers}/ntpsec/usr/sbin/ntpd" ]; then
    if [ "$(id -u)" = 0 ]; then
        PEERS_DIR=${NTPLAB_PEERS_DIR:-/tmp/ntplab-peers} scripts/install-peers.sh ntpsec
    else
        echo "test.sh: ntpsec is missing (the lab's ntpsec tests will be skipped); install with: scripts/install-peers.sh ntpsec" >&2
    fi
fi
# gpsd 3.22 for the lab's chronyd hosts with a GPS receiver (tests/lab_cli.rs):
# Debian's package, its service never started, as root only, like the tests.
if [ ! -x /usr/sbin/gpsd ]; then
    if [ "$(id -u)" = 0 ]; then
        scripts/install-peers.sh gpsd
    else
        echo "test.sh: gpsd is missing (the lab's chronyd-with-GPS test will be skipped); install with: scripts/install-peers.sh gpsd" >&2
    fi
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest" >&2
    cargo install cargo-nextest --locked
fi

# One optimized build with debug assertions and overflow checks (Cargo.toml's
# `checked` profile): the simulations inside the tests run at release speed,
# and .ci/run's suite runs the target/checked/ntplab the tests built.
# The clock shim first: the lab tests load it into chronyd, ntpsec and ntpd-rs,
# and built by the first of them it compiled for minutes beside real-time tests.
cargo build -q -p ntplab-clockshim --profile checked
cargo nextest run --workspace --cargo-profile checked --no-fail-fast
cargo test --workspace --doc --profile checked
