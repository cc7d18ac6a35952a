#!/usr/bin/env bash
# Does a timing profile fail over when nothing failed? (issue 20 item 3)
#   sudo bash benches/fast-profile.sh              both profiles, 60 s per condition
#   sudo PROFILES=fast SPAN=60 bash benches/fast-profile.sh
# For each profile (default: ttl 2 s; fast: ttl 1 s, retry_timeout 0.3 s, safety_margin 0.2 s):
#   loss   5 % packet loss on every link for SPAN s: one `raftctl chaos` round of the
#          netem fault with --netem "loss 5%" --hold SPAN (network namespaces; root);
#          its failovers column must say 0
#   cpu    a lab on loopback, then 2 busy loops per core for SPAN s; the primary, its
#          timeline and its postmaster must be the same afterwards
# Prints one line per profile and condition: failovers (0 is the pass) and what the nodes
# logged about their leases (fencer and demotion lines). Node kill -> writable per profile
# is in benches/peers.sh (its raftgres and raftgres-fast columns).
# Release binaries (cargo build --release); the chaos lab uses 10.250.0.0/24 and the
# namespaces rgf1..3, so no other --netns lab may run beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILES=${PROFILES:-default fast}
SPAN=${SPAN:-60}
BASE=29432
for p in $PROFILES; do
    case $p in default | fast) ;; *) echo "fast-profile.sh: unknown profile '$p' (default or fast)" >&2; exit 2 ;; esac
done
case $SPAN in '' | *[!0-9]*) echo "fast-profile.sh: SPAN must be whole seconds, not '$SPAN'" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "fast-profile.sh: run as root (network namespaces, the lab user)" >&2; exit 2; }
bash deploy/setup.sh >/dev/null
cargo build --release --quiet -p raftgres -p raftctl
RAFTCTL=$PWD/target/release/raftctl
WORK=$(mktemp -d /tmp/raftgres-fast-XXXX)
chmod 755 "$WORK"
LOOPS=()
cleanup() {
    set +e
    [ ${#LOOPS[@]} -eq 0 ] || kill "${LOOPS[@]}" 2>/dev/null
    [ -r "$WORK/lab/lab.json" ] && timeout 120 "$RAFTCTL" lab down --dir "$WORK/lab" --clean >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

LEASE_LINES='WARN fencer: |demoted|lease deadline'
lease_lines() { # LOGS...: how many fencer / demotion lines the nodes logged
    cat "$@" 2>/dev/null | grep -c -E "$LEASE_LINES" || true
}
show_lease_lines() { # LOGS...: those lines themselves (at most 10), for the reader
    grep -h -E "$LEASE_LINES" "$@" 2>/dev/null | head -n 10 | sed 's/^/    /' || true
}

loss() { # PROFILE
    local out=$WORK/chaos-$1.log
    "$RAFTCTL" chaos --profile "$1" --faults netem --netem "loss 5%" --hold "${SPAN}s" --rounds 1 \
        --kv-clients 0 --netns-prefix rgf --dir "$WORK/chaos-$1" >"$out" 2>&1 || true
    local row failovers
    row=$(grep -E '^netem ' "$out" || true)
    if [ -z "$row" ]; then
        echo "$1 loss: the chaos run failed: $(tail -n 3 "$out" | tr '\n' ' ')"
        return
    fi
    failovers=$(awk '{print $3}' <<<"$row")
    echo "$1 loss 5% for ${SPAN}s: failovers $failovers, fencer/demotion lines $(lease_lines "$WORK/chaos-$1-logs"/node?.log)"
    show_lease_lines "$WORK/chaos-$1-logs"/node?.log
}

primary_facts() { # the leader's name, timeline and postmaster pid
    "$RAFTCTL" --endpoints "127.0.0.1:$((BASE - 3053))" list -f json |
        python3 -c 'import json,sys; m=[r for r in json.load(sys.stdin) if r["Role"]=="Leader"]; print(*(m[0]["Member"], m[0]["TL"]) if m else ("none", "none"))'
}

cpu() { # PROFILE
    "$RAFTCTL" lab up --dir "$WORK/lab" --base-port "$BASE" --profile "$1" >"$WORK/lab-up-$1.log" 2>&1
    local before after pm_before pm_after node _
    sleep 5
    before=$(primary_facts)
    node=${before%% *}
    if [ "$node" = none ]; then
        echo "$1 cpu: no primary 5 s after lab up (see $WORK/lab-up-$1.log)"
        timeout 120 "$RAFTCTL" lab down --dir "$WORK/lab" --clean >/dev/null 2>&1
        return
    fi
    pm_before=$(head -1 "$WORK/lab/$node/pgdata/postmaster.pid")
    for _ in $(seq 1 $(( $(nproc) * 2 ))); do
        timeout "$SPAN" sh -c 'while :; do :; done' &
        LOOPS+=($!)
    done
    wait "${LOOPS[@]}" 2>/dev/null || true
    LOOPS=()
    sleep 2
    after=$(primary_facts)
    pm_after=$(head -1 "$WORK/lab/$node/pgdata/postmaster.pid" 2>/dev/null || echo gone)
    local failovers=0
    [ "$before" = "$after" ] && [ "$pm_before" = "$pm_after" ] || failovers=1
    echo "$1 cpu $(( $(nproc) * 2 )) busy loops on $(nproc) cores for ${SPAN}s: failovers $failovers (primary/timeline $before -> $after, postmaster $pm_before -> $pm_after), fencer/demotion lines $(lease_lines "$WORK"/lab/node?/raftgres.log)"
    show_lease_lines "$WORK"/lab/node?/raftgres.log
    timeout 120 "$RAFTCTL" lab down --dir "$WORK/lab" --clean >/dev/null 2>&1
}

for p in $PROFILES; do
    loss "$p"
    cpu "$p"
done
