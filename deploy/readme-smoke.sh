#!/usr/bin/env bash
# The README's lab commands, copied verbatim, run as a learner would (the test command
# runs this after the test suite, so CI checks that the README is true):
# bring the lab up with HAProxy, connect with psql directly and through HAProxy, look at
# the cluster with raftctl and etcdctl, and tear it down.
set -euo pipefail
cd "$(dirname "$0")/.."
trap './target/release/raftctl lab down --clean >/dev/null 2>&1 || true' EXIT

# --- from README.md, "The two commands" ---
bash deploy/lab.sh --haproxy
# --- from README.md, the lines `lab up` prints ---
export PGPASSFILE=/tmp/raftgres-lab/pgpass
psql -h 127.0.0.1 -p 5432 -U postgres -Atc "select 1" | grep -x 1 >/dev/null
psql -h 127.0.0.1 -p 5000 -U postgres -Atc "select pg_is_in_recovery()" | grep -x f >/dev/null
psql -h 127.0.0.1 -p 5000 -U postgres -Atc "create table smoke(x int); insert into smoke values (1)"
etcdctl --endpoints 127.0.0.1:2379 get --prefix /service/demo/ --keys-only | grep /service/demo/leader >/dev/null
./target/release/raftctl list | grep Leader >/dev/null
# --- an experiment from the README: kill the primary ---
primary=$(./target/release/raftctl list | awk -F'|' '$4 ~ /Leader/ {gsub(/ /, "", $2); print $2}')
./target/release/raftctl lab kill "$primary"
for _ in $(seq 1 150); do
    psql -h 127.0.0.1 -p 5000 -U postgres -Atc "insert into smoke values (2)" >/dev/null 2>&1 && break
    sleep 0.2
done
psql -h 127.0.0.1 -p 5000 -U postgres -Atc "select count(*) from smoke" | grep -x 2 >/dev/null
./target/release/raftctl lab start "$primary"
./target/release/raftctl lab down --clean
trap - EXIT
echo "readme-smoke: the README's lab commands work (lab up, psql direct and through HAProxy, failover, down)"
