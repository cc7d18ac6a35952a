//! A gRPC channel to this node's etcd API that never leaves the process: each
//! connection is an in-memory duplex pipe served by the same router as the client
//! port. The agent uses it, so it speaks etcd v3 exactly as any client does, without a
//! socket and without depending on the client port's address.
//!
//! The agent's channel is trusted as root when etcd auth is enabled: it never leaves
//! the process, so whoever can use it already runs as this node (the agent needs no
//! etcd user or password, and an operator's `auth enable` cannot lock it out). The JSON
//! gateway's channel is not: it carries remote clients' calls, checked by their tokens.

use std::io;

use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::EtcdApi;

/// Bytes buffered in each direction of one in-process connection.
const PIPE_BYTES: usize = 1 << 20;

impl EtcdApi {
    /// A lazily connecting channel to this API, served in-process until the runtime ends,
    /// its callers trusted as root (the agent's).
    pub fn in_process_channel(&self) -> Channel {
        self.channel_in_process(true)
    }

    /// The same, for callers that speak for a remote client (the JSON gateway, which
    /// copies the client's token into each call): checked as any client is.
    pub(crate) fn untrusted_in_process_channel(&self) -> Channel {
        self.channel_in_process(false)
    }

    fn channel_in_process(&self, trusted: bool) -> Channel {
        let (tx, rx) = mpsc::unbounded_channel::<Result<DuplexStream, io::Error>>();
        let router = EtcdApi { trusted, ..self.clone() }.router();
        tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(UnboundedReceiverStream::new(rx)).await {
                tracing::error!("in-process etcd API stopped: {e}");
            }
        });
        Endpoint::from_static("http://in-process.raftgres").connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let (client, server) = tokio::io::duplex(PIPE_BYTES);
            let sent = tx.send(Ok(server)).map_err(|_| io::Error::other("the in-process etcd API stopped"));
            async move {
                sent?;
                Ok::<_, io::Error>(TokioIo::new(client))
            }
        }))
    }
}
