//! The safety rules of `decide`, checked on random observations (a fixed seed, so a
//! failure repeats; the failing observation is printed):
//!
//! 1. Promote, Lead and HandOver only while holding the key on our own lease before its
//!    write deadline; Race only for a free key on a lease before its deadline;
//!    ClaimKeyPaused only while paused, for a running primary, on a live lease, for a
//!    free key or this node's own.
//! 2. PostgreSQL that may run as a primary (`may_run_as_primary`) while this node does
//!    not hold the key on its own lease is demoted or fenced, or races to take the key
//!    back (and is demoted if it loses) — unless the store cannot be read (a primary
//!    keeps writing until its deadline), the cluster is paused (the operator said so),
//!    or it is not this cluster's data (no `/initialize`, another system identifier).
//! 3. No promotion (Promote, Race to promote) from a timeline older than the cluster's
//!    newest (`/history`, the members' keys).
//! 4. No data lost to the agent itself: a data directory is removed (Reclone) only with
//!    `remove_data_directory_on_rewind_failure`, and initdb never runs over a data
//!    directory that holds something other than a PostgreSQL cluster.
//! 5. In synchronous mode, no promotion (Promote, Race to promote) of a node the current
//!    `/sync` does not allow (`sync_allows`): it may lack acknowledged commits.
//! 6. In a standby cluster nothing runs as a primary: no Promote, Lead, HandOver or
//!    ordinary Race; the standby leader's actions (LeadStandby, StartStandbyLeader) only
//!    on our key and a live lease, RaceStandby only for a free key on a live lease.

use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::cluster::{ClusterStatus, FailoverRequest, HistoryEntry, LeaderKey, SyncState};
use crate::ha::election::PeerReport;
use crate::ha::failsafe::Promised;
use crate::ha::observation::{ControlFacts, LeaseFacts, StepDown};
use crate::state::Step;

const SYSID: &str = "7300000000000000001";
const NAMES: [&str; 3] = ["n1", "n2", "n3"];
const CASES: usize = 100_000;

fn pick<T: Clone>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())].clone()
}

fn maybe<T>(rng: &mut StdRng, f: impl FnOnce(&mut StdRng) -> T) -> Option<T> {
    rng.gen_bool(0.5).then(|| f(rng))
}

fn role(rng: &mut StdRng) -> Role {
    pick(rng, &[Role::Primary, Role::Replica, Role::Uninitialized])
}

fn timeline(rng: &mut StdRng) -> u32 {
    rng.gen_range(1..=4)
}

fn member(rng: &mut StdRng, port: u16) -> Member {
    Member {
        conn_url: if rng.gen_bool(0.9) { format!("postgres://127.0.0.1:{port}/postgres") } else { "bad".into() },
        state: pick(rng, &["running", "running", "running", "starting", "stopped"]).into(),
        role: pick(rng, &[Role::Replica, Role::Replica, Role::Primary, Role::Uninitialized]),
        timeline: maybe(rng, timeline),
        xlog_location: Some(rng.gen_range(0..10_000)),
        replication_state: maybe(rng, |_| "streaming".into()),
        ..Default::default()
    }
}

fn failover(rng: &mut StdRng, now: SystemTime) -> Option<FailoverRequest> {
    rng.gen_bool(0.3).then(|| FailoverRequest {
        leader: rng.gen_bool(0.3).then(|| pick(rng, &NAMES).into()),
        member: maybe(rng, |r| pick(r, &["n1", "n2", "n3", "n3"]).into()),
        scheduled_at: maybe(rng, |r| {
            let at = now + Duration::from_secs(30) - Duration::from_secs(r.gen_range(0..120u64));
            humantime::format_rfc3339(at).to_string()
        }),
    })
}

