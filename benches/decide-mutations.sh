#!/usr/bin/env bash
# Does the decision table catch the unsafe rules it is meant to catch? Each mutation puts
# one old (unsafe) rule back into crates/agent/src/ha/*.rs, runs the decide tests (the
# table and the property test), and expects them to FAIL, naming the case that catches it;
# the file is restored afterwards whatever happens.
#   bash benches/decide-mutations.sh
# Prints one line per mutation: caught (the tests failed, with the first failing case) or
# MISSED (they passed: the table does not guard that rule). Exits 1 if one was missed.
set -euo pipefail
cd "$(dirname "$0")/.."

backup=$(mktemp -d)
# Puts back any file a mutation left changed (the script was interrupted).
# shellcheck disable=SC2317 # called by the trap
restore() {
  local p
  for p in "$backup"/*.path; do
    [ -e "$p" ] && cp "${p%.path}" "$(cat "$p")"
  done
  rm -rf "$backup"
}
trap restore EXIT

missed=0
# mutate NAME FILE OLD-TEXT UNSAFE-TEXT (the rule before the fix)
mutate() {
  local name=$1 file=$2 old=$3 new=$4 key out first
  key=$(echo "$file" | tr '/' '_')
  cp "$file" "$backup/$key"
  echo "$file" >"$backup/$key.path"
  OLD="$old" NEW="$new" python3 - "$file" <<'EOF2'
import os, sys
path = sys.argv[1]
text = open(path).read()
old, new = os.environ["OLD"], os.environ["NEW"]
if old not in text:
    sys.exit(f"mutation text not found in {path}: {old}")
open(path, "w").write(text.replace(old, new, 1))
EOF2
  if out=$(cargo nextest run -p raftgres-agent --no-fail-fast -E 'test(/decide|may_run_as_primary|an_unanswering_primary|eligib|healthiest|sync|diverged|rewound|timeline/)' 2>&1); then
    echo "MISSED  $name"
    missed=1
  else
    first=$(echo "$out" | grep -m1 -E '^ +(.+: expected .+|case [0-9]+: rule .*|assertion .*)' | sed 's/^ *//' | cut -c1-160 || true)
    echo "caught  $name  [${first:-$(echo "$out" | grep -m1 'FAIL \[' | sed 's/^ *//')}]"
  fi
  cp "$backup/$key" "$file"
  rm -f "$backup/$key" "$backup/$key.path"
}

mutate "issue 16 item 4: only a running primary is demoted" crates/agent/src/ha/decide.rs \
  'alive && (pg.role == Role::Primary || (!pg.is_running() && !standby_configured))' \
  'alive && pg.role == Role::Primary && pg.is_running()'
mutate "issue 16 item 5: no timeline check before a race" crates/agent/src/ha/election.rs \
  'Some(mine) if mine < cluster => return Err(Ineligible::BehindTimeline { mine, cluster }),' \
  'Some(_) if false => {}'
mutate "issue 16 item 5: LSNs compared across timelines" crates/agent/src/ha/election.rs \
  '(Some(theirs), Some(mine_tli)) if theirs != mine_tli => theirs > mine_tli,' \
  '(Some(_), Some(_)) if false => false,'
mutate "issue 16 item 6: a stale /sync keeps its old leader eligible" crates/agent/src/ha/sync.rs \
  '(Some(l), Some(newest)) if l != newest => None,' \
  '(Some(_), Some(_)) if false => None,'
mutate "rewind loop: rewound again onto the same timeline" crates/agent/src/ha/stuck.rs \
  'older && !on_leader_timeline(timeline, leader_timeline, rewound_onto)' \
  'older'
mutate "free key: only a primary that answered is demoted" crates/agent/src/ha/decide.rs \
  'let primary_without_key = may_run_as_primary(' \
  'let primary_without_key = o.pg.role == Role::Primary && may_run_as_primary('
mutate "key holder promotes a replica behind /history" crates/agent/src/ha/decide.rs \
  '(Some(mine), Some(cluster)) if mine < cluster => {' \
  '(Some(mine), Some(cluster)) if mine < cluster && false => {'
mutate "sync mode: a postponed promotion skips the /sync check (model check trace)" crates/agent/src/ha/decide.rs \
  '_ if config.synchronous_mode && !sync_allows(view, me, config.synchronous_mode_strict) => Action::GiveUpKey {' \
  '_ if false => Action::GiveUpKey {'
mutate "bootstrap wipes a data directory that is not a cluster" crates/agent/src/ha/decide.rs \
  'if o.data_dir == DataDir::Invalid {' \
  'if false {'
exit $missed
