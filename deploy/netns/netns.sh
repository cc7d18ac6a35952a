#!/usr/bin/env bash
# netns.sh — network namespaces for a raftgres lab: real partitions and bad networks.
#
# Each node runs in its own network namespace (<prefix>1 .. <prefix>N) with one veth
# link to a bridge in the root namespace. Node i is 10.250.0.i/24, the bridge is
# 10.250.0.254/24, so a process in the root namespace (a test, psql, etcdctl) reaches
# every node, and cutting links between nodes never cuts the clients off.
#
# Partitions are iptables DROP rules inside a node's namespace (chains RG-PART-IN and
# RG-PART-OUT, by the other nodes' addresses only); bad networks are `tc netem` on the
# node's veth. Every command is idempotent. Run as root. See `netns.sh help`.
set -euo pipefail

readonly SUBNET=10.250.0
readonly BRIDGE_ADDR="$SUBNET.254"
readonly INNER_DEV=veth0
readonly CHAIN_IN=RG-PART-IN
readonly CHAIN_OUT=RG-PART-OUT
readonly MAX_NODES=9

usage() {
    cat <<EOF
usage: $(basename "$0") [--prefix PREFIX] COMMAND [ARGS...]

Network namespaces for a raftgres lab (run as root). Node i lives in namespace
<PREFIX>i with address $SUBNET.i/24; the bridge <PREFIX>br0 in the root namespace
holds $BRIDGE_ADDR/24, so clients on this machine reach every node.

commands:
  create N [PREFIX]            namespaces PREFIX1..PREFIXN, veths, the bridge (N <= $MAX_NODES)
  destroy [PREFIX]             remove the namespaces, the bridge and the iptables rules
  exec NODE CMD [ARGS...]      run CMD inside NODE's namespace
  partition NODE [--from OTHER] [--oneway] [--port PORT]
                               drop traffic between NODE and every other node (or only
                               OTHER); --oneway drops only what NODE sends; --port drops
                               only TCP to PORT (e.g. the Raft port, REST still
                               answering). The bridge address stays reachable, so
                               clients see both sides.
  heal [NODE]                  remove the partition rules (of NODE, or of every node)
  netem NODE "SPEC"            tc netem on NODE's link, e.g. "delay 200ms 50ms loss 3%"
  clear NODE                   remove NODE's netem qdisc
  status                       namespaces, addresses, partition rules, qdiscs
  help                         this text

NODE is a number (1 = <PREFIX>1) or a namespace name (rg2, rgt1-2, ...).
PREFIX (default rg, or \$RG_NETNS_PREFIX): lower-case letters, digits and '-', at most
12 characters, not ending in a digit. Several labs may exist side by side by name, but
they share $SUBNET.0/24, so only one can be created (reachable) at a time.

examples:
  $(basename "$0") create 3
  $(basename "$0") partition 1             # node1 cut off from node2 and node3
  $(basename "$0") partition 2 --from 3 --oneway
  $(basename "$0") partition 1 --port 2380  # only node1's Raft traffic
  $(basename "$0") heal
  $(basename "$0") netem 1 "delay 100ms 20ms loss 2%"
  $(basename "$0") --prefix rgt1- destroy
EOF
}

die() {
    echo "netns.sh: $*" >&2
    exit 1
}

PREFIX=${RG_NETNS_PREFIX:-rg}

check_prefix() {
    [[ $1 =~ ^[a-z][a-z0-9-]{0,11}$ && ! $1 =~ [0-9]$ ]] ||
        die "bad prefix '$1': lower-case letters, digits and '-', at most 12 characters, starting with a letter and not ending in a digit"
}

bridge() { echo "${PREFIX}br0"; }
host_veth() { echo "${PREFIX}v$1"; }
peer_veth() { echo "${PREFIX}p$1"; }
ns_name() { echo "${PREFIX}$1"; }

# The indexes of the namespaces of PREFIX that exist, sorted.
indexes() {
    ip netns list 2>/dev/null | awk '{print $1}' |
        { grep -E "^${PREFIX}[0-9]+$" || true; } | sed "s/^${PREFIX}//" | sort -n
}

# NODE (a number or a namespace name) -> its index in NODE_I; a name also sets PREFIX.
# (Not run in a subshell, so that PREFIX sticks.)
parse_node() {
    local node=$1 index
    if [[ $node =~ ^[0-9]+$ ]]; then
        NODE_I=$node
    elif [[ $node =~ ^(.*[^0-9])([0-9]+)$ ]]; then
        index=${BASH_REMATCH[2]}
        PREFIX=${BASH_REMATCH[1]}
        check_prefix "$PREFIX"
        NODE_I=$index
    else
        die "bad node '$node': give a number (1) or a namespace name (${PREFIX}1)"
    fi
}

