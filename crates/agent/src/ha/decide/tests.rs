//! The decision table: (observation, memory, configuration) → action, branch by branch,
//! plus a property test of the safety rules on random observations.
//!
//! Each case starts from one healthy three-node cluster seen by `n1` (a streaming
//! replica of `n2`, timeline 2, data dir of the cluster) and changes what it is about.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::cluster::{ClusterStatus, FailoverRequest, HistoryEntry, LeaderKey, SyncState};
use crate::ha::election::PeerReport;
use crate::ha::failsafe::Promised;
use crate::ha::observation::{ControlFacts, LeaseFacts, StepDown};
use crate::state::Step;

const LEASE: i64 = 7;

fn member(role: Role, state: &str, timeline: u32, pos: u64, port: u16) -> Member {
    Member {
        conn_url: format!("postgres://127.0.0.1:{port}/postgres"),
        api_url: format!("http://127.0.0.1:{}/patroni", port + 1000),
        state: state.into(),
        role,
        timeline: Some(timeline),
        xlog_location: Some(pos),
        replication_state: (role == Role::Replica).then(|| "streaming".into()),
        ..Default::default()
    }
}

/// `/history` after promotions up to `timeline`, the last by `by`.
fn history(timeline: u32, by: &str) -> Vec<HistoryEntry> {
    (1..timeline)
        .map(|t| HistoryEntry(t, 0x300_0000 * u64::from(t), "no recovery target specified".into(), String::new(), by.into()))
        .collect()
}

fn view() -> ClusterView {
    let mut v = ClusterView {
        initialize: Some("7300000000000000001".into()),
        leader: Some(LeaderKey { name: "n2".into(), lease: 99, mod_revision: 5 }),
        history: history(2, "n2"),
        status: Some(ClusterStatus { optime: 5000, ..Default::default() }),
        ..Default::default()
    };
    v.members.insert("n1".into(), member(Role::Replica, "running", 2, 5000, 5001));
    v.members.insert("n2".into(), member(Role::Primary, "running", 2, 5000, 5002));
    v.members.insert("n3".into(), member(Role::Replica, "running", 2, 4990, 5003));
    v
}

fn replica() -> PgStatus {
    PgStatus {
        state: PgState::Running,
        role: Role::Replica,
        timeline: Some(2),
        receive_lsn: Some(5000),
        replay_lsn: Some(5000),
        replication_state: Some("streaming".into()),
        system_identifier: Some("7300000000000000001".into()),
        ..Default::default()
    }
}

fn primary_pg() -> PgStatus {
    PgStatus { role: Role::Primary, wal_lsn: Some(5000), replication_state: None, receive_lsn: None, replay_lsn: None, ..replica() }
}

/// PostgreSQL with no postmaster (`state`: stopped or crashed), control file on `timeline`.
fn down(o: &mut Observation, state: PgState, timeline: u32, was_primary: bool) {
    o.pg = PgStatus { state, ..Default::default() };
    o.postmaster = None;
    o.control = Some(Ok(ControlFacts { system_identifier: "7300000000000000001".into(), timeline, was_primary }));
}

fn base() -> (Observation, Memory, DynamicConfig, Policy) {
    let now = Instant::now();
    let o = Observation {
        now,
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        view: Ok(view()),
        pg: replica(),
        postmaster: Some(100),
        standby_configured: true,
        data_dir: DataDir::Valid,
        control: None,
        fresh_clone: false,
        lease: LeaseFacts { id: Some(LEASE), valid_until: Some(now + Duration::from_secs(10)), owns_leader_key: false },
        published_holder: false,
        liveness: Verdict::Healthy,
        promised: None,
        peers: Vec::new(),
        stall: StallRemedy::Wait,
    };
    let m = Memory { last_in_sync: Some(now), ..Memory::default() };
    let p = Policy {
        me: "n1".into(),
        scope: "demo".into(),
        data_dir: "/var/lib/raftgres/n1".into(),
        remove_data_on_rewind_failure: true,
        ..Policy::default()
    };
    (o, m, DynamicConfig::default(), p)
}

fn v(o: &mut Observation) -> &mut ClusterView {
    o.view.as_mut().expect("a view")
}

/// n1 holds the key on its own lease and runs as primary; n2 is a replica.
fn as_primary(o: &mut Observation) {
    let view = v(o);
    view.leader = Some(LeaderKey { name: "n1".into(), lease: LEASE, mod_revision: 9 });
    view.members.insert("n1".into(), member(Role::Primary, "running", 2, 5000, 5001));
    view.members.insert("n2".into(), member(Role::Replica, "running", 2, 5000, 5002));
    o.lease.owns_leader_key = true;
    o.pg = primary_pg();
    o.standby_configured = false;
    o.published_holder = true;
}

/// Nobody holds the key (n2's expired); n1 a streaming replica as before.
fn no_leader(o: &mut Observation) {
    let view = v(o);
    view.leader = None;
    view.members.remove("n2");
}

fn peer(name: &str, timeline: u32, pos: u64) -> PeerReport {
    PeerReport::replica(name, timeline, pos, 1)
}

fn sync_key(leader: &str, standbys: Option<&str>) -> Option<(SyncState, i64)> {
    Some((SyncState { leader: Some(leader.into()), sync_standby: standbys.map(str::to_string) }, 3))
}

type Setup = fn(&mut Observation, &mut Memory, &mut DynamicConfig, &mut Policy);

/// One row: what it is about, how it differs from `base`, the action's kind, and words
/// its sentence must contain.
struct Case {
    name: &'static str,
    setup: Setup,
    kind: &'static str,
    says: &'static str,
}

pub(super) fn kind(a: &Action) -> &'static str {
    match a {
        Action::Wait(_) => "Wait",
        Action::FenceWithoutStore { .. } => "FenceWithoutStore",
        Action::AskFailsafe { .. } => "AskFailsafe",
        Action::Bootstrap { .. } => "Bootstrap",
        Action::RecordSystemIdentifier { .. } => "RecordSystemIdentifier",
        Action::ReleaseInitialize { .. } => "ReleaseInitialize",
        Action::Clone { .. } => "Clone",
        Action::Paused { .. } => "Paused",
        Action::ClaimKeyPaused { .. } => "ClaimKeyPaused",
        Action::FenceExpiredLease { .. } => "FenceExpiredLease",
        Action::ReplaceHung { .. } => "ReplaceHung",
        Action::HandOver(_) => "HandOver",
        Action::CancelSwitchover { .. } => "CancelSwitchover",
        Action::Lead { .. } => "Lead",
        Action::Promote { .. } => "Promote",
        Action::RestartInPlace => "RestartInPlace",
        Action::GiveUpKey { .. } => "GiveUpKey",
        Action::Demote { .. } => "Demote",
        Action::StopDiverged { .. } => "StopDiverged",
        Action::RestartStalled { .. } => "RestartStalled",
        Action::Reclone { .. } => "Reclone",
        Action::Configure { .. } => "Configure",
        Action::StartReplica(_) => "StartReplica",
        Action::StandAside { .. } => "StandAside",
        Action::StartReadOnly => "StartReadOnly",
        Action::Race { .. } => "Race",
        Action::BootstrapStandby { .. } => "BootstrapStandby",
        Action::LeadStandby { .. } => "LeadStandby",
        Action::StartStandbyLeader { .. } => "StartStandbyLeader",
        Action::RaceStandby { .. } => "RaceStandby",
    }
}