fn view(rng: &mut StdRng, now: SystemTime) -> ClusterView {
    let mut v = ClusterView {
        initialize: pick(
            rng,
            &[
                None,
                Some(String::new()),
                Some(SYSID.to_string()),
                Some(SYSID.to_string()),
                Some(SYSID.to_string()),
                Some(SYSID.to_string()),
            ],
        ),
        leader: maybe(rng, |r| LeaderKey { name: pick(r, &["n1", "n1", "n2", "n3"]).into(), lease: pick(r, &[7, 7, 99]), mod_revision: 1 }),
        history: (1..rng.gen_range(1..=4)).map(|t| HistoryEntry(t, 0, String::new(), String::new(), pick(rng, &NAMES).into())).collect(),
        status: maybe(rng, |r| ClusterStatus { optime: r.gen_range(0..20_000_000), ..Default::default() }),
        sync: maybe(rng, |r| {
            let standby = maybe(r, |r| pick(r, &["n1", "n2", "n3", "n1,n3"]).to_string());
            (SyncState { leader: maybe(r, |r| pick(r, &NAMES).into()), sync_standby: standby }, 1)
        }),
        failover: failover(rng, now),
        config: rng.gen_bool(0.05).then(|| (serde_json::json!({"pause": true}), 1)),
        ..Default::default()
    };
    for (i, name) in NAMES.iter().enumerate() {
        if rng.gen_bool(0.8) {
            v.members.insert((*name).into(), member(rng, 5001 + i as u16));
        }
    }
    v
}

fn pg(rng: &mut StdRng) -> PgStatus {
    let state = pick(
        rng,
        &[
            PgState::Running,
            PgState::Running,
            PgState::Starting,
            PgState::Stopped,
            PgState::Crashed,
            PgState::Hung,
            PgState::InStep(Step::Rewinding),
        ],
    );
    PgStatus {
        state,
        role: role(rng),
        timeline: maybe(rng, timeline),
        wal_lsn: maybe(rng, |r| r.gen_range(0..10_000)),
        receive_lsn: maybe(rng, |r| r.gen_range(0..10_000)),
        replay_lsn: maybe(rng, |r| r.gen_range(0..10_000)),
        replication_state: maybe(rng, |_| "streaming".into()),
        system_identifier: pick(
            rng,
            &[None, Some(SYSID.to_string()), Some(SYSID.to_string()), Some(SYSID.to_string()), Some("1".to_string())],
        ),
        ..Default::default()
    }
}

fn observation(rng: &mut StdRng, now: Instant) -> Observation {
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let at = |r: &mut StdRng| now + Duration::from_millis(r.gen_range(0..4000)) - Duration::from_millis(1000);
    let view = if rng.gen_bool(0.05) { Err("timeout".to_string()) } else { Ok(view(rng, wall)) };
    let lease_id = rng.gen_bool(0.9).then_some(7);
    let leader_lease = view.as_ref().ok().and_then(|v| v.leader.as_ref()).map(|l| l.lease);
    Observation {
        now,
        wall,
        view,
        pg: pg(rng),
        postmaster: maybe(rng, |_| 100),
        standby_configured: rng.gen_bool(0.5),
        data_dir: pick(rng, &[DataDir::Valid, DataDir::Valid, DataDir::Valid, DataDir::Empty, DataDir::Invalid]),
        control: maybe(rng, |r| {
            if r.gen_bool(0.9) {
                Ok(ControlFacts { system_identifier: SYSID.into(), timeline: timeline(r), was_primary: r.gen_bool(0.5) })
            } else {
                Err("unreadable".into())
            }
        }),
        fresh_clone: rng.gen_bool(0.1),
        lease: LeaseFacts {
            id: lease_id,
            valid_until: rng.gen_bool(0.8).then(|| at(rng)),
            owns_leader_key: lease_id.is_some() && leader_lease == lease_id,
        },
        published_holder: rng.gen_bool(0.5),
        liveness: pick(
            rng,
            &[Verdict::Healthy, Verdict::Healthy, Verdict::Suspect { failures: 1 }, Verdict::Hung { failing_for: Duration::from_secs(6) }],
        ),
        promised: rng.gen_bool(0.1).then(|| Promised { primary: "n2".into() }),
        peers: (0..rng.gen_range(0..3))
            .map(|i| PeerReport {
                name: NAMES[i + 1].into(),
                running: rng.gen_bool(0.8),
                primary: rng.gen_bool(0.2),
                wal_position: rng.gen_range(0..10_000),
                timeline: maybe(rng, timeline),
                nofailover: rng.gen_bool(0.1),
                priority: rng.gen_range(0..3),
                stands_aside: rng.gen_bool(0.1),
            })
            .collect(),
        stall: pick(rng, &[StallRemedy::Wait, StallRemedy::Wait, StallRemedy::Restart, StallRemedy::Reclone]),
    }
}

