#!/usr/bin/env bash
# Installs Patroni 4 from PyPI (with its etcd3 driver and psycopg2) into a venv, by
# default /opt/raftgres-peers/venv, readable by every user (Patroni runs as raftgres).
# Used by `deploy/setup.sh --tests` (the Patroni-on-raftgres test) and benches/peers.sh.
# Idempotent: does nothing when a Patroni 4 is there. Needs root (or sudo).
set -euo pipefail

VENV=${1:-/opt/raftgres-peers/venv}
if [[ $("$VENV/bin/patroni" --version 2>/dev/null || true) == "patroni 4."* ]]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "patroni-venv: installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
echo "patroni-venv: installing Patroni 4 into $VENV"
$SUDO mkdir -p "$VENV"
# Debian's interpreter, not the caller's (pyenv etc.): the venv must work for raftgres.
$SUDO /usr/bin/python3 -m venv "$VENV"
$SUDO "$VENV/bin/pip" install -q --upgrade pip >/dev/null
$SUDO "$VENV/bin/pip" install -q 'patroni[etcd3]' psycopg2-binary >/dev/null
$SUDO chmod -R a+rX "$(dirname "$VENV")"
