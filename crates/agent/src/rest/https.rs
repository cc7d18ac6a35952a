//! Serving the REST API over HTTPS: accept, TLS handshake (rustls, client certificates
//! per `restapi.verify_client`), then HTTP/1.1 with hyper on the same axum router as
//! plain HTTP. With `verify_client: optional`, a connection that presented no
//! certificate is marked ([`NoClientCert`]) so the mutating endpoints can refuse it, as
//! Patroni does.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::tls::{RestTls, VerifyClient};

/// A handshake that takes longer than this is dropped (a stuck client must not pile up).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request extension: this HTTPS connection presented no client certificate.
#[derive(Debug, Clone, Copy)]
pub struct NoClientCert;

/// Serves `router` over TLS on `listener` until the listener fails.
pub async fn serve(listener: TcpListener, router: Router, tls: RestTls) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls.server.clone());
    let optional = tls.verify_client == VerifyClient::Optional;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_transient(&e) => {
                tracing::warn!("REST API: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "REST API: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let anonymous = optional && stream.get_ref().1.peer_certificates().is_none_or(|c| c.is_empty());
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                if anonymous {
                    request.extensions_mut().insert(NoClientCert);
                }
                tower_service::Service::call(&mut router.clone(), request)
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "REST API connection: {e}");
            }
        });
    }
}

/// Errors of `accept` that concern one connection or a passing shortage (e.g. too many
/// open files), not the listener.
fn is_transient(e: &std::io::Error) -> bool {
    !matches!(e.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::PermissionDenied)
}
