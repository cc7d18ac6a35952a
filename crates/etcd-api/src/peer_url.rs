//! Member URLs: etcd names a member's peer endpoint `http://HOST:PORT`, or
//! `https://HOST:PORT` when peers use TLS; the store knows it as `HOST:PORT`. Parsing is
//! strict enough to catch typos (a missing port, a path, a scheme that does not match
//! the peer transport) and says what to write instead.

use raftgres_tls::scheme;

/// `http://HOST:PORT` (`https://` when `tls`, or a bare `HOST:PORT`) → `HOST:PORT`. IPv6
/// hosts are written in brackets (`http://[::1]:2380`). Err: what is wrong, for the client.
pub fn peer_addr_from_url(url: &str, tls: bool) -> Result<String, String> {
    let url = url.trim();
    let want = scheme(tls);
    let expected = format!("expected {want}://HOST:PORT");
    let expected = expected.as_str();
    let rest = match url.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case(want) => rest,
        Some((s, _)) if s.eq_ignore_ascii_case(scheme(!tls)) => {
            let why = if tls { "this cluster's peers use TLS" } else { "this cluster's peers do not use TLS (no peer-transport-security)" };
            return Err(format!("{url:?}: {why}; {expected}"));
        }
        Some((s, _)) => return Err(format!("{url:?}: unsupported scheme {s:?}; {expected}")),
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(format!("{url:?} has no host; {expected}"));
    }
    if let Some(bad) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} has {bad:?} after the host (paths, queries and user names are not allowed); {expected}"));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("{url:?} has no port; {expected}"))?;
    if host.is_empty() {
        return Err(format!("{url:?} has no host; {expected}"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.contains(':') && !bracketed {
        return Err(format!("{url:?}: write IPv6 addresses in brackets, e.g. http://[::1]:2380"));
    }
    if host.contains(['[', ']']) && !bracketed {
        return Err(format!("{url:?} has a malformed host; {expected}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("{host}:{port}")),
        _ => Err(format!("{url:?} has an invalid port {port:?} (1-65535); {expected}")),
    }
}

/// `HOST:PORT` → the URL etcd shows (`http://HOST:PORT`, `https://` when `tls`).
pub fn url_from_addr(addr: &str, tls: bool) -> String {
    format!("{}://{addr}", scheme(tls))
}

/// The one peer address of a member given as a list of URLs (etcd allows several; a
/// raftgres member has exactly one, duplicates aside).
pub fn single_peer_addr(urls: &[String], tls: bool) -> Result<String, String> {
    let mut addrs = Vec::new();
    for url in urls {
        let addr = peer_addr_from_url(url, tls)?;
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    match addrs.len() {
        0 => Err(format!("no peer URL given; expected {}://HOST:PORT", scheme(tls))),
        1 => Ok(addrs.remove(0)),
        _ => Err(format!("{} different peer URLs given; a raftgres member has exactly one", addrs.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_bare_host_port() {
        assert_eq!(peer_addr_from_url("http://127.0.0.1:2380", false), Ok("127.0.0.1:2380".into()));
        assert_eq!(peer_addr_from_url("HTTP://node2:2380/", false), Ok("node2:2380".into()));
        assert_eq!(peer_addr_from_url(" 10.0.0.1:2380 ", false), Ok("10.0.0.1:2380".into()));
        assert_eq!(peer_addr_from_url("http://[::1]:2380", false), Ok("[::1]:2380".into()));
        assert_eq!(url_from_addr("10.0.0.1:2380", false), "http://10.0.0.1:2380");
    }

    #[test]
    fn the_scheme_follows_peer_tls() {
        assert_eq!(peer_addr_from_url("https://10.0.0.1:2380", true), Ok("10.0.0.1:2380".into()));
        assert_eq!(peer_addr_from_url("10.0.0.1:2380", true), Ok("10.0.0.1:2380".into()));
        let err = peer_addr_from_url("http://10.0.0.1:2380", true).expect_err("http with TLS");
        assert!(err.contains("use TLS; expected https://"), "{err}");
        assert_eq!(url_from_addr("10.0.0.1:2380", true), "https://10.0.0.1:2380");
    }

    #[test]
    fn refuses_malformed_urls_with_a_reason() {
        let bad = [
            ("", "no host"),
            ("http://", "no host"),
            ("http://h", "no port"),
            ("http://h:x", "invalid port"),
            ("http://h:0", "invalid port"),
            ("http://h:70000", "invalid port"),
            ("http://h:1/path", "after the host"),
            ("http://u@h:1", "after the host"),
            ("http://h :1", "after the host"),
            ("https://h:1", "TLS"),
            ("unix://sock", "unsupported scheme"),
            ("http://::1:2380", "brackets"),
            ("http://[::1:2380", "brackets"),
            ("http://:2380", "no host"),
            ("http://[]:1", "malformed host"),
        ];
        for (url, why) in bad {
            let err = peer_addr_from_url(url, false).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn one_peer_url_per_member() {
        let one = vec!["http://a:1".to_string(), "a:1".to_string()];
        assert_eq!(single_peer_addr(&one, false), Ok("a:1".into()));
        assert!(single_peer_addr(&[], false).is_err());
        assert!(single_peer_addr(&["http://a:1".into(), "http://b:1".into()], false).is_err());
        assert!(single_peer_addr(&["http://a:1".into(), "bad".into()], false).is_err());
    }
}
