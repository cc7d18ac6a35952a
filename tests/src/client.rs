//! A thin etcd v3 client for tests, over the generated tonic stubs.

use std::time::Duration;

use anyhow::Context;
use raftgres_proto::etcdserverpb::cluster_client::ClusterClient;
use raftgres_proto::etcdserverpb::kv_client::KvClient;
use raftgres_proto::etcdserverpb::lease_client::LeaseClient;
use raftgres_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use raftgres_proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest, StatusResponse};
use tonic::transport::{Channel, Endpoint};

#[derive(Clone)]
pub struct Client {
    pub channel: Channel,
}

impl Client {
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("connect {addr}"))?;
        Ok(Self { channel })
    }

    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }

    pub fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone())
    }

    pub async fn put(&self, key: &str, value: &str) -> anyhow::Result<i64> {
        let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        let resp = self.kv().put(req).await?.into_inner();
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    /// Linearizable get of one key's value.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.get_with(key, false).await
    }

    pub async fn get_with(&self, key: &str, serializable: bool) -> anyhow::Result<Option<String>> {
        let req = RangeRequest { key: key.into(), serializable, ..Default::default() };
        let resp = self.kv().range(req).await?.into_inner();
        Ok(resp.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    pub async fn status(&self) -> anyhow::Result<StatusResponse> {
        Ok(MaintenanceClient::new(self.channel.clone()).status(StatusRequest {}).await?.into_inner())
    }
}
