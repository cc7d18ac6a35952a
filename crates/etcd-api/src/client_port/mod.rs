//! The client port, as etcd serves it: gRPC (h2c, or HTTP/2 over TLS) and plain
//! HTTP/1.1 (`/health`, `/metrics`, ...) on one socket.
//!
//! - `incoming`: accepted sockets, TLS handshakes done concurrently, each connection
//!   read through `frames::FixAuthority` so that scheme-prefixed `:authority` values
//!   (etcdctl 3.4 `--endpoints http://...`) reach h2 in a form it accepts (`authority`,
//!   `huffman`);
//! - `http`: a layer in front of the gRPC routes sending every request that is not
//!   gRPC to etcd's HTTP endpoints (`health`, `metrics`) and its grpc-gateway JSON
//!   API (`gateway`).
//!
//! tonic's hyper server tells HTTP/1.1 from HTTP/2 by the connection preface
//! (`accept_http1`); the layer tells gRPC from plain HTTP by `content-type`.

mod authority;
mod frames;
mod gateway;
mod health;
mod http;
mod huffman;
mod incoming;
mod metrics;

pub(crate) use http::HttpLayer;
pub(crate) use incoming::{incoming, ClientConn};
