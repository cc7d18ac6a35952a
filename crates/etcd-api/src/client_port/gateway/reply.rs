//! The gateway's HTTP answers, as grpc-gateway v1 (etcd 3.4) writes them: a message is
//! `200` and its JSON; a gRPC error is `{"error":M,"message":M,"code":N}` with the HTTP
//! status grpc-gateway maps the code to; a stream is chunked, one line per message,
//! `{"result":{...}}`, and an error ending it `{"error":{"grpc_code":N,...}}`.

use http_body::Frame;
use http_body_util::{Full, StreamBody};
use tokio_stream::{Stream, StreamExt};
use tonic::body::BoxBody;
use tonic::codegen::http::{header, HeaderValue, Response, StatusCode};
use tonic::codegen::Bytes;
use tonic::{Code, Status};

const JSON: &str = "application/json";

/// grpc-gateway v1's `HTTPStatusFromCode`.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: BoxBody) -> Response<BoxBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn full(text: String) -> BoxBody {
    tonic::body::boxed(Full::new(Bytes::from(text)))
}

/// A plain-text answer (unknown method: 404, not POST: 405), as Go's mux writes it.
pub fn text(status: StatusCode, text: &str) -> Response<BoxBody> {
    with_type(status, "text/plain; charset=utf-8", full(format!("{text}\n")))
}

/// A unary call's answer: the response message, or the error.
pub fn unary(result: Result<String, Status>) -> Response<BoxBody> {
    match result {
        Ok(json) => with_type(StatusCode::OK, JSON, full(json)),
        Err(status) => with_type(http_status(status.code()), JSON, full(error_json(&status))),
    }
}

/// `{"error":M,"message":M,"code":N}`.
pub fn error_json(status: &Status) -> String {
    let message = serde_json::Value::from(status.message());
    format!(r#"{{"error":{message},"message":{message},"code":{}}}"#, status.code() as i32)
}

/// One line of a stream: `{"result":<message>}`, or the error ending the stream.
pub fn stream_line(item: Result<String, Status>) -> String {
    match item {
        Ok(json) => format!("{{\"result\":{json}}}\n"),
        Err(status) => {
            let http = http_status(status.code());
            let error = serde_json::json!({
                "grpc_code": status.code() as i32,
                "http_code": http.as_u16(),
                "message": status.message(),
                "http_status": http.canonical_reason().unwrap_or_default(),
            });
            format!("{{\"error\":{error}}}\n")
        }
    }
}

/// A streaming call's answer: 200, then one line per item as it comes (chunked), the
/// stream ending after an error.
pub fn stream(lines: impl Stream<Item = Result<String, Status>> + Send + 'static) -> Response<BoxBody> {
    let mut failed = false;
    let frames = lines
        .take_while(move |item| {
            let go_on = !failed;
            failed = item.is_err();
            go_on
        })
        .map(|item| Ok::<_, Status>(Frame::data(Bytes::from(stream_line(item)))));
    with_type(StatusCode::OK, JSON, tonic::body::boxed(StreamBody::new(frames)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd 3.4.23's answer to a range on a compacted revision (400).
    #[test]
    fn an_error_is_written_as_etcd_writes_it() {
        let status = Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        assert_eq!(
            error_json(&status),
            r#"{"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11}"#
        );
        assert_eq!(http_status(status.code()), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::FailedPrecondition), StatusCode::PRECONDITION_FAILED);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
    }

    #[test]
    fn stream_lines_wrap_results_and_errors() {
        assert_eq!(stream_line(Ok(r#"{"created":true}"#.into())), "{\"result\":{\"created\":true}}\n");
        let line = stream_line(Err(Status::unavailable("etcdserver: no leader")));
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader", "http_status": "Service Unavailable"}})
        );
    }
}
