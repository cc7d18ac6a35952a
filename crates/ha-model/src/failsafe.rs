//! Failsafe mode in the lease model: the mode switch ([`Failsafe`]), what a member and a
//! primary remember of it (`Promise`, `Round`) and the member's rule for answering a
//! primary's `POST /failsafe` (`confirms`). Kept apart from `lease` so that the rule
//! reads next to the agent's (`crates/agent/src/ha/failsafe.rs` `confirmation`), which it
//! re-states on the model's facts: the agent's function takes the agent's `Local` view,
//! and the agent crate pulls tokio and tonic into anything that depends on it.

/// Whether the model has failsafe mode, and whether members keep their promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failsafe {
    /// `failsafe_mode: false`: no node is ever cut from the store alone (a cut is then
    /// only lost messages and missed cycles, which the model has anyway).
    Off,
    /// `failsafe_mode: true`, as the agent does it.
    On,
    /// A mutation, not a behaviour of the agent: a member that confirmed races for the
    /// key anyway. The check must find two writers with it, or it proves nothing.
    PromiseBroken,
}

impl Failsafe {
    pub fn on(self) -> bool {
        self != Failsafe::Off
    }
}

/// A member's promise not to take the leader key (`Promise::confirm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Promise {
    /// The primary it confirmed.
    pub to: u8,
    /// Ticks of the member's clock until it ends (`ttl` from the answer).
    pub left: u8,
}

/// A primary's confirmation round in flight (`failsafe_confirmed`): its HA loop waits
/// for it, so no cycle runs meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Round {
    /// Ticks of the primary's clock left of the deadline this round can give
    /// (`ping sent + ttl − safety_margin`); the round is gone when it reaches 0.
    pub budget: u8,
    /// The members that confirmed (bit per node).
    pub confirmed: u8,
}

/// What a member knows when a primary's request reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub me: u8,
    /// It races for, holds, or won the key and has not seen another leader since
    /// (`Binding::claimed`).
    pub claimed: bool,
    pub runs_as_primary: bool,
    /// The leader key's holder in its latest view, or the last one it saw once the key
    /// expired (`leader_in_view.or(last_leader)`).
    pub last_leader: Option<u8>,
}

/// `confirmation` on the model's facts: a member confirms `primary` only when it neither
/// holds (nor is named by) the leader key, nor runs as primary, nor is taking the key,
/// and `primary` is the leader it knows.
pub(crate) fn confirms(member: Member, primary: u8) -> bool {
    let holds_key = member.last_leader == Some(member.me);
    !holds_key && !member.runs_as_primary && !member.claimed && member.last_leader == Some(primary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_confirms_only_the_leader_it_knows_and_only_while_it_does_not_claim() {
        let replica = Member { me: 1, claimed: false, runs_as_primary: false, last_leader: Some(0) };
        assert!(confirms(replica, 0));
        assert!(!confirms(replica, 2), "not the leader it knows");
        assert!(!confirms(Member { last_leader: None, ..replica }, 0), "a member that knows no leader confirms nobody");
        assert!(!confirms(Member { claimed: true, ..replica }, 0), "racing");
        assert!(!confirms(Member { runs_as_primary: true, ..replica }, 0), "a primary");
        assert!(!confirms(Member { last_leader: Some(1), ..replica }, 1), "the key's holder");
    }
}
