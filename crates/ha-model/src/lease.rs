//! The leader-lease model: nodes whose agents renew a lease, race for the leader key and
//! promote, a fencer per node, the store, the network between them and the clocks.
//! [`Config`] holds the timing (in ticks) and which of today's behaviours to model;
//! [`LeaseModel`] is the transition system; the crate doc explains every action.

use std::fmt;

use crate::checker::Model;
use crate::failsafe::{self, Failsafe, Member, Promise, Round};

/// At most this many nodes (the arrays in [`State`] have this size).
pub const MAX_NODES: usize = 3;
/// Lease ids are a node and a generation below this; a grant takes the smallest
/// generation nothing refers to any more (so ids stay unique where it matters, and
/// states that differ only in retired ids are one state).
const GENERATIONS: u8 = 4;
/// The fencer's generation when a renewal of any lease re-arms it.
const ANY_LEASE: u8 = u8::MAX;

/// Which of the behaviours in question the model has (each is one item of issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// The fencer shares the agent's process group, so a group stop freezes both
    /// (`fence.rs` spawns it without `setsid`).
    pub fencer_in_agent_group: bool,
    /// The store renews a lease whose deadline passed or whose revoke is already in the
    /// log (`lease_clock.rs` `renew` does not look at the deadline; a new store leader
    /// refreshes every lease and answers keep-alives before it applied its predecessor's
    /// queued revokes). Fixed: such a lease is not renewed, and the keep-alive says so.
    pub store_renews_expired_lease: bool,
    /// A renewal or grant of any lease re-arms the fencer (`lease.rs` `renewed`), not only
    /// one of the lease the leader key is on.
    pub fencer_rearmed_by_any_lease: bool,
    /// PostgreSQL may accept writes before the fencer is armed on a live deadline of the
    /// lease the leader key is on: `promote` (after `acquire_leader`) arms only if the
    /// lease has a deadline (none after `Lease::lost`), does not check that it is still
    /// ahead nor that the lease is still the one the key was taken on;
    /// `restart_in_place` starts PostgreSQL, then arms.
    pub writes_before_arming: bool,
}

impl Behaviour {
    /// The code as of this crate's writing.
    pub const BEFORE_FIXES: Behaviour = Behaviour {
        fencer_in_agent_group: true,
        store_renews_expired_lease: true,
        fencer_rearmed_by_any_lease: true,
        writes_before_arming: true,
    };
    /// All of them fixed.
    pub const FIXED: Behaviour = Behaviour {
        fencer_in_agent_group: false,
        store_renews_expired_lease: false,
        fencer_rearmed_by_any_lease: false,
        writes_before_arming: false,
    };
}

/// The bounds of one check. Every duration is in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub nodes: usize,
    /// The lease TTL (the store's expiry, and the granted TTL the agent uses).
    pub ttl: u8,
    pub safety_margin: u8,
    /// The fencer stops PostgreSQL at most this long after its deadline passes.
    pub fence_latency: u8,
    /// Each node's clock stays within this many ticks of real time (the store's clock).
    pub max_skew: u8,
    /// The store's Raft leader may change (every lease gets a full TTL again).
    pub store_leader_changes: bool,
    pub behaviour: Behaviour,
    /// Failsafe mode; when on, one node at a time may be cut from the store alone.
    pub failsafe: Failsafe,
}

impl Config {
    /// Two nodes, ttl 4, safety_margin 2, fencer latency 1, no skew, everything fixed.
    pub fn small() -> Config {
        Config {
            nodes: 2,
            ttl: 4,
            safety_margin: 2,
            fence_latency: 1,
            max_skew: 0,
            store_leader_changes: false,
            behaviour: Behaviour::FIXED,
            failsafe: Failsafe::Off,
        }
    }

    /// The write budget after a renewal was sent: `ttl − safety_margin`.
    fn budget(&self) -> u8 {
        self.ttl.saturating_sub(self.safety_margin)
    }

    /// The inequality the model checks: the fencer stops PostgreSQL strictly before the
    /// store can expire the lease, even when the primary's clock ran `max_skew` ahead of
    /// real time when it sent the keep-alive and lags `max_skew` behind at the deadline.
    pub fn timing_is_safe(&self) -> bool {
        self.safety_margin > 2 * self.max_skew + self.fence_latency
    }

    /// Why these bounds cannot be checked, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if !(2..=MAX_NODES).contains(&self.nodes) {
            return Some(format!("nodes must be 2..={MAX_NODES}"));
        }
        if self.safety_margin >= self.ttl {
            return Some("safety_margin must be below ttl".into());
        }
        None
    }
}

