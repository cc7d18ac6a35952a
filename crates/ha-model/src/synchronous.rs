//! The synchronous-mode model: every commit a client saw acknowledged is on any node that
//! promotes. Nodes commit, replicate, acknowledge, fail over and rewind; the primary
//! keeps `/sync` and `synchronous_standby_names` in the order of `ha/sync.rs`
//! `manage_sync`; a node races only when `sync_allows` lets it and writes `/sync` before
//! it promotes (`ha/primary.rs` `promote`). The lease protocol is abstracted by what the
//! lease model checks: one primary at a time, and a primary is fenced before its key is
//! free (`Fail`). The crate doc lists what is modelled and assumed.

use crate::checker::Model;
use crate::lease::Pg;

/// At most this many nodes.
pub const MAX_NODES: usize = 3;

/// Which of the behaviours in question the model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncBehaviour {
    /// Mutation: any replica may race, whatever `/sync` says.
    pub any_replica_may_race: bool,
    /// The new primary promotes without writing `/sync` first (issue 16 item 6, fixed).
    pub promote_without_writing_sync: bool,
    /// `/sync` grows with a standby as soon as PostgreSQL reports it `sync`, though it may
    /// not have flushed yet what `*` (any standby) acknowledged before it was named.
    /// Fixed: it joins only once it has every commit the primary had when it was named.
    pub grow_with_lagging_standby: bool,
    /// A promotion postponed because `/sync` changed since the race's read (its
    /// compare-and-swap failed) goes ahead in a later cycle (`be_primary`: a running
    /// replica holding the key promotes) without asking `sync_allows` of the fresh view.
    /// Fixed: the `/sync` a promotion replaces is one that lets this node take over.
    pub postponed_promotion_skips_sync_check: bool,
}

impl SyncBehaviour {
    /// The agent when this model was written: it had both of the last two (fixed since:
    /// `ha/decide.rs` promotes a key holder only if the current `/sync` allows it, and
    /// `ha/sync.rs` `admit` names a standby only once it flushed what came before).
    pub const BEFORE_FIXES: SyncBehaviour = SyncBehaviour {
        any_replica_may_race: false,
        promote_without_writing_sync: false,
        grow_with_lagging_standby: true,
        postponed_promotion_skips_sync_check: true,
    };
    pub const FIXED: SyncBehaviour =
        SyncBehaviour { grow_with_lagging_standby: false, postponed_promotion_skips_sync_check: false, ..SyncBehaviour::BEFORE_FIXES };
}

/// The bounds of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConfig {
    pub nodes: usize,
    /// Commits the primaries make in all (commit ids 0..commits, in order of creation).
    pub commits: u8,
    pub behaviour: SyncBehaviour,
}

impl SyncConfig {
    /// Three nodes, one commit, the fixed behaviour.
    pub fn small() -> SyncConfig {
        SyncConfig { nodes: 3, commits: 1, behaviour: SyncBehaviour::FIXED }
    }

    /// Why these bounds cannot be checked, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if !(2..=MAX_NODES).contains(&self.nodes) {
            return Some(format!("nodes must be 2..={MAX_NODES}"));
        }
        if !(1..=8).contains(&self.commits) {
            return Some("commits must be 1..=8 (a WAL is a bitmask of commit ids)".into());
        }
        None
    }
}

/// `synchronous_standby_names` of a primary (`synchronous_node_count` 1, strict mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Standbys {
    /// `'*'`: commits wait for any one standby.
    Any,
    /// `FIRST 1 ("n")`: commits wait for this one.
    One(u8),
}

/// `/sync`: the primary it belongs to and the standbys it lists (bit per node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyncKey {
    pub leader: u8,
    pub listed: u8,
}

