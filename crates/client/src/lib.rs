//! A connection to the etcd v3 API of any raftgres node: the first of the endpoints
//! that answers, over TLS when [`Security`] says so, authenticated as an etcd user when
//! given [`Credentials`] (`auth`), and the REST client for the members. Apart from
//! `raftctl` so that the lab (`raftgres-lab`), which waits for its nodes through the
//! same API, and the CLI share it without depending on each other.

mod auth;
mod security;

use std::time::Duration;

use anyhow::{bail, Context};
use raftgres_proto::etcdserverpb::cluster_client::ClusterClient;
use raftgres_tls::describe;
use tonic::transport::{Channel, Endpoint};

pub use auth::{hint as auth_hint, AuthChannel, Credentials};
pub use security::{Security, TlsFiles};

/// How long to wait for a node to accept a connection.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take (etcdctl's default).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// `127.0.0.1:2379` or `http://127.0.0.1:2379` → a URL tonic accepts (`https://` for a
/// bare address when `tls`).
pub fn endpoint_url(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("{}://{endpoint}", if tls { "https" } else { "http" })
    }
}

/// Opens a channel to one endpoint (over TLS when `security` says so).
pub async fn connect_one(endpoint: &str, security: &Security) -> anyhow::Result<Channel> {
    let url = endpoint_url(endpoint, security.grpc.is_some());
    let mut ep = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid endpoint {endpoint:?}"))?
        .connect_timeout(DIAL_TIMEOUT)
        .timeout(COMMAND_TIMEOUT);
    if let Some(tls) = &security.grpc {
        ep = ep.tls_config(tls.clone()).map_err(|e| anyhow::anyhow!("{url}: {}", describe(&e)))?;
    }
    ep.connect().await.map_err(|e| anyhow::anyhow!("cannot reach {url}: {}", describe(&e)))
}

/// The API of the first endpoint that answers, and how to reach the members.
pub struct Api {
    pub channel: AuthChannel,
    pub security: Security,
    credentials: Option<Credentials>,
}

impl Api {
    /// The first of `endpoints` that answers, authenticated as `credentials` when given
    /// (a wrong password fails here, with the member's message).
    pub async fn connect(endpoints: &[String], security: &Security, credentials: Option<&Credentials>) -> anyhow::Result<Self> {
        let mut errors = Vec::new();
        for endpoint in endpoints {
            match connect_one(endpoint, security).await {
                Ok(channel) => {
                    let channel = authenticate(channel, credentials, endpoint).await?;
                    return Ok(Self { channel, security: security.clone(), credentials: credentials.cloned() });
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        bail!("no endpoint answered: {} (is the cluster running? see `raftctl lab status`)", errors.join("; "))
    }

    /// A channel to another member's client URL, with the same TLS settings and user
    /// (authenticated there: tokens are per member).
    pub async fn connect_member(&self, url: &str) -> anyhow::Result<AuthChannel> {
        authenticate(connect_one(url, &self.security).await?, self.credentials.as_ref(), url).await
    }

    /// The client for the members' REST APIs.
    pub fn rest(&self) -> &raftgres_agent::http::Client {
        &self.security.rest
    }

    pub fn cluster(&self) -> ClusterClient<AuthChannel> {
        ClusterClient::new(self.channel.clone())
    }
}

async fn authenticate(channel: Channel, credentials: Option<&Credentials>, endpoint: &str) -> anyhow::Result<AuthChannel> {
    AuthChannel::new(channel, credentials).await.map_err(|status| {
        let user = credentials.map_or("", |c| c.user.as_str());
        anyhow::anyhow!("cannot authenticate as etcd user {user:?} on {endpoint}: {:#}", status_error(status))
    })
}

/// Turns a gRPC error into one line a user can act on.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    if matches!(status.message(), "transport error" | "operation was canceled") {
        // The connection itself failed: plaintext against a TLS port, or no client
        // certificate where one is required.
        let what = std::error::Error::source(&status).map_or_else(|| status.message().to_string(), describe);
        return anyhow::anyhow!(
            "{what}; if the cluster uses TLS, give --cacert, and --cert and --key when it requires client \
             certificates (or --lab DIR for a `raftctl lab up --tls` lab)"
        );
    }
    match auth::hint(status.message()) {
        Some(hint) => anyhow::anyhow!("{} ({hint})", status.message()),
        None => anyhow::anyhow!("{}", status.message()),
    }
}