/// PostgreSQL on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pg {
    Replica,
    /// Running as primary: accepts writes.
    Primary,
    Down,
}

/// Where the HA loop is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ha {
    Idle,
    /// Sent the CAS for the free leader key; waiting for the answer.
    Racing,
    /// Won the key on this lease generation; promotes next.
    Won(u8),
    /// Restarted PostgreSQL as primary in place; arms the fencer next.
    Restarted,
}

/// The fencer while armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Fence {
    /// Ticks (of the node's clock) until the deadline.
    left: u8,
    /// Ticks since the deadline passed (it must act before `fence_latency`).
    late: u8,
    /// The lease generation it was armed for ([`ANY_LEASE`] when the behaviour ignores it).
    generation: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Grant,
    KeepAlive,
    /// Take the leader key if it is free, on this lease.
    Cas,
}

/// A request to the store, or its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Msg {
    kind: Kind,
    generation: u8,
    /// None: on its way to the store; Some(ok): the answer, on its way back.
    answer: Option<bool>,
    /// Ticks of the sender's clock left of the write deadline this message can give
    /// (`ttl − safety_margin` from the send; for a CAS, the sender's deadline). The
    /// message is gone when it reaches 0.
    budget: u8,
}

/// A lease in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct StoreLease {
    generation: u8,
    /// Ticks of the store's clock until it expires.
    left: u8,
    /// The store's leader saw it expire and queued its revoke.
    revoking: bool,
}

/// One node, and what the store and the network hold for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Node {
    /// Local clock minus real time, in ticks, within ±max_skew.
    skew: i8,
    /// Stopped by SIGSTOP (with the fencer when it shares the process group).
    frozen: bool,
    /// The lease the agent holds (generation), and its write deadline (ticks left; 0 = passed).
    lease: Option<u8>,
    valid: Option<u8>,
    ha: Ha,
    pg: Pg,
    fencer: Option<Fence>,
    /// The renewal task's grant or keep-alive in flight (it waits for one at a time).
    renewal: Option<Msg>,
    /// The HA loop's CAS in flight.
    cas: Option<Msg>,
    /// The store's leases of this node (sorted, empty last).
    leases: [Option<StoreLease>; 2],
    /// Failsafe mode only: the node cannot reach the store (its requests are not served
    /// and its cycles find the store unreachable); other nodes' REST APIs it still reaches.
    cut: bool,
    /// Failsafe mode only: `Binding::claimed`, `last_leader` and `promised` of the node
    /// as a member, and its confirmation round as a primary.
    claimed: bool,
    last_leader: Option<u8>,
    promise: Option<Promise>,
    round: Option<Round>,
}

/// One global state.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct State {
    /// How many of `nodes` take part (the rest never change).
    count: u8,
    nodes: [Node; MAX_NODES],
    /// The leader key: (node, lease generation).
    key: Option<(u8, u8)>,
}

/// Which of a node's two messages an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Renewal,
    Cas,
}

/// One step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Real time advances one tick; each node's clock advances by the given ticks.
    Tick([u8; MAX_NODES]),
    /// The node's renewal task sends a grant (no lease) or a keep-alive.
    Send(u8),
    /// The node's agent reads the store and acts on it (one HA cycle).
    Cycle(u8),
    /// The node's HA loop promotes after winning the key.
    Promote(u8),
    /// The node's HA loop arms the fencer after restarting PostgreSQL in place.
    Arm(u8),
    /// The node's fencer stops PostgreSQL (its deadline passed).
    Fence(u8),
    Freeze(u8),
    Thaw(u8),
    /// The store serves the node's request.
    Serve(u8, Channel),
    /// The node receives the answer.
    Receive(u8, Channel),
    /// The request or answer is lost (the sender gives up).
    Lose(u8, Channel),
    /// The store's leader sees the node's lease (slot) expire and queues its revoke.
    Expire(u8, u8),
    /// The revoke is applied (the leader key on it goes too).
    Revoke(u8, u8),
    /// A new store leader: every lease gets a full TTL.
    StoreLeaderChange,
    /// The member (first) answers the primary's `POST /failsafe`: it confirms and
    /// promises, or refuses and the round fails.
    Answer(u8, u8),
    /// The primary's round gets no answer from some member (it gives up on the round).
    Unanswered(u8),
    /// Every member confirmed: the primary extends its deadline (`Lease::extend`).
    Extend(u8),
}

