#!/usr/bin/env bash
# raftgres vs Patroni 4 + etcd 3.4 on this machine, side by side, one table.
#   sudo ROUNDS=5 bash benches/peers.sh        (root: PostgreSQL runs as the user raftgres)
# Three clusters, one after the other, all on 127.0.0.1:
#   Patroni+etcd (default):  ttl 30, loop_wait 10, retry_timeout 10 (Patroni's defaults)
#   Patroni+etcd (tightest): ttl 20, loop_wait 1, retry_timeout 3 (the minimums Patroni's
#                            validator accepts; it raises or refuses anything lower)
#   raftgres:                `raftctl lab up` at its defaults (ttl 2, loop_wait 1, retry 0.5)
#   raftgres fast:           `raftctl lab up --profile fast` (ttl 1, loop_wait 1, retry 0.3,
#                            safety_margin 0.2)
# Patroni side: a 3-member etcd 3.4 (clients 12379/12479/12579, peers +1), 3 Patroni nodes
# (REST 18008-18010, PostgreSQL 15432-15434, scope peers, etcd3 DCS, config template
# benches/peers/patroni.yml.in), Patroni 4 in a venv under /opt/raftgres-peers/venv.
# raftgres side: the lab at --base-port 25432. Every port is below Linux's ephemeral range
# (32768+), so no outgoing connection (the writer makes one every 20 ms) can hold one.
# Probes, the same shell functions for every cluster (they take the host and the ports):
#   bootstrap -> all streaming   start of the 3 nodes (Patroni: once etcd is healthy) until
#                                one node takes an INSERT and both others stream
#   node kill -> writable        kill -9 of the primary's agent and PostgreSQL (Patroni: the
#                                patroni process, its postmaster and children; raftgres:
#                                `raftctl lab kill`, which also kills its store member), then
#                                psql every 50 ms until a survivor takes an INSERT, not in recovery
#   postmaster kill -> writable  kill -9 of the primary's postmaster only
#   switchover max write gap     a writer inserts every 20 ms through whichever node takes
#                                writes; longest gap between acknowledged writes
#   idle RSS / CPU per node      agent + its store (Patroni: patroni + its etcd member;
#                                raftgres: raftgres + its helper), PostgreSQL excluded:
#                                RSS after IDLE_WAIT s idle, CPU% over the next IDLE_SPAN s
# Env: ROUNDS (5) per fault probe, IDLE_WAIT (30), IDLE_SPAN (30), ONLY (a subset of
# "patroni-default patroni-tightest raftgres raftgres-fast"). The table also goes to
# benches/peers-last.txt. Everything started here is killed and removed on exit.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
ROOT=$PWD

if [ "$(id -u)" -ne 0 ]; then
    exec sudo ROUNDS="${ROUNDS:-5}" IDLE_WAIT="${IDLE_WAIT:-30}" IDLE_SPAN="${IDLE_SPAN:-30}" \
        ONLY="${ONLY:-}" bash "$0" "$@"
fi

ROUNDS=${ROUNDS:-5}
IDLE_WAIT=${IDLE_WAIT:-30}
IDLE_SPAN=${IDLE_SPAN:-30}
ONLY=${ONLY:-patroni-default patroni-tightest raftgres raftgres-fast}
for sys in $ONLY; do
    case $sys in
        patroni-default | patroni-tightest | raftgres | raftgres-fast) ;;
        *) echo "peers.sh: unknown system '$sys' in ONLY (patroni-default, patroni-tightest, raftgres, raftgres-fast)" >&2; exit 2 ;;
    esac
done
HOST=127.0.0.1
RUN_USER=raftgres
PG_BIN=/usr/lib/postgresql/15/bin
PEERS=/opt/raftgres-peers
VENV=$PEERS/venv
RAFTCTL=$ROOT/target/release/raftctl
RG_BASE=25432
PATRONI_PORTS=(15432 15433 15434)
OUT=$ROOT/benches/peers-last.txt
CLK_TCK=$(getconf CLK_TCK)
SYS=setup

