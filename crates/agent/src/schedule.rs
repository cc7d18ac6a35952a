//! Scheduled times (a scheduled switchover, a scheduled restart), read as patronictl
//! and Patroni's REST API read them: RFC 3339 with an offset (`2026-12-05T10:00+02:00`,
//! `...Z`, seconds optional, a space instead of `T` too), or without an offset as local
//! time in a given zone (raftctl: the machine it runs on; the REST API: the node's).
//! What is stored in `/failover` and acted on is the same instant in UTC, so no agent
//! ever guesses a time zone.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// The formats with an offset and without one (after `Z` became `+00:00`, space `T`).
const WITH_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z"];
const WITHOUT_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"];

/// Why a scheduled time was refused; the message names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTime {
    #[error(
        "{0:?} is not a time: give YYYY-MM-DDTHH:MM[:SS] in local time, or with an offset (2026-12-05T10:00+02:00, 2026-12-05T08:00Z)"
    )]
    NotATime(String),
    #[error("{0:?} happens twice in local time (the clocks go back): give it with an offset")]
    Ambiguous(String),
    #[error("{0:?} does not exist in local time (the clocks go forward): give another time")]
    Skipped(String),
}

/// `text` as an instant; a time without an offset is in `zone`.
pub fn parse<Z: TimeZone>(text: &str, zone: &Z) -> Result<DateTime<Utc>, BadTime> {
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
        return Err(BadTime::NotATime(trimmed.to_string()));
    };
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(..) => Err(BadTime::Ambiguous(trimmed.to_string())),
        LocalResult::None => Err(BadTime::Skipped(trimmed.to_string())),
    }
}

/// `text` (local time of this machine without an offset) as stored and sent: RFC 3339 in
/// UTC (`2026-12-05T08:00:00Z`).
pub fn in_utc(text: &str) -> Result<String, BadTime> {
    Ok(parse(text, &chrono::Local)?.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc<Z: TimeZone>(text: &str, zone: &Z) -> String {
        parse(text, zone).expect("valid").to_rfc3339_opts(SecondsFormat::Secs, true)
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
        for bad in ["tomorrow", "2026-13-01T10:00", "2026-12-05", "10:00", ""] {
            let e = parse(bad, &Utc).expect_err(bad).to_string();
            assert!(e.contains("is not a time") && e.contains("local time"), "{e}");
        }
    }

    #[test]
    fn the_local_zone_is_used_without_an_offset() {
        let sent = in_utc("2099-01-01T00:00").expect("valid");
        let naive = NaiveDateTime::parse_from_str("2099-01-01T00:00", "%Y-%m-%dT%H:%M").expect("naive");
        let expected = chrono::Local.from_local_datetime(&naive).single().expect("one instant");
        assert_eq!(sent, expected.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true));
        assert_eq!(in_utc("2099-01-01T00:00:00Z").expect("valid"), "2099-01-01T00:00:00Z");
    }
}
