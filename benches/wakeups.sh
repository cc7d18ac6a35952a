#!/usr/bin/env bash
# Where an idle node's CPU goes, thread by thread: wake-ups (voluntary and involuntary
# context switches) per second and CPU ticks over SPAN seconds, for every raftgres
# process (and its fencer) whose command line contains PATTERN.
#
#   bash benches/wakeups.sh [SPAN] [PATTERN]      # default: 30 s, /tmp/raftgres-lab
#
# Wake-ups count what a thread does, not how long the CPU let it wait, so they compare
# two builds fairly even on a busy machine (run two labs side by side, one pattern
# each); CPU ticks are the figure peers.sh reports, and they need a quiet machine.
# Prints one line per (process, thread name) and a TOTAL line per process.
set -euo pipefail

if [ $# -gt 2 ]; then
    echo "wakeups.sh: at most two arguments (SPAN in seconds, PATTERN), got $#: $*" >&2
    exit 2
fi
SPAN=${1:-30}
PATTERN=${2:-/tmp/raftgres-lab}
case "$SPAN" in
    '' | *[!0-9]* | 0) echo "wakeups.sh: SPAN must be a whole number of seconds > 0, got '$SPAN'" >&2; exit 2 ;;
esac

pids=()
for p in $(pgrep -f -- "$PATTERN" || true); do
    cmd=$(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" || true)
    case "$cmd" in *raftgres*) pids+=("$p") ;; esac
    for child in $(pgrep -P "$p" -f "raftgres __fencer" || true); do pids+=("$child"); done
done
if [ ${#pids[@]} -eq 0 ]; then
    echo "wakeups.sh: no raftgres process matches '$PATTERN'" >&2
    exit 1
fi

# One line per thread: pid/tid, name, CPU ticks (utime + stime), context switches.
snapshot() {
    local p t name stat
    for p in "${pids[@]}"; do
        for t in "/proc/$p/task/"*; do
            name=$(cat "$t/comm" 2>/dev/null) || continue
            stat=$(sed 's/^.*) //' "$t/stat" 2>/dev/null) || continue
            read -r -a fields <<< "$stat"
            printf '%s/%s %s %d %d\n' "$p" "${t##*/}" "$name" $((fields[11] + fields[12])) \
                "$(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "$t/status" 2>/dev/null)"
        done
    done | sort
}

before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
snapshot > "$before"
sleep "$SPAN"
snapshot > "$after"
join "$before" "$after" | awk -v span="$SPAN" '
    { split($1, id, "/"); key = id[1] " " $2; ticks[key] += $6 - $3; wakes[key] += $7 - $4
      total_ticks[id[1]] += $6 - $3; total_wakes[id[1]] += $7 - $4 }
    END {
        for (k in ticks) if (wakes[k] > 0) printf "%s ticks=%d wakeups/s=%.1f\n", k, ticks[k], wakes[k] / span
        for (p in total_ticks) printf "%s TOTAL ticks=%d wakeups/s=%.1f\n", p, total_ticks[p], total_wakes[p] / span
    }' | sort