log() { echo "[$(date +%T)] $*" >&2; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- installation ----
install_deps() {
    bash deploy/setup.sh >/dev/null || log "deploy/setup.sh failed (see above); going on"
    if ! id "$RUN_USER" >/dev/null 2>&1; then
        useradd --system --create-home --shell /bin/bash "$RUN_USER"
    fi
    local need=()
    command -v etcd >/dev/null || need+=(etcd-server)
    command -v etcdctl >/dev/null || need+=(etcd-client)
    command -v psql >/dev/null || need+=(postgresql-client)
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    bash deploy/patroni-venv.sh "$VENV"
    chmod -R a+rX "$PEERS"
    log "$("$VENV/bin/patroni" --version), $(etcd --version | head -1)"
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
        # Keep target/ owned by the caller (and use their toolchain).
        sudo -u "$SUDO_USER" -H bash -lc "cd '$ROOT' && cargo build --release --quiet --bins"
    else
        cargo build --release --quiet --bins
    fi
}

# ------------------------------------------------------------------ the probes ----
# Every probe takes the host and the PostgreSQL ports of the cluster's nodes, and acts on
# nodes through the sys_* hooks further down (which dispatch on $SYS). psql logs in as
# postgres through $PGPASSFILE.
export PGCONNECT_TIMEOUT=1 PGOPTIONS='-c statement_timeout=2000'
WRITE_SQL="create table if not exists peers_bench(id bigserial primary key, at timestamptz)"
INSERT_SQL="insert into peers_bench(at) values (now())"

pg() { # HOST PORT SQL...: one connection, the statements in turn; prints the output
    local host=$1 port=$2 args=() s
    shift 2
    for s in "$@"; do args+=(-c "$s"); done
    timeout 5 psql -X -q -At -v ON_ERROR_STOP=1 -h "$host" -p "$port" -U postgres -d postgres "${args[@]}" 2>/dev/null
}
writable() { # HOST PORT: takes an INSERT and is not in recovery
    [ "$(pg "$1" "$2" "$WRITE_SQL" "$INSERT_SQL" "select pg_is_in_recovery()" || true)" = f ]
}
primary_of() { # HOST PORT...: the index (1..) of the node not in recovery
    local host=$1 i=0 port
    shift
    for port in "$@"; do
        i=$((i + 1))
        if [ "$(pg "$host" "$port" "select pg_is_in_recovery()" || true)" = f ]; then echo "$i"; return 0; fi
    done
    return 1
}
healthy() { # HOST PORT...: one node takes writes and every other one streams (one look)
    local host=$1 p ok=0 i
    shift
    local ports=("$@")
    p=$(primary_of "$host" "${ports[@]}") || return 1
    writable "$host" "${ports[p - 1]}" || return 1
    for i in "${!ports[@]}"; do
        [ $((i + 1)) = "$p" ] && continue
        [ "$(pg "$host" "${ports[i]}" "select status from pg_stat_wal_receiver" || true)" = streaming ] && ok=$((ok + 1))
    done
    [ "$ok" = $((${#ports[@]} - 1)) ]
}
wait_healthy() { # HOST TIMEOUT_S PORT...: until healthy, at most TIMEOUT_S
    local host=$1 limit=$2 deadline=$(( $(now_ms) + $2 * 1000 ))
    shift 2
    until healthy "$host" "$@"; do
        if [ "$(now_ms)" -ge "$deadline" ]; then
            log "$SYS: no primary with $(($# - 1)) streaming replicas after $limit s"
            return 1
        fi
        sleep 0.1
    done
}
wait_writable() { # HOST T0 PORT...: polls every 50 ms until one takes a write; prints ms since T0
    local host=$1 t0=$2 deadline=$(( $(now_ms) + 180000 )) port
    shift 2
    while [ "$(now_ms)" -lt "$deadline" ]; do
        for port in "$@"; do
            if writable "$host" "$port"; then echo $(( $(now_ms) - t0 )); return 0; fi
        done
        sleep 0.05
    done
    log "$SYS: nothing writable 180 s after the fault"
    return 1
}
others() { # INDEX PORT...: the ports of every node but INDEX
    local skip=$1 i=0 port
    shift
    for port in "$@"; do i=$((i + 1)); [ "$i" = "$skip" ] || echo "$port"; done
}

probe_bootstrap() { # HOST PORT...
    local t0
    t0=$(now_ms)
    sys_start_cluster
    wait_healthy "$1" 300 "${@:2}"
    record bootstrap $(( $(now_ms) - t0 ))
    log "$SYS: bootstrap -> all streaming after $(( $(now_ms) - t0 )) ms"
}
probe_node_kill() { # HOST PORT...
    local host=$1 r p t0 ms
    shift
    for r in $(seq 1 "$ROUNDS"); do
        p=$(primary_of "$host" "$@")
        t0=$(now_ms)
        sys_kill_node "$p"
        # shellcheck disable=SC2046  # one port per word
        ms=$(wait_writable "$host" "$t0" $(others "$p" "$@"))
        record node_kill "$ms"
        log "$SYS: round $r: node kill of node$p -> writable after $ms ms"
        sys_start_node "$p"
        wait_healthy "$host" 300 "$@"
    done
}
probe_pm_kill() { # HOST PORT...
    local host=$1 r p t0 ms
    shift
    for r in $(seq 1 "$ROUNDS"); do
        p=$(primary_of "$host" "$@")
        t0=$(now_ms)
        sys_kill_postmaster "$p"
        ms=$(wait_writable "$host" "$t0" "$@")
        record pm_kill "$ms"
        log "$SYS: round $r: postmaster kill on node$p -> writable after $ms ms"
        wait_healthy "$host" 300 "$@"
    done
}
writer() { # HOST OUT STOPFILE PORT...: an INSERT every 20 ms through whichever node takes it
    # One try per node in turn: a refused connection, a read-only error or a node still in
    # recovery moves it to the next node at once (PGCONNECT_TIMEOUT bounds a silent one),
    # so after a switchover it reaches the new primary within one try of each other node:
    # no later than a client behind HAProxy checking /primary every 100 ms (measured).
    local host=$1 out=$2 stop=$3 i=0 deadline=$(( $(now_ms) + 300000 ))
    shift 3
    local ports=("$@")
    while [ ! -e "$stop" ] && [ "$(now_ms)" -lt "$deadline" ]; do
        if [ "$(pg "$host" "${ports[i]}" "$INSERT_SQL" "select pg_is_in_recovery()" || true)" = f ]; then
            now_ms >>"$out"
        else
            i=$(( (i + 1) % ${#ports[@]} ))
        fi
        sleep 0.02
    done
}
probe_switchover() { # HOST PORT...
    local host=$1 r p c acks stop wpid gap deadline
    shift
    if ! sys_can_switchover; then
        record switchover "n/a (not implemented yet)"
        log "$SYS: switchover not available, skipped"
        return 0
    fi
    for r in $(seq 1 "$ROUNDS"); do
        p=$(primary_of "$host" "$@")
        c=$(( p % $# + 1 ))
        acks=$WORK/acks.$SYS.$r
        stop=$WORK/stop.$SYS.$r
        : >"$acks"
        writer "$host" "$acks" "$stop" "$@" &
        wpid=$!
        echo "$wpid" >"$WORK/writer.pid"
        sleep 2
        # A refused candidate (raftgres: one that stands aside a while after giving its key
        # up, as the postmaster probe's crash loop makes the primary do) gives way to the next.
        until sys_switchover "$p" "$c"; do
            log "$SYS: switchover node$p -> node$c refused or failed: $(tail -n 1 "$WORK/switchover.$SYS.log")"
            c=$(( c % $# + 1 ))
            if [ "$c" = "$p" ]; then
                touch "$stop"; wait "$wpid" || true
                log "$SYS: no switchover from node$p was accepted"
                return 1
            fi
        done
        deadline=$(( $(now_ms) + 120000 ))
        until [ "$(primary_of "$host" "$@" || true)" = "$c" ] && healthy "$host" "$@"; do
            if [ "$(now_ms)" -ge "$deadline" ]; then
                touch "$stop"; wait "$wpid" || true
                log "$SYS: node$c is not the healthy primary 120 s after the switchover"
                return 1
            fi
            sleep 0.2
        done
        sleep 2
        touch "$stop"
        wait "$wpid" || true
        gap=$(awk 'NR > 1 && $1 - prev > max {max = $1 - prev} {prev = $1} END {print max + 0}' "$acks")
        record switchover "$gap"
        log "$SYS: round $r: switchover node$p -> node$c: longest write gap $gap ms ($(wc -l <"$acks") writes)"
    done
}
agent_pids() { # ROOTPID...: them and their descendants, without PostgreSQL and its subtree
    ps -e -o pid=,ppid=,comm= | awk -v roots="$*" '
        { par[$1] = $2; comm[$1] = $3 }
        END {
            n = split(roots, r, " "); for (i = 1; i <= n; i++) if (r[i] in comm) keep[r[i]] = 1
            do { changed = 0
                 for (p in par) if (!(p in keep) && (par[p] in keep) && comm[p] !~ /^(postgres|postmaster|pg_)/) { keep[p] = 1; changed = 1 }
            } while (changed)
            for (p in keep) print p }'
}
ticks() { # PID...: utime + stime of them all
    local t=0 pid
    for pid in "$@"; do
        if [ -r "/proc/$pid/stat" ]; then t=$(( t + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13} END {if (!NR) print 0}') )); fi
    done
    echo "$t"
}
rss_kb() { # PID...
    local k=0 pid
    for pid in "$@"; do
        if [ -r "/proc/$pid/status" ]; then k=$(( k + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") )); fi
    done
    echo "$k"
}
probe_idle() { # HOST PORT...
    local n=$(( $# - 1 )) i t1 kb
    local -a pids=() t0=()
    wait_healthy "$1" 300 "${@:2}"
    log "$SYS: idle for $IDLE_WAIT s, then CPU over $IDLE_SPAN s"
    sleep "$IDLE_WAIT"
    for i in $(seq 1 "$n"); do
        # shellcheck disable=SC2046
        pids[i]=$(agent_pids $(sys_agent_roots "$i") | tr '\n' ' ')
        # shellcheck disable=SC2086
        t0[i]=$(ticks ${pids[i]})
    done
    sleep "$IDLE_SPAN"
    for i in $(seq 1 "$n"); do
        # shellcheck disable=SC2086
        t1=$(ticks ${pids[i]})
        # shellcheck disable=SC2086
        kb=$(rss_kb ${pids[i]})
        record rss "$(awk -v k="$kb" 'BEGIN {printf "%.1f", k / 1024}')"
        record cpu "$(awk -v d=$((t1 - t0[i])) -v hz="$CLK_TCK" -v s="$IDLE_SPAN" 'BEGIN {printf "%.2f", 100 * d / hz / s}')"
        log "$SYS: node$i (pids ${pids[i]}): RSS $kb kB, $((t1 - t0[i])) CPU ticks in $IDLE_SPAN s"
    done
}
run_probes() { # HOST PORT...
    probe_bootstrap "$@"
    probe_node_kill "$@"
    probe_pm_kill "$@"
    probe_switchover "$@"
    probe_idle "$@"
}
record() { # PROBE VALUE: one sample of $SYS for PROBE
    echo "$2" >>"$RES/$1.$SYS"
}

# ------------------------------------------------------- Patroni + etcd helpers ----
etcd_client() { echo $((12279 + 100 * $1)); }
etcd_hosts() { echo "127.0.0.1:$(etcd_client 1),127.0.0.1:$(etcd_client 2),127.0.0.1:$(etcd_client 3)"; }
as_user() { # DIR LOG CMD...: CMD as $RUN_USER in DIR, detached, output to LOG; prints its pid
    local dir=$1 logf=$2
    shift 2
    (cd "$dir" && exec setpriv --reuid="$RUN_USER" --regid="$RUN_USER" --init-groups \
        env HOME="$dir" USER="$RUN_USER" LOGNAME="$RUN_USER" "$@" >>"$logf" 2>&1 </dev/null) &
    echo $!
    disown $!  # killed on purpose later: no "Killed" job notices
}
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }
kill_and_wait() { # PID...: SIGKILL, then up to 10 s until they are gone
    local pid deadline=$(( $(now_ms) + 10000 ))
    for pid in "$@"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        while alive "$pid" && [ "$(now_ms)" -lt "$deadline" ]; do sleep 0.02; done
    done
}
postmaster_pid() { # PGDATA
    [ -r "$1/postmaster.pid" ] && head -1 "$1/postmaster.pid"
}
start_etcd() { # DIR
    local d=$1 i c p cluster="" deadline
    for i in 1 2 3; do cluster+="${cluster:+,}etcd$i=http://127.0.0.1:$(( $(etcd_client "$i") + 1 ))"; done
    for i in 1 2 3; do
        c=$(etcd_client "$i")
        p=$((c + 1))
        install -d -o "$RUN_USER" -m 700 "$d/etcd$i"
        as_user "$d/etcd$i" "$d/etcd$i.log" etcd --name "etcd$i" --data-dir "$d/etcd$i/data" \
            --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
            --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "peers-$$" \
            >"$d/etcd$i.pid"
    done
    deadline=$(( $(now_ms) + 60000 ))
    until ETCDCTL_API=3 timeout 10 etcdctl --endpoints "$(etcd_hosts)" --dial-timeout 1s --command-timeout 2s \
            endpoint health >/dev/null 2>&1; do
        if [ "$(now_ms)" -ge "$deadline" ]; then log "etcd not healthy after 60 s"; return 1; fi
        sleep 0.2
    done
}
patroni_config() { # DIR I TTL LOOP_WAIT RETRY_TIMEOUT
    local d=$1 i=$2
    install -d -o "$RUN_USER" -m 700 "$d/node$i"
    sed -e "s|@NAME@|node$i|g" -e "s|@REST@|$((18007 + i))|g" -e "s|@PG@|${PATRONI_PORTS[i - 1]}|g" \
        -e "s|@ETCD_HOSTS@|$(etcd_hosts)|g" -e "s|@DIR@|$d/node$i|g" -e "s|@PG_BIN@|$PG_BIN|g" \
        -e "s|@TTL@|$3|g" -e "s|@LOOP_WAIT@|$4|g" -e "s|@RETRY_TIMEOUT@|$5|g" \
        -e "s|@SU_PW@|$SU_PW|g" -e "s|@REPL_PW@|$REPL_PW|g" \
        "$ROOT/benches/peers/patroni.yml.in" >"$d/node$i.yml"
    chown "root:$RUN_USER" "$d/node$i.yml"
    chmod 640 "$d/node$i.yml"
}
patroni_start() { # I
    as_user "$PDIR/node$1" "$PDIR/node$1.log" "$VENV/bin/patroni" "$PDIR/node$1.yml" >"$PDIR/node$1.pid"
}
patroni_down() { # DIR: SIGKILL to every Patroni, postmaster (and children) and etcd of DIR
    local d=$1 f pids=() pm
    [ -d "$d" ] || return 0
    for f in "$d"/node?.pid "$d"/etcd?.pid; do
        [ -r "$f" ] || continue
        # shellcheck disable=SC2207
        pids+=($(agent_pids "$(cat "$f")"))
    done
    for f in "$d"/node?/pgdata; do
        pm=$(postmaster_pid "$f" || true)
        # shellcheck disable=SC2207
        if [ -n "$pm" ] && alive "$pm"; then pids+=("$pm" $(pgrep -P "$pm" || true)); fi
    done
    if ((${#pids[@]})); then kill_and_wait "${pids[@]}"; fi
}
random_password() { head -c 60 /dev/urandom | base64 | tr -dc A-Za-z0-9 | head -c 20; }

# ------------------------------------------------------------ the hooks, per $SYS ----
sys_start_cluster() {
    case $SYS in
        raftgres*) timeout 300 "$RAFTCTL" lab up --dir "$LAB" --base-port "$RG_BASE" --profile "$RG_PROFILE" >"$WORK/lab-up.log" ;;
        *) local i; for i in 1 2 3; do patroni_start "$i"; done ;;
    esac
}
sys_kill_node() { # I
    case $SYS in
        raftgres*) timeout 60 "$RAFTCTL" lab kill "node$1" --dir "$LAB" >/dev/null ;;
        *)
            local pm pids
            pm=$(postmaster_pid "$PDIR/node$1/pgdata" || true)
            # the patroni process (and any helper of it), its postmaster and the backends
            # shellcheck disable=SC2207
            pids=($(agent_pids "$(cat "$PDIR/node$1.pid")") ${pm:+$pm $(pgrep -P "$pm" || true)})
            kill_and_wait "${pids[@]}"
            ;;
    esac
}
sys_start_node() { # I
    case $SYS in
        raftgres*) timeout 60 "$RAFTCTL" lab start "node$1" --dir "$LAB" >/dev/null ;;
        *) patroni_start "$1" ;;
    esac
}
sys_kill_postmaster() { # I
    local pgdata pm
    case $SYS in raftgres*) pgdata=$LAB/node$1/pgdata ;; *) pgdata=$PDIR/node$1/pgdata ;; esac
    pm=$(postmaster_pid "$pgdata")
    kill -9 "$pm"
}
sys_can_switchover() {
    case $SYS in
        raftgres*) "$RAFTCTL" switchover --help >/dev/null 2>&1 ;;
        *) true ;;
    esac
}
sys_switchover() { # FROM TO
    case $SYS in
        raftgres*)
            local e=127.0.0.1:$((RG_BASE - 3053)),127.0.0.1:$((RG_BASE - 2953)),127.0.0.1:$((RG_BASE - 2853))
            timeout 120 "$RAFTCTL" --endpoints "$e" switchover --candidate "node$2" --force >>"$WORK/switchover.$SYS.log" 2>&1
            ;;
        *)
            timeout 120 "$VENV/bin/patronictl" -c "$PDIR/node1.yml" switchover \
                --leader "node$1" --candidate "node$2" --force >>"$WORK/switchover.$SYS.log" 2>&1
            ;;
    esac
}
sys_agent_roots() { # I: the pids whose process trees are the node's agent and store
    case $SYS in
        raftgres*) cat "$LAB/node$1/raftgres.pid" ;;
        *) cat "$PDIR/node$1.pid" "$PDIR/etcd$1.pid" ;;
    esac
}
sys_logs() { # the end of every log of $SYS, to stderr
    local f
    case $SYS in
        raftgres*) for f in "$WORK/lab-up.log" "$WORK/switchover.$SYS.log" "$LAB"/node?/raftgres.log; do [ -r "$f" ] && { echo "---- $f"; tail -n 25 "$f"; }; done ;;
        *) for f in "$WORK/switchover.$SYS.log" "$PDIR"/node?.log "$PDIR"/etcd?.log; do [ -r "$f" ] && { echo "---- $f"; tail -n 25 "$f"; }; done ;;
    esac >&2
    return 0
}

run_patroni() { # PROFILE TTL LOOP_WAIT RETRY_TIMEOUT
    SYS=patroni-$1
    PDIR=$WORK/$SYS
    install -d -o "$RUN_USER" -m 755 "$PDIR"
    SU_PW=$(random_password)
    REPL_PW=$(random_password)
    printf '127.0.0.1:*:*:postgres:%s\n' "$SU_PW" >"$PDIR/pgpass"
    chmod 600 "$PDIR/pgpass"
    export PGPASSFILE=$PDIR/pgpass
    local i
    for i in 1 2 3; do patroni_config "$PDIR" "$i" "$2" "$3" "$4"; done
    log "$SYS: etcd 3.4 x3 on $(etcd_hosts); Patroni ttl $2, loop_wait $3, retry_timeout $4"
    start_etcd "$PDIR"
    run_probes "$HOST" "${PATRONI_PORTS[@]}"
}
run_raftgres() { # PROFILE
    RG_PROFILE=$1
    case $1 in default) SYS=raftgres ;; *) SYS=raftgres-$1 ;; esac
    export PGPASSFILE=$LAB/pgpass
    log "$SYS: raftctl lab up --base-port $RG_BASE --profile $1"
    run_probes "$HOST" "$RG_BASE" $((RG_BASE + 1)) $((RG_BASE + 2))
}

# -------------------------------------------------------------------- cleanup ----
WORK="" LAB="" RUNNER=""
cleanup() {
    set +e
    [ -n "$RUNNER" ] && kill -9 "$RUNNER" 2>/dev/null
    [ -n "$WORK" ] || return 0
    [ -r "$WORK/writer.pid" ] && kill -9 "$(cat "$WORK/writer.pid")" 2>/dev/null
    [ -r "$LAB/lab.json" ] && timeout 120 "$RAFTCTL" lab down --dir "$LAB" --clean >/dev/null 2>&1
    for d in "$WORK"/patroni-*; do patroni_down "$d"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------- table ----
p50() { # FILE: the (lower) median of its numbers
    sort -g "$1" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}
cell() { # PROBE SYS DIVISOR DECIMALS: "p50 / max"
    local f=$RES/$1.$2
    case " $ONLY " in *" $2 "*) ;; *) echo "not run"; return ;; esac
    if [ ! -s "$f" ]; then echo "FAIL (see log)"; return; fi
    if grep -q '^n/a' "$f"; then head -1 "$f"; return; fi
    sort -g "$f" | awk -v div="$3" -v dec="$4" '{a[NR] = $1} END {
        fmt = "%." dec "f / %." dec "f"; printf fmt, a[int((NR + 1) / 2)] / div, a[NR] / div
        if (NR > 1) printf "  (n=%d)", NR }'
}
ratio() { # PROBE: p50 of Patroni default / p50 of raftgres
    local a=$RES/$1.patroni-default b=$RES/$1.raftgres
    if [ -s "$a" ] && [ -s "$b" ] && ! grep -q '^n/a' "$a" "$b"; then
        awk -v p="$(p50 "$a")" -v q="$(p50 "$b")" 'BEGIN {if (q > 0) printf "%.1fx", p / q; else print "-"}'
    else
        echo "-"
    fi
}
table() {
    local fmt='%-32s | %-27s | %-28s | %-27s | %-27s | %s\n' row probe div dec label
    echo "raftgres vs Patroni $("$VENV/bin/patroni" --version | awk '{print $2}') + etcd $(etcd --version | awk 'NR == 1 {print $3}') on $(nproc) cores, $(date -u '+%F %H:%M UTC'), ROUNDS=$ROUNDS; cells: p50 / max"
    # shellcheck disable=SC2059
    printf "$fmt" probe "Patroni+etcd (default)" "Patroni+etcd (tightest)" raftgres "raftgres --profile fast" "ratio (Patroni default / raftgres)"
    # shellcheck disable=SC2059
    printf "$fmt" "" "" "" "" "" "" | tr ' |' '-+'
    # shellcheck disable=SC2059
    printf "$fmt" "timing: ttl / loop_wait / retry" "30 / 10 / 10 s" "20 / 1 / 3 s (Patroni's min)" "2 / 1 / 0.5 s (lab default)" "1 / 1 / 0.3 s" ""
    for row in "bootstrap 1000 2 bootstrap -> all streaming (s)" \
               "node_kill 1000 2 node kill -> writable (s)" \
               "pm_kill 1000 2 postmaster kill -> writable (s)" \
               "switchover 1000 3 switchover: max write gap (s)" \
               "rss 1 1 idle RSS per node (MB)" \
               "cpu 1 2 idle CPU per node (%)"; do
        read -r probe div dec label <<<"$row"
        # shellcheck disable=SC2059
        printf "$fmt" "$label" "$(cell "$probe" patroni-default "$div" "$dec")" \
            "$(cell "$probe" patroni-tightest "$div" "$dec")" "$(cell "$probe" raftgres "$div" "$dec")" \
            "$(cell "$probe" raftgres-fast "$div" "$dec")" "$(ratio "$probe")"
    done
    echo "node kill: Patroni = kill -9 of patroni, its postmaster and backends (its etcd member runs on);"
    echo "           raftgres = raftctl lab kill (agent with its embedded store member, fencer, PostgreSQL)."
    echo "bootstrap: Patroni from starting the 3 patroni processes (etcd already healthy); raftgres from 'raftctl lab up'."
    echo "RSS/CPU: Patroni = patroni + its etcd member; raftgres = raftgres + its fencer; PostgreSQL excluded."
    echo "raftgres --profile fast: ttl 1 s, retry_timeout 0.3 s, safety_margin 0.2 s (README, Timing profiles)."
}