# Sets NODE_I for NODE and checks that its namespace exists.
resolve() {
    parse_node "$1"
    ip netns list | awk '{print $1}' | grep -x "$(ns_name "$NODE_I")" >/dev/null ||
        die "no namespace $(ns_name "$NODE_I") (create it with: $(basename "$0") create N $PREFIX)"
}

in_ns() {
    local i=$1
    shift
    ip netns exec "$(ns_name "$i")" "$@"
}

# The iptables rule in the root namespace that lets bridged traffic through FORWARD
# (needed when br_netfilter is loaded and FORWARD's policy is DROP, as with Docker).
# The iptables rule that lets the lab's namespaces talk over the bridge, as words in FORWARD_RULE.
forward_rule() {
    FORWARD_RULE=(FORWARD -i "$(bridge)" -o "$(bridge)" -m comment --comment "raftgres-netns:${PREFIX}" -j ACCEPT)
}

create() {
    local n=${1:-}
    [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le $MAX_NODES ]] ||
        die "create needs a node count between 1 and $MAX_NODES (got '${n}')"
    local br
    br=$(bridge)
    # Another bridge holding the bridge address means another lab owns the subnet.
    local owner
    owner=$(ip -o -4 addr show | awk -v a="$BRIDGE_ADDR/24" '$4 == a {print $2}' | grep -vx "$br" || true)
    [[ -z $owner ]] ||
        die "$BRIDGE_ADDR is already on $owner (another netns lab): destroy it first (netns.sh --prefix ${owner%br0} destroy)"
    if ! ip link show "$br" >/dev/null 2>&1; then
        ip link add "$br" type bridge
    fi
    ip addr replace "$BRIDGE_ADDR/24" dev "$br"
    ip link set "$br" up
    forward_rule
    iptables -C "${FORWARD_RULE[@]}" 2>/dev/null || iptables -I "${FORWARD_RULE[@]}"
    local i ns hv pv
    for ((i = 1; i <= n; i++)); do
        ns=$(ns_name "$i")
        hv=$(host_veth "$i")
        pv=$(peer_veth "$i")
        ip netns list | awk '{print $1}' | grep -x "$ns" >/dev/null || ip netns add "$ns"
        ip -n "$ns" link set lo up
        if ! ip -n "$ns" link show "$INNER_DEV" >/dev/null 2>&1; then
            # A host end without its peer (left by a crashed run) is useless: replace it.
            ip link del "$hv" >/dev/null 2>&1 || true
            ip link del "$pv" >/dev/null 2>&1 || true
            ip link add "$hv" type veth peer name "$pv"
            ip link set "$pv" netns "$ns"
            ip -n "$ns" link set "$pv" name "$INNER_DEV"
        fi
        ip link set "$hv" master "$br"
        ip link set "$hv" up
        ip -n "$ns" addr replace "$SUBNET.$i/24" dev "$INNER_DEV"
        ip -n "$ns" link set "$INNER_DEV" up
        ensure_chains "$i"
    done
    echo "created $n namespaces ${PREFIX}1..${PREFIX}$n ($SUBNET.1..$SUBNET.$n), bridge $br ($BRIDGE_ADDR)"
}

# The partition chains of node i, hooked into INPUT and OUTPUT once.
ensure_chains() {
    local i=$1
    in_ns "$i" iptables -N "$CHAIN_IN" 2>/dev/null || true
    in_ns "$i" iptables -N "$CHAIN_OUT" 2>/dev/null || true
    in_ns "$i" iptables -C INPUT -j "$CHAIN_IN" 2>/dev/null || in_ns "$i" iptables -I INPUT -j "$CHAIN_IN"
    in_ns "$i" iptables -C OUTPUT -j "$CHAIN_OUT" 2>/dev/null || in_ns "$i" iptables -I OUTPUT -j "$CHAIN_OUT"
}

