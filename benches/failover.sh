#!/usr/bin/env bash
# Failover benchmark: how long after a crash of the primary's whole node (kill -9 of the
# agent, the store and PostgreSQL) a new primary accepts writes, on a 3-node lab at the
# default settings (ttl 2 s). Also: kill -9 of the postmaster alone -> writable again,
# and the write gap of a planned switchover (`raftctl switchover`) seen by a client that
# writes in a loop to whichever node accepts.
#   bash benches/failover.sh [ROUNDS]          (default 5; run as root or a normal user)
# Prints one line per round and p50/max per fault. For Patroni + etcd on this machine
# the node-kill figure is ~28 s at its defaults (benches/peers.sh measures it side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
bash deploy/setup.sh >/dev/null
cargo build --release --quiet --bins
RAFTCTL=$PWD/target/release/raftctl
DIR=$(mktemp -d /tmp/raftgres-failover-XXXX)
chmod 755 "$DIR"
BASE=${BASE_PORT:-25432}
trap '"$RAFTCTL" lab down --dir "$DIR" --clean >/dev/null 2>&1 || true' EXIT
"$RAFTCTL" lab up --dir "$DIR" --base-port "$BASE" >/dev/null
export PGPASSFILE=$DIR/pgpass PGCONNECT_TIMEOUT=1

port() { echo $((BASE + $1 - 1)); }
sql() { psql -X -h 127.0.0.1 -p "$(port "$1")" -U postgres -d postgres -Atc "$2" 2>/dev/null; }
primary() { for n in 1 2 3; do [ "$(sql $n 'select pg_is_in_recovery()')" = f ] && { echo $n; return; }; done; return 1; }
now_ms() { date +%s%3N; }
wait_writable() { # NODE... : until one of them takes a write; prints the elapsed ms since $T0
    local deadline=$(( $(now_ms) + 60000 ))
    while [ "$(now_ms)" -lt $deadline ]; do
        for n in "$@"; do
            if sql "$n" "insert into bench(at) values (now())" >/dev/null && [ "$(sql "$n" 'select pg_is_in_recovery()')" = f ]; then
                echo $(( $(now_ms) - T0 )); return
            fi
        done
        sleep 0.02
    done
    echo "timeout"; return 1
}
wait_healthy() { # until one primary and two streaming replicas
    for _ in $(seq 1 600); do
        local p; p=$(primary) || { sleep 0.1; continue; }
        local ok=0
        for n in 1 2 3; do [ "$n" = "$p" ] || [ "$(sql "$n" 'select status from pg_stat_wal_receiver')" = streaming ] && ok=$((ok + 1)); done
        [ $ok = 3 ] && return
        sleep 0.1
    done
    echo "cluster did not heal" >&2; return 1
}
stats() { sort -n | awk '{a[NR]=$1} END {printf "p50 %.2f s  max %.2f s  (n=%d)\n", a[int((NR+1)/2)]/1000, a[NR]/1000, NR}'; }

P=$(primary); sql "$P" "create table if not exists bench(id bigserial primary key, at timestamptz)" >/dev/null
wait_healthy
NODE_KILL=()
for r in $(seq 1 "$ROUNDS"); do
    P=$(primary); others=(); for n in 1 2 3; do [ "$n" = "$P" ] || others+=("$n"); done
    T0=$(now_ms); "$RAFTCTL" lab kill "node$P" --dir "$DIR" >/dev/null
    ms=$(wait_writable "${others[@]}"); NODE_KILL+=("$ms")
    echo "round $r: node kill of node$P -> writable after $ms ms"
    "$RAFTCTL" lab start "node$P" --dir "$DIR" >/dev/null; wait_healthy
done
PM_KILL=()
for r in $(seq 1 "$ROUNDS"); do
    P=$(primary); pid=$(head -1 "$DIR/node$P/pgdata/postmaster.pid")
    T0=$(now_ms); kill -9 "$pid"; sleep 0.05
    ms=$(wait_writable 1 2 3); PM_KILL+=("$ms")
    echo "round $r: postmaster kill on node$P -> writable after $ms ms"
    wait_healthy
done
SWITCH_GAP=()
for r in $(seq 1 "$ROUNDS"); do
    P=$(primary); C=$(( P % 3 + 1 ))
    log=$(mktemp)
    ( end=$(( $(now_ms) + 6000 )); n=1
      while [ "$(now_ms)" -lt $end ]; do
          sql "$n" "insert into bench(at) values (now())" >/dev/null && now_ms >>"$log" || n=$(( n % 3 + 1 ))
      done ) &
    writer=$!
    sleep 1.5
    "$RAFTCTL" --endpoints 127.0.0.1:$((BASE - 3053)) switchover --candidate "node$C" --force >/dev/null
    wait $writer
    ms=$(awk 'NR > 1 && $1 - prev > max {max = $1 - prev} {prev = $1} END {print max + 0}' "$log"); rm -f "$log"
    SWITCH_GAP+=("$ms")
    echo "round $r: switchover node$P -> node$C: longest write gap $ms ms"
    wait_healthy
done
echo
echo "node kill -> new primary writable:       $(printf '%s\n' "${NODE_KILL[@]}" | stats)"
echo "postmaster kill -> writable again:       $(printf '%s\n' "${PM_KILL[@]}" | stats)"
echo "switchover -> longest client write gap:  $(printf '%s\n' "${SWITCH_GAP[@]}" | stats)"
