//! A TCP proxy in front of one node's peer listener. Every member reaches the node
//! through it (its advertised peer address is the proxy's), so a test decides what
//! reaches the node: everything, nothing, the requests without their answers, or
//! everything late. What the node itself sends goes straight to the other proxies.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What happens to the traffic addressed to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes pass both ways.
    Up,
    /// Connections are closed as soon as they are accepted.
    Down,
    /// Requests reach the node; its answers are dropped.
    Mute,
    /// Bytes pass both ways, each direction this much late.
    Slow(Duration),
}

pub struct Proxy {
    pub addr: String,
    link: Arc<watch::Sender<Link>>,
}

impl Proxy {
    /// A proxy forwarding to `target`, with the link up.
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a proxy port");
        let addr = listener.local_addr().expect("the proxy's address").to_string();
        let link = Arc::new(watch::Sender::new(Link::Up));
        tokio::spawn(accept(listener, target, link.subscribe()));
        Proxy { addr, link }
    }

    /// Changes the link. Connections opened under the old setting are closed, so the
    /// new one applies to everything from now on.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

async fn accept(listener: TcpListener, target: String, links: watch::Receiver<Link>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let link = *links.borrow();
        if link == Link::Down {
            continue;
        }
        let mut changed = links.clone();
        changed.mark_unchanged();
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else { return };
            let (delay, answers) = match link {
                Link::Slow(delay) => (delay, true),
                Link::Mute => (Duration::ZERO, false),
                Link::Up | Link::Down => (Duration::ZERO, true),
            };
            let ((in_read, in_write), (out_read, out_write)) = (inbound.into_split(), outbound.into_split());
            tokio::select! {
                () = pipe(in_read, out_write, delay, true) => {}
                () = pipe(out_read, in_write, delay, answers) => {}
                _ = changed.changed() => {}
            }
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; drops it all unless `deliver`.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, deliver: bool) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if deliver && tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(read, write);
}
