//! The kinds of fault a chaos run knows, by name and in the order a run goes through
//! them. How each is done and undone is in [`faults`](super::faults); what each must
//! end like, in [`expect`](super::expect).

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Fault {
    /// kill -9 of the primary's node (agent, store and PostgreSQL); started again later.
    Kill,
    /// kill -9 of the primary's postmaster only.
    Postmaster,
    /// SIGSTOP of the primary's agent for the hold time, then SIGCONT.
    Pause,
    /// The primary cut off from the other nodes for the hold time.
    Partition,
    /// The primary cannot send to the other nodes (they can send to it).
    PartitionOneway,
    /// The primary receives nothing from the other nodes (it can still send to them):
    /// a Raft leader there keeps sending heartbeats it never hears answered.
    PartitionInbound,
    /// netem on every node's link for the hold time.
    Netem,
    /// A replica's disk full for the hold time.
    Diskfull,
    /// Every node killed at once, then started again.
    RestartAll,
    /// SIGSTOP of the primary node's whole process group (Ctrl-Z of the job), then SIGCONT.
    GroupStop,
    /// The primary killed, then the node that took over killed as soon as it took a
    /// write (the first one restarted just before, so Raft keeps 2 of 3).
    DoubleFailover,
    /// The primary cut off from the Raft leader only; every other link works.
    Bridge,
    /// The primary and one replica each cut off from everyone at once.
    IsolateTwo,
    /// `failsafe_mode` on, only the Raft port of every node cut (REST answers), a
    /// replica restarted meanwhile.
    Failsafe,
    /// The primary's backends stopped (the postmaster still accepts connections) while
    /// a switchover is requested.
    PgStall,
    /// `ttl` doubled through `/config`, then set back, under load.
    TtlChange,
    /// SIGSTOP of the primary's postmaster and all its children (a hung PostgreSQL).
    PgHang,
}

/// Every fault, in the order a run goes through them.
pub const ALL: [Fault; 17] = [
    Fault::Kill,
    Fault::Postmaster,
    Fault::Pause,
    Fault::Partition,
    Fault::PartitionOneway,
    Fault::PartitionInbound,
    Fault::Netem,
    Fault::Diskfull,
    Fault::RestartAll,
    Fault::GroupStop,
    Fault::DoubleFailover,
    Fault::Bridge,
    Fault::IsolateTwo,
    Fault::Failsafe,
    Fault::TtlChange,
    Fault::PgStall,
    Fault::PgHang,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Postmaster => "postmaster",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::PartitionOneway => "partition-oneway",
            Fault::PartitionInbound => "partition-inbound",
            Fault::Netem => "netem",
            Fault::Diskfull => "diskfull",
            Fault::RestartAll => "restart-all",
            Fault::GroupStop => "group-stop",
            Fault::DoubleFailover => "double-failover",
            Fault::Bridge => "bridge",
            Fault::IsolateTwo => "isolate-two",
            Fault::Failsafe => "failsafe",
            Fault::PgStall => "pg-stall",
            Fault::TtlChange => "ttl-change",
            Fault::PgHang => "pg-hang",
        }
    }
}
