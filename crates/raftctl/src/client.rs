//! A connection to the etcd v3 API of any raftgres node: the first of `--endpoints`
//! that answers.

use std::time::Duration;

use anyhow::{bail, Context};
use raftgres_proto::etcdserverpb::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

/// How long to wait for a node to accept a connection.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take (etcdctl's default).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// `127.0.0.1:2379` or `http://127.0.0.1:2379` → a URL tonic accepts.
pub fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// Opens a channel to one endpoint.
pub async fn connect_one(endpoint: &str) -> anyhow::Result<Channel> {
    let url = endpoint_url(endpoint);
    let ep = Endpoint::from_shared(url.clone())
        .with_context(|| format!("invalid endpoint {endpoint:?}"))?
        .connect_timeout(DIAL_TIMEOUT)
        .timeout(COMMAND_TIMEOUT);
    ep.connect().await.with_context(|| format!("cannot reach {url}"))
}

/// The API of the first endpoint that answers.
pub struct Api {
    pub channel: Channel,
}

impl Api {
    pub async fn connect(endpoints: &[String]) -> anyhow::Result<Self> {
        let mut errors = Vec::new();
        for endpoint in endpoints {
            match connect_one(endpoint).await {
                Ok(channel) => return Ok(Self { channel }),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        bail!("no endpoint answered: {} (is the cluster running? see `raftctl lab status`)", errors.join("; "))
    }

    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }
}

/// Turns a gRPC error into one line a user can act on.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}