/// The transition system for one [`Config`].
pub struct LeaseModel {
    pub config: Config,
}

fn msg_mut(node: &mut Node, channel: Channel) -> &mut Option<Msg> {
    match channel {
        Channel::Renewal => &mut node.renewal,
        Channel::Cas => &mut node.cas,
    }
}

impl LeaseModel {
    /// Every node holds a lease granted at time 0 and runs PostgreSQL as a replica; the
    /// leader key is free.
    fn start(&self) -> State {
        let c = &self.config;
        let node = Node {
            skew: 0,
            frozen: false,
            lease: Some(0),
            valid: Some(c.budget()),
            ha: Ha::Idle,
            pg: Pg::Replica,
            fencer: None,
            renewal: None,
            cas: None,
            leases: [Some(StoreLease { generation: 0, left: c.ttl, revoking: false }), None],
            cut: false,
            claimed: false,
            last_leader: None,
            promise: None,
            round: None,
        };
        State { count: c.nodes as u8, nodes: [node; MAX_NODES], key: None }
    }

    /// The failsafe check starts when the primary is cut from the store (and it stays
    /// cut): node 0 runs PostgreSQL as primary with the leader key on its lease, just
    /// renewed, its fencer armed on it; the others are replicas with every memory of
    /// earlier leaders (`last_leader`, `claimed`) they could have. A primary cut later in
    /// its lease is the same start with the renewals since then lost.
    fn failsafe_starts(&self) -> Vec<State> {
        let mut start = self.start();
        start.key = Some((0, 0));
        let primary = &mut start.nodes[0];
        primary.pg = Pg::Primary;
        primary.cut = true;
        primary.claimed = true;
        primary.last_leader = Some(0);
        self.arm(primary);
        let count = self.config.nodes;
        let memories: Vec<(Option<u8>, bool)> =
            (0..=count).flat_map(|leader| [false, true].map(|claimed| ((leader < count).then_some(leader as u8), claimed))).collect();
        let mut starts = vec![start];
        for m in 1..count {
            starts = starts
                .iter()
                .flat_map(|s| {
                    memories.iter().map(move |&(last_leader, claimed)| {
                        let mut t = *s;
                        t.nodes[m].last_leader = last_leader;
                        t.nodes[m].claimed = claimed;
                        t
                    })
                })
                .collect();
        }
        starts
    }

    fn active_nodes(&self) -> impl Iterator<Item = usize> {
        0..self.config.nodes
    }

    /// The node's fencer can act (it is not frozen together with its agent).
    fn fencer_runs(&self, node: &Node) -> bool {
        !(node.frozen && self.config.behaviour.fencer_in_agent_group)
    }

    /// `arm_fencer`: needs a postmaster and a deadline; otherwise the old arming stays.
    fn arm(&self, node: &mut Node) {
        if node.pg == Pg::Down {
            return;
        }
        if let (Some(left), Some(generation)) = (node.valid, node.lease) {
            let late = node.fencer.map_or(0, |f| if left == 0 { f.late } else { 0 });
            node.fencer = Some(Fence { left, late, generation: self.fence_generation(generation) });
        }
    }

    fn fence_generation(&self, generation: u8) -> u8 {
        if self.config.behaviour.fencer_rearmed_by_any_lease {
            ANY_LEASE
        } else {
            generation
        }
    }

    /// `Lease::renewed`: the deadline moves to the later of both, and an armed fencer
    /// follows (today for any lease; fixed, only for the lease it was armed for).
    fn renewed(&self, node: &mut Node, generation: u8, budget: u8) {
        node.lease = Some(generation);
        node.valid = Some(node.valid.map_or(budget, |v| v.max(budget)));
        if node.fencer.is_some_and(|f| f.generation == self.fence_generation(generation)) {
            self.arm(node);
        }
    }

    /// The renewal task sends a grant or keep-alive when it has none in flight.
    fn send(&self, s: &State, n: usize) -> Option<State> {
        let mut t = *s;
        let node = &mut t.nodes[n];
        if node.renewal.is_some() {
            return None;
        }
        let (kind, generation) = match node.lease {
            Some(g) => (Kind::KeepAlive, g),
            None => (Kind::Grant, free_generation(node, s.key.filter(|k| usize::from(k.0) == n).map(|k| k.1))?),
        };
        node.renewal = Some(Msg { kind, generation, answer: None, budget: self.config.budget() });
        Some(t)
    }

