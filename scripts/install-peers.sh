#!/usr/bin/env bash
# Installs the other NTP implementations that the interoperability scripts
# (interop-nts.sh, probe-peers.sh, bench-servers.sh) and the hardware lab run
# beside ntplab. Idempotent: what is already there is left alone.
#
#   scripts/install-peers.sh [chrony] [ntpd-rs] [ntpsec] [gpsd]    (default: all four)
#
# - chrony 4.3: Debian's package (`apt-get install chrony`). Its service is
#   never started: /usr/sbin/policy-rc.d (exit 101) is put in place for the
#   install when it is missing, and removed again if this script created it.
# - ntpd-rs (ntp-daemon, ntp-ctl): `cargo install ntpd --version 1.9.0
#   --locked` into cargo's bin directory (~/.cargo/bin), built in
#   $PEERS_DIR/cargo-target (2-10 minutes on 2 cores, -j 2). The version is
#   pinned (NTPDRS_VERSION changes it): the NTPv5 interop tests expect
#   ntpd-rs 1.9's draft, -08.
# - ntpsec 1.2.2: Debian's package conflicts with chrony's, so it is not
#   installed but fetched (`apt-get download ntpsec python3-ntp`) and
#   unpacked (`dpkg-deb -x`) under $PEERS_DIR/ntpsec: ntpd is
#   $PEERS_DIR/ntpsec/usr/sbin/ntpd, ntpq needs
#   PYTHONPATH=$PEERS_DIR/ntpsec/usr/lib/python3/dist-packages (its libntpc
#   is linked beside the Python module, where ntpq looks first). Its other
#   dependencies (libssl3, libcap2, libbsd0, python3) are on Debian 12 already.
# - gpsd 3.22: Debian's package (`apt-get install gpsd`), which the lab runs
#   beside chronyd to read a GPS receiver's NMEA (docs/hwlab.md). Installed
#   as chrony is, with /usr/sbin/policy-rc.d, so its service is not started;
#   where systemd runs, its socket and service (which the package enables)
#   are then stopped and disabled, so nothing listens on port 2947 or opens
#   a serial device behind the lab's back.
#
# PEERS_DIR defaults to /tmp/ntplab-peers (the scripts look there). Needs root
# for apt-get; nothing here starts a daemon or touches the clock.
set -euo pipefail

PEERS_DIR=${PEERS_DIR:-/tmp/ntplab-peers}
WANT=("$@")
[ ${#WANT[@]} -eq 0 ] && WANT=(chrony ntpd-rs ntpsec gpsd)
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$PEERS_DIR"

apt_updated=0
apt_update() { [ $apt_updated = 1 ] || { apt-get update -qq; apt_updated=1; }; }

# Installs a Debian package without starting its service: /usr/sbin/policy-rc.d
# (exit 101) is put in place for the install when missing, and removed again
# if this created it.
apt_install_no_service() {
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt_update
    apt-get install -y -qq --no-install-recommends "$1" >/dev/null
    if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

for peer in "${WANT[@]}"; do
    case $peer in
    chrony)
        if command -v chronyd >/dev/null; then
            echo "chrony: $(chronyd --version | awk '{print $4}') already installed"
            continue
        fi
        apt_install_no_service chrony
        echo "chrony: installed $(chronyd --version | awk '{print $4}') (service not started)"
        ;;
    ntpd-rs)
        if command -v ntp-daemon >/dev/null && command -v ntp-ctl >/dev/null; then
            echo "ntpd-rs: $(ntp-daemon --version 2>&1 | head -1) already installed"
            continue
        fi
        echo "ntpd-rs: cargo install ntpd --version ${NTPDRS_VERSION:-1.9.0} --locked (a few minutes)" >&2
        CARGO_TARGET_DIR="$PEERS_DIR/cargo-target" cargo install ntpd --version "${NTPDRS_VERSION:-1.9.0}" --locked -j 2 -q
        echo "ntpd-rs: installed $(ntp-daemon --version 2>&1 | head -1)"
        ;;
    ntpsec)
        root="$PEERS_DIR/ntpsec"
        if [ -x "$root/usr/sbin/ntpd" ] && [ -e "$root/usr/lib/python3/dist-packages/ntp/libntpc.so" ]; then
            echo "ntpsec: $("$root/usr/sbin/ntpd" --version 2>&1 | head -1) already in $root"
            continue
        fi
        apt_update
        debs=$(mktemp -d "$PEERS_DIR/debs.XXXXXX")
        # apt's download user cannot write to a root-only directory.
        chmod 755 "$debs"
        (cd "$debs" && apt-get download -qq ntpsec python3-ntp)
        mkdir -p "$root"
        for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
        rm -rf "$debs"
        ln -sf "$root/usr/lib/x86_64-linux-gnu/ntp/libntpc.so.1" "$root/usr/lib/python3/dist-packages/ntp/libntpc.so"
        echo "ntpsec: $("$root/usr/sbin/ntpd" --version 2>&1 | head -1) unpacked in $root"
        ;;
    gpsd)
        if [ -x /usr/sbin/gpsd ]; then
            echo "gpsd: $(/usr/sbin/gpsd -V 2>&1 | head -1) already installed"
            continue
        fi
        apt_install_no_service gpsd
        if [ -d /run/systemd/system ]; then
            systemctl disable --now gpsd.socket gpsd.service >/dev/null 2>&1 || true
        fi
        echo "gpsd: installed $(/usr/sbin/gpsd -V 2>&1 | head -1) (service not started)"
        ;;
    *) echo "install-peers.sh: unknown peer $peer (chrony, ntpd-rs, ntpsec, gpsd)" >&2; exit 2 ;;
    esac
done
