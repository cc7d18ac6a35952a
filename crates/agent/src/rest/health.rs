//! The health-check decisions behind `GET`/`HEAD`/`OPTIONS` on `/primary`, `/replica`,
//! `/read-only`, `/health`, `/readiness`, ... — Patroni's rules, as pure functions of a
//! [`NodeState`] and the request's query parameters, so they are testable without HTTP.
//!
//! Owns: the query parameters of a health check ([`Params`]), Patroni's size parser for
//! `?lag=` ([`parse_size`]), and the 200-or-503 verdicts. Must not touch: PostgreSQL,
//! the store, or the response format (see `json` and `mod`).

use std::collections::BTreeMap;

use axum::http::{StatusCode, Uri};

use crate::cluster::Role;
use crate::state::NodeState;

/// `maximum_lag_on_failover` when `/config` does not set it (Patroni's default, 1 MiB).
const DEFAULT_MAXIMUM_LAG_ON_FAILOVER: i128 = 1024 * 1024;

/// The query parameters of a request, as Patroni's `parse_qs` sees them: the first value
/// of each name, parameters with an empty value left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Parses the query string of `uri`; a query that does not decode gives no parameters.
    pub fn from_uri(uri: &Uri) -> Self {
        let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            if !value.is_empty() {
                map.entry(name).or_insert(value);
            }
        }
        Self(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `tag_<name>=<value>` filters, as `(name, value)`.
    fn tag_filters(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().filter_map(|(k, v)| k.strip_prefix("tag_").map(|name| (name, v.as_str())))
    }
}

/// Parses a byte count as Patroni's `parse_int(value, 'B')` does: an integer (decimal,
/// `0x` hex or leading-`0` octal) or a decimal fraction, optionally followed by one of
/// the case-sensitive units `B`, `kB`, `MB`, `GB`, `TB` (powers of 1024). `None` when the
/// text is not such a value.
pub fn parse_size(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (value, unit) = if let Some(hex) = body.strip_prefix("0x") {
        let end = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
        (i128::from_str_radix(&hex[..end], 16).ok()? as f64, &hex[end..])
    } else {
        let end = body.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(body.len());
        let number = &body[..end];
        let value = if number.len() > 1 && number.starts_with('0') && !number.contains('.') {
            i128::from_str_radix(number, 8).ok()? as f64
        } else {
            number.parse::<f64>().ok()?
        };
        (value, &body[end..])
    };
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = (value * multiplier).round();
    if !bytes.is_finite() {
        return None;
    }
    // `as` saturates on overflow, which is what an absurdly large limit means anyway.
    let bytes = bytes as i128;
    Some(if negative { -bytes } else { bytes })
}

/// The cluster's last known primary WAL position: the leader member's `xlog_location` or
/// the `/status` optime, whichever is further ahead.
pub fn primary_position(state: &NodeState) -> Option<u64> {
    let from_leader = state.cluster.leader_member().and_then(|m| m.xlog_location);
    let from_status = state.cluster.status.as_ref().map(|s| s.optime).filter(|&o| o > 0);
    from_leader.max(from_status)
}

/// `maximum_lag_on_failover` from `/config` (a number or a size like `"1MB"`), else 1 MiB.
pub fn maximum_lag_on_failover(state: &NodeState) -> i128 {
    let value = state.cluster.config.as_ref().and_then(|(c, _)| c.get("maximum_lag_on_failover"));
    match value {
        Some(serde_json::Value::Number(n)) => n.as_i64().map(i128::from),
        Some(serde_json::Value::String(s)) => parse_size(s),
        _ => None,
    }
    .unwrap_or(DEFAULT_MAXIMUM_LAG_ON_FAILOVER)
}