    /// One HA cycle on a fresh (linearizable) read of the leader key; while a
    /// confirmation round is in flight the HA loop waits for it.
    fn cycle(&self, s: &State, n: usize) -> Option<State> {
        let mut t = *s;
        let behaviour = self.config.behaviour;
        let failsafe = self.config.failsafe;
        let node = &mut t.nodes[n];
        if node.ha != Ha::Idle || node.round.is_some() {
            return None;
        }
        let valid = node.valid.filter(|v| *v > 0);
        if node.cut {
            self.store_unreachable(node, valid);
            return (t != *s).then_some(t);
        }
        if failsafe.on() {
            // Promise::saw, and Promise::unclaim when following another leader
            if let Some((k, _)) = s.key {
                node.last_leader = Some(k);
                if usize::from(k) != n {
                    node.claimed = false;
                }
            }
        }
        match s.key {
            Some((k, g)) if usize::from(k) == n && node.lease == Some(g) => match (valid, node.pg) {
                // be_primary
                (None, _) => fence_now(node),
                (Some(_), Pg::Primary) => self.arm(node),
                (Some(_), Pg::Replica) => {
                    self.arm(node);
                    node.pg = Pg::Primary;
                }
                (Some(_), Pg::Down) => {
                    // restart_in_place: today PostgreSQL starts, the fencer is armed after
                    node.pg = Pg::Primary;
                    if behaviour.writes_before_arming {
                        node.ha = Ha::Restarted;
                    } else {
                        self.arm(node);
                    }
                }
            },
            // demote_if_primary: the key is another node's, or on a lease this run does not own
            Some(_) if node.pg == Pg::Primary => fence_now(node),
            Some(_) => {
                node.fencer = None;
                if node.pg == Pg::Down {
                    node.pg = Pg::Replica;
                }
            }
            // race: start read-only first; then CAS on a live lease
            None => match (node.pg, node.lease, valid) {
                (Pg::Down, _, _) => node.pg = Pg::Replica,
                // Promise::active / Promise::claim: a member bound by its promise does not race
                (_, Some(_), Some(_)) if failsafe == Failsafe::On && node.promise.is_some() => return None,
                (_, Some(generation), Some(budget)) => {
                    node.ha = Ha::Racing;
                    node.claimed = failsafe.on();
                    node.cas = Some(Msg { kind: Kind::Cas, generation, answer: None, budget });
                }
                _ => return None,
            },
        }
        (t != *s).then_some(t)
    }

    /// `store_unreachable`: a primary (it published that it holds the key) fences itself
    /// once its deadline passed; in failsafe mode it asks every other member instead.
    fn store_unreachable(&self, node: &mut Node, valid: Option<u8>) {
        if node.pg != Pg::Primary {
            return;
        }
        match valid {
            None => fence_now(node),
            Some(_) if self.config.failsafe.on() => node.round = Some(Round { budget: self.config.budget(), confirmed: 0 }),
            Some(_) => {}
        }
    }

    /// Member `m` answers primary `p`'s request (`Promise::confirm`): a confirmation binds
    /// it for one ttl from now on its clock; a refusal fails the round.
    fn answer(&self, s: &State, m: usize, p: usize) -> Option<State> {
        let round = s.nodes[p].round.filter(|r| r.confirmed & (1 << m) == 0)?;
        let member = s.nodes[m];
        if m == p || member.frozen {
            return None;
        }
        let mut t = *s;
        let facts =
            Member { me: m as u8, claimed: member.claimed, runs_as_primary: member.pg == Pg::Primary, last_leader: member.last_leader };
        if failsafe::confirms(facts, p as u8) {
            t.nodes[m].promise = Some(Promise { to: p as u8, left: self.config.ttl });
            t.nodes[p].round = Some(Round { confirmed: round.confirmed | (1 << m), ..round });
        } else {
            t.nodes[p].round = None;
        }
        Some(t)
    }

    /// The primary stops waiting for its round (a member did not answer in time).
    fn unanswered(&self, s: &State, p: usize) -> Option<State> {
        let mut t = *s;
        t.nodes[p].round.take()?;
        Some(t)
    }

    /// Every other member confirmed: `Lease::extend` moves the deadline to the round's
    /// (if later) and re-arms a fencer armed for the lease, unless the deadline passed.
    fn extend(&self, s: &State, p: usize) -> Option<State> {
        let others = self.active_nodes().filter(|m| *m != p).fold(0u8, |mask, m| mask | (1 << m));
        let round = s.nodes[p].round.filter(|r| r.confirmed == others)?;
        let mut t = *s;
        let node = &mut t.nodes[p];
        node.round = None;
        if let (Some(generation), Some(_)) = (node.lease, node.valid.filter(|v| *v > 0)) {
            self.renewed(node, generation, round.budget);
        }
        Some(t)
    }