fn run(c: &Case) -> Action {
    let (mut o, mut m, mut config, mut p) = base();
    (c.setup)(&mut o, &mut m, &mut config, &mut p);
    decide(&o, &m, &config, &p)
}

macro_rules! case {
    ($name:literal, $kind:literal, $says:literal, |$o:ident, $m:ident, $c:ident, $p:ident| $body:block) => {
        Case {
            name: $name,
            setup: {
                #[allow(unused_variables)]
                fn setup($o: &mut Observation, $m: &mut Memory, $c: &mut DynamicConfig, $p: &mut Policy) $body
                setup
            },
            kind: $kind,
            says: $says,
        }
    };
}

fn table() -> Vec<Case> {
    vec![
        // --- the store cannot be read ---
        case!("store down, replica", "Wait", "store unreachable (timeout); no action", |o, m, c, p| { o.view = Err("timeout".into()) }),
        case!("store down, primary within its deadline", "Wait", "still primary until the lease deadline", |o, m, c, p| {
            as_primary(o);
            o.view = Err("timeout".into());
        }),
        case!("store down, primary past its deadline", "FenceWithoutStore", "could not be renewed in time", |o, m, c, p| {
            as_primary(o);
            o.view = Err("timeout".into());
            o.lease.valid_until = Some(o.now - Duration::from_millis(1));
        }),
        case!("store down, primary with no deadline at all", "FenceWithoutStore", "demoted", |o, m, c, p| {
            as_primary(o);
            o.view = Err("timeout".into());
            o.lease.valid_until = None;
        }),
        case!("store down, failsafe primary asks the members", "AskFailsafe", "asking every other member", |o, m, c, p| {
            as_primary(o);
            o.view = Err("timeout".into());
            c.failsafe_mode = true;
        }),
        case!("store down, failsafe primary past its deadline is fenced", "FenceWithoutStore", "demoted", |o, m, c, p| {
            as_primary(o);
            o.view = Err("timeout".into());
            c.failsafe_mode = true;
            o.lease.valid_until = Some(o.now);
        }),
        case!("store down, failsafe replica does nothing", "Wait", "no action", |o, m, c, p| {
            o.view = Err("timeout".into());
            c.failsafe_mode = true;
        }),
        // --- bootstrap ---
        case!("no /initialize, a data dir of a cluster here: adopt it", "Bootstrap", "with my data directory", |o, m, c, p| {
            v(o).initialize = None
        }),
        case!("no /initialize, no data dir: initdb", "Bootstrap", "initialize a new cluster", |o, m, c, p| {
            v(o).initialize = None;
            o.data_dir = DataDir::Empty;
        }),
        case!(
            "no /initialize, something else in the data dir: never wiped",
            "Wait",
            "is not empty and holds no PostgreSQL cluster",
            |o, m, c, p| {
                v(o).initialize = None;
                o.data_dir = DataDir::Invalid;
            }
        ),
        case!("no /initialize, no lease yet", "Wait", "waiting for a lease before initializing", |o, m, c, p| {
            v(o).initialize = None;
            o.lease.id = None;
        }),
        case!("no /initialize, required watchdog missing", "Wait", "the watchdog is required but", |o, m, c, p| {
            v(o).initialize = None;
            p.watchdog_missing = Some("/dev/watchdog is missing".into());
        }),
        case!("/initialize empty: another member initializes", "Wait", "another member is initializing", |o, m, c, p| {
            v(o).initialize = Some(String::new());
        }),
        case!("/initialize empty on my bootstrap: record it again", "RecordSystemIdentifier", "7300000000000000001", |o, m, c, p| {
            v(o).initialize = Some(String::new());
            m.unrecorded_sysid = Some("7300000000000000001".into());
        }),
        case!(
            "/initialize empty on my lease, no bootstrap of mine: a lost answer, released",
            "ReleaseInitialize",
            "racing again",
            |o, m, c, p| {
                v(o).initialize = Some(String::new());
                v(o).initialize_lease = LEASE;
            }
        ),
        case!("/initialize empty on another lease: wait for its bootstrap", "Wait", "another member is initializing", |o, m, c, p| {
            v(o).initialize = Some(String::new());
            v(o).initialize_lease = LEASE + 1;
        }),
        // --- clone ---
        case!("empty data dir: clone the running primary", "Clone", "cloning n2", |o, m, c, p| { o.data_dir = DataDir::Empty }),
        case!("empty data dir, primary not running yet", "Wait", "waiting for a running primary to clone from", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            v(o).members.get_mut("n2").expect("n2").state = "starting".into();
        }),
        case!("empty data dir, no leader", "Wait", "waiting for a running primary", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            no_leader(o);
        }),
        case!("empty data dir, no leader, a no_leader replica method", "Clone", "without a running primary", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            no_leader(o);
            p.clone_without_leader = true;
        }),
        case!("empty data dir, primary not running, a no_leader replica method", "Clone", "without a running primary", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            v(o).members.get_mut("n2").expect("n2").state = "starting".into();
            p.clone_without_leader = true;
        }),
        case!("empty data dir, a no_leader method, the primary runs: clone it", "Clone", "cloning n2", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            p.clone_without_leader = true;
        }),
        case!("empty data dir, a streaming replica tagged clonefrom", "Clone", "cloning n3", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            v(o).members.get_mut("n3").expect("n3").tags.clonefrom = true;
        }),
        case!("empty data dir, the clonefrom replica does not stream", "Clone", "cloning n2", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            let n3 = v(o).members.get_mut("n3").expect("n3");
            n3.tags.clonefrom = true;
            n3.replication_state = None;
        }),
        case!("empty data dir, leader's conn_url malformed", "Wait", "conn_url is malformed", |o, m, c, p| {
            o.data_dir = DataDir::Empty;
            v(o).members.get_mut("n2").expect("n2").conn_url = "nonsense".into();
        }),
        // --- another cluster ---
        case!("data dir of another cluster (PostgreSQL answers)", "Wait", "refusing to join", |o, m, c, p| {
            o.pg.system_identifier = Some("1".into());
        }),
        case!("data dir of another cluster (control file)", "Wait", "belongs to another cluster (system identifier 42", |o, m, c, p| {
            down(o, PgState::Stopped, 2, false);
            o.control = Some(Ok(ControlFacts { system_identifier: "42".into(), timeline: 1, was_primary: false }));
        }),
        case!("unreadable data dir", "Wait", "cannot read the data directory: bad control file", |o, m, c, p| {
            down(o, PgState::Stopped, 2, false);
            o.control = Some(Err("bad control file".into()));
        }),
        // --- paused ---
        case!("paused: PostgreSQL left alone", "Paused", "paused: not managing PostgreSQL (I am n1, running)", |o, m, c, p| {
            v(o).config = Some((serde_json::json!({"pause": true}), 2));
        }),
        case!("paused with a dead postmaster: still left alone", "Paused", "(I am n1, crashed)", |o, m, c, p| {
            v(o).config = Some((serde_json::json!({"pause": true}), 2));
            down(o, PgState::Crashed, 2, false);
        }),
        case!("paused primary: left alone too", "Paused", "paused", |o, m, c, p| {
            as_primary(o);
            v(o).config = Some((serde_json::json!({"pause": true}), 2));
        }),
        case!(
            "paused primary after an agent restart: the key left by its earlier run is taken back",
            "ClaimKeyPaused",
            "paused: took the leader key for my running primary (I am n1)",
            |o, m, c, p| {
                as_primary(o);
                o.lease.owns_leader_key = false;
                v(o).config = Some((serde_json::json!({"pause": true}), 2));
            }
        ),
        case!("paused primary with a free key: takes it", "ClaimKeyPaused", "took the leader key", |o, m, c, p| {
            as_primary(o);
            no_leader(o);
            o.lease.owns_leader_key = false;
            v(o).config = Some((serde_json::json!({"pause": true}), 2));
        }),
        case!("paused primary without a live lease: left alone", "Paused", "paused: not managing PostgreSQL", |o, m, c, p| {
            as_primary(o);
            no_leader(o);
            o.lease.valid_until = None;
            v(o).config = Some((serde_json::json!({"pause": true}), 2));
        }),
        case!(
            "paused replica with a free key: left alone",
            "Paused",
            "paused: not managing PostgreSQL (I am n1, running)",
            |o, m, c, p| {
                no_leader(o);
                v(o).config = Some((serde_json::json!({"pause": true}), 2));
            }
        ),
        case!("paused primary, another node holds the key: left alone", "Paused", "paused", |o, m, c, p| {
            as_primary(o);
            v(o).leader = Some(LeaderKey { name: "n2".into(), lease: 99, mod_revision: 3 });
            o.lease.owns_leader_key = false;
            v(o).config = Some((serde_json::json!({"pause": true}), 2));
        }),
        // --- holding the key ---
        case!("primary holding the key", "Lead", "no action: I am n1, the primary, holding the leader key", |o, m, c, p| { as_primary(o) }),
        case!("primary with a scheduled switchover", "Lead", "a switchover is scheduled at 2099-01-01T00:00:00Z", |o, m, c, p| {
            as_primary(o);
            v(o).failover = Some(FailoverRequest { scheduled_at: Some("2099-01-01T00:00:00Z".into()), ..Default::default() });
        }),
        case!("primary: a switchover is due", "HandOver", "handing over to n2", |o, m, c, p| {
            as_primary(o);
            v(o).failover = Some(FailoverRequest { leader: Some("n1".into()), member: Some("n2".into()), scheduled_at: None });
        }),
        case!("primary: a scheduled switchover became due, to the best replica", "HandOver", "handing over to n2", |o, m, c, p| {
            as_primary(o);
            v(o).failover = Some(FailoverRequest { scheduled_at: Some("2020-01-01T00:00:00Z".into()), ..Default::default() });
        }),
        case!("primary: a switchover naming another leader is ignored", "CancelSwitchover", "does not apply to me", |o, m, c, p| {
            as_primary(o);
            v(o).failover = Some(FailoverRequest { leader: Some("n3".into()), member: Some("n2".into()), scheduled_at: None });
        }),
        case!("primary: a switchover to myself is ignored", "CancelSwitchover", "does not apply to me", |o, m, c, p| {
            as_primary(o);
            v(o).failover = Some(FailoverRequest { member: Some("n1".into()), ..Default::default() });
        }),
        case!("primary: a switchover to a stopped member is cancelled", "CancelSwitchover", "n3 is not running", |o, m, c, p| {
            as_primary(o);
            v(o).failover = Some(FailoverRequest { member: Some("n3".into()), ..Default::default() });
            v(o).members.get_mut("n3").expect("n3").state = "stopped".into();
        }),
        case!(
            "primary: a switchover to a member that stands aside is cancelled, the key kept",
            "CancelSwitchover",
            "n2 stands aside for now (its PostgreSQL kept exiting as primary)",
            |o, m, c, p| {
                // peers.sh: the old primary stopped and released its key, the candidate
                // then refused it and a third node took over.
                as_primary(o);
                v(o).failover = Some(FailoverRequest { member: Some("n2".into()), ..Default::default() });
                v(o).members.get_mut("n2").expect("n2").stands_aside = Some("its PostgreSQL kept exiting as primary".into());
            }
        ),
        case!(
            "primary: a switchover to a member tagged nofailover is cancelled",
            "CancelSwitchover",
            "n2 is tagged nofailover",
            |o, m, c, p| {
                // Written into the store without `raftctl` (which refuses it): the candidate
                // would refuse the key after the primary stopped.
                as_primary(o);
                v(o).failover = Some(FailoverRequest { member: Some("n2".into()), ..Default::default() });
                v(o).members.get_mut("n2").expect("n2").tags.nofailover = true;
            }
        ),
        case!("primary: a switchover to the best replica skips one that stands aside", "HandOver", "handing over to n3", |o, m, c, p| {
            as_primary(o);
            let n2 = v(o).members.get_mut("n2").expect("n2");
            n2.xlog_location = Some(9000);
            n2.stands_aside = Some("it fenced its hung primary".into());
            v(o).failover = Some(FailoverRequest::default());
        }),
        case!("primary: a switchover with no running replica is cancelled", "CancelSwitchover", "no running replica", |o, m, c, p| {
            as_primary(o);
            v(o).failover = Some(FailoverRequest::default());
            for n in ["n2", "n3"] {
                v(o).members.get_mut(n).expect("member").state = "stopped".into();
            }
        }),
        case!("primary: a switchover in sync mode goes to the synchronous standby", "HandOver", "handing over to n3", |o, m, c, p| {
            as_primary(o);
            c.synchronous_mode = true;
            v(o).sync = sync_key("n1", Some("n3"));
            v(o).failover = Some(FailoverRequest::default());
        }),
        case!("primary: a switchover prefers the replica with the most WAL", "HandOver", "handing over to n3", |o, m, c, p| {
            as_primary(o);
            v(o).members.get_mut("n3").expect("n3").xlog_location = Some(9000);
            v(o).failover = Some(FailoverRequest::default());
        }),
        case!("primary whose lease passed its write deadline", "FenceExpiredLease", "my lease was not renewed", |o, m, c, p| {
            as_primary(o);
            o.lease.valid_until = Some(o.now - Duration::from_secs(1));
        }),
        case!("primary whose lease deadline is exactly now", "FenceExpiredLease", "demoted", |o, m, c, p| {
            as_primary(o);
            o.lease.valid_until = Some(o.now);
        }),
        case!("primary hung", "ReplaceHung", "primary hung for 6.0 s", |o, m, c, p| {
            as_primary(o);
            o.liveness = Verdict::Hung { failing_for: Duration::from_secs(6) };
        }),
        case!("primary merely suspect", "Lead", "holding the leader key", |o, m, c, p| {
            as_primary(o);
            o.liveness = Verdict::Suspect { failures: 2 };
        }),
        case!("hung verdict but the postmaster is gone: restart", "RestartInPlace", "restarting PostgreSQL in place", |o, m, c, p| {
            as_primary(o);
            o.liveness = Verdict::Hung { failing_for: Duration::from_secs(6) };
            down(o, PgState::Crashed, 2, true);
        }),
        case!("key holder runs a replica: promote", "Promote", "I hold the leader key", |o, m, c, p| {
            as_primary(o);
            o.pg = replica();
        }),
        case!(
            "key holder runs a replica behind /history's timeline: no promotion",
            "GiveUpKey",
            "my timeline 2 is behind the cluster's timeline 3",
            |o, m, c, p| {
                as_primary(o);
                o.pg = replica();
                v(o).history = history(3, "n3");
            }
        ),
        case!("key holder runs a replica on the cluster's timeline: promote", "Promote", "I hold the leader key", |o, m, c, p| {
            as_primary(o);
            o.pg = replica();
            v(o).history = history(2, "n2");
        }),
        case!(
            "sync mode, key holder runs a replica /sync no longer lists: no promotion",
            "GiveUpKey",
            "not a synchronous standby in /sync",
            |o, m, c, p| {
                // The model check's trace: a slow cycle took the key on an old view; another
                // node had promoted, had a commit acknowledged by n3 and died meanwhile.
                as_primary(o);
                o.pg = replica();
                c.synchronous_mode = true;
                v(o).history = history(2, "n2");
                v(o).sync = sync_key("n2", Some("n3"));
            }
        ),
        case!("sync mode, key holder runs a replica /sync lists: promote", "Promote", "I hold the leader key", |o, m, c, p| {
            as_primary(o);
            o.pg = replica();
            c.synchronous_mode = true;
            v(o).history = history(2, "n2");
            v(o).sync = sync_key("n2", Some("n1"));
        }),
        case!("key holder whose PostgreSQL is starting", "Wait", "waiting for PostgreSQL to accept connections", |o, m, c, p| {
            as_primary(o);
            o.pg = PgStatus { state: PgState::Starting, role: Role::Primary, ..Default::default() };
        }),
        case!("key holder whose PostgreSQL crashed", "RestartInPlace", "restarting", |o, m, c, p| {
            as_primary(o);
            down(o, PgState::Crashed, 2, true);
        }),
        case!("key holder down for less than primary_start_timeout", "RestartInPlace", "restarting", |o, m, c, p| {
            as_primary(o);
            down(o, PgState::Crashed, 2, true);
            m.primary_down_since = Some(o.now - Duration::from_secs(299));
        }),
        case!("key holder down longer than primary_start_timeout", "GiveUpKey", "gave up the leader key", |o, m, c, p| {
            as_primary(o);
            down(o, PgState::Crashed, 2, true);
            m.primary_down_since = Some(o.now - Duration::from_secs(301));
        }),
        case!("key holder down, with a short primary_start_timeout", "GiveUpKey", "primary_start_timeout", |o, m, c, p| {
            as_primary(o);
            down(o, PgState::Stopped, 2, true);
            c.primary_start_timeout = 0;
            m.primary_down_since = Some(o.now - Duration::from_millis(10));
        }),
        case!("key holder crashed after two restarts in place: once more", "RestartInPlace", "restarting", |o, m, c, p| {
            as_primary(o);
            down(o, PgState::Crashed, 2, true);
            m.restarts_in_place = vec![o.now - Duration::from_secs(20), o.now - Duration::from_secs(3)];
        }),
        case!(
            "key holder crashed after three restarts in place: crash loop, give up",
            "GiveUpKey",
            "exited again after 3 restarts in place",
            |o, m, c, p| {
                as_primary(o);
                down(o, PgState::Crashed, 2, true);
                m.restarts_in_place = vec![o.now - Duration::from_secs(9), o.now - Duration::from_secs(5), o.now - Duration::from_secs(1)];
            }
        ),
        case!(
            "key holder crashed; its earlier restarts lie outside primary_start_timeout",
            "RestartInPlace",
            "restarting",
            |o, m, c, p| {
                as_primary(o);
                down(o, PgState::Crashed, 2, true);
                m.restarts_in_place =
                    vec![o.now - Duration::from_secs(900), o.now - Duration::from_secs(800), o.now - Duration::from_secs(700)];
            }
        ),
        case!("free key, my PostgreSQL kept exiting as primary a moment ago", "StandAside", "kept exiting as primary", |o, m, c, p| {
            no_leader(o);
            m.stepped_down = Some((o.now - Duration::from_secs(5), StepDown::CrashLoop));
        }),
        case!("key holder with an expired lease and a dead postmaster", "FenceExpiredLease", "demoted", |o, m, c, p| {
            as_primary(o);
            down(o, PgState::Crashed, 2, true);
            o.lease.valid_until = None;
        }),
        // --- the key on a lease this run does not own ---
        case!("my name on an earlier run's lease, running as primary", "Demote", "held by an earlier run of this node", |o, m, c, p| {
            as_primary(o);
            o.lease.owns_leader_key = false;
        }),
        case!("my name on an earlier run's lease, PostgreSQL not answering after being primary", "Demote", "earlier run", |o, m, c, p| {
            as_primary(o);
            o.lease.owns_leader_key = false;
            o.pg = PgStatus { state: PgState::Starting, role: Role::Primary, ..Default::default() };
        }),
        case!("my name on an earlier run's lease, a replica", "Wait", "waiting for its lease to expire", |o, m, c, p| {
            as_primary(o);
            o.lease.owns_leader_key = false;
            o.pg = replica();
            o.standby_configured = true;
        }),
        case!("my name on an earlier run's lease, stopped", "Wait", "waiting for its lease to expire", |o, m, c, p| {
            as_primary(o);
            o.lease.owns_leader_key = false;
            down(o, PgState::Stopped, 2, true);
        }),
        // --- following another leader ---
        case!("streaming replica", "Configure", "no action: I am n1, a replica, following n2", |o, m, c, p| {}),
        case!("replica tagged replicatefrom a running member", "Configure", "following n3", |o, m, c, p| {
            p.tags.replicatefrom = Some("n3".into());
        }),
        case!("replicatefrom a member that is not running: the leader", "Configure", "following n2", |o, m, c, p| {
            p.tags.replicatefrom = Some("n3".into());
            v(o).members.get_mut("n3").expect("n3").state = "stopped".into();
        }),
        case!("replicatefrom an unknown member: the leader", "Configure", "following n2", |o, m, c, p| {
            p.tags.replicatefrom = Some("n9".into());
        }),
        case!("leader without a member key yet", "Wait", "following n2: waiting for its member key", |o, m, c, p| {
            v(o).members.remove("n2");
        }),
        case!("leader's conn_url malformed", "Wait", "n2's conn_url is malformed", |o, m, c, p| {
            v(o).members.get_mut("n2").expect("n2").conn_url = "postgres://nohost".into();
        }),
        case!("another leader, I still run as primary", "Demote", "n2 holds the leader key; will rewind and follow it", |o, m, c, p| {
            o.pg = primary_pg();
            o.standby_configured = false;
        }),
        case!("another leader, status unknown while the last role was primary", "Demote", "demoted: I am n1", |o, m, c, p| {
            o.pg = PgStatus { state: PgState::Starting, role: Role::Primary, ..Default::default() };
        }),
        case!("another leader, status unknown, standby.signal written under a primary", "Demote", "demoted", |o, m, c, p| {
            o.pg = PgStatus { state: PgState::Starting, role: Role::Primary, ..Default::default() };
            o.standby_configured = true;
        }),
        case!("another leader, never answered and not started as a standby", "Demote", "demoted", |o, m, c, p| {
            o.pg = PgStatus { state: PgState::Starting, ..Default::default() };
            o.standby_configured = false;
        }),
        case!("another leader, starting as a standby", "Configure", "following n2", |o, m, c, p| {
            o.pg = PgStatus { state: PgState::Starting, ..Default::default() };
        }),
        case!("another leader, a primary's postmaster is gone", "StartReplica", "starting PostgreSQL as a replica of n2", |o, m, c, p| {
            down(o, PgState::Stopped, 2, false);
        }),
        case!(
            "replica on an older timeline, not streaming for long: diverged",
            "StopDiverged",
            "a replica that diverged from n2",
            |o, m, c, p| {
                o.pg.timeline = Some(1);
                o.pg.replication_state = None;
                m.last_in_sync = Some(o.now - Duration::from_secs(6));
            }
        ),
        case!("replica on an older timeline, not streaming for a moment", "Configure", "following n2", |o, m, c, p| {
            o.pg.timeline = Some(1);
            o.pg.replication_state = None;
            m.last_in_sync = Some(o.now - Duration::from_secs(4));
        }),
        case!("replica on an older timeline but streaming (catching up the switch)", "Configure", "following", |o, m, c, p| {
            o.pg.timeline = Some(1);
            m.last_in_sync = Some(o.now - Duration::from_secs(60));
        }),
        case!("replica already rewound onto the leader's timeline is not rewound again", "Configure", "following", |o, m, c, p| {
            o.pg.timeline = Some(1);
            o.pg.replication_state = None;
            m.rewound_onto = Some(2);
            m.last_in_sync = Some(o.now - Duration::from_secs(60));
        }),
        case!("replica on the leader's timeline, not streaming", "Configure", "following", |o, m, c, p| {
            o.pg.replication_state = None;
            m.last_in_sync = Some(o.now - Duration::from_secs(60));
        }),
        case!("stalled replica: restart it", "RestartStalled", "has neither streamed nor replayed WAL", |o, m, c, p| {
            o.stall = StallRemedy::Restart;
        }),
        case!(
            "nostream replica replaying the archive: no action",
            "Configure",
            "no action: I am n1, a replica tagged nostream, replaying WAL from the archive (n2 is the leader)",
            |o, m, c, p| {
                p.tags.nostream = true;
                o.pg.replication_state = Some("in archive recovery".into());
                m.last_in_sync = Some(o.now - Duration::from_secs(60));
            }
        ),
        case!("nostream replica seen as stalled: not restarted", "Configure", "a replica tagged nostream", |o, m, c, p| {
            p.tags.nostream = true;
            o.pg.replication_state = Some("in archive recovery".into());
            o.stall = StallRemedy::Restart;
        }),
        case!("nostream replica seen as stalled again: not re-cloned", "Configure", "a replica tagged nostream", |o, m, c, p| {
            p.tags.nostream = true;
            o.pg.replication_state = Some("in archive recovery".into());
            o.stall = StallRemedy::Reclone;
        }),
        case!("nostream replica tagged replicatefrom: the leader is named", "Configure", "(n2 is the leader)", |o, m, c, p| {
            p.tags.nostream = true;
            p.tags.replicatefrom = Some("n3".into());
            o.pg.replication_state = Some("in archive recovery".into());
        }),
        case!("stalled again after the restart: re-clone", "Reclone", "removed the data directory", |o, m, c, p| {
            o.stall = StallRemedy::Reclone;
        }),
        case!(
            "stalled again, re-clone not allowed",
            "Wait",
            "not re-cloning (remove_data_directory_on_rewind_failure is off)",
            |o, m, c, p| {
                o.stall = StallRemedy::Reclone;
                p.remove_data_on_rewind_failure = false;
            }
        ),
        case!("stopped replica: start it", "StartReplica", "replica of n2", |o, m, c, p| { down(o, PgState::Stopped, 2, false) }),
        case!(
            "stopped replica started a moment ago: wait",
            "Wait",
            "PostgreSQL is stopped; waiting a moment before starting it again",
            |o, m, c, p| {
                down(o, PgState::Stopped, 2, false);
                m.last_start = Some(o.now - Duration::from_millis(100));
            }
        ),
        case!("stopped replica started a loop_wait ago: start", "StartReplica", "replica of n2", |o, m, c, p| {
            down(o, PgState::Stopped, 2, false);
            m.last_start = Some(o.now - Duration::from_secs(11));
        }),
        case!("former primary stopped: rewind first", "StartReplica", "replica of n2", |o, m, c, p| { down(o, PgState::Stopped, 1, true) }),
        case!(
            "former primary, leader not running yet: wait to rewind",
            "Wait",
            "waiting for n2 to run as primary before rewinding",
            |o, m, c, p| {
                down(o, PgState::Stopped, 1, true);
                v(o).members.get_mut("n2").expect("n2").state = "starting".into();
            }
        ),
        case!("fresh clone with a primary's control file: no rewind", "StartReplica", "replica of n2", |o, m, c, p| {
            down(o, PgState::Stopped, 2, true);
            o.fresh_clone = true;
        }),
        case!("needs_rewind remembered (demoted last cycle)", "StartReplica", "replica of n2", |o, m, c, p| {
            down(o, PgState::Stopped, 2, false);
            m.needs_rewind = true;
        }),
        case!("first crash of a replica: start again", "StartReplica", "replica of n2", |o, m, c, p| {
            down(o, PgState::Crashed, 2, false)
        }),
        case!("third crash on an older timeline: rewind", "StartReplica", "replica of n2", |o, m, c, p| {
            down(o, PgState::Crashed, 1, false);
            m.replica_crashes = 2;
        }),
        case!("third crash on the leader's timeline: start again, no rewind", "StartReplica", "replica of n2", |o, m, c, p| {
            down(o, PgState::Crashed, 2, false);
            m.replica_crashes = 2;
        }),
        case!("crashes go on after the rewind: re-clone", "Reclone", "keeps exiting even after a rewind", |o, m, c, p| {
            down(o, PgState::Crashed, 2, false);
            m.replica_crashes = 5;
            m.crash_rewound = true;
        }),
        case!("crashes go on after the rewind, re-clone not allowed", "StartReplica", "replica of n2", |o, m, c, p| {
            down(o, PgState::Crashed, 2, false);
            m.replica_crashes = 5;
            m.crash_rewound = true;
            p.remove_data_on_rewind_failure = false;
        }),
        // --- nobody holds the key ---
        case!("free key, healthiest replica: race", "Race", "racing for the leader key to promote", |o, m, c, p| { no_leader(o) }),
        // Patroni's nostream changes what a replica follows, not whether it may take over
        // (maximum_lag_on_failover and /sync still apply, as to any replica).
        case!("free key, healthiest replica tagged nostream: race", "Race", "racing for the leader key to promote", |o, m, c, p| {
            no_leader(o);
            p.tags.nostream = true;
            o.pg.replication_state = Some("in archive recovery".into());
        }),
        case!("free key, running primary: take the key back", "Race", "as the running primary", |o, m, c, p| {
            as_primary(o);
            v(o).leader = None;
        }),
        case!("free key, a peer is further ahead", "StandAside", "n3 is healthier than me (n1)", |o, m, c, p| {
            no_leader(o);
            o.peers = vec![peer("n3", 2, 6000)];
        }),
        case!("free key, a peer at my position with a higher priority", "StandAside", "n3 is healthier", |o, m, c, p| {
            no_leader(o);
            o.peers = vec![PeerReport { priority: 5, ..peer("n3", 2, 5000) }];
        }),
        case!("free key, a peer at my position with my priority: both race", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            o.peers = vec![peer("n3", 2, 5000)];
        }),
        case!("free key, a peer behind me", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            o.peers = vec![peer("n3", 2, 4000)];
        }),
        case!("free key, a peer on a newer timeline", "StandAside", "n3 is healthier", |o, m, c, p| {
            no_leader(o);
            o.peers = vec![peer("n3", 3, 100)];
        }),
        case!("free key, a peer tagged nofailover further ahead", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            o.peers = vec![PeerReport { nofailover: true, ..peer("n3", 2, 9000) }];
        }),
        case!("free key, a peer further ahead that stands aside (it gave up its key a moment ago)", "Race", "racing", |o, m, c, p| {
            // peers.sh: a node whose PostgreSQL crash-looped refuses the key for ttl × 10;
            // waiting for it as the healthier one would leave the cluster without a primary.
            no_leader(o);
            o.peers = vec![PeerReport { stands_aside: true, ..peer("n3", 2, 9000) }];
        }),
        case!("free key, a peer still running as primary", "StandAside", "n3 still runs as primary: not racing", |o, m, c, p| {
            no_leader(o);
            o.peers = vec![PeerReport { primary: true, ..peer("n3", 2, 5000) }];
        }),
        case!("free key, I am tagged nofailover", "StandAside", "tagged nofailover", |o, m, c, p| {
            no_leader(o);
            p.tags.nofailover = true;
        }),
        case!("free key, lagging beyond maximum_lag_on_failover", "StandAside", "lagging", |o, m, c, p| {
            no_leader(o);
            v(o).status = Some(ClusterStatus { optime: 5000 + 2 * 1_048_576, ..Default::default() });
        }),
        case!(
            "free key, behind the cluster's timeline in /history",
            "StandAside",
            "my timeline 2 is behind the cluster's timeline 3",
            |o, m, c, p| {
                no_leader(o);
                v(o).history = history(3, "n3");
            }
        ),
        case!("free key, a member reports a newer timeline", "StandAside", "behind the cluster's timeline 3", |o, m, c, p| {
            no_leader(o);
            v(o).members.get_mut("n3").expect("n3").timeline = Some(3);
        }),
        case!("free key, my timeline unknown", "StandAside", "my timeline is unknown", |o, m, c, p| {
            no_leader(o);
            o.pg.timeline = None;
        }),
        case!(
            "free key, former primary with WAL nobody received on an older timeline",
            "Demote",
            "the leader key is free and I did not take it",
            |o, m, c, p| {
                as_primary(o);
                v(o).leader = None;
                v(o).history = history(3, "n3");
                o.pg.wal_lsn = Some(9000);
            }
        ),
        case!(
            "free key, a postmaster that never answered and was not started as a standby",
            "Demote",
            "the leader key is free",
            |o, m, c, p| {
                no_leader(o);
                o.pg = PgStatus { state: PgState::Starting, ..Default::default() };
                o.standby_configured = false;
            }
        ),
        case!(
            "free key, a postmaster started as a standby that does not answer yet",
            "StandAside",
            "PostgreSQL is starting",
            |o, m, c, p| {
                no_leader(o);
                o.pg = PgStatus { state: PgState::Starting, role: Role::Replica, ..Default::default() };
            }
        ),
        case!("free key, lease not renewed in time", "StandAside", "waiting for my lease to be renewed before racing", |o, m, c, p| {
            no_leader(o);
            o.lease.valid_until = Some(o.now - Duration::from_millis(1));
        }),
        case!("free key, no lease at all", "StandAside", "waiting for my lease", |o, m, c, p| {
            no_leader(o);
            o.lease.id = None;
        }),
        case!("free key, primary whose lease lapsed: demote", "Demote", "the leader key is free and I did not take it", |o, m, c, p| {
            as_primary(o);
            v(o).leader = None;
            o.lease.valid_until = None;
        }),
        case!("free key, primary with a healthier peer: demote", "Demote", "n3 is healthier", |o, m, c, p| {
            as_primary(o);
            v(o).leader = None;
            o.peers = vec![PeerReport { priority: 9, ..peer("n3", 2, 5000) }];
        }),
        case!("free key, I promised a failsafe primary", "StandAside", "I confirmed it: not racing", |o, m, c, p| {
            no_leader(o);
            o.promised = Some(Promised { primary: "n2".into() });
        }),
        case!("free key, required watchdog missing", "StandAside", "watchdog required but", |o, m, c, p| {
            no_leader(o);
            p.watchdog_missing = Some("no device".into());
        }),
        case!("free key, my PostgreSQL is hung", "StandAside", "PostgreSQL is hung", |o, m, c, p| {
            no_leader(o);
            o.liveness = Verdict::Hung { failing_for: Duration::from_secs(7) };
        }),
        case!("free key, I fenced my hung primary a moment ago", "StandAside", "I fenced my hung primary", |o, m, c, p| {
            no_leader(o);
            m.stepped_down = Some((o.now - Duration::from_secs(5), StepDown::Hung));
        }),
        case!("free key, I fenced my hung primary long ago", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            m.stepped_down = Some((o.now - Duration::from_secs(3600), StepDown::Hung));
        }),
        case!("free key, nobody runs: start read-only", "StartReadOnly", "starting PostgreSQL read-only", |o, m, c, p| {
            no_leader(o);
            down(o, PgState::Stopped, 2, false);
        }),
        case!(
            "free key, stopped former primary behind the cluster's timeline",
            "StandAside",
            "behind the cluster's timeline 3",
            |o, m, c, p| {
                no_leader(o);
                down(o, PgState::Stopped, 2, true);
                v(o).history = history(3, "n3");
            }
        ),
        case!("free key, stopped node tagged nofailover does not start", "StandAside", "tagged nofailover", |o, m, c, p| {
            no_leader(o);
            down(o, PgState::Stopped, 2, false);
            p.tags.nofailover = true;
        }),
        case!("free key, invalid data dir does not start", "StandAside", "PostgreSQL is stopped", |o, m, c, p| {
            no_leader(o);
            down(o, PgState::Stopped, 2, false);
            o.data_dir = DataDir::Invalid;
            o.control = Some(Ok(ControlFacts { system_identifier: "7300000000000000001".into(), timeline: 2, was_primary: false }));
        }),
        case!("free key, PostgreSQL still starting", "StandAside", "PostgreSQL is starting", |o, m, c, p| {
            no_leader(o);
            o.pg = PgStatus { state: PgState::Starting, ..Default::default() };
        }),
        case!(
            "free key, a switchover to a running candidate: stand aside",
            "StandAside",
            "a switchover to n3 is in progress",
            |o, m, c, p| {
                no_leader(o);
                v(o).failover = Some(FailoverRequest { leader: Some("n2".into()), member: Some("n3".into()), scheduled_at: None });
            }
        ),
        case!("free key, a switchover to a candidate that is down: race", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            v(o).failover = Some(FailoverRequest { member: Some("n3".into()), ..Default::default() });
            v(o).members.get_mut("n3").expect("n3").state = "stopped".into();
        }),
        case!("free key, I am the chosen candidate: race whatever my peers say", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            v(o).failover = Some(FailoverRequest { member: Some("n1".into()), ..Default::default() });
            o.peers = vec![peer("n3", 2, 9000)];
        }),
        case!("free key, chosen but lagging: race anyway (the old primary checked)", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            v(o).failover = Some(FailoverRequest { member: Some("n1".into()), ..Default::default() });
            v(o).status = Some(ClusterStatus { optime: u64::MAX / 2, ..Default::default() });
        }),
        case!(
            "free key, chosen but tagged nofailover: drop the request",
            "StandAside",
            "dropped the switchover/failover request that named me",
            |o, m, c, p| {
                no_leader(o);
                v(o).failover = Some(FailoverRequest { member: Some("n1".into()), ..Default::default() });
                p.tags.nofailover = true;
            }
        ),
        case!("free key, chosen, a switchover scheduled later: not yet chosen", "StandAside", "n3 is healthier", |o, m, c, p| {
            no_leader(o);
            v(o).failover = Some(FailoverRequest {
                member: Some("n1".into()),
                scheduled_at: Some("2099-01-01T00:00:00Z".into()),
                ..Default::default()
            });
            o.peers = vec![peer("n3", 2, 9000)];
        }),
        // --- synchronous mode ---
        case!("sync mode, I am the listed standby: race", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            c.synchronous_mode = true;
            v(o).sync = sync_key("n2", Some("n1"));
        }),
        case!("sync mode, I am not listed: stand aside", "StandAside", "not a synchronous standby", |o, m, c, p| {
            no_leader(o);
            c.synchronous_mode = true;
            v(o).sync = sync_key("n2", Some("n3"));
        }),
        case!("sync mode, a listed peer further ahead", "StandAside", "n3 is healthier", |o, m, c, p| {
            no_leader(o);
            c.synchronous_mode = true;
            v(o).sync = sync_key("n2", Some("n1,n3"));
            o.peers = vec![peer("n3", 2, 6000)];
        }),
        case!("sync mode, an unlisted peer further ahead does not count", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            c.synchronous_mode = true;
            v(o).sync = sync_key("n2", Some("n1"));
            o.peers = vec![peer("n3", 2, 6000)];
        }),
        case!("sync mode, /sync names nobody (non-strict): anyone", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            c.synchronous_mode = true;
            v(o).sync = sync_key("n2", None);
        }),
        case!("strict sync mode, /sync names nobody: nobody", "StandAside", "not a synchronous standby", |o, m, c, p| {
            no_leader(o);
            c.synchronous_mode = true;
            c.synchronous_mode_strict = true;
            v(o).sync = sync_key("n2", None);
        }),
        case!("strict sync mode, no /sync at all: nobody", "StandAside", "not a synchronous standby", |o, m, c, p| {
            no_leader(o);
            c.synchronous_mode = true;
            c.synchronous_mode_strict = true;
        }),
        case!(
            "sync mode, stale /sync of an older leader names me as its leader",
            "StandAside",
            "not a synchronous standby",
            |o, m, c, p| {
                no_leader(o);
                c.synchronous_mode = true;
                v(o).history = history(2, "n2");
                v(o).sync = sync_key("n1", Some("n3"));
            }
        ),
        case!("sync mode, I am the sync leader of the newest timeline", "Race", "as the running primary", |o, m, c, p| {
            as_primary(o);
            v(o).leader = None;
            c.synchronous_mode = true;
            v(o).history = history(2, "n1");
            v(o).sync = sync_key("n1", Some("n2"));
        }),
        case!(
            "sync mode, chosen but not listed: drop the request",
            "StandAside",
            "dropped the switchover/failover request",
            |o, m, c, p| {
                no_leader(o);
                c.synchronous_mode = true;
                v(o).sync = sync_key("n2", Some("n3"));
                v(o).failover = Some(FailoverRequest { member: Some("n1".into()), ..Default::default() });
                v(o).members.get_mut("n3").expect("n3").state = "stopped".into();
            }
        ),
        case!("sync mode off: /sync is ignored", "Race", "racing", |o, m, c, p| {
            no_leader(o);
            v(o).sync = sync_key("n2", Some("n3"));
        }),
        // --- published state and in-step states ---
        case!(
            "a replica being rewound (published state) is not running: wait to start",
            "Wait",
            "PostgreSQL is rewinding",
            |o, m, c, p| {
                o.pg = PgStatus { state: PgState::InStep(Step::Rewinding), ..Default::default() };
                o.postmaster = None;
                m.last_start = Some(o.now);
            }
        ),
        case!("primary hung and the key free: stand aside, demote", "Demote", "PostgreSQL is hung", |o, m, c, p| {
            as_primary(o);
            v(o).leader = None;
            o.liveness = Verdict::Hung { failing_for: Duration::from_secs(8) };
        }),
        // --- a standby cluster ---
        case!(
            "standby cluster, no /initialize, no data dir: copy the remote",
            "BootstrapStandby",
            "standby cluster of 10.9.0.1:5432",
            |o, m, c, p| {
                standby(c);
                v(o).initialize = None;
                o.data_dir = DataDir::Empty;
            }
        ),
        case!(
            "standby cluster, no /initialize, a data dir here: not adopted",
            "Wait",
            "refusing to initialize a standby cluster over the data directory",
            |o, m, c, p| {
                standby(c);
                v(o).initialize = None;
            }
        ),
        case!(
            "standby leader, a running replica: follows the remote",
            "LeadStandby",
            "the standby leader, following 10.9.0.1:5432",
            |o, m, c, p| {
                as_standby_leader(o, c);
            }
        ),
        case!(
            "standby leader on an older timeline than /history: still never promotes",
            "LeadStandby",
            "following 10.9.0.1",
            |o, m, c, p| {
                as_standby_leader(o, c);
                v(o).history = history(3, "n2");
            }
        ),
        case!(
            "the section added to a running primary: demote it",
            "Demote",
            "the standby leader now; will rewind and follow 10.9.0.1:5432",
            |o, m, c, p| {
                as_primary(o);
                standby(c);
            }
        ),
        case!("standby leader, PostgreSQL starting", "Wait", "(I am the standby leader)", |o, m, c, p| {
            as_standby_leader(o, c);
            o.pg = PgStatus { state: PgState::Starting, ..Default::default() };
        }),
        case!(
            "standby leader, PostgreSQL down: start it following the remote",
            "StartStandbyLeader",
            "starting PostgreSQL as the standby leader",
            |o, m, c, p| {
                as_standby_leader(o, c);
                down(o, PgState::Crashed, 2, false);
            }
        ),
        case!(
            "standby leader, PostgreSQL down, started a moment ago",
            "Wait",
            "waiting a moment before starting it again",
            |o, m, c, p| {
                as_standby_leader(o, c);
                down(o, PgState::Crashed, 2, false);
                m.last_start = Some(o.now);
            }
        ),
        case!(
            "standby leader, down after running as a primary: rewind from the remote",
            "StartStandbyLeader",
            "rewinding from 10.9.0.1:5432",
            |o, m, c, p| {
                as_standby_leader(o, c);
                down(o, PgState::Stopped, 2, true);
            }
        ),
        case!("standby leader hung: replaced like a primary", "ReplaceHung", "fenced and released the leader key", |o, m, c, p| {
            as_standby_leader(o, c);
            o.liveness = Verdict::Hung { failing_for: Duration::from_secs(8) };
        }),
        case!("the section removed: the standby leader promotes", "Promote", "I hold the leader key", |o, m, c, p| {
            as_standby_leader(o, c);
            c.standby_cluster = None;
        }),
        case!("standby cluster, another member is the standby leader: follow it", "Configure", "a replica, following n2", |o, m, c, p| {
            standby(c);
            v(o).members.get_mut("n2").expect("n2").role = Role::StandbyLeader;
        }),
        case!("standby cluster, empty data dir: clone the standby leader", "Clone", "cloning n2", |o, m, c, p| {
            standby(c);
            v(o).members.get_mut("n2").expect("n2").role = Role::StandbyLeader;
            o.data_dir = DataDir::Empty;
        }),
        case!("standby cluster, the key free: race without promoting", "RaceStandby", "never promoting", |o, m, c, p| {
            standby(c);
            no_leader(o);
        }),
        case!("standby cluster, the key free, lagging behind /status: stand aside", "StandAside", "may not take over", |o, m, c, p| {
            standby(c);
            no_leader(o);
            v(o).status = Some(ClusterStatus { optime: 50_000_000, ..Default::default() });
        }),
        case!("standby cluster, the key free, a primary running here: demote it", "Demote", "no primary runs here", |o, m, c, p| {
            as_primary(o);
            v(o).leader = None;
            standby(c);
        }),
    ]
}