fn code(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The verdict of a health check on `path` (Patroni's `do_GET`): 200 or 503.
///
/// Like Patroni, the path is matched by substring in this order: `standby-leader`,
/// `leader`, `master`/`primary`/`read-write`, `replica`, `read-only`, `health`, then the
/// exact synchronous-replication paths. Anything else is 503. `tag_*` filters apply to
/// every path except the leader and primary ones. A node whose PostgreSQL failed its
/// liveness probes is published with state "hung" (`ha::hung::published`), which is not
/// running: every check answers 503.
pub fn check(state: &NodeState, path: &str, params: &Params) -> StatusCode {
    let path = if path == "/" { "/primary" } else { path };
    let pg = &state.postgres;
    let running = pg.is_running();

    let max_lag = params.get("lag").and_then(parse_size).unwrap_or(i128::MAX);
    let primary_at = i128::from(primary_position(state).unwrap_or(0));
    let own_at = i128::from(pg.wal_position().unwrap_or(0));
    let lagging = primary_at > 0 && primary_at > own_at.saturating_add(max_lag);
    let replication_state_ok = params.get("replication_state").is_none_or(|wanted| pg.replication_state.as_deref() == Some(wanted));
    let replica_ok = running && pg.role == Role::Replica && !state.tags.noloadbalance && !lagging && replication_state_ok;

    // The standby leader holds a standby cluster's key (it is published only then).
    let standby_leader_ok = running && pg.role == Role::StandbyLeader;
    let leader_ok = (state.holds_leader_key && running) || standby_leader_ok;
    let primary_ok = state.holds_leader_key && running && pg.role == Role::Primary;
    // `/sync` is not part of NodeState yet: nobody is a synchronous standby.
    let is_sync_standby = false;

    let (ok, ignore_tags) = if path.contains("standby_leader") || path.contains("standby-leader") {
        (standby_leader_ok, true)
    } else if path.contains("leader") {
        (leader_ok, true)
    } else if path.contains("master") || path.contains("primary") || path.contains("read-write") {
        (primary_ok, true)
    } else if path.contains("replica") {
        (replica_ok, false)
    } else if path.contains("read-only") && !path.contains("sync") && !path.contains("quorum") {
        (primary_ok || standby_leader_ok || replica_ok, false)
    } else if path.contains("health") {
        (running, false)
    } else {
        let ok = match path {
            "/sync" | "/synchronous" => is_sync_standby && replica_ok,
            "/async" | "/asynchronous" => !is_sync_standby && replica_ok,
            "/read-only-sync" | "/read-only-synchronous" => primary_ok || standby_leader_ok || (is_sync_standby && replica_ok),
            "/read-only-quorum" => primary_ok || standby_leader_ok,
            _ => false,
        };
        (ok, false)
    };

    if ok && !ignore_tags && !tags_match(state, params) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    code(ok)
}

/// Every `tag_<name>=<value>` parameter names a tag this node has, with that value, as
/// Patroni's `do_GET` compares them: a string tag as given (case matters), any other as
/// its text (`true`, `false`, `3`). The standard boolean tags exist only when true, so
/// `tag_nofailover=false` never matches; a custom tag that is `false` does.
fn tags_match(state: &NodeState, params: &Params) -> bool {
    let tags = state.tags.as_map();
    params.tag_filters().all(|(name, value)| tags.get(name).is_some_and(|v| v == value))
}

/// `/readiness` (Patroni's `_readiness`): ready when this node holds the leader key and
/// runs as primary, or runs as a streaming replica (or one tagged nostream, replaying
/// the archive) whose lag behind the primary is within
/// `?lag=` (default `maximum_lag_on_failover`). `?mode=write` measures lag from the
/// received position instead of the replayed one.
pub fn ready(state: &NodeState, params: &Params) -> StatusCode {
    let pg = &state.postgres;
    if !pg.is_running() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if state.holds_leader_key || pg.role == Role::StandbyLeader {
        return code(pg.role.leads());
    }
    if pg.role != Role::Replica || !(pg.streaming() || state.tags.nostream) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let location = if params.get("mode") == Some("write") { pg.receive_lsn } else { pg.replay_lsn };
    let lag = i128::from(primary_position(state).unwrap_or(0)) - i128::from(location.unwrap_or(0));
    let max_lag = params.get("lag").and_then(parse_size).unwrap_or_else(|| maximum_lag_on_failover(state));
    code(lag <= max_lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_patroni_does() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size(" 16kB "), Some(16 * 1024));
        assert_eq!(parse_size("10MB"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("2TB"), Some(2 << 40));
        assert_eq!(parse_size("1.5kB"), Some(1536));
        assert_eq!(parse_size("0x10"), Some(16));
        assert_eq!(parse_size("010"), Some(8));
        assert_eq!(parse_size("-1"), Some(-1));
        assert_eq!(parse_size("5 MB"), Some(5 * 1024 * 1024));
        for bad in ["", "kB", "10mb", "10KB", "1e3", "abc", "1..2", "0x"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("99999999999999999999999999999999999999999TB"), Some(i128::MAX));
    }

    #[test]
    fn tag_filters_match_as_patronis() {
        use crate::config::Tags;
        let custom = [("dc", serde_json::json!("east")), ("rack", serde_json::json!(3)), ("spare", serde_json::json!(false))];
        let tags = Tags { nosync: true, custom: custom.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), ..Default::default() };
        let state = NodeState::new("n2", "demo", tags);
        let matches = |query: &str| tags_match(&state, &Params::from_uri(&format!("/replica?{query}").parse().expect("uri")));
        for query in ["", "tag_dc=east", "tag_rack=3", "tag_spare=false", "tag_nosync=true", "tag_dc=east&tag_rack=3", "lag=1"] {
            assert!(matches(query), "{query:?} should match");
        }
        for query in [
            "tag_dc=East",
            "tag_dc=west",
            "tag_rack=03",
            "tag_spare=False",
            "tag_nosync=false",
            "tag_nofailover=false",
            "tag_zone=a",
            "tag_dc=east&tag_rack=4",
        ] {
            assert!(!matches(query), "{query:?} should not match");
        }
        assert!(matches("tag_dc="), "an empty value is no filter, as in Patroni's parse_qs");
    }

    #[test]
    fn params_keep_the_first_non_empty_value() {
        let uri: Uri = "/replica?lag=1&lag=2&tag_a=&tag_b=x%20y".parse().expect("uri");
        let p = Params::from_uri(&uri);
        assert_eq!(p.get("lag"), Some("1"));
        assert_eq!(p.get("tag_a"), None);
        assert_eq!(p.tag_filters().collect::<Vec<_>>(), vec![("b", "x y")]);
        let odd: Uri = "/replica?%zz=%%&&=&lag".parse().expect("uri");
        let _ = Params::from_uri(&odd);
    }
}
