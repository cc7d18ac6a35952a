//! The cluster's alarms, as etcd keeps them: a set of (member, alarm type), part of the
//! replicated state so every member agrees. An alarm is raised or cleared only by a
//! [`Request::Alarm`](crate::Request::Alarm) through the Raft log; reading the list is
//! local.
//!
//! raftgres raises one alarm itself: NOSPACE, when a write would take the state past a
//! member's `--quota-backend-bytes`. While it is raised the state machine refuses every
//! write that adds data (`raftgres_mvcc::space_needed`), with etcd's "database space
//! exceeded"; reads, deletes, revokes and compactions pass, and `etcdctl alarm disarm`
//! clears it (a later write over quota raises it again, as in etcd).

use std::collections::BTreeSet;

use raftgres_proto::etcdserverpb::alarm_request::AlarmAction;
use raftgres_proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmType};
use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// The raised alarms: (member id, `AlarmType` as its protobuf number).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarms {
    raised: BTreeSet<(NodeId, i32)>,
}

impl Alarms {
    /// True while some member's NOSPACE alarm is raised.
    pub fn no_space(&self) -> bool {
        self.raised.iter().any(|(_, alarm)| *alarm == AlarmType::Nospace as i32)
    }

    /// Every raised alarm, by member then type.
    pub fn list(&self) -> Vec<AlarmMember> {
        self.raised.iter().map(|(member_id, alarm)| AlarmMember { member_id: *member_id, alarm: *alarm }).collect()
    }

    /// Raises or clears one alarm; answers what changed, as etcd does (nothing when the
    /// alarm was already raised, or was not). A GET changes nothing and answers all.
    pub fn apply(&mut self, req: &AlarmRequest) -> Vec<AlarmMember> {
        let key = (req.member_id, req.alarm);
        let changed = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) | Err(_) => return self.list(),
            Ok(AlarmAction::Activate) => req.alarm != AlarmType::None as i32 && self.raised.insert(key),
            Ok(AlarmAction::Deactivate) => self.raised.remove(&key),
        };
        if changed {
            vec![AlarmMember { member_id: req.member_id, alarm: req.alarm }]
        } else {
            Vec::new()
        }
    }
}

/// The request that raises this member's NOSPACE alarm.
pub fn raise_no_space(member_id: NodeId) -> AlarmRequest {
    AlarmRequest { action: AlarmAction::Activate as i32, member_id, alarm: AlarmType::Nospace as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: AlarmAction, member_id: NodeId, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest { action: action as i32, member_id, alarm: alarm as i32 }
    }

    #[test]
    fn raising_and_clearing_answer_what_changed() {
        let mut alarms = Alarms::default();
        assert!(!alarms.no_space());
        assert_eq!(alarms.apply(&raise_no_space(7)).len(), 1);
        assert!(alarms.apply(&raise_no_space(7)).is_empty(), "already raised");
        assert!(alarms.no_space());
        assert_eq!(alarms.apply(&raise_no_space(9)).len(), 1, "per member");
        assert_eq!(alarms.apply(&req(AlarmAction::Get, 0, AlarmType::None)).len(), 2);
        assert_eq!(alarms.apply(&req(AlarmAction::Deactivate, 7, AlarmType::Nospace)).len(), 1);
        assert!(alarms.no_space(), "member 9's alarm is still raised");
        assert_eq!(alarms.apply(&req(AlarmAction::Deactivate, 9, AlarmType::Nospace)).len(), 1);
        assert!(alarms.apply(&req(AlarmAction::Deactivate, 9, AlarmType::Nospace)).is_empty(), "not raised");
        assert!(!alarms.no_space());
        assert!(alarms.apply(&req(AlarmAction::Activate, 7, AlarmType::None)).is_empty(), "NONE is no alarm");
        assert!(alarms.list().is_empty());
    }
}
