//! Scheduled times (`switchover --scheduled`, `restart --scheduled`), read as
//! patronictl reads them: RFC 3339 with an offset (`2026-12-05T10:00+02:00`, `...Z`,
//! seconds optional, a space instead of `T` too), or without an offset as the local
//! time of the machine raftctl runs on. What is sent to the agents is the same instant
//! in UTC, so they never guess a time zone.

use anyhow::bail;
use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// The formats with an offset and without one (after `Z` became `+00:00`, space `T`).
const WITH_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z"];
const WITHOUT_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"];

/// `text` as an instant; a time without an offset is in `zone` (the local zone, or a
/// fixed one in tests). One error naming the value and the accepted forms otherwise.
pub fn parse_scheduled<Z: TimeZone>(text: &str, zone: &Z) -> anyhow::Result<DateTime<Utc>> {
    let trimmed = text.trim();
    let normal = trimmed.replacen(' ', "T", 1);
    let normal = match normal.strip_suffix(['Z', 'z']) {
        Some(rest) => format!("{rest}+00:00"),
        None => normal,
    };
    if let Some(at) = WITH_OFFSET.iter().find_map(|f| DateTime::<FixedOffset>::parse_from_str(&normal, f).ok()) {
        return Ok(at.with_timezone(&Utc));
    }
    let Some(naive) = WITHOUT_OFFSET.iter().find_map(|f| NaiveDateTime::parse_from_str(&normal, f).ok()) else {
        bail!(
            "--scheduled {trimmed:?} is not a time: give YYYY-MM-DDTHH:MM[:SS] in local time, or with an offset \
             (2026-12-05T10:00+02:00, 2026-12-05T08:00Z)"
        );
    };
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(..) => {
            bail!("--scheduled {trimmed:?} happens twice in local time (the clocks go back): give it with an offset")
        }
        LocalResult::None => bail!("--scheduled {trimmed:?} does not exist in local time (the clocks go forward): give another time"),
    }
}

/// `text` as sent to the agents: RFC 3339 in UTC (`2026-12-05T08:00:00Z`).
pub fn scheduled_for_agents(text: &str) -> anyhow::Result<String> {
    Ok(parse_scheduled(text, &chrono::Local)?.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc<Z: TimeZone>(text: &str, zone: &Z) -> String {
        parse_scheduled(text, zone).expect("valid").to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    #[test]
    fn offsets_are_honoured_and_local_times_read_in_the_zone() {
        let paris = FixedOffset::east_opt(3600).expect("offset");
        assert_eq!(utc("2026-12-05T10:00+02:00", &paris), "2026-12-05T08:00:00Z");
        assert_eq!(utc("2026-12-05T10:00:30-05:00", &paris), "2026-12-05T15:00:30Z");
        assert_eq!(utc("2026-12-05T10:00:00Z", &paris), "2026-12-05T10:00:00Z");
        assert_eq!(utc("2026-12-05 10:00Z", &paris), "2026-12-05T10:00:00Z");
        assert_eq!(utc("2026-12-05T10:00", &paris), "2026-12-05T09:00:00Z", "no offset: local time");
        assert_eq!(utc("2026-12-05 10:00:00", &paris), "2026-12-05T09:00:00Z");
        assert_eq!(utc("2026-12-05T10:00:00.5", &Utc), "2026-12-05T10:00:00Z");
    }

    #[test]
    fn bad_times_say_what_is_accepted() {
        let zone = Utc;
        for bad in ["tomorrow", "2026-13-01T10:00", "2026-12-05", "10:00", ""] {
            let e = parse_scheduled(bad, &zone).expect_err(bad).to_string();
            assert!(e.contains("is not a time") && e.contains("local time"), "{e}");
        }
    }

    #[test]
    fn the_local_zone_is_used_without_an_offset() {
        let sent = scheduled_for_agents("2099-01-01T00:00").expect("valid");
        let expected =
            chrono::Local.from_local_datetime(&NaiveDateTime::parse_from_str("2099-01-01T00:00", "%Y-%m-%dT%H:%M").expect("naive"));
        assert_eq!(sent, expected.single().expect("one instant").with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true));
        assert_eq!(scheduled_for_agents("2099-01-01T00:00:00Z").expect("valid"), "2099-01-01T00:00:00Z");
    }
}
