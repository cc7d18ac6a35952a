//! The lab's port layout, the classic single-machine Patroni lab: node1/2/3 get
//! PostgreSQL 5432/5433/5434, REST API 8008/8009/8010, etcd API 2379/2479/2579 and Raft
//! peers 2380/2480/2580. `--base-port P` is node1's PostgreSQL port and shifts every port
//! by `P - 5432`. This module only computes and probes ports; it starts nothing.

use std::net::TcpListener;

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// node1's PostgreSQL port in the classic layout.
pub const DEFAULT_BASE_PORT: u16 = 5432;
/// The most nodes a lab may have (keeps every node's ports apart).
pub const MAX_NODES: usize = 9;

/// The four ports of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePorts {
    pub postgres: u16,
    pub rest: u16,
    pub client: u16,
    pub peer: u16,
}

impl NodePorts {
    /// The ports of node `index` (0 for node1) for a lab whose node1 PostgreSQL port is
    /// `base_port`, or an error when a port falls outside 1..=65535.
    pub fn of(index: usize, base_port: u16) -> anyhow::Result<Self> {
        let shift = i64::from(base_port) - i64::from(DEFAULT_BASE_PORT);
        let i = index as i64;
        let port = |classic: i64| -> anyhow::Result<u16> {
            let p = classic + shift;
            match u16::try_from(p) {
                Ok(p) if p > 0 => Ok(p),
                _ => bail!(
                    "--base-port {base_port} puts node{}'s port {classic} at {p}, outside 1..=65535: \
                     choose a base port between 3054 and 62957",
                    index + 1
                ),
            }
        };
        Ok(Self { postgres: port(5432 + i)?, rest: port(8008 + i)?, client: port(2379 + 100 * i)?, peer: port(2380 + 100 * i)? })
    }

    /// `(what, port)` for every port, for messages.
    pub fn named(&self) -> [(&'static str, u16); 4] {
        [("PostgreSQL", self.postgres), ("REST API", self.rest), ("etcd API", self.client), ("Raft peer", self.peer)]
    }
}

/// The ports of every node of an `nodes`-node lab.
pub fn layout(nodes: usize, base_port: u16) -> anyhow::Result<Vec<NodePorts>> {
    if nodes == 0 || nodes > MAX_NODES {
        bail!("--nodes must be between 1 and {MAX_NODES}, not {nodes}");
    }
    (0..nodes).map(|i| NodePorts::of(i, base_port)).collect()
}

/// Fails, naming the first busy port, unless every port of the layout can be bound on
/// 127.0.0.1 right now.
pub fn check_free(layout: &[NodePorts], base_port: u16) -> anyhow::Result<()> {
    for (i, ports) in layout.iter().enumerate() {
        for (what, port) in ports.named() {
            if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
                bail!(
                    "port {port} (node{}'s {what}) is not free: {e}. Is another lab or PostgreSQL running? \
                     Stop it, or shift every port with --base-port (e.g. --base-port {})",
                    i + 1,
                    suggest(base_port)
                );
            }
        }
    }
    Ok(())
}

/// A base port to suggest instead of `base_port`.
fn suggest(base_port: u16) -> u16 {
    if base_port < 15432 {
        15432
    } else {
        base_port.saturating_add(10000).min(60432)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_layout() {
        let l = layout(3, DEFAULT_BASE_PORT).expect("layout");
        assert_eq!(l[0], NodePorts { postgres: 5432, rest: 8008, client: 2379, peer: 2380 });
        assert_eq!(l[1], NodePorts { postgres: 5433, rest: 8009, client: 2479, peer: 2480 });
        assert_eq!(l[2], NodePorts { postgres: 5434, rest: 8010, client: 2579, peer: 2580 });
    }

    #[test]
    fn base_port_shifts_every_port() {
        let l = layout(3, 15432).expect("layout");
        assert_eq!(l[0], NodePorts { postgres: 15432, rest: 18008, client: 12379, peer: 12380 });
        assert_eq!(l[2], NodePorts { postgres: 15434, rest: 18010, client: 12579, peer: 12580 });
        let low = layout(3, 2000).expect_err("negative ports");
        assert!(low.to_string().contains("--base-port 2000"), "{low}");
        assert!(layout(3, 63000).is_err());
        assert!(layout(0, 5432).is_err());
        assert!(layout(10, 5432).is_err());
    }

    #[test]
    fn busy_port_is_named() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let layout = [NodePorts { postgres: port, rest: port, client: port, peer: port }];
        let err = check_free(&layout, 5432).expect_err("busy").to_string();
        assert!(err.contains(&format!("port {port}")) && err.contains("--base-port"), "{err}");
    }
}
