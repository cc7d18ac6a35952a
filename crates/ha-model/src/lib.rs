//! A model check of raftgres's HA protocol (issue 15 item 5): across every interleaving
//! of the agents, their fencers, the store and the network, with bounded clock skew,
//! **(a) at most one node runs PostgreSQL as a primary (accepts writes) at any instant**
//! (with and without failsafe mode), and **(b) in synchronous mode every acknowledged
//! commit is on any node that promotes**.
//!
//! `checker` is a small explicit-state breadth-first checker (shortest counterexample,
//! symmetry reduction, state counts); `lease` is the model of (a), with `failsafe` its
//! failsafe-mode parts; `synchronous` is the model of (b). The tests in `tests/lease.rs`
//! and `tests/synchronous.rs` run them and print the states explored (`--nocapture`). Why not `stateright`: it has no optional features, so it always builds its web
//! explorer (`tiny_http`), `dashmap`, `parking_lot` and a second `rand` major version;
//! the model needs only a BFS with traces, about 150 lines here, whose state counts and
//! replayed traces we control.
//!
//! # Time and clocks
//! Time is discrete: a `Tick` advances real time (the store leader's clock) by one tick.
//! Between ticks any number of instantaneous actions interleave in any order. Each node's
//! clock (its agent, lease task and fencer share `CLOCK_MONOTONIC`) advances 0, 1 or 2
//! ticks per real tick, chosen by the adversary, as long as the node's offset from real
//! time stays within ±`max_skew` ticks. So an interval the node measures as `d` lasts
//! between `d − 2·max_skew` and `d + 2·max_skew` real ticks: an over-approximation of a
//! rate drift ρ with `2·max_skew ≥ ρ·ttl` (more adversarial on short intervals).
//!
//! # What is modelled (actions)
//! - **Renewal task** (`Send`, `Receive`): with no request in flight it sends a grant (no
//!   lease) or keep-alive. An OK answer moves the write deadline to the later of the old
//!   one and *send time* + `ttl − safety_margin` (on the node's clock), and re-arms an
//!   armed fencer; "lease gone" forgets lease and deadline (the fencer keeps its arming).
//!   Renewal interval and `retry_timeout` matter only for liveness: the task may send or
//!   give up at any time (a timeout is a `Lose`).
//! - **HA loop** (`Cycle`, `Promote`, `Arm`): one cycle reads the leader key
//!   (linearizably) and acts as `ha/mod.rs` `decide` does: holding the key on its own
//!   lease → fence itself if the deadline passed, else arm the fencer, promote a
//!   replica, or restart PostgreSQL in place; the key is someone else's (or on a lease
//!   this run does not own) → stop a primary at once (`fence_now`), else disarm and run
//!   as replica; no key → start PostgreSQL read-only if it is down, else race with a CAS
//!   on its lease while the deadline is ahead. After winning, `Promote` arms the fencer
//!   and promotes. No HA step is ever forced: an agent may be arbitrarily slow or
//!   stopped between any two steps (a SIGSTOP of the agent alone is this).
//! - **Fencer** (`Fence`): armed with (deadline, postmaster); once the deadline passed on
//!   its node's clock it must kill PostgreSQL within `fence_latency` ticks: real time
//!   cannot advance further until it did. With `fencer_in_agent_group`, `Freeze`/`Thaw`
//!   stop and resume agent and fencer together (a process-group SIGSTOP), and a frozen
//!   fencer is not forced; PostgreSQL runs on (its own session).
//! - **Store** (`Serve`, `Expire`, `Revoke`, `StoreLeaderChange`): a linearizable KV
//!   with the leader key and leases. A grant creates a lease with a full TTL; a
//!   keep-alive resets it to a full TTL; the CAS takes the key if free and the lease
//!   exists. A lease whose TTL ran out is seen expired (`Expire`, queues the revoke) and
//!   later revoked (`Revoke`, deletes the lease and the key on it), so a request can be
//!   served in between. A new store leader gives every lease a full TTL.
//! - **Network** (`Lose`): requests and answers are delivered after any delay or lost; a
//!   message whose deadline budget ran out on the sender's clock is gone (its answer
//!   could only set a deadline already passed).
//!
//! - **Failsafe mode** (`Config::failsafe`, module `failsafe`; `Answer`, `Unanswered`,
//!   `Extend`): the check starts when the primary (node 0, key on its just-renewed lease,
//!   fencer armed) is cut from the store, for good; the other nodes are replicas with
//!   every memory of earlier leaders they could have (`last_leader`, `claimed`). A cut
//!   node's requests are never served and its cycle is `store_unreachable`: past its
//!   deadline it fences itself, else it starts a confirmation round (its HA loop waits for
//!   it) whose extension is `ttl − safety_margin` from the send, on its clock. A member
//!   answers (at any time after the send, while not frozen) by the agent's
//!   `confirmation` rule: a confirmation promises, for `ttl` on the member's clock, not
//!   to race; a refusal fails the round. With every member's confirmation the primary
//!   extends its deadline and re-arms its fencer (`Lease::extend`), unless its deadline
//!   already passed. Members race as before, except while a promise lasts; while
//!   `claimed` (racing, or won the key and seen no other leader since) they confirm
//!   nobody. Two nodes: 67 thousand states. `Failsafe::PromiseBroken` (a mutation) lets a member race despite its
//!   promise: the check then finds two writers, so it can fail.
//!
//! # What is abstracted away
//! PostgreSQL is three states (replica, primary, down): "accepts writes" = primary; a
//! promotion or start is instantaneous (a slow one is a delay before the step). No
//! switchover, pause, member keys, health comparisons between
//! candidates (any replica with a live lease may race: more behaviours, not fewer),
//! explicit lease revokes by clients, agent crashes (the fencer fences at once then). A
//! grant answer that is lost leaves a lease nobody knows: it is dropped from the store.
//! Lease ids are (node, small generation), renumbered canonically; nodes are symmetric.
//! Failsafe: checked with two nodes (three exceed the time budget: over 10 million
//! states), one cut that never heals (a healed primary renews or learns its lease is
//! gone, which the model without failsafe covers), `retry_timeout` not modelled (a
//! member may answer any time before the round's budget runs out: more behaviours; the
//! deadline check in `Lease::extend` is what bounds the answers, so R3 of SAFETY.md
//! matters for liveness here, not for one writer). The promise is measured on the
//! member's clock and the extension on the primary's, so with skew both drift: the
//! model's bound would be `safety_margin > fence_latency + 4·max_skew`; the failsafe
//! check runs without skew (the skewed lease check alone takes half the time budget).
//!
//! # The timing inequality
//! A keep-alive sent at real time `t` is accepted at or after `t`, so the store cannot
//! expire the lease before `t + ttl`; the primary's fencer kills PostgreSQL by
//! `t + (ttl − margin) + 2·skew + latency`. The model is safe exactly when
//!
//! ```text
//!     safety_margin  >  fence_latency + 2 · max_skew        (Config::timing_is_safe)
//! ```
//!
//! and the tests show both sides: with the rule met no two-writer state is reachable;
//! with `safety_margin` one tick short (of the latency, or of the skew share) the checker
//! finds a trace. `timing.rs` checks only `safety_margin ≥ FENCE_LATENCY` (100 ms, for a
//! fencer that polls every 20 ms): the 80 ms between must cover the clock drift over a
//! TTL, which it does for ordinary clocks (500 ppm × 2 s = 1 ms), but not for every `ttl`
//! it accepts (500 ppm × 3600 s = 1.8 s).
//!
//! # Behaviours in question
//! `lease::Behaviour` switches each of today's behaviours the model found or was asked
//! about (items of issue 16) on or off; `Behaviour::FIXED` is the protocol that checks
//! safe, `Behaviour::BEFORE_FIXES` the agent as it was when the model was written (its
//! findings are fixed in the agent since).