destroy() {
    local i ns pids
    for i in $(indexes); do
        ns=$(ns_name "$i")
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)
        [[ -z ${pids// /} ]] || echo "warning: processes still run in $ns (pids $pids); they lose their network" >&2
        # The namespace's own iptables rules and qdiscs go with it.
        ip netns del "$ns" || true
    done
    for i in $(seq 1 $MAX_NODES); do
        ip link del "$(host_veth "$i")" >/dev/null 2>&1 || true
        ip link del "$(peer_veth "$i")" >/dev/null 2>&1 || true
    done
    forward_rule
    while iptables -C "${FORWARD_RULE[@]}" 2>/dev/null; do
        iptables -D "${FORWARD_RULE[@]}"
    done
    ip link del "$(bridge)" >/dev/null 2>&1 || true
    echo "destroyed the namespaces, veths, bridge and rules of prefix $PREFIX"
}

partition() {
    [[ $# -ge 1 ]] || die "partition needs a NODE (see: netns.sh help)"
    resolve "$1"
    shift
    local node=$NODE_I from="" oneway=0 port=()
    while [[ $# -gt 0 ]]; do
        case $1 in
        --from)
            [[ $# -ge 2 ]] || die "--from needs a NODE"
            local saved=$PREFIX
            parse_node "$2"
            [[ $PREFIX == "$saved" ]] || die "--from $2 is not a node of prefix $saved"
            from=$NODE_I
            shift 2
            ;;
        --oneway)
            oneway=1
            shift
            ;;
        --port)
            [[ $# -ge 2 && $2 =~ ^[0-9]+$ && $2 -ge 1 && $2 -le 65535 ]] || die "--port needs a TCP port number (1-65535)"
            port=(-p tcp --dport "$2")
            shift 2
            ;;
        *) die "partition: unknown argument '$1' (expected --from NODE, --oneway or --port PORT)" ;;
        esac
    done
    local others
    if [[ -n $from ]]; then
        [[ $from != "$node" ]] || die "a node cannot be partitioned from itself"
        others=$from
    else
        others=$(indexes | grep -vx "$node" || true)
    fi
    ensure_chains "$node"
    local o
    for o in $others; do
        in_ns "$node" iptables -C "$CHAIN_OUT" -d "$SUBNET.$o" "${port[@]}" -j DROP 2>/dev/null ||
            in_ns "$node" iptables -A "$CHAIN_OUT" -d "$SUBNET.$o" "${port[@]}" -j DROP
        if [[ $oneway == 0 ]]; then
            in_ns "$node" iptables -C "$CHAIN_IN" -s "$SUBNET.$o" "${port[@]}" -j DROP 2>/dev/null ||
                in_ns "$node" iptables -A "$CHAIN_IN" -s "$SUBNET.$o" "${port[@]}" -j DROP
        fi
    done
    local what="to and from"
    [[ $oneway == 0 ]] || what="from"
    [[ ${#port[@]} -eq 0 ]] || what="TCP port ${port[3]} $what"
    echo "$(ns_name "$node"): dropping traffic $what ${others//$'\n'/ } ($SUBNET.254 stays reachable)"
}

heal() {
    local list i
    if [[ $# -ge 1 ]]; then
        resolve "$1"
        list=$NODE_I
    else
        list=$(indexes)
    fi
    for i in $list; do
        in_ns "$i" iptables -F "$CHAIN_IN" 2>/dev/null || true
        in_ns "$i" iptables -F "$CHAIN_OUT" 2>/dev/null || true
    done
    echo "healed: no partition rules in ${list//$'\n'/ } (prefix $PREFIX)"
}

netem() {
    [[ $# -eq 2 && -n $2 ]] || die "usage: netem NODE \"SPEC\" (e.g. netem 1 \"delay 200ms 50ms loss 3%\")"
    resolve "$1"
    # SPEC is split into words on purpose: it is tc's own argument list.
    local err
    # shellcheck disable=SC2086
    if ! err=$(in_ns "$NODE_I" tc qdisc replace dev "$INNER_DEV" root netem $2 2>&1); then
        if [[ $err == *"qdisc kind is unknown"* ]]; then
            loss_fallback "$2"
            return
        fi
        die "tc qdisc replace dev $INNER_DEV root netem $2 in $(ns_name "$NODE_I") failed: $err"
    fi
    echo "$(ns_name "$NODE_I"): netem $2"
}

# Without netem in the kernel (no sch_netem module), packet loss is still real: random
# drops with iptables' statistic match on the node's link, in both directions. Delay,
# jitter, duplication and reordering need netem and are reported as not applied.
LOSS_CHAIN=RG-LOSS
loss_fallback() {
    local spec=$1 pct="" rest=() words
    read -r -a words <<<"$spec"
    for ((k = 0; k < ${#words[@]}; k++)); do
        if [[ ${words[k]} == loss && $((k + 1)) -lt ${#words[@]} ]]; then
            pct=${words[k + 1]%\%}; k=$((k + 1))
        else
            rest+=("${words[k]}")
        fi
    done
    echo "warning: this kernel has no netem qdisc (modprobe sch_netem; Debian: linux-modules-extra-$(uname -r))" >&2
    [[ -n $pct ]] || die "netem is needed for \"$spec\" on this kernel"
    local prob
    prob=$(awk -v p="$pct" 'BEGIN { printf "%.4f", p / 100 }')
    in_ns "$NODE_I" iptables -N "$LOSS_CHAIN" 2>/dev/null || in_ns "$NODE_I" iptables -F "$LOSS_CHAIN"
    in_ns "$NODE_I" iptables -A "$LOSS_CHAIN" -i "$INNER_DEV" -m statistic --mode random --probability "$prob" -j DROP
    in_ns "$NODE_I" iptables -A "$LOSS_CHAIN" -o "$INNER_DEV" -m statistic --mode random --probability "$prob" -j DROP
    in_ns "$NODE_I" iptables -C INPUT -j "$LOSS_CHAIN" 2>/dev/null || in_ns "$NODE_I" iptables -I INPUT -j "$LOSS_CHAIN"
    in_ns "$NODE_I" iptables -C OUTPUT -j "$LOSS_CHAIN" 2>/dev/null || in_ns "$NODE_I" iptables -I OUTPUT -j "$LOSS_CHAIN"
    if ((${#rest[@]})); then
        echo "warning: applied only loss $pct% (iptables); not applied without netem: ${rest[*]}" >&2
    fi
    echo "$(ns_name "$NODE_I"): loss $pct% (iptables statistic)"
}

clear_qdisc() {
    [[ $# -eq 1 ]] || die "usage: clear NODE"
    resolve "$1"
    in_ns "$NODE_I" tc qdisc del dev "$INNER_DEV" root 2>/dev/null || true
    in_ns "$NODE_I" iptables -F "$LOSS_CHAIN" 2>/dev/null || true
    echo "$(ns_name "$NODE_I"): no netem"
}

status() {
    local list i
    list=$(indexes)
    if [[ -z $list ]]; then
        echo "no namespaces with prefix $PREFIX"
        return
    fi
    echo "bridge $(bridge): $(ip -o -4 addr show dev "$(bridge)" 2>/dev/null | awk '{print $4}' || echo missing)"
    for i in $list; do
        local addr rules qdisc
        addr=$(in_ns "$i" ip -o -4 addr show dev "$INNER_DEV" 2>/dev/null | awk '{print $4}' || true)
        rules=$( (in_ns "$i" iptables -S "$CHAIN_IN" 2>/dev/null; in_ns "$i" iptables -S "$CHAIN_OUT" 2>/dev/null) |
            { grep -- '-j DROP' || true; } | sed -E 's/^-A //; s/ -j DROP//' | paste -sd ',' -)
        qdisc=$(in_ns "$i" tc qdisc show dev "$INNER_DEV" 2>/dev/null | { grep netem || true; } | sed -E 's/.*netem [^ ]+ //')
        printf '%-10s %-15s partition: %-40s netem: %s\n' "$(ns_name "$i")" "${addr:-no address}" "${rules:-none}" "${qdisc:-none}"
    done
}

main() {
    if [[ ${1:-} == --prefix ]]; then
        [[ $# -ge 2 ]] || die "--prefix needs a value"
        PREFIX=$2
        shift 2
    fi
    local cmd=${1:-help}
    [[ $# -eq 0 ]] || shift
    case $cmd in
    help | -h | --help)
        usage
        return
        ;;
    esac
    [[ $(id -u) == 0 ]] || die "must run as root (network namespaces, iptables and tc need it)"
    case $cmd in
    create)
        [[ -z ${2:-} ]] || PREFIX=$2
        check_prefix "$PREFIX"
        create "${1:-}"
        ;;
    destroy)
        [[ -z ${1:-} ]] || PREFIX=$1
        check_prefix "$PREFIX"
        destroy
        ;;
    exec)
        [[ $# -ge 2 ]] || die "usage: exec NODE CMD [ARGS...]"
        resolve "$1"
        shift
        exec ip netns exec "$(ns_name "$NODE_I")" "$@"
        ;;
    partition) check_prefix "$PREFIX" && partition "$@" ;;
    heal) check_prefix "$PREFIX" && heal "$@" ;;
    netem) check_prefix "$PREFIX" && netem "$@" ;;
    clear) check_prefix "$PREFIX" && clear_qdisc "$@" ;;
    status) check_prefix "$PREFIX" && status ;;
    *)
        usage >&2
        die "unknown command '$cmd'"
        ;;
    esac
}

main "$@"
