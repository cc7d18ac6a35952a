//! Scheduled times (`switchover --scheduled`, `restart --scheduled`), read as
//! patronictl reads them (see `raftgres_agent::schedule`): with an offset, or without
//! one as the local time of the machine raftctl runs on. What is sent to the agents is
//! the same instant in UTC, so they never guess a time zone.

use raftgres_agent::schedule;

/// `text` as sent to the agents: RFC 3339 in UTC (`2026-12-05T08:00:00Z`).
pub fn scheduled_for_agents(text: &str) -> anyhow::Result<String> {
    schedule::in_utc(text).map_err(|e| anyhow::anyhow!("--scheduled {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flag_is_named_in_the_error() {
        let e = super::scheduled_for_agents("tomorrow").expect_err("not a time").to_string();
        assert!(e.starts_with("--scheduled \"tomorrow\" is not a time"), "{e}");
        assert_eq!(super::scheduled_for_agents("2026-12-05T10:00+02:00").expect("valid"), "2026-12-05T08:00:00Z");
    }
}