    /// After winning the key (promote) or restarting in place (arm).
    fn promote(&self, s: &State, n: usize) -> Option<State> {
        let mut t = *s;
        let writes_before_arming = self.config.behaviour.writes_before_arming;
        let node = &mut t.nodes[n];
        match node.ha {
            Ha::Won(generation) => {
                // arm_fencer, then PostgreSQL leaves recovery (fails if it is down);
                // fixed: only on the lease the key is on, while its deadline is ahead
                if writes_before_arming || (node.lease == Some(generation) && node.valid.is_some_and(|v| v > 0)) {
                    self.arm(node);
                    if node.pg == Pg::Replica {
                        node.pg = Pg::Primary;
                    }
                }
            }
            Ha::Restarted => self.arm(node),
            Ha::Idle | Ha::Racing => return None,
        }
        node.ha = Ha::Idle;
        Some(t)
    }

    fn fence(&self, s: &State, n: usize) -> Option<State> {
        let node = s.nodes[n];
        if !self.fencer_runs(&node) || node.fencer.is_none_or(|f| f.left > 0) {
            return None;
        }
        let mut t = *s;
        fence_now(&mut t.nodes[n]);
        Some(t)
    }

    /// The store serves a request; the answer starts its way back.
    fn serve(&self, s: &State, n: usize, channel: Channel) -> Option<State> {
        let mut t = *s;
        let ttl = self.config.ttl;
        let renews_expired = self.config.behaviour.store_renews_expired_lease;
        let node = &mut t.nodes[n];
        if node.cut {
            return None;
        }
        let msg = msg_mut(node, channel).filter(|m| m.answer.is_none())?;
        let lease = node.leases.iter().position(|l| l.is_some_and(|l| l.generation == msg.generation));
        let ok = match msg.kind {
            Kind::Grant => {
                let free = node.leases.iter().position(Option::is_none)?;
                node.leases[free] = Some(StoreLease { generation: msg.generation, left: ttl, revoking: false });
                true
            }
            Kind::KeepAlive => match lease.and_then(|i| node.leases[i].as_mut()) {
                Some(l) if (l.left > 0 && !l.revoking) || renews_expired => {
                    l.left = ttl;
                    true
                }
                _ => false,
            },
            Kind::Cas => {
                let won = s.key.is_none() && lease.is_some();
                if won {
                    t.key = Some((n as u8, msg.generation));
                }
                won
            }
        };
        let node = &mut t.nodes[n];
        *msg_mut(node, channel) = Some(Msg { answer: Some(ok), ..msg });
        node.leases.sort_by(|a, b| a.is_none().cmp(&b.is_none()).then(a.cmp(b)));
        Some(t)
    }

    /// The sender receives the answer.
    fn receive(&self, s: &State, n: usize, channel: Channel) -> Option<State> {
        let mut t = *s;
        let node = &mut t.nodes[n];
        let msg = msg_mut(node, channel).take()?;
        let ok = msg.answer?;
        if node.frozen {
            return None;
        }
        match (msg.kind, ok) {
            (Kind::Cas, true) => node.ha = Ha::Won(msg.generation),
            (Kind::Cas, false) => {
                node.ha = Ha::Idle;
                node.claimed = false;
            }
            (_, true) => self.renewed(node, msg.generation, msg.budget),
            (_, false) => {
                // Lease::lost: the fencer keeps its arming
                node.lease = None;
                node.valid = None;
            }
        }
        Some(t)
    }

    /// The request or its answer is lost; the sender gives up.
    fn lose(&self, s: &State, n: usize, channel: Channel) -> Option<State> {
        let mut t = *s;
        lose(&mut t.nodes[n], channel)?;
        Some(t)
    }

    fn expire(&self, s: &State, n: usize, slot: usize) -> Option<State> {
        let lease = s.nodes[n].leases[slot].filter(|l| l.left == 0 && !l.revoking)?;
        let mut t = *s;
        t.nodes[n].leases[slot] = Some(StoreLease { revoking: true, ..lease });
        Some(t)
    }