/// What the node's last cycle read of the store, as far as its next steps use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct View {
    /// `/sync` has not been written since (its compare-and-swap would succeed).
    fresh: bool,
    /// No leader key.
    free: bool,
    /// `sync_allows` lets this node take over.
    allowed: bool,
    /// The leader key was this node's.
    mine: bool,
    /// `/sync` as read, by the key's holder (only `manage_sync` uses it).
    sync: Option<SyncKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ha {
    Idle,
    /// Took the leader key; writes `/sync`, then promotes.
    Won,
    /// Promoted; appends itself to `/history` next.
    Promoted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Node {
    pg: Pg,
    /// The commits in its WAL (bit per commit id; a WAL is in id order).
    wal: u8,
    /// As primary: the commits it made since it promoted (only these it acknowledges).
    own: u8,
    /// As primary: its `synchronous_standby_names`, and its WAL when they last changed.
    standbys: Standbys,
    wal_at_change: u8,
    view: View,
    ha: Ha,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    nodes: [Node; MAX_NODES],
    /// The leader key's holder.
    key: Option<u8>,
    sync: Option<SyncKey>,
    /// `/history`'s newest primary.
    newest: u8,
    /// Commits made so far (the next commit's id).
    made: u8,
    /// Commits acknowledged to a client.
    acked: u8,
    /// A node promoted without every acknowledged commit.
    lost: bool,
}

/// One step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The node's cycle reads the leader key, `/sync` and `/history`.
    Read(u8),
    /// The primary makes the next commit (not yet acknowledged).
    Commit(u8),
    /// The replica receives the next commit of the primary's WAL.
    Replicate(u8),
    /// The replica's WAL diverged from the primary's: `pg_rewind` cuts it back.
    Rewind(u8),
    /// The primary acknowledges the commit: a standby it waits for has it.
    Ack(u8),
    Crash(u8),
    /// A stopped node starts as a replica.
    Start(u8),
    /// The primary's lease expires: it is fenced and the key is free.
    Fail(u8),
    /// The node takes the free leader key.
    Race(u8),
    /// The node writes `/sync` naming itself (compare-and-swap) and promotes.
    Promote(u8),
    /// The new primary appends itself to `/history`.
    Record(u8),
    /// One `manage_sync` step of the primary, wanting no standby or this one.
    Manage(u8, Option<u8>),
}

/// The transition system for one [`SyncConfig`].
pub struct SyncModel {
    pub config: SyncConfig,
}

/// `a`'s WAL is a prefix of `b`'s: every commit of `b` up to `a`'s last one is in `a`.
fn prefix(a: u8, b: u8) -> bool {
    let upto = if a == 0 { 0 } else { u8::MAX >> a.leading_zeros() };
    a & !b == 0 && b & upto == a
}

/// The longest common prefix of two WALs.
fn common_prefix(a: u8, b: u8) -> u8 {
    let same = !(a ^ b);
    (0..8).take_while(|i| same & (1 << i) != 0).fold(0, |w, i| w | (a & (1 << i)))
}

impl SyncModel {
    fn nodes(&self) -> impl Iterator<Item = usize> {
        0..self.config.nodes
    }

    fn primary(&self, s: &State) -> Option<usize> {
        self.nodes().find(|n| s.nodes[*n].pg == Pg::Primary)
    }

    /// The replicas streaming from the primary (bit per node): running, WAL a prefix of its.
    fn streaming(&self, s: &State, p: usize) -> u8 {
        self.nodes().filter(|r| s.nodes[*r].pg == Pg::Replica && prefix(s.nodes[*r].wal, s.nodes[p].wal)).fold(0, |m, r| m | (1 << r))
    }

    /// `sync_allows` in strict mode on what was read: the leader `/sync` belongs to (unless
    /// `/history` names a newer primary) and the standbys it lists.
    fn sync_allows(&self, s: &State, n: usize) -> bool {
        let Some(sync) = s.sync else { return false };
        let leader_ok = sync.leader == s.newest && usize::from(sync.leader) == n;
        leader_ok || sync.listed & (1 << n) != 0
    }

    fn read(&self, s: &State, n: usize) -> View {
        let allowed = self.config.behaviour.any_replica_may_race || self.sync_allows(s, n);
        let mine = s.key == Some(n as u8);
        View { fresh: true, free: s.key.is_none(), allowed, mine, sync: s.sync.filter(|_| mine) }
    }

    /// `write_sync`: a compare-and-swap on the revision the node read; every view is stale after.
    fn write_sync(&self, t: &mut State, n: usize, listed: u8) -> bool {
        if !t.nodes[n].view.fresh {
            return false;
        }
        t.sync = Some(SyncKey { leader: n as u8, listed });
        for m in self.nodes() {
            t.nodes[m].view.fresh = false;
        }
        true
    }