fn memory(rng: &mut StdRng, now: Instant) -> Memory {
    let ago = |r: &mut StdRng| now - Duration::from_secs(r.gen_range(0..400));
    Memory {
        expect_running: rng.gen_bool(0.5),
        primary_down_since: maybe(rng, ago),
        last_in_sync: maybe(rng, ago),
        needs_rewind: rng.gen_bool(0.3),
        unrecorded_sysid: rng.gen_bool(0.1).then(|| SYSID.into()),
        replica_crashes: rng.gen_range(0..7),
        crash_rewound: rng.gen_bool(0.3),
        rewound_onto: maybe(rng, timeline),
        last_start: maybe(rng, ago),
        restarts_in_place: (0..rng.gen_range(0..4)).map(|_| ago(rng)).collect(),
        stepped_down: rng.gen_bool(0.1).then(|| (ago(rng), pick(rng, &[StepDown::Hung, StepDown::CrashLoop]))),
    }
}

fn config(rng: &mut StdRng) -> DynamicConfig {
    DynamicConfig {
        synchronous_mode: rng.gen_bool(0.4),
        synchronous_mode_strict: rng.gen_bool(0.3),
        failsafe_mode: rng.gen_bool(0.3),
        primary_start_timeout: pick(rng, &[0, 300]),
        standby_cluster: rng.gen_bool(0.2).then(|| crate::standby::StandbyCluster { host: Some("10.9.0.1".into()), ..Default::default() }),
        ..DynamicConfig::default()
    }
}

fn policy(rng: &mut StdRng) -> Policy {
    let mut p = Policy { me: "n1".into(), scope: "demo".into(), remove_data_on_rewind_failure: rng.gen_bool(0.5), ..Policy::default() };
    p.tags.nofailover = rng.gen_bool(0.15);
    p.tags.replicatefrom = rng.gen_bool(0.1).then(|| "n3".into());
    p.watchdog_missing = rng.gen_bool(0.05).then(|| "no device".into());
    p
}