/// The cluster is a standby cluster of 10.9.0.1:5432.
fn standby(c: &mut DynamicConfig) {
    c.standby_cluster =
        Some(crate::standby::StandbyCluster { host: Some("10.9.0.1".into()), port: Some(serde_json::json!(5432)), ..Default::default() });
}

/// n1 holds a standby cluster's key on its own lease; its PostgreSQL a streaming
/// replica (of the remote).
fn as_standby_leader(o: &mut Observation, c: &mut DynamicConfig) {
    as_primary(o);
    standby(c);
    o.pg = replica();
    o.standby_configured = true;
    o.published_holder = false;
}

#[test]
fn the_decision_table() {
    let cases = table();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let action = run(c);
        let sentence = action.to_string();
        if kind(&action) != c.kind || !sentence.contains(c.says) {
            failures.push(format!("{}: expected {} saying {:?}, got {action:?}: {sentence}", c.name, c.kind, c.says));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_case_has_its_own_name() {
    let cases = table();
    let names: std::collections::BTreeSet<_> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len());
}

fn status(state: PgState, role: Role) -> PgStatus {
    PgStatus { state, role, ..Default::default() }
}

/// Issue 16 item 4: the status query failed ("starting", old role kept) while the role
/// was primary: PostgreSQL may still accept writes, so it is stopped, never reconfigured
/// as a replica with the fencer disarmed.
#[test]
fn an_unanswering_primary_may_still_run_as_primary() {
    assert!(may_run_as_primary(&status(PgState::Starting, Role::Primary), true, false));
    assert!(
        may_run_as_primary(&status(PgState::Starting, Role::Primary), true, true),
        "standby.signal written while it ran as primary proves nothing"
    );
    assert!(may_run_as_primary(&status(PgState::Starting, Role::Uninitialized), true, false), "never answered, not started as a standby");
    assert!(may_run_as_primary(&status(PgState::Running, Role::Primary), true, false));
}

#[test]
fn replicas_and_dead_postmasters_are_not_primaries() {
    assert!(!may_run_as_primary(&status(PgState::Running, Role::Replica), true, false));
    assert!(!may_run_as_primary(&status(PgState::Starting, Role::Uninitialized), true, true), "started as a standby, not answering yet");
    assert!(!may_run_as_primary(&status(PgState::Starting, Role::Replica), true, true));
    assert!(!may_run_as_primary(&status(PgState::Crashed, Role::Primary), false, false), "no postmaster");
    assert!(!may_run_as_primary(&status(PgState::Stopped, Role::Uninitialized), false, false));
}

/// `remember`: streaming (or being on the leader's timeline) resets the crash run and
/// the rewind marks; a replica on an older timeline that does not stream keeps them.
#[test]
fn what_a_replica_of_another_leader_remembers() {
    let (o, mut m, _, p) = base();
    m.replica_crashes = 4;
    m.crash_rewound = true;
    m.rewound_onto = Some(2);
    m.last_in_sync = None;
    remember(&mut m, &o, &p);
    assert_eq!((m.replica_crashes, m.crash_rewound, m.rewound_onto, m.last_in_sync), (0, false, None, Some(o.now)));

    let (mut o, mut m, _, p) = base();
    o.pg.timeline = Some(1);
    o.pg.replication_state = None;
    m.replica_crashes = 4;
    m.rewound_onto = Some(2);
    let before = m.last_in_sync;
    remember(&mut m, &o, &p);
    assert_eq!((m.replica_crashes, m.rewound_onto, m.last_in_sync), (4, Some(2), before), "out of sync: nothing forgotten");

    let (mut o, mut m, _, p) = base();
    as_primary(&mut o);
    m.replica_crashes = 4;
    remember(&mut m, &o, &p);
    assert_eq!(m.replica_crashes, 4, "a primary remembers nothing here");

    // A replica that exits at every start is seen "starting" between two exits, before
    // it answers: its timeline is not known then, and that says nothing of being in
    // sync. Forgetting the crash run there kept it from ever reaching the rewind or the
    // re-clone (a chaos pg-hang round: 90 s of restarts, no escalation).
    let (mut o, mut m, _, p) = base();
    o.pg = PgStatus { state: PgState::Starting, role: Role::Replica, ..Default::default() };
    m.replica_crashes = 4;
    let before = m.last_in_sync;
    remember(&mut m, &o, &p);
    assert_eq!((m.replica_crashes, m.last_in_sync), (4, before), "unknown timeline: the crash run goes on");
}
