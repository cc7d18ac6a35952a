//! etcd's grpc-gateway on the client port: `POST /v3/<service>/<method>` (also under
//! `/v3beta/` and `/v3alpha/`, the prefixes etcd 3.3 and 3.4 serve) with the request
//! message as JSON, answered with the response message as JSON; `/v3/watch`,
//! `/v3/lease/keepalive` and the other streaming methods answer one JSON line per
//! message. Patroni's `etcd3` DCS and curl scripts speak this.
//!
//! - `json`: etcd's JSON encoding of the protobuf messages;
//! - `routes`: the path of each method and how it is called;
//! - `reply`: the HTTP answers (errors and status codes as grpc-gateway writes them).

mod json;
mod reply;
mod routes;

use http_body_util::{BodyExt, Limited};
use tonic::body::BoxBody;
use tonic::codegen::http::{header, Method, Request, Response, StatusCode};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::Status;

use crate::EtcdApi;

/// The path prefixes of the gateway.
const PREFIXES: [&str; 3] = ["/v3/", "/v3beta/", "/v3alpha/"];

/// The method part of a gateway path (`kv/range` of `/v3/kv/range`), `None` for a path
/// the gateway does not own.
pub fn method_of(path: &str) -> Option<&str> {
    PREFIXES.iter().find_map(|prefix| path.strip_prefix(prefix))
}

/// The gateway of one client port: its channel to the node's gRPC services.
#[derive(Clone)]
pub struct Gateway {
    channel: Channel,
    /// The largest JSON body read (twice the gRPC limit: base64 and JSON syntax grow a
    /// request; the service still enforces the real limit on the decoded message).
    max_body: usize,
}

impl Gateway {
    pub fn new(api: &EtcdApi) -> Self {
        Self { channel: api.untrusted_in_process_channel(), max_body: api.limits().max_decoding_bytes().saturating_mul(2) }
    }

    /// Answers `request`, whose path [`method_of`] accepted as `method`.
    pub async fn answer(&self, method: &str, request: Request<BoxBody>) -> Response<BoxBody> {
        if request.method() != Method::POST {
            return reply::text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        }
        let token = match token(&request) {
            Ok(token) => token,
            Err(status) => return reply::unary(Err(status)),
        };
        let body = match Limited::new(request.into_body(), self.max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return reply::unary(Err(body_error(&*e, self.max_body))),
        };
        let call = routes::Call { channel: self.channel.clone(), token, body };
        match routes::dispatch(method, call).await {
            Some(response) => response,
            None => reply::text(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
}

/// The `Authorization` header (an etcd auth token) as gRPC metadata.
fn token<B>(request: &Request<B>) -> Result<Option<AsciiMetadataValue>, Status> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let invalid = || Status::invalid_argument("the Authorization header is not a valid token (visible ASCII only)");
    let text = value.to_str().map_err(|_| invalid())?;
    AsciiMetadataValue::try_from(text).map(Some).map_err(|_| invalid())
}

fn body_error(e: &(dyn std::error::Error + 'static), max_body: usize) -> Status {
    if e.is::<http_body_util::LengthLimitError>() {
        Status::resource_exhausted(format!("request body larger than {max_body} bytes"))
    } else {
        Status::invalid_argument(format!("reading the request body: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_owns_the_v3_prefixes() {
        assert_eq!(method_of("/v3/kv/range"), Some("kv/range"));
        assert_eq!(method_of("/v3beta/watch"), Some("watch"));
        assert_eq!(method_of("/v3alpha/lease/grant"), Some("lease/grant"));
        assert_eq!(method_of("/v3"), None);
        assert_eq!(method_of("/version"), None);
        assert_eq!(method_of("/v2/keys"), None);
    }

    #[test]
    fn the_authorization_header_becomes_the_token() {
        let request = |value: &[u8]| Request::builder().header(header::AUTHORIZATION, value).body(()).expect("request");
        let token = token(&request(b"abc.42")).expect("token").expect("some");
        assert_eq!(token.to_str().expect("ascii"), "abc.42");
        assert!(super::token(&Request::new(())).expect("none").is_none());
        assert_eq!(super::token(&request(b"caf\xc3\xa9")).expect_err("not ascii").code(), tonic::Code::InvalidArgument);
    }
}
