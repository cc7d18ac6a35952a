#!/usr/bin/env bash
# Installs what building and testing raftgres needs on a fresh Debian 12 machine.
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v ip >/dev/null || need+=(iproute2)

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo is missing: install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi
echo "setup: etcdctl $(etcdctl version 2>/dev/null | head -1 | awk '{print $3}'), $(cargo --version)"
