#!/usr/bin/env bash
# KV benchmark, etcd vs raftgres in the same run, same client (kvbench), same machine.
#   bash benches/kv.sh [SECONDS_PER_PHASE]
# Starts a 3-member etcd 3.4 (Debian's etcd-server, installed if missing) and a 3-node
# raftgres on loopback, both fsyncing before they acknowledge, runs put (1/16/256
# clients) and linearizable / serializable range phases against each, and prints one
# table with raftgres/etcd ratios plus each member's RSS. Then puts at 1, 16 and 256
# clients against the leader's endpoint alone and against one follower's alone (whose
# writes travel to the leader), printed side by side with the ratios follower/leader and
# raftgres/etcd (leader against leader, follower against follower: the first table's lone
# client lands on whichever member is listed first, the leader in one run of three).
# Failed requests are counted per phase (errors, of which etcd's `leader changed`), not
# fatal: the tables show them.
# Ports stay below Linux's ephemeral range (32768+), so no client connection can hold one.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
cargo build --release --quiet --bins
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

rss_of() { # total RSS in MiB of the given pids
    local total=0
    for p in "$@"; do total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done
    echo $((total / 1024 / $#))
}

ETCD_PIDS=()
ETCD_CLUSTER="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:12480,e3=http://127.0.0.1:12580"
for i in 1 2 3; do
    peer=$((12280 + i * 100)); client=$((12279 + i * 100))
    etcd --name e$i --data-dir "$WORK/etcd$i" --listen-peer-urls http://127.0.0.1:$peer \
        --initial-advertise-peer-urls http://127.0.0.1:$peer --listen-client-urls http://127.0.0.1:$client \
        --advertise-client-urls http://127.0.0.1:$client --initial-cluster "$ETCD_CLUSTER" \
        --initial-cluster-state new >"$WORK/etcd$i.log" 2>&1 &
    ETCD_PIDS+=($!)
done
RG_PIDS=()
RG_CLUSTER="n1=127.0.0.1:14380,n2=127.0.0.1:14480,n3=127.0.0.1:14580"
for i in 1 2 3; do
    peer=$((14280 + i * 100)); client=$((14279 + i * 100))
    RAFTGRES_LOG=warn ./target/release/raftgres --name n$i --data-dir "$WORK/rg$i" --listen-peer 127.0.0.1:$peer \
        --listen-client 127.0.0.1:$client --initial-cluster "$RG_CLUSTER" >"$WORK/rg$i.log" 2>&1 &
    RG_PIDS+=($!)
done
wait_ready() { # until every endpoint answers a linearizable read (at most 30 s)
    for _ in $(seq 60); do
        ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "kv.sh: $1 did not become healthy" >&2; exit 1
}
wait_ready 127.0.0.1:12379,127.0.0.1:12479,127.0.0.1:12579
wait_ready 127.0.0.1:14379,127.0.0.1:14479,127.0.0.1:14579

run() { ./target/release/kvbench --endpoints "$1" --seconds "$SECS" > "$2"; }
ETCD_EPS=127.0.0.1:12379,127.0.0.1:12479,127.0.0.1:12579
RG_EPS=127.0.0.1:14379,127.0.0.1:14479,127.0.0.1:14579
echo "kv.sh: etcd $(etcd --version | head -1 | awk '{print $3}') vs raftgres, ${SECS}s per phase" >&2
run "$ETCD_EPS" "$WORK/etcd.jsonl"
ETCD_RSS=$(rss_of "${ETCD_PIDS[@]}")
run "$RG_EPS" "$WORK/rg.jsonl"
RG_RSS=$(rss_of "${RG_PIDS[@]}")

endpoint() { # the endpoint of $2 (comma-separated) whose member leads ("leader") or the first that does not ("follower")
    ETCDCTL_API=3 etcdctl --endpoints="$2" endpoint status -w json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
leads = [r["Endpoint"] for r in rows if r["Status"]["header"]["member_id"] == r["Status"]["leader"]]
others = [r["Endpoint"] for r in rows if r["Endpoint"] not in leads]
pick = leads if sys.argv[1] == "leader" else others
if len(leads) != 1 or not pick:
    sys.exit("kv.sh: no single " + sys.argv[1] + " among " + ", ".join(r["Endpoint"] for r in rows))
print(pick[0])
' "$1"
}
one_endpoint() { # $1 system (etcd|rg), $2 its endpoints: puts on the leader alone, then on a follower alone
    local leader follower
    leader=$(endpoint leader "$2"); follower=$(endpoint follower "$2")
    ./target/release/kvbench --endpoints "$leader" --phases put --clients 1,16,256 --seconds "$SECS" > "$WORK/$1-leader.jsonl"
    ./target/release/kvbench --endpoints "$follower" --phases put --clients 1,16,256 --seconds "$SECS" > "$WORK/$1-follower.jsonl"
    [ "$(endpoint leader "$2")" = "$leader" ] || echo "kv.sh: $1's leader moved during the one-endpoint puts" >&2
}
one_endpoint etcd "$ETCD_EPS"
one_endpoint rg "$RG_EPS"

python3 - "$WORK/etcd.jsonl" "$WORK/rg.jsonl" "$ETCD_RSS" "$RG_RSS" "$WORK" <<'PY'
import json, sys
etcd = [json.loads(l) for l in open(sys.argv[1])]
rg = [json.loads(l) for l in open(sys.argv[2])]
def failed(r):  # failed requests, of which `leader changed`
    return f"{r['errors']} ({r['leader_changed']})"
print(f"| phase | clients | etcd ops/s | raftgres ops/s | ratio | etcd p50/p99 ms | raftgres p50/p99 ms | errors (leader changed) etcd / raftgres |")
print("|---|---|---|---|---|---|---|---|")
for e, r in zip(etcd, rg):
    ratio = r["ops_per_sec"] / e["ops_per_sec"] if e["ops_per_sec"] else float("nan")
    print(f"| {e['phase']} | {e['clients']} | {e['ops_per_sec']:.0f} | {r['ops_per_sec']:.0f} | {ratio:.2f} | "
          f"{e['p50_ms']:.2f}/{e['p99_ms']:.2f} | {r['p50_ms']:.2f}/{r['p99_ms']:.2f} | {failed(e)} / {failed(r)} |")
print(f"| RSS per member (MiB) | | {sys.argv[3]} | {sys.argv[4]} | {int(sys.argv[4])/max(1,int(sys.argv[3])):.2f} | | | |")

def phases(name):
    return {r["clients"]: r for r in map(json.loads, open(f"{sys.argv[5]}/{name}.jsonl"))}
one = {n: phases(n) for n in ("etcd-leader", "etcd-follower", "rg-leader", "rg-follower")}
print()
print("| put, one endpoint | clients | etcd leader | etcd follower | etcd follower/leader | raftgres leader | raftgres follower | raftgres follower/leader | raftgres/etcd leader, follower | p99 ms leader, follower: etcd / raftgres | errors (leader changed) etcd leader / follower, raftgres leader / follower |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for clients in sorted(one["rg-leader"]):
    row = [one[n][clients] for n in one]
    rate = [r["ops_per_sec"] for r in row]
    ratio = lambda f, l: f / l if l else float("nan")
    p99 = [r["p99_ms"] for r in row]
    print(f"| put | {clients} | {rate[0]:.0f} | {rate[1]:.0f} | {ratio(rate[1], rate[0]):.2f} | {rate[2]:.0f} | {rate[3]:.0f} | {ratio(rate[3], rate[2]):.2f} | "
          f"{ratio(rate[2], rate[0]):.2f}, {ratio(rate[3], rate[1]):.2f} | {p99[0]:.2f} / {p99[2]:.2f}, {p99[1]:.2f} / {p99[3]:.2f} | "
          f"{failed(row[0])} / {failed(row[1])}, {failed(row[2])} / {failed(row[3])} |")
PY
