#!/usr/bin/env bash
# Overload benchmark: `etcdctl check perf` against a 3-member etcd 3.4 and a 3-node
# raftgres (store only) in the same run, on loopback, both fsyncing before they
# acknowledge. For each load it prints writes/s, failed requests, `leader changed`
# errors, leader changes (raft term and leader before/after) and the slowest request,
# with raftgres/etcd ratios.
#   bash benches/overload.sh [LOADS...]     default: s m l (60 s each, per system)
#   PROFILE=debug bash benches/overload.sh l    use target/debug (no release build)
#   SYSTEMS=raftgres bash benches/overload.sh l only raftgres
# check perf's clients: s 50, m 200, l 500, xl 1000; it always runs 60 s. Ports stay
# below Linux's ephemeral range (32768+), so no client connection can hold one.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- s m l
LOADS=("$@")
PROFILE=${PROFILE:-release}
SYSTEMS=${SYSTEMS:-etcd raftgres}
for load in "${LOADS[@]}"; do
    case $load in s | m | l | xl) ;; *) echo "overload.sh: unknown load '$load' (expected s, m, l or xl)" >&2; exit 2 ;; esac
done
case $PROFILE in release | debug) ;; *) echo "overload.sh: PROFILE must be release or debug, not '$PROFILE'" >&2; exit 2 ;; esac
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bin raftgres; else cargo build --quiet --bin raftgres; fi
WORK=$(mktemp -d)
PIDS=()
stop_all() {
    [ ${#PIDS[@]} -eq 0 ] || kill "${PIDS[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

start_etcd() {
    local cluster="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:12480,e3=http://127.0.0.1:12580"
    for i in 1 2 3; do
        local peer=$((12280 + i * 100)) client=$((12279 + i * 100))
        etcd --name "e$i" --data-dir "$WORK/etcd$i" --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" --listen-client-urls "http://127.0.0.1:$client" \
            --advertise-client-urls "http://127.0.0.1:$client" --initial-cluster "$cluster" \
            --initial-cluster-state new >"$WORK/etcd$i.log" 2>&1 &
        PIDS+=($!)
    done
    ENDPOINTS=127.0.0.1:12379,127.0.0.1:12479,127.0.0.1:12579
}
start_raftgres() {
    local cluster="n1=127.0.0.1:14380,n2=127.0.0.1:14480,n3=127.0.0.1:14580"
    for i in 1 2 3; do
        local peer=$((14280 + i * 100)) client=$((14279 + i * 100))
        "./target/$PROFILE/raftgres" --name "n$i" --data-dir "$WORK/rg$i" --listen-peer "127.0.0.1:$peer" \
            --listen-client "127.0.0.1:$client" --initial-cluster "$cluster" >"$WORK/rg$i.log" 2>&1 &
        PIDS+=($!)
    done
    ENDPOINTS=127.0.0.1:14379,127.0.0.1:14479,127.0.0.1:14579
}
wait_ready() { # until every endpoint answers a linearizable read (at most 30 s)
    for pid in "${PIDS[@]}"; do
        sleep 0.2
        kill -0 "$pid" 2>/dev/null || { echo "overload.sh: a node exited at start (port in use?): see its log" >&2; cat "$WORK"/*.log >&2; exit 1; }
    done
    for _ in $(seq 60); do
        ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    echo "overload.sh: $1 did not become healthy" >&2
    exit 1
}
# "TERM LEADER": the highest raft term any endpoint reports and the leader(s) they name.
term_and_leader() {
    ETCDCTL_API=3 etcdctl --endpoints="$1" endpoint status -w json 2>/dev/null |
        python3 -c 'import json,sys; s=[e["Status"] for e in json.load(sys.stdin)]; print(max(x["raftTerm"] for x in s), ",".join(sorted({str(x.get("leader", 0)) for x in s})))'
}
# One load against one system: a JSON line with the figures.
measure() {
    local system=$1 endpoints=$2 load=$3 before after out
    before=$(term_and_leader "$endpoints")
    out="$WORK/$system-$load.out"
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" check perf --load "$load" --auto-compact >"$out" 2>&1 || true
    after=$(term_and_leader "$endpoints")
    { echo "== $system, load $load: check perf said"; tail -n 6 "$out"; } >&2
    python3 - "$system" "$load" "$before" "$after" "$out" <<'PY'
import json, re, sys
system, load, before, after, path = sys.argv[1:]
text = open(path, errors="replace").read()
def num(pattern):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None
(t0, l0), (t1, l1) = before.split(), after.split()
print(json.dumps({
    "system": system, "load": load,
    "writes_per_sec": num(r"(\d+) writes/s"),
    "slowest_s": num(r"Slowest request took (?:too long: )?([\d.]+)s"),
    # check perf prints "FAIL: ERROR(...) -> N" per kind of failed request, and stops
    # with "Error: ..." when a request outside the timed phase (its cleanup) fails.
    "errors": sum(int(n) for n in re.findall(r"FAIL: ERROR\(.*\) -> (\d+)", text)) + len(re.findall(r"^Error: ", text, re.M)),
    "leader_changed": sum(int(n) for n in re.findall(r"FAIL: ERROR\(.*leader changed.*\) -> (\d+)", text))
        + len(re.findall(r"^Error: .*leader changed", text, re.M)),
    "retries": text.count("retrying of unary invoker failed"),
    "term_changes": int(t1) - int(t0), "same_leader": l0 == l1,
    "verdict": "PASS" if re.search(r"^PASS$", text, re.M) else "FAIL",
}))
PY
}

echo "overload.sh: etcdctl check perf, loads ${LOADS[*]}, $SYSTEMS ($PROFILE raftgres)" >&2
for system in $SYSTEMS; do
    case $system in etcd) start_etcd ;; raftgres) start_raftgres ;;
        *) echo "overload.sh: unknown system '$system' (expected etcd or raftgres)" >&2; exit 2 ;; esac
    wait_ready "$ENDPOINTS"
    for load in "${LOADS[@]}"; do measure "$system" "$ENDPOINTS" "$load" >>"$WORK/results.jsonl"; done
    stop_all
done
grep -h "leader changed\|no heartbeat\|election" "$WORK"/rg*.log 2>/dev/null | tail -5 >&2 || true

python3 - "$WORK/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["system"], r["load"]): r for r in rows}
loads = list(dict.fromkeys(r["load"] for r in rows))
def cell(r, key, fmt):
    return "-" if r is None or r[key] is None else fmt.format(r[key])
print("| load | system | writes/s | errors | `leader changed` | term changes | same leader | slowest s | verdict |")
print("|---|---|---|---|---|---|---|---|---|")
for load in loads:
    for system in ("etcd", "raftgres"):
        r = by.get((system, load))
        if r:
            print(f"| {load} | {system} | {cell(r,'writes_per_sec','{:.0f}')} | {r['errors']} | {r['leader_changed']} | "
                  f"{r['term_changes']} | {'yes' if r['same_leader'] else 'no'} | {cell(r,'slowest_s','{:.3f}')} | {r['verdict']} |")
    e, g = by.get(("etcd", load)), by.get(("raftgres", load))
    if e and g and e["writes_per_sec"] and g["writes_per_sec"]:
        print(f"| {load} | raftgres/etcd | {g['writes_per_sec'] / e['writes_per_sec']:.2f} | | | | | "
              f"{(g['slowest_s'] or 0) / max(e['slowest_s'] or 0, 1e-9):.2f} | |")
PY