/// The rules of the module doc; `Err` says which one `action` breaks.
fn check(o: &Observation, c: &DynamicConfig, p: &Policy, action: &Action) -> Result<(), String> {
    match action {
        Action::Reclone { .. } if !p.remove_data_on_rewind_failure => {
            return Err("rule 4: removes a data directory although remove_data_directory_on_rewind_failure is off".into())
        }
        Action::Bootstrap { .. } if o.data_dir == DataDir::Invalid => {
            return Err("rule 4: initializes over a data directory that holds something else".into())
        }
        _ => {}
    }
    let live = o.lease.valid_at(o.now);
    let Ok(view) = &o.view else {
        return match action {
            Action::Promote { .. } | Action::Lead { .. } | Action::Race { .. } | Action::HandOver(_) => {
                Err("acted on the key without reading the store".into())
            }
            _ => Ok(()),
        };
    };
    let holds = view.leader.as_ref().is_some_and(|l| l.name == p.me && o.lease.owns_leader_key);
    if c.standby_cluster.is_some()
        && matches!(action, Action::Promote { .. } | Action::Lead { .. } | Action::HandOver(_) | Action::Race { .. })
    {
        return Err("rule 6: acts as a primary in a standby cluster".into());
    }
    match action {
        Action::LeadStandby { .. } | Action::StartStandbyLeader { .. } if !(holds && live) => {
            return Err("rule 6: acts as the standby leader without our key on a live lease".into())
        }
        Action::RaceStandby { lease } if view.leader.is_some() || !live || Some(*lease) != o.lease.id => {
            return Err("rule 6: races for a key that is not free, or without a live lease".into())
        }
        _ => {}
    }
    match action {
        Action::Promote { .. } | Action::Lead { .. } | Action::HandOver(_) if !(holds && live) => {
            return Err("rule 1: acts as primary without our key on a live lease".into())
        }
        Action::Race { lease, .. } if view.leader.is_some() || !live || Some(*lease) != o.lease.id => {
            return Err("rule 1: races for a key that is not free, or without a live lease".into())
        }
        Action::ClaimKeyPaused { lease, replaces, .. }
            if !view.paused()
                || !live
                || Some(*lease) != o.lease.id
                || o.pg.role != crate::cluster::Role::Primary
                || view.leader.as_ref().is_some_and(|l| l.name != p.me || Some(l.mod_revision) != *replaces) =>
        {
            return Err("rule 1: takes a key while not paused, for a non-primary, or a key another node holds".into())
        }
        _ => {}
    }
    let ours = view.initialize.as_deref() == Some(SYSID)
        && o.data_dir != DataDir::Empty
        && o.pg.system_identifier.as_deref().is_none_or(|s| s == SYSID)
        && !matches!(&o.control, Some(Err(_)))
        && o.control
            .as_ref()
            .and_then(|c| c.as_ref().ok())
            .is_none_or(|c| c.system_identifier == SYSID || o.pg.system_identifier.is_some());
    let may_write = may_run_as_primary(&o.pg, o.postmaster.is_some(), o.standby_configured);
    if ours && !view.paused() && may_write && !holds {
        let stops = matches!(action, Action::Demote { .. } | Action::Race { promote: false, .. });
        if !stops {
            return Err("rule 2: PostgreSQL may serve writes without our key and is left running".into());
        }
    }
    let promotes = matches!(action, Action::Promote { .. } | Action::Race { promote: true, .. });
    if promotes && c.synchronous_mode && !sync_allows(view, &p.me, c.synchronous_mode_strict) {
        return Err("rule 5: promotes a node /sync does not allow".into());
    }
    if let (true, Some(cluster)) = (promotes, cluster_timeline(view, &p.me)) {
        if o.pg.timeline.is_some_and(|t| t < cluster) {
            return Err(format!("rule 3: promotes from timeline {:?}, the cluster is on {cluster}", o.pg.timeline));
        }
    }
    Ok(())
}

#[test]
fn random_observations_keep_the_safety_rules() {
    let mut rng = StdRng::seed_from_u64(0x5afe);
    let now = Instant::now() + Duration::from_secs(3600);
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..CASES {
        let (o, m, c, p) = (observation(&mut rng, now), memory(&mut rng, now), config(&mut rng), policy(&mut rng));
        let action = decide(&o, &m, &c, &p);
        *seen.entry(super::tests::kind(&action)).or_default() += 1;
        if let Err(rule) = check(&o, &c, &p, &action) {
            panic!("case {i}: {rule}\naction: {action:?}\nobservation: {o:#?}\nmemory: {m:#?}\nconfig: {c:?}\npolicy: {p:?}");
        }
    }
    // The generator must reach the actions the rules are about, not only waits.
    for kind in [
        "Promote",
        "Lead",
        "Race",
        "Demote",
        "StandAside",
        "StartReplica",
        "Configure",
        "HandOver",
        "CancelSwitchover",
        "FenceExpiredLease",
        "LeadStandby",
        "StartStandbyLeader",
        "RaceStandby",
    ] {
        assert!(seen.get(kind).copied().unwrap_or(0) >= 10, "only {:?} {kind} actions in {CASES} cases: {seen:?}", seen.get(kind));
    }
}
