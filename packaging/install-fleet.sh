#!/bin/bash
# The fleet service in one command, from this checkout (Debian 12, Ubuntu 24.04: Python
# 3.11 or later; the fleet does not run on Ubuntu 22.04's 3.10):
#   sudo apt-get install -y python3-venv mosquitto && sudo packaging/install-fleet.sh
# Run it again to upgrade: the config and the data are kept.  It makes
#   the system user syncclass (shared with the agent's package);
#   /etc/syncclass/fleet.toml from provisioning/fleet.example.toml, only if absent
#     (0640 root:syncclass: it holds the broker password);
#   /var/lib/syncclass (0750 syncclass): the database and the command-signing key;
#   /opt/syncclass-fleet/venv with this checkout's syncclass[fleet] and its dependencies
#     from PyPI, linked as /usr/bin/syncclass-fleet;
#   the unit /etc/systemd/system/syncclass-fleet.service, and the database schema.
# ROOT=DIR installs into DIR instead of / (the test does; then no migrate, no systemctl).
# PYTHON=... picks the interpreter (default /usr/bin/python3).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-}
python=${PYTHON:-/usr/bin/python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install-fleet: 中心服务需要 Python 3.11+ / the fleet needs Python 3.11 or later;" \
        "$python is $("$python" -V 2>&1) (install only the agent on this machine)" >&2
    exit 1
fi

id_of() {  # id_of FILE NAME: numeric id from ROOT's passwd/group
    awk -F: -v n="$2" '$1 == n { print $3 }' "$ROOT/etc/$1"
}
if [ -z "$(id_of passwd syncclass)" ]; then
    useradd ${ROOT:+--prefix "$ROOT"} --system --user-group --no-create-home \
        --home-dir /var/lib/syncclass --shell /usr/sbin/nologin --comment syncclass syncclass
fi
uid=$(id_of passwd syncclass)
gid=$(id_of group syncclass)

install -d -m 0755 "$ROOT/etc/syncclass"
if [ ! -e "$ROOT/etc/syncclass/fleet.toml" ]; then
    install -m 0640 -o 0 -g "$gid" "$repo/provisioning/fleet.example.toml" \
        "$ROOT/etc/syncclass/fleet.toml"
fi
install -d -m 0750 -o "$uid" -g "$gid" "$ROOT/var/lib/syncclass"

venv=$ROOT/opt/syncclass-fleet/venv
[ -x "$venv/bin/python" ] || "$python" -E -s -m venv "$venv"
# -E -s: an administrator's PYTHONPATH or ~/.local must not leak into the venv.
"$venv/bin/python" -E -s -m pip install --quiet --disable-pip-version-check --upgrade \
    "$repo[fleet]"
install -d "$ROOT/usr/bin" "$ROOT/etc/systemd/system" "$ROOT/usr/share/doc/syncclass"
ln -sfn /opt/syncclass-fleet/venv/bin/syncclass-fleet "$ROOT/usr/bin/syncclass-fleet"
install -m 0644 "$repo/systemd/syncclass-fleet.service" "$ROOT/etc/systemd/system/"
install -m 0644 "$repo/README.md" "$ROOT/usr/share/doc/syncclass/README.md"

if [ -z "$ROOT" ]; then
    runuser -u syncclass -- /usr/bin/syncclass-fleet migrate --config /etc/syncclass/fleet.toml
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    echo "syncclass-fleet: edit /etc/syncclass/fleet.toml ([mqtt], [notify]), load the"
    echo "  inventory (provisioning/inventory.example.toml shows the format):"
    echo "  sudo -u syncclass syncclass-fleet load-inventory --config /etc/syncclass/fleet.toml FILE"
    echo "  then: systemctl enable --now syncclass-fleet"
fi
