//! `GET /dashboard` (the self-contained page) and `GET /events` without a store; HEAD
//! and OPTIONS on both stay health checks, as on every path Patroni has no check for.

use axum::http::{Method, StatusCode};

use super::*;

#[tokio::test]
async fn dashboard_is_one_self_contained_html_page() {
    let (status, content_type, body) = call(&primary(), Method::GET, "/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
    let page = String::from_utf8(body).expect("utf-8");
    assert!(page.starts_with("<!doctype html>") && page.trim_end().ends_with("</html>"));
    for path in ["\"/cluster\"", "\"/patroni\"", "\"/events\""] {
        assert!(page.contains(path), "the page polls {path}");
    }
    // Nothing is loaded from elsewhere: no stylesheet, script or image by URL.
    for external in ["<link", " src=", "@import", "url(", "https://"] {
        assert!(!page.contains(external), "the page refers to an external resource ({external})");
    }
}

#[tokio::test]
async fn head_and_options_stay_health_checks() {
    for path in ["/dashboard", "/events"] {
        for state in [primary(), lagging_replica()] {
            let (want, _, _) = call(&state, Method::HEAD, "/no-such-check").await;
            for method in [Method::HEAD, Method::OPTIONS] {
                let (status, _, body) = call(&state, method.clone(), path).await;
                assert_eq!(status, want, "{method} {path} on {}", state.name);
                assert!(body.is_empty(), "{method} {path} has a body");
            }
        }
    }
}

#[tokio::test]
async fn events_need_a_store() {
    let (status, content_type, body) = call(&primary(), Method::GET, "/events").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert!(String::from_utf8_lossy(&body).contains("no store"));
}
