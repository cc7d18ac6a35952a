//! The one authorization check every service calls with its request's metadata:
//! [`EtcdApi::authorize`]. Service impls call it first thing (not a router layer), so
//! whatever reaches them through their tonic traits — the client port, or a gateway
//! that copies a token into the metadata key `token` — is checked the same way.
//!
//! With auth disabled everything passes. With auth enabled the caller is the user of
//! the simple token in metadata `token` (`tokens`); without a token, the CommonName of
//! the client certificate the connection presented (etcd's `client-cert-auth`
//! behaviour; `client_port::ClientConn`); neither is etcd's "user name is empty", an
//! unknown, expired or void token "invalid auth token", and a user lacking
//! what the request [`Need`]s "permission denied" (the decision itself is
//! `raftgres_store::auth::AuthState::check`, pure). The in-process channel the agent
//! uses is trusted as root: it never leaves the process (see `in_process`).
//!
//! [`txn_needs`] lists what a txn needs, as etcd checks it: read on every compare,
//! read on ranges, write on puts and deletes (and read too when they ask for the
//! previous values), through nested txns, in both branches.

use raftgres_proto::etcdserverpb::request_op::Request as Op;
use raftgres_proto::etcdserverpb::{RequestOp, TxnRequest};
use raftgres_store::auth::{AuthError, Need};
use tonic::{Request, Status};

use crate::client_port::ClientConn;
use crate::error::auth_status;
use crate::EtcdApi;

/// The gRPC metadata key of the token (etcd's `rpctypes.TokenFieldNameGRPC`).
pub const TOKEN_KEY: &str = "token";

impl EtcdApi {
    /// Refuses the request unless auth is disabled, the channel is trusted, or the
    /// caller's token (else certificate) names a user with every one of `needs`.
    pub(crate) fn authorize<T>(&self, request: &Request<T>, needs: &[Need<'_>]) -> Result<(), Status> {
        if self.trusted {
            return Ok(());
        }
        let data = self.store.applied().read();
        let auth = &data.auth;
        if !auth.enabled() {
            return Ok(());
        }
        let user = match request.metadata().get(TOKEN_KEY) {
            Some(token) => {
                let token = token.to_str().map_err(|_| auth_status(AuthError::InvalidAuthToken))?;
                self.tokens.user_of(token, auth).ok_or_else(|| auth_status(AuthError::InvalidAuthToken))?
            }
            None => request
                .extensions()
                .get::<ClientConn>()
                .and_then(|conn| conn.certificate_user.clone())
                .ok_or_else(|| auth_status(AuthError::UserEmpty))?,
        };
        auth.check(&user, needs).map_err(auth_status)
    }
}

/// What `txn` needs of its caller.
pub fn txn_needs(txn: &TxnRequest) -> Vec<Need<'_>> {
    let mut needs: Vec<Need<'_>> = txn.compare.iter().map(|c| Need::Read(&c.key, &c.range_end)).collect();
    for op in txn.success.iter().chain(&txn.failure) {
        op_needs(op, &mut needs);
    }
    needs
}

fn op_needs<'a>(op: &'a RequestOp, needs: &mut Vec<Need<'a>>) {
    match &op.request {
        Some(Op::RequestRange(r)) => needs.push(Need::Read(&r.key, &r.range_end)),
        Some(Op::RequestPut(p)) => {
            needs.push(Need::Write(&p.key, &[]));
            if p.prev_kv {
                needs.push(Need::Read(&p.key, &[]));
            }
        }
        Some(Op::RequestDeleteRange(d)) => {
            needs.push(Need::Write(&d.key, &d.range_end));
            if d.prev_kv {
                needs.push(Need::Read(&d.key, &d.range_end));
            }
        }
        Some(Op::RequestTxn(t)) => needs.extend(txn_needs(t)),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use raftgres_proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest};

    use super::*;

    fn op(request: Op) -> RequestOp {
        RequestOp { request: Some(request) }
    }

    #[test]
    fn a_txn_needs_read_on_compares_and_each_op_of_both_branches() {
        let nested = TxnRequest {
            success: vec![op(Op::RequestDeleteRange(DeleteRangeRequest { key: b"/d".to_vec(), range_end: b"/e".to_vec(), prev_kv: true }))],
            ..Default::default()
        };
        let txn = TxnRequest {
            compare: vec![Compare { key: b"/c".to_vec(), ..Default::default() }],
            success: vec![op(Op::RequestPut(PutRequest { key: b"/p".to_vec(), ..Default::default() }))],
            failure: vec![op(Op::RequestRange(RangeRequest { key: b"/r".to_vec(), ..Default::default() })), op(Op::RequestTxn(nested))],
        };
        let needs = txn_needs(&txn);
        let empty: &[u8] = &[];
        assert_eq!(
            needs,
            vec![
                Need::Read(b"/c", empty),
                Need::Write(b"/p", empty),
                Need::Read(b"/r", empty),
                Need::Write(b"/d", b"/e"),
                Need::Read(b"/d", b"/e"),
            ]
        );
    }
}
