#!/usr/bin/env bash
# Compaction soak: many puts to 3 store-only raftgres nodes on loopback, RSS printed
# before, after each round (the first compactions happen during the first), to show
# memory flat once auto-compaction runs. Bounded: ROUNDS x at most OPS puts, each round
# at most SECS seconds. Not part of CI.
#
#   bash benches/compaction-soak.sh                       # 10 rounds of <=200k puts (2M)
#   ROUNDS=4 OPS=50000 SECS=20 bash benches/compaction-soak.sh   # the short form
#
# Extra raftgres flags go in RAFTGRES_FLAGS (e.g. "--auto-compaction-retention 0" to see
# the growth without compaction). PROFILE=debug uses the debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}
OPS=${OPS:-200000}
SECS=${SECS:-60}
PROFILE=${PROFILE:-release}
RAFTGRES_FLAGS=${RAFTGRES_FLAGS:-}
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bins; else cargo build --quiet --bins; fi
BIN=./target/$PROFILE
WORK=$(mktemp -d /tmp/compaction-soak.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

CLUSTER=n1=127.0.0.1:16380,n2=127.0.0.1:16480,n3=127.0.0.1:16580
ENDPOINTS=127.0.0.1:16379,127.0.0.1:16479,127.0.0.1:16579
for i in 1 2 3; do
    base=$((16279 + i * 100))
    # shellcheck disable=SC2086
    RAFTGRES_LOG=info $BIN/raftgres --name n$i --data-dir "$WORK/n$i" --listen-peer 127.0.0.1:$((base + 1)) \
        --listen-client 127.0.0.1:$base --initial-cluster "$CLUSTER" $RAFTGRES_FLAGS >"$WORK/n$i.log" 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 60); do
    ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" endpoint health >/dev/null 2>&1 && break
    sleep 0.5
done

rss() { # RSS in MiB of each node
    for p in "${PIDS[@]}"; do echo -n "$(( $(awk '/VmRSS/ {print $2}' "/proc/$p/status") / 1024 )) "; done
}
status() { # revision, compact revision and state size (DB SIZE) of node 1
    ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:16379 endpoint status -w json |
        python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; print("revision %s, db size %.1f MiB" % (s["header"]["revision"], s.get("dbSize", 0) / 1048576))'
}
echo "round 0: RSS MiB per node: $(rss)| $(status)"
total=0
for round in $(seq "$ROUNDS"); do
    out=$("$BIN"/kvbench --endpoints "$ENDPOINTS" --clients 64 --seconds "$SECS" --max-ops "$OPS" --phases put)
    total=$((total + $(echo "$out" | python3 -c 'import json,sys; print(sum(json.loads(l)["ops"] for l in sys.stdin))')))
    echo "round $round: $total puts, RSS MiB per node: $(rss)| $(status)"
done
grep -h "auto-compaction" "$WORK"/n*.log | head -3