    /// `manage_sync` steps 1–3 on the node's view, wanting `wanted` (no standby, or one
    /// streaming now; `choose` picks among those). One step per cycle: the view is used up.
    fn manage(&self, s: &State, p: usize, wanted: Option<usize>) -> Option<State> {
        let node = s.nodes[p];
        if node.pg != Pg::Primary || !node.view.mine || !node.view.fresh || node.ha != Ha::Idle {
            return None;
        }
        let streaming = self.streaming(s, p);
        let wanted_mask = wanted.map_or(0, |w| 1 << w);
        if wanted_mask & !streaming != 0 {
            return None;
        }
        let mut t = *s;
        let listed = node.view.sync.map_or(0, |k| k.listed);
        let staying = listed & wanted_mask;
        if staying != listed {
            return self.write_sync(&mut t, p, staying).then_some(t);
        }
        let names = wanted.map_or(Standbys::Any, |w| Standbys::One(w as u8));
        if names != node.standbys {
            t.nodes[p].standbys = names;
            t.nodes[p].wal_at_change = node.wal;
            t.nodes[p].view.fresh = false;
            return Some(t);
        }
        let caught_up = |w: usize| self.config.behaviour.grow_with_lagging_standby || node.wal_at_change & !s.nodes[w].wal == 0;
        let confirmed = wanted.filter(|w| streaming & (1 << w) != 0 && caught_up(*w)).map_or(0, |w| 1 << w);
        let in_key = node.view.sync.is_some_and(|k| usize::from(k.leader) == p);
        if confirmed != staying || !in_key {
            return self.write_sync(&mut t, p, confirmed).then_some(t);
        }
        None
    }

    fn step(&self, s: &State, n: usize, action: Action) -> Option<State> {
        let mut t = *s;
        let primary = self.primary(s);
        let node = &mut t.nodes[n];
        match action {
            Action::Read(_) if node.pg != Pg::Down => node.view = self.read(s, n),
            Action::Commit(_) if node.pg == Pg::Primary && s.made < self.config.commits => {
                node.wal |= 1 << s.made;
                node.own |= 1 << s.made;
                t.made += 1;
            }
            Action::Replicate(_) => {
                let p = primary.filter(|p| self.streaming(s, *p) & (1 << n) != 0)?;
                let missing = s.nodes[p].wal & !node.wal;
                node.wal |= missing & missing.wrapping_neg();
                return (missing != 0).then_some(t);
            }
            Action::Rewind(_) if node.pg == Pg::Replica => {
                let p = primary.filter(|p| !prefix(node.wal, s.nodes[*p].wal))?;
                node.wal = common_prefix(node.wal, s.nodes[p].wal);
            }
            Action::Ack(_) if node.pg == Pg::Primary => {
                let streaming = self.streaming(s, n);
                let waits_for = match node.standbys {
                    Standbys::Any => streaming,
                    Standbys::One(w) => streaming & (1 << w),
                };
                let on_standby = self.nodes().filter(|w| waits_for & (1 << w) != 0).fold(0, |c, w| c | s.nodes[w].wal);
                let newly = node.own & on_standby & !s.acked;
                t.acked |= newly;
                return (newly != 0).then_some(t);
            }
            Action::Crash(_) if node.pg == Pg::Replica => node.pg = Pg::Down,
            Action::Start(_) if node.pg == Pg::Down && s.key != Some(n as u8) => node.pg = Pg::Replica,
            Action::Fail(_) if s.key == Some(n as u8) => {
                node.pg = Pg::Down;
                node.ha = Ha::Idle;
                node.standbys = Standbys::Any;
                node.wal_at_change = 0;
                node.own = 0;
                t.key = None;
            }
            Action::Race(_) if node.pg == Pg::Replica && node.ha == Ha::Idle && node.view.free && node.view.allowed && s.key.is_none() => {
                node.ha = Ha::Won;
                t.key = Some(n as u8);
            }
            Action::Promote(_) if node.ha == Ha::Won && node.pg == Pg::Replica => {
                if !self.config.behaviour.postponed_promotion_skips_sync_check && !node.view.allowed {
                    return None;
                }
                if !self.config.behaviour.promote_without_writing_sync && !self.write_sync(&mut t, n, 0) {
                    return None;
                }
                let node = &mut t.nodes[n];
                node.pg = Pg::Primary;
                node.ha = Ha::Promoted;
                node.standbys = Standbys::Any;
                node.wal_at_change = node.wal;
                t.lost |= s.acked & !node.wal != 0;
            }
            Action::Record(_) if node.ha == Ha::Promoted => {
                node.ha = Ha::Idle;
                t.newest = n as u8;
            }
            _ => return None,
        }
        (t != *s).then_some(t)
    }
}