//! # Synchronous mode (`synchronous`)
//! A separate model, not a flag of `lease`: joined with the lease model's clocks and
//! messages it would exceed the time budget by far, and (b) needs (a) only as an
//! assumption, which `lease` checks. So the lease protocol is two facts here: one node
//! runs as primary at a time, and a primary is fenced before its key is free (`Fail`
//! does both at once); a node takes the key only while it is free.
//!
//! What is modelled: three nodes, commits numbered in order of creation, a WAL a set of
//! them (in id order); a primary commits, a replica whose WAL is a prefix of the
//! primary's streams its next commit, a diverged one is rewound to the common prefix,
//! replicas crash and start, the primary fails. A commit is acknowledged once a standby
//! `synchronous_standby_names` waits for (`'*'`: any streaming one; `FIRST 1 (s)`: s, if
//! it streams) has it; a primary acknowledges only its own commits. Each HA cycle reads
//! the key, `/sync` and `/history` (`Read`) and acts later on that view: racing only when
//! `sync_allows` (strict mode: `/sync`'s leader unless `/history` names a newer primary,
//! or a listed standby) let it, then writing `/sync` = {me, none} by compare-and-swap on
//! the revision read (a failed one postpones the promotion to a later cycle), promoting,
//! and appending itself to `/history` (a separate step). The primary does one
//! `manage_sync` step per cycle, wanting no standby or any one streaming now (`choose`
//! picks among those): shrink `/sync`, then set `synchronous_standby_names` (`'*'` for
//! none), then grow `/sync` with the standby PostgreSQL reports `sync` (in the names and
//! streaming, whether or not it has caught up: PostgreSQL's walsender reports a standby
//! streaming once it has *sent* everything, not once the standby flushed it).
//!
//! Abstracted away: `synchronous_node_count` > 1, the non-strict mode (its fallback to
//! asynchronous replication acknowledges commits no standby has, by design), maximum lag,
//! `nosync` tags and health comparisons (more candidates race: more behaviours), a
//! deposed primary's late `/sync` write (compare-and-swap makes it fail once anyone
//! wrote since), switching synchronous mode off (its `/sync` delete is not a
//! compare-and-swap: a known gap, SAFETY.md). Bounds: three nodes, one commit, nodes
//! symmetric.
//!
//! `SyncBehaviour::BEFORE_FIXES` (the agent when this model was written; both are fixed
//! in the agent now, see below) loses an acknowledged commit in two ways the check found:
//! a promotion postponed by a failed `/sync` write goes ahead in a later cycle without
//! asking `sync_allows` again (`be_primary` promotes a replica holding the key), and
//! `/sync` grows with a standby that has not yet the commits `'*'` acknowledged before it
//! was named. `SyncBehaviour::FIXED` (the promotion's `/sync` write replaces only a
//! `/sync` that allows this node; a standby joins `/sync` only once it has every commit
//! the primary had when it was named) checks safe. Mutations that must fail: any replica
//! may race; promote without writing `/sync` (issue 16 item 6 before its fix).
//!
//! # Why the agent's rules are re-stated, not called
//! `sync_allows` and `confirmation` live in the agent crate, which pulls tokio, tonic and
//! the rest into anything that depends on it, and take the agent's `ClusterView` and
//! `Local`; the model re-states them on its own facts (`synchronous::SyncModel::sync_allows`,
//! `failsafe::confirms`). Moving them with the types they read to a small leaf crate
//! would let both use one definition.

pub mod checker;
pub mod failsafe;
pub mod lease;
pub mod synchronous;
