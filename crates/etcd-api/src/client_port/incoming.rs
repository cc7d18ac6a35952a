//! Accepting client-port connections: TCP_NODELAY, the TLS handshake when the port has
//! TLS (ALPN `h2` and `http/1.1`, client certificates as configured), then the
//! connection read through [`FixAuthority`]. Handshakes run in their own tasks, so a
//! slow client never holds up the accept loop; the loop ends when the server drops the
//! stream. Each request of a connection carries its [`ClientConn`] (tonic's connect
//! info): the addresses, and the CommonName of the client certificate, etcd's user for
//! calls without a token (`access`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::frames::FixAuthority;

/// A handshake that takes longer than this is dropped (a stuck client must not pile up).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted and not yet taken by the server.
const BACKLOG: usize = 64;

/// What the requests of one connection know of it (in their extensions).
#[derive(Debug, Clone)]
pub struct ClientConn {
    /// The CommonName of the certificate the client presented (client-cert-auth).
    pub certificate_user: Option<String>,
}

/// A client connection, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The client certificate's user, for tonic's request extensions.
    fn client_conn(&self) -> ClientConn;
}

impl Io for TcpStream {
    fn client_conn(&self) -> ClientConn {
        ClientConn { certificate_user: None }
    }
}

impl Io for tokio_rustls::server::TlsStream<TcpStream> {
    fn client_conn(&self) -> ClientConn {
        let leaf = self.get_ref().1.peer_certificates().and_then(|certs| certs.first());
        ClientConn { certificate_user: leaf.and_then(|cert| raftgres_tls::common_name(cert)) }
    }
}

/// What the server reads: a connection with its `:authority` values fixed.
pub type Conn = FixAuthority<Box<dyn Io>>;

impl Connected for Conn {
    type ConnectInfo = ClientConn;

    fn connect_info(&self) -> ClientConn {
        self.get_ref().client_conn()
    }
}

/// The connections accepted on `listener`, over TLS when `tls` is set.
pub fn incoming(listener: TcpListener, tls: Option<Arc<ServerConfig>>) -> ReceiverStream<std::io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(accept_loop(listener, tls.map(TlsAcceptor::from), tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, tx: mpsc::Sender<std::io::Result<Conn>>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Too many open files, a connection reset before accept, ...: wait and retry.
                tracing::warn!("client port: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Without it small replies wait ~40 ms for Nagle.
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = tls.clone() else {
            if tx.send(Ok(FixAuthority::new(Box::new(tcp)))).await.is_err() {
                return;
            }
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(FixAuthority::new(Box::new(stream)))).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "client port: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "client port: TLS handshake timed out"),
            }
        });
    }
}