    fn revoke(&self, s: &State, n: usize, slot: usize) -> Option<State> {
        let lease = s.nodes[n].leases[slot].filter(|l| l.revoking)?;
        let mut t = *s;
        let node = &mut t.nodes[n];
        node.leases[slot] = None;
        node.leases.sort_by(|a, b| a.is_none().cmp(&b.is_none()).then(a.cmp(b)));
        if t.key == Some((n as u8, lease.generation)) {
            t.key = None;
        }
        Some(t)
    }

    /// The confirmation rounds' steps.
    fn failsafe_steps(&self, s: &State, out: &mut Vec<(Action, State)>) {
        for n in self.active_nodes() {
            let id = n as u8;
            for m in self.active_nodes() {
                if let Some(t) = self.answer(s, m, n) {
                    out.push((Action::Answer(m as u8, id), t));
                }
            }
            if let Some(t) = self.unanswered(s, n) {
                out.push((Action::Unanswered(id), t));
            }
            if s.nodes[n].frozen {
                continue;
            }
            if let Some(t) = self.extend(s, n) {
                out.push((Action::Extend(id), t));
            }
        }
    }

    /// Real time advances; `advance[n]` is how far node n's clock moves.
    fn tick(&self, s: &State, advance: &[u8; MAX_NODES]) -> State {
        let latency = self.config.fence_latency;
        let mut t = *s;
        for n in self.active_nodes() {
            let a = advance[n];
            let node = &mut t.nodes[n];
            node.skew += a as i8 - 1;
            if let Some(v) = &mut node.valid {
                *v = v.saturating_sub(a);
            }
            if let Some(f) = &mut node.fencer {
                if f.left == 0 {
                    f.late = (f.late + 1).min(latency);
                }
                f.left = f.left.saturating_sub(a);
            }
            for channel in [Channel::Renewal, Channel::Cas] {
                if let Some(m) = msg_mut(node, channel) {
                    m.budget = m.budget.saturating_sub(a);
                    if m.budget == 0 {
                        lose(node, channel);
                    }
                }
            }
            for l in node.leases.iter_mut().flatten() {
                l.left = l.left.saturating_sub(1);
            }
            node.promise = node.promise.map(|p| Promise { left: p.left.saturating_sub(a), ..p }).filter(|p| p.left > 0);
            node.round = node.round.map(|r| Round { budget: r.budget.saturating_sub(a), ..r }).filter(|r| r.budget > 0);
        }
        t
    }

    /// Real time may advance unless some running fencer is already `fence_latency` late.
    fn may_tick(&self, s: &State) -> bool {
        self.active_nodes().all(|n| {
            let node = &s.nodes[n];
            !self.fencer_runs(node) || node.fencer.is_none_or(|f| f.left > 0 || f.late < self.config.fence_latency)
        })
    }

    /// Every combination of clock advances (0, 1 or 2 ticks) that keeps the skews in bounds.
    fn advances(&self, s: &State) -> Vec<[u8; MAX_NODES]> {
        let mut all = vec![[0u8; MAX_NODES]];
        for n in self.active_nodes() {
            let skew = i16::from(s.nodes[n].skew);
            let bound = i16::from(self.config.max_skew);
            let options: Vec<u8> = (0..=2u8).filter(|a| (skew + i16::from(*a) - 1).abs() <= bound).collect();
            all = all.iter().flat_map(|prefix| options.iter().map(move |a| with(*prefix, n, *a))).collect();
        }
        all
    }
}

fn with(mut advance: [u8; MAX_NODES], n: usize, a: u8) -> [u8; MAX_NODES] {
    advance[n] = a;
    advance
}

/// A generation no lease, message, fencer, HA step or the leader key (`key`, if this
/// node's) of the node refers to.
fn free_generation(node: &Node, key: Option<u8>) -> Option<u8> {
    let used = |g: u8| {
        key == Some(g)
            || node.lease == Some(g)
            || node.leases.iter().flatten().any(|l| l.generation == g)
            || [node.renewal, node.cas].iter().flatten().any(|m| m.generation == g)
            || node.fencer.is_some_and(|f| f.generation == g)
            || node.ha == Ha::Won(g)
    };
    (0..GENERATIONS).find(|g| !used(*g))
}

