//! etcd authentication on a client's channel, as etcd's clientv3 does it: with
//! [`Credentials`], the channel authenticates once when it is made (Auth/Authenticate),
//! then sends the simple token in the `token` metadata of every call; a call answered
//! "etcdserver: invalid auth token" (the member restarted, or the token expired or was
//! voided) authenticates again and is sent once more with the new token. A cluster
//! whose auth is disabled answers Authenticate "authentication is not enabled": the
//! channel then sends no token, as etcdctl goes on.
//!
//! Tokens are per member (`raftgres_etcd_api::tokens`), so each [`AuthChannel`] holds
//! its own. A call is re-sent from a copy of its request body, which is whole for every
//! etcd method except the two whose client side is a stream (Watch, LeaseKeepAlive):
//! those carry the token but are not re-sent.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full};
use raftgres_proto::etcdserverpb::auth_client::AuthClient;
use raftgres_proto::etcdserverpb::AuthenticateRequest;
use tonic::body::BoxBody;
use tonic::codegen::http::{self, HeaderValue};
use tonic::codegen::{BoxFuture, Bytes, Service};
use tonic::transport::Channel;
use tonic::Status;

/// The gRPC metadata key of the token (etcd's `rpctypes.TokenFieldNameGRPC`).
const TOKEN_KEY: &str = "token";
/// etcd's ErrGRPCInvalidAuthToken.
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";
/// etcd's ErrGRPCAuthNotEnabled: Authenticate against a cluster without auth.
const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
/// The etcd methods whose request is a stream: never buffered, never re-sent.
const CLIENT_STREAMS: [&str; 2] = ["/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"];

/// etcd's ErrGRPCUserEmpty: a call without a token while auth is enabled.
const USER_EMPTY: &str = "etcdserver: user name is empty";
/// etcd's ErrGRPCPermissionDenied.
const PERMISSION_DENIED: &str = "etcdserver: permission denied";

/// What to do about an auth refusal whose message ends `message`, for the user.
pub fn hint(message: &str) -> Option<&'static str> {
    if message.ends_with(USER_EMPTY) {
        Some("the store has etcd authentication enabled: give an etcd user with --user USER[:PASSWORD], or $RAFTCTL_USER / $ETCDCTL_USER")
    } else if message.ends_with(PERMISSION_DENIED) {
        Some("the etcd user lacks a permission this needs: reading the cluster's keys, or writing them to change anything; ask for a role that grants it, or use root")
    } else if message.ends_with(INVALID_TOKEN) {
        Some("the member no longer knows the token: run the command again")
    } else {
        None
    }
}

/// An etcd user and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: <hidden> }}", self.user)
    }
}

/// A channel to one member that authenticates its calls when it has credentials.
#[derive(Clone, Debug)]
pub struct AuthChannel {
    inner: Channel,
    session: Option<Arc<Session>>,
}

#[derive(Debug)]
struct Session {
    credentials: Credentials,
    /// None while the member's auth is disabled.
    token: Mutex<Option<HeaderValue>>,
}

impl Session {
    fn token(&self) -> Option<HeaderValue> {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Authenticates on `channel` and keeps the new token.
    async fn authenticate(&self, channel: Channel) -> Result<(), Status> {
        let request = AuthenticateRequest { name: self.credentials.user.clone(), password: self.credentials.password.clone() };
        let token = match AuthClient::new(channel).authenticate(request).await {
            Ok(answer) => Some(
                HeaderValue::from_str(&answer.into_inner().token)
                    .map_err(|_| Status::internal("the member answered a token that is not a valid gRPC metadata value"))?,
            ),
            Err(status) if status.message() == AUTH_NOT_ENABLED => None,
            Err(status) => return Err(status),
        };
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = token;
        Ok(())
    }
}

impl AuthChannel {
    /// `inner` as it is, without credentials: calls carry no token.
    pub fn anonymous(inner: Channel) -> Self {
        Self { inner, session: None }
    }

    /// `inner`, authenticated now as `credentials` when given (the error is the
    /// member's: "authentication failed, invalid user ID or password", ...).
    pub async fn new(inner: Channel, credentials: Option<&Credentials>) -> Result<Self, Status> {
        let Some(credentials) = credentials else { return Ok(Self::anonymous(inner)) };
        let session = Session { credentials: credentials.clone(), token: Mutex::new(None) };
        session.authenticate(inner.clone()).await?;
        Ok(Self { inner, session: Some(Arc::new(session)) })
    }
}

/// Whether `response` is the member's "invalid auth token" refusal (a trailers-only
/// answer: the status is in its headers).
fn refuses_the_token(response: &http::Response<BoxBody>) -> bool {
    Status::from_header_map(response.headers())
        .is_some_and(|status| status.code() == tonic::Code::Unauthenticated && status.message() == INVALID_TOKEN)
}

/// The request of `parts` and its buffered `body`, carrying `token`.
fn replay(parts: &http::request::Parts, body: Bytes, token: Option<HeaderValue>) -> http::Request<BoxBody> {
    let mut request = http::Request::new(tonic::body::boxed(Full::new(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    set_token(request.headers_mut(), token);
    request
}

fn set_token(headers: &mut http::HeaderMap, token: Option<HeaderValue>) {
    match token {
        Some(token) => headers.insert(TOKEN_KEY, token),
        None => headers.remove(TOKEN_KEY),
    };
}

impl Service<http::Request<BoxBody>> for AuthChannel {
    type Response = http::Response<BoxBody>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<BoxBody>) -> Self::Future {
        let Some(session) = self.session.clone() else { return Box::pin(self.inner.call(request)) };
        // The channel polled ready serves this call; this handle keeps a fresh clone.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        if CLIENT_STREAMS.contains(&request.uri().path()) {
            set_token(request.headers_mut(), session.token());
            return Box::pin(ready.call(request));
        }
        let again = self.inner.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(status) => return Ok(status.into_http()),
            };
            let answer = ready.call(replay(&parts, body.clone(), session.token())).await?;
            if !refuses_the_token(&answer) {
                return Ok(answer);
            }
            if let Err(status) = session.authenticate(again.clone()).await {
                return Ok(status.into_http());
            }
            let mut again = again;
            std::future::poll_fn(|cx| again.poll_ready(cx)).await?;
            again.call(replay(&parts, body, session.token())).await
        })
    }
}
