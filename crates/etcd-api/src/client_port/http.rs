//! The plain-HTTP side of the client port: a tower layer in front of the gRPC routes.
//! A request whose `content-type` is gRPC goes on to the services untouched (one header
//! lookup per call); any other is answered here, as etcd's client port does:
//!
//! | path       | answer                                                            |
//! |------------|-------------------------------------------------------------------|
//! | `/health`  | `{"health":"true","reason":""}`, or 503 and why not (`health`)    |
//! | `/readyz`  | `ok`, or 503 naming the failed check                              |
//! | `/livez`   | `ok`                                                              |
//! | `/version` | `{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}`                    |
//! | `/metrics` | Prometheus text format, etcd's metric names (`metrics`)           |
//! | `/v3/...`  | etcd's grpc-gateway JSON API (`gateway`; also `/v3beta/`, `/v3alpha/`) |
//!
//! Anything else is 404, as Go's mux answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::Full;
use tonic::body::BoxBody;
use tonic::codegen::http::{header, HeaderValue, Request, Response, StatusCode};
use tower::util::Either;
use tower::{Layer, Service};

use super::gateway::{self, Gateway};
use super::{health, metrics};
use crate::{EtcdApi, ETCD_VERSION};

/// Wraps the gRPC routes with etcd's HTTP endpoints.
#[derive(Clone)]
pub struct HttpLayer {
    api: EtcdApi,
    gateway: Gateway,
}

impl HttpLayer {
    pub fn new(api: EtcdApi) -> Self {
        let gateway = Gateway::new(&api);
        Self { api, gateway }
    }
}

impl<S> Layer<S> for HttpLayer {
    type Service = HttpSide<S>;

    fn layer(&self, inner: S) -> HttpSide<S> {
        HttpSide { inner, api: self.api.clone(), gateway: self.gateway.clone() }
    }
}

/// The gRPC routes `inner`, with the HTTP endpoints beside them.
#[derive(Clone)]
pub struct HttpSide<S> {
    inner: S,
    api: EtcdApi,
    gateway: Gateway,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, Infallible>> + Send>>;

fn is_grpc<B>(request: &Request<B>) -> bool {
    request.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl<S> Service<Request<BoxBody>> for HttpSide<S>
where
    S: Service<Request<BoxBody>, Response = Response<BoxBody>>,
    S::Error: Into<tower::BoxError>,
{
    type Response = Response<BoxBody>;
    type Error = tower::BoxError;
    type Future = Either<S::Future, Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<BoxBody>) -> Self::Future {
        if is_grpc(&request) {
            return Either::A(self.inner.call(request));
        }
        if let Some(method) = gateway::method_of(request.uri().path()).map(str::to_owned) {
            let gateway = self.gateway.clone();
            return Either::B(Box::pin(async move { Ok(gateway.answer(&method, request).await) }));
        }
        let api = self.api.clone();
        Either::B(Box::pin(async move { Ok(answer(&api, request.uri().path()).await) }))
    }
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<BoxBody> {
    let mut response = Response::new(tonic::body::boxed(Full::new(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 200 when healthy, 503 otherwise.
fn health_status<T, E>(result: &Result<T, E>) -> StatusCode {
    if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn answer(api: &EtcdApi, path: &str) -> Response<BoxBody> {
    match path {
        "/health" => {
            let result = health::check(api.store()).await;
            response(health_status(&result), JSON, health::health_json(&result))
        }
        "/readyz" => {
            let result = health::check(api.store()).await;
            response(health_status(&result), TEXT, health::readyz_text(&result))
        }
        "/livez" => response(StatusCode::OK, TEXT, "ok".to_string()),
        "/version" => response(StatusCode::OK, JSON, version_json()),
        "/metrics" => response(StatusCode::OK, PROMETHEUS, metrics::render(&metrics::read(api.store()))),
        _ => response(StatusCode::NOT_FOUND, TEXT, "404 page not found\n".to_string()),
    }
}

/// `/version`: the etcd version the server reports (as Maintenance.Status does) and the
/// cluster version.
fn version_json() -> String {
    format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{}.0"}}"#, metrics::cluster_version())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_told_by_content_type() {
        let request = |ct: &str| Request::builder().header(header::CONTENT_TYPE, ct).body(()).expect("request");
        assert!(is_grpc(&request("application/grpc")));
        assert!(is_grpc(&request("application/grpc+proto")));
        assert!(!is_grpc(&request("application/json")));
        assert!(!is_grpc(&Request::new(())));
    }

    #[test]
    fn version_is_what_status_reports() {
        assert_eq!(version_json(), r#"{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}"#);
    }
}