/// The node with its generations renumbered 0, 1, ... in the order of first mention
/// (the leases in the store by what else they are, then by generation), and the key's
/// generation (`key`, if the node holds it) renamed along.
fn renumber(node: &Node, key: Option<u8>) -> (Node, Option<u8>) {
    fn mention(order: &mut Vec<u8>, g: u8) {
        if g != ANY_LEASE && !order.contains(&g) {
            order.push(g);
        }
    }
    let mut order: Vec<u8> = Vec::with_capacity(usize::from(GENERATIONS));
    let won = match node.ha {
        Ha::Won(g) => Some(g),
        _ => None,
    };
    let messages = [node.renewal, node.cas].into_iter().flatten().map(|m| m.generation);
    for g in node.lease.into_iter().chain(key).chain(won).chain(node.fencer.map(|f| f.generation)).chain(messages) {
        mention(&mut order, g);
    }
    let mut stored: Vec<StoreLease> = node.leases.iter().flatten().copied().collect();
    stored.sort_by_key(|l| (order.iter().position(|g| *g == l.generation).unwrap_or(usize::MAX), l.left, l.revoking));
    for l in stored {
        mention(&mut order, l.generation);
    }
    let rename = |g: u8| if g == ANY_LEASE { g } else { order.iter().position(|o| *o == g).map_or(g, |i| i as u8) };
    let mut t = *node;
    t.lease = node.lease.map(rename);
    if let Ha::Won(g) = node.ha {
        t.ha = Ha::Won(rename(g));
    }
    if let Some(f) = &mut t.fencer {
        f.generation = rename(f.generation);
    }
    for m in [&mut t.renewal, &mut t.cas].into_iter().flatten() {
        m.generation = rename(m.generation);
    }
    for l in t.leases.iter_mut().flatten() {
        l.generation = rename(l.generation);
    }
    t.leases.sort_by(|a, b| a.is_none().cmp(&b.is_none()).then(a.cmp(b)));
    (t, key.map(rename))
}

/// The node with its references to other nodes renamed (`renamed[old] = new`).
fn rename_nodes(node: &Node, renamed: &[u8; MAX_NODES]) -> Node {
    let mut t = *node;
    t.last_leader = node.last_leader.map(|n| renamed[usize::from(n)]);
    if let Some(p) = &mut t.promise {
        p.to = renamed[usize::from(p.to)];
    }
    if let Some(r) = &mut t.round {
        r.confirmed = (0..MAX_NODES).filter(|n| r.confirmed & (1 << n) != 0).fold(0, |mask, n| mask | (1 << renamed[n]));
    }
    t
}

/// `fence_now`: disarm, kill PostgreSQL.
fn fence_now(node: &mut Node) {
    node.fencer = None;
    node.pg = Pg::Down;
}

