#!/usr/bin/env bash
# Installs what building and running raftgres needs on a fresh Debian 12 machine; with
# --tests also what only the tests need (a headless browser, shellcheck, pgBackRest for
# the replica-from-pgBackRest test, and Patroni 4 in a venv by deploy/patroni-venv.sh for
# the Patroni-on-raftgres test).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v curl >/dev/null || need+=(curl)   # the TLS test checks HTTPS with it
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v psql >/dev/null || need+=(postgresql-client)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need+=(postgresql-15)
if [ "${1:-}" = "--tests" ]; then
    # The dashboard test drives a headless browser; the test command checks the scripts.
    command -v chromium >/dev/null || need+=(chromium)
    command -v shellcheck >/dev/null || need+=(shellcheck)
    # The replicas test restores a replica with pgBackRest (Patroni's recipe).
    command -v pgbackrest >/dev/null || need+=(pgbackrest)
elif [ -n "${1:-}" ]; then
    echo "setup: unknown argument $1 (the only one is --tests)" >&2
    exit 2
fi

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
    # Debian's haproxy package starts its own service; the lab runs its own HAProxy.
    if [[ " ${need[*]} " == *" haproxy "* ]]; then
        $SUDO systemctl disable --now haproxy 2>/dev/null || $SUDO service haproxy stop 2>/dev/null || true
    fi
fi

# PostgreSQL refuses to run as root: the lab and the tests run nodes as this user.
if [ "$(id -u)" -eq 0 ] && ! id raftgres >/dev/null 2>&1; then
    echo "setup: creating the unprivileged user raftgres (PostgreSQL refuses to run as root)"
    useradd --system --create-home --shell /bin/bash raftgres
fi
# Debian's postgresql package starts a cluster of its own on 5432; the lab needs the port.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep online >/dev/null; then
    echo "setup: stopping the Debian-managed PostgreSQL clusters (the lab uses port 5432)"
    pg_lsclusters -h | awk '$4 == "online" {print $1, $2}' | while read -r v c; do pg_ctlcluster "$v" "$c" stop || true; done
fi

if [ "${1:-}" = "--tests" ]; then
    bash "$(dirname "$0")/patroni-venv.sh"
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
echo "setup: PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'), etcdctl $(etcdctl version 2>/dev/null | head -1 | awk '{print $3}'), $(cargo --version)"