# ----------------------------------------------------------------------- main ----
install_deps
for port in "${PATRONI_PORTS[@]}" 18008 18009 18010 12379 12380 12479 12480 12579 12580; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is busy: stop what listens there" >&2; exit 1; fi
done
WORK=$(mktemp -d /tmp/raftgres-peers-XXXX)
chmod 755 "$WORK"
RES=$WORK/results
mkdir -p "$RES"
log "work dir $WORK, ROUNDS=$ROUNDS"

# Each cluster runs in a background subshell, where errexit applies: a failure leaves FAIL
# cells, prints the ends of its logs, and the next cluster still runs.
for sys in patroni-default patroni-tightest raftgres raftgres-fast; do
    case " $ONLY " in *" $sys "*) ;; *) continue ;; esac
    LAB=$WORK/$sys-lab
    case $sys in
        patroni-default) (run_patroni default 30 10 10) & ;;
        patroni-tightest) (run_patroni tightest 20 1 3) & ;;
        raftgres) install -d -m 755 "$LAB"; (run_raftgres default) & ;;
        raftgres-fast) install -d -m 755 "$LAB"; (run_raftgres fast) & ;;
    esac
    RUNNER=$!
    if ! wait "$RUNNER"; then
        log "$sys: FAILED; the end of its logs:"
        SYS=$sys PDIR=$WORK/$sys sys_logs
    fi
    RUNNER=""
    [ -r "$WORK/writer.pid" ] && { kill -9 "$(cat "$WORK/writer.pid")" 2>/dev/null || true; rm -f "$WORK/writer.pid"; }
    case $sys in
        raftgres*) if [ -r "$LAB/lab.json" ]; then timeout 120 "$RAFTCTL" lab down --dir "$LAB" >/dev/null 2>&1 || true; fi ;;
        *) patroni_down "$WORK/$sys"; rm -rf "${WORK:?}/$sys" ;;
    esac
done

table | tee "$OUT"