/// The message on `channel` is lost and its sender stops waiting. A lost grant answer
/// leaves a lease nobody knows the id of: it is dropped from the store at once (it could
/// only expire; no key is ever put on it).
fn lose(node: &mut Node, channel: Channel) -> Option<()> {
    let msg = msg_mut(node, channel).take()?;
    match msg.kind {
        Kind::Cas => {
            node.ha = Ha::Idle;
            node.claimed = false;
        }
        Kind::Grant if msg.answer.is_some() => {
            for l in &mut node.leases {
                if l.is_some_and(|l| l.generation == msg.generation) {
                    *l = None;
                }
            }
            node.leases.sort_by(|a, b| a.is_none().cmp(&b.is_none()).then(a.cmp(b)));
        }
        Kind::Grant | Kind::KeepAlive => {}
    }
    Some(())
}

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn initial(&self) -> Vec<State> {
        if self.config.failsafe.on() {
            return self.failsafe_starts();
        }
        vec![self.start()]
    }

    fn successors(&self, s: &State, out: &mut Vec<(Action, State)>) {
        let c = &self.config;
        if self.may_tick(s) {
            for advance in self.advances(s) {
                out.push((Action::Tick(advance), self.tick(s, &advance)));
            }
        }
        type Step = fn(&LeaseModel, &State, usize) -> Option<State>;
        type ChannelStep = fn(&LeaseModel, &State, usize, Channel) -> Option<State>;
        for n in self.active_nodes() {
            let id = n as u8;
            let node = &s.nodes[n];
            if c.behaviour.fencer_in_agent_group {
                let mut t = *s;
                t.nodes[n].frozen = !node.frozen;
                out.push((if node.frozen { Action::Thaw(id) } else { Action::Freeze(id) }, t));
            }
            let mut steps: Vec<(Step, Action)> = vec![(Self::fence, Action::Fence(id))];
            if !node.frozen {
                let after_race = if matches!(node.ha, Ha::Won(_)) { Action::Promote(id) } else { Action::Arm(id) };
                steps.extend([(Self::send as Step, Action::Send(id)), (Self::cycle, Action::Cycle(id)), (Self::promote, after_race)]);
            }
            for (step, action) in steps {
                if let Some(t) = step(self, s, n) {
                    out.push((action, t));
                }
            }
            for channel in [Channel::Renewal, Channel::Cas] {
                let steps: [(ChannelStep, Action); 3] = [
                    (Self::serve, Action::Serve(id, channel)),
                    (Self::receive, Action::Receive(id, channel)),
                    (Self::lose, Action::Lose(id, channel)),
                ];
                for (step, action) in steps {
                    if let Some(t) = step(self, s, n, channel) {
                        out.push((action, t));
                    }
                }
            }
            for slot in 0..2 {
                for (step, action) in [
                    (Self::expire as fn(&Self, &State, usize, usize) -> Option<State>, Action::Expire(id, slot as u8)),
                    (Self::revoke, Action::Revoke(id, slot as u8)),
                ] {
                    if let Some(t) = step(self, s, n, slot) {
                        out.push((action, t));
                    }
                }
            }
        }
        if c.failsafe.on() {
            self.failsafe_steps(s, out);
        }
        if c.store_leader_changes {
            let mut t = *s;
            for n in self.active_nodes() {
                for l in t.nodes[n].leases.iter_mut().flatten() {
                    l.left = c.ttl;
                }
            }
            if t != *s {
                out.push((Action::StoreLeaderChange, t));
            }
        }
    }

    /// Nodes are alike, and so are lease generations: generations are renumbered in
    /// the order the node refers to them, then nodes are sorted, with the leader key's
    /// holder and the nodes' references to each other (failsafe) renamed along.
    fn canonical(&self, s: &State) -> State {
        let mut s = *s;
        for n in self.active_nodes() {
            let key = s.key.filter(|k| usize::from(k.0) == n).map(|k| k.1);
            let (node, key) = renumber(&s.nodes[n], key);
            s.nodes[n] = node;
            if let Some(g) = key {
                s.key = Some((n as u8, g));
            }
        }
        let s = &s;
        let mut order: Vec<usize> = self.active_nodes().collect();
        let holds = |n: usize| s.key.is_some_and(|k| usize::from(k.0) == n);
        order.sort_by_key(|&n| (s.nodes[n], holds(n)));
        let mut renamed = [0u8; MAX_NODES];
        for (to, &from) in order.iter().enumerate() {
            renamed[from] = to as u8;
        }
        let mut t = *s;
        for (to, &from) in order.iter().enumerate() {
            t.nodes[to] = rename_nodes(&s.nodes[from], &renamed);
            if holds(from) {
                t.key = s.key.map(|(_, g)| (to as u8, g));
            }
        }
        t
    }

    fn violation(&self, s: &State) -> Option<&'static str> {
        let primaries = self.active_nodes().filter(|n| s.nodes[*n].pg == Pg::Primary).count();
        (primaries > 1).then_some("two nodes accept writes")
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = |m: Option<Msg>| match m {
            None => String::new(),
            Some(m) => format!(" {:?}g{}{} b{}", m.kind, m.generation, m.answer.map_or("→store".into(), |ok| format!("←{ok}")), m.budget),
        };
        for (n, node) in self.nodes.iter().enumerate().take(usize::from(self.count)) {
            write!(f, "n{n}[{:?} {:?} lease {:?} valid {:?} skew {}", node.pg, node.ha, node.lease, node.valid, node.skew)?;
            if let Some(fence) = node.fencer {
                write!(f, " fencer {}+{} g{}", fence.left, fence.late, fence.generation)?;
            }
            write!(f, "{}{}{}", msg(node.renewal), msg(node.cas), if node.frozen { " FROZEN" } else { "" })?;
            if self.nodes.iter().any(|n| n.cut || n.last_leader.is_some()) {
                write!(f, " {}claimed {} last_leader {:?}", if node.cut { "CUT " } else { "" }, node.claimed, node.last_leader)?;
                if let Some(p) = node.promise {
                    write!(f, " promised n{} for {}", p.to, p.left)?;
                }
                if let Some(r) = node.round {
                    write!(f, " round b{} confirmed {:b}", r.budget, r.confirmed)?;
                }
            }
            write!(f, " store")?;
            for l in node.leases.iter().flatten() {
                write!(f, " g{}:{}{}", l.generation, l.left, if l.revoking { "R" } else { "" })?;
            }
            write!(f, "] ")?;
        }
        write!(f, "key {:?}", self.key)
    }
}