impl Model for SyncModel {
    type State = State;
    type Action = Action;

    /// Node 0 is the primary with `/sync` naming it and no standby; nothing committed.
    fn initial(&self) -> Vec<State> {
        let sync = Some(SyncKey { leader: 0, listed: 0 });
        let view = View { fresh: true, free: false, allowed: false, mine: false, sync: None };
        let node = Node { pg: Pg::Replica, wal: 0, own: 0, standbys: Standbys::Any, wal_at_change: 0, view, ha: Ha::Idle };
        let mut s = State { nodes: [node; MAX_NODES], key: Some(0), sync, newest: 0, made: 0, acked: 0, lost: false };
        s.nodes[0].pg = Pg::Primary;
        s.nodes[0].view = View { mine: true, sync, ..view };
        vec![s]
    }

    fn successors(&self, s: &State, out: &mut Vec<(Action, State)>) {
        for n in self.nodes() {
            let id = n as u8;
            let actions = [
                Action::Read(id),
                Action::Commit(id),
                Action::Replicate(id),
                Action::Rewind(id),
                Action::Ack(id),
                Action::Crash(id),
                Action::Start(id),
                Action::Fail(id),
                Action::Race(id),
                Action::Promote(id),
                Action::Record(id),
            ];
            for action in actions {
                if let Some(t) = self.step(s, n, action) {
                    out.push((action, t));
                }
            }
            for wanted in std::iter::once(None).chain(self.nodes().filter(|w| *w != n).map(Some)) {
                if let Some(t) = self.manage(s, n, wanted) {
                    out.push((Action::Manage(id, wanted.map(|w| w as u8)), t));
                }
            }
        }
    }

    fn violation(&self, s: &State) -> Option<&'static str> {
        s.lost.then_some("a node promoted without an acknowledged commit")
    }

    /// Nodes are alike: the least of the state under every renaming of the nodes.
    fn canonical(&self, s: &State) -> State {
        let count = self.config.nodes;
        let identity: [u8; MAX_NODES] = [0, 1, 2];
        let renamings: Vec<[u8; MAX_NODES]> = match count {
            2 => vec![identity, [1, 0, 2]],
            _ => vec![identity, [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]],
        };
        renamings.iter().map(|to| renamed(s, to)).min().unwrap_or(*s)
    }
}

/// `s` with node `n` called `to[n]`.
fn renamed(s: &State, to: &[u8; MAX_NODES]) -> State {
    let node = |n: u8| to[usize::from(n)];
    let mask = |m: u8| (0..MAX_NODES).filter(|n| m & (1 << n) != 0).fold(0, |r, n| r | (1 << to[n]));
    let sync = |k: SyncKey| SyncKey { leader: node(k.leader), listed: mask(k.listed) };
    let mut t = *s;
    for (n, from) in s.nodes.iter().enumerate() {
        let mut moved = *from;
        moved.standbys = match from.standbys {
            Standbys::One(w) => Standbys::One(node(w)),
            any => any,
        };
        moved.view.sync = from.view.sync.map(sync);
        t.nodes[usize::from(to[n])] = moved;
    }
    t.key = s.key.map(node);
    t.sync = s.sync.map(sync);
    t.newest = node(s.newest);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_prefixes() {
        assert!(prefix(0, 0b11));
        assert!(prefix(0b01, 0b11));
        assert!(!prefix(0b10, 0b11), "misses commit 0");
        assert!(!prefix(0b11, 0b01), "has more");
        assert!(!prefix(0b100, 0b011), "diverged");
        assert_eq!(common_prefix(0b101, 0b011), 0b001);
        assert_eq!(common_prefix(0b100, 0b011), 0);
    }
}
