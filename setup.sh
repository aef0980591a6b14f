#!/bin/sh
# One idempotent set-up step for a fresh Debian 12 machine, run as root:
# Debian packages, the project's virtual environment, and a running Open vSwitch.
# Running it again is quick and changes nothing.
set -eu
cd "$(dirname "$0")"

PACKAGES="mininet openvswitch-switch postgresql-15 iperf3 ethtool iputils-ping telnet
iproute2 procps psmisc socat nftables python3-venv python3-dev gcc libtcmalloc-minimal4"
# The dashboard's tests drive Debian's chromium with selenium (/usr/bin/chromedriver).
# The real-kernel test VM runs no browser and sets HCLAB_SETUP_BROWSER=0.
BROWSER_PACKAGES="chromium chromium-driver"
if [ "${HCLAB_SETUP_BROWSER:-1}" != 0 ]; then
    PACKAGES="$PACKAGES $BROWSER_PACKAGES"
fi

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: run as root (the lab creates namespaces, veths and OVS bridges)" >&2
    exit 2
fi

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi

# The Debian postgresql package creates and starts a default cluster on 5432;
# the lab runs its own servers inside its namespaces, so leave that one alone.

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import mininet.net' 2>/dev/null; then
    echo "setup: creating .venv from /usr/bin/python3 (--system-site-packages, for Debian's mininet)"
    rm -rf .venv
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.hclab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing the project and its Python dependencies into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    touch "$stamp"
fi

# The delay line's compiled core (lab/_delaycore.c, lab.delaycore); without it the delay
# line forwards in Python, slower ('lab doctor' says which one the lab uses).
py_include=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
core_so=lab/_delaycore$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
if [ ! -f "$core_so" ] || [ lab/_delaycore.c -nt "$core_so" ]; then
    echo "setup: building the delay line's compiled core ($core_so)"
    gcc -O2 -Wall -Werror -shared -fPIC -I"$py_include" lab/_delaycore.c -o "$core_so.tmp"
    mv "$core_so.tmp" "$core_so"
fi

if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
    echo "setup: starting Open vSwitch"
    /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
    ovs-vsctl --timeout=10 show >/dev/null
fi
